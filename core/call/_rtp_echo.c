/* The echo server's per-packet loop in C (Linux): one call reads every datagram waiting on a
 * call's media socket (recvmmsg), and for each SRTP packet of a known stream decrypts it,
 * accounts for it (aiortc's receiver statistics, the NACK generator's highest sequence number),
 * rewrites its SSRC, remembers it for retransmission requests, encrypts it and queues it; the
 * echoes leave in one sendmmsg. Everything else comes back to Python as it is: datagrams that
 * are not RTP of a known stream (STUN, RTCP, DTLS) with their source address, and the
 * decrypted packets the loop leaves to Python (a stream's first packet, a gap in a video
 * sequence that needs a NACK, retransmissions, payload types not yet known). Once one packet of
 * a stream is left to Python in a read, the rest of that stream's packets in the read are too,
 * so that each stream's packets are accounted for in order.
 *
 * Why native: with reads batched, the Python loop around libsrtp was what an echo call cost
 * (docs/performance.md). The SRTP sessions stay pylibsrtp's: the caller passes the addresses of
 * the sessions and of libsrtp's srtp_protect/srtp_unprotect from pylibsrtp's own binding
 * (library_adapter.py), so this file links against nothing but libc and Python.
 *
 * The statistics mirror aiortc 1.16's StreamStatistics.add and NackGenerator.add exactly;
 * library_adapter.py reads them through small views that aiortc's receiver reports use. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH_SIZE 32          /* datagrams per read, as datagram_batch.BATCH_SIZE */
#define SLOT_BYTES 2048        /* largest datagram read, as datagram_batch.SLOT_BYTES */
#define SRTP_TRAILER_BYTES 144 /* libsrtp 2's SRTP_MAX_TRAILER_LEN: room to encrypt in place */
#define MAX_STREAMS 8          /* SSRCs per media socket: audio, video, video retransmissions */
#define RTP_HEADER_BYTES 12
#define NTP_UNIX_OFFSET_S 2208988800.0
#define KIND_MEDIA 1

typedef int (*srtp_call)(void *session, void *packet, int *length);

/* --- one echoed stream ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    /* What the echo sends: its SSRC, the packets it remembers, what its reports announce. */
    unsigned int ssrc;
    PyObject *history; /* list of history_size entries: bytes or None */
    Py_ssize_t history_size;
    long long packets_sent;
    long long payload_bytes_sent;
    long long last_timestamp;
    unsigned long long last_sent_ntp;
    int unflushed;
    /* What the echo receives: aiortc's StreamStatistics, for source_ssrc (-1: none yet). */
    long long source_ssrc;
    long long clockrate;
    long long base_seq; /* -1: None */
    long long max_seq;  /* -1: None */
    long long cycles;
    long long packets_received;
    long long jitter_q4;
    long long last_arrival;       /* -1: None */
    long long last_rtp_timestamp; /* -1: None */
    /* aiortc's NackGenerator.max_seq (-1: None) when the stream asks for lost packets. */
    int nack;
    long long nack_max_seq;
    /* Set by Python before each read. */
    int receiving; /* the receiver is enabled */
    int allowed;   /* the echo may send (amplification limit) */
    unsigned char kinds[128]; /* payload type -> KIND_MEDIA when this loop may echo it */
    long long packets_fast;
    int diverted; /* within one read: the rest of this stream's packets go to Python */
} EchoStream;

static int uint16_gt(long long a, long long b) {
    long long half = 0x8000;
    return (a > b && a - b < half) || (a < b && b - a > half);
}

static void statistics_add(EchoStream *s, long long seq, long long timestamp, double now) {
    int in_order = s->max_seq < 0 || uint16_gt(seq, s->max_seq);
    s->packets_received += 1;
    if (s->base_seq < 0)
        s->base_seq = seq;
    if (!in_order)
        return;
    long long arrival = (long long)(now * (double)s->clockrate);
    if (s->max_seq >= 0 && seq < s->max_seq)
        s->cycles += 1 << 16;
    s->max_seq = seq;
    if (timestamp != s->last_rtp_timestamp && s->packets_received > 1) {
        long long diff = (arrival - s->last_arrival) - (timestamp - s->last_rtp_timestamp);
        if (diff < 0)
            diff = -diff;
        /* Python's >> floors; so does gcc's arithmetic shift of a negative value. */
        s->jitter_q4 += diff - ((s->jitter_q4 + 8) >> 4);
    }
    s->last_arrival = arrival;
    s->last_rtp_timestamp = timestamp;
}

/* The header's length and padding, or -1 when the packet is not well-formed RTP
 * (rtp_forwarding.parse_rtp_header). */
static int payload_bounds(const unsigned char *p, int length, int *offset, int *padding) {
    if (length < RTP_HEADER_BYTES || (p[0] >> 6) != 2)
        return -1;
    int at = RTP_HEADER_BYTES + 4 * (p[0] & 0x0F);
    if (p[0] & 0x10) {
        if (length < at + 4)
            return -1;
        int words = (p[at + 2] << 8) | p[at + 3];
        at += 4 + 4 * words;
        if (length < at)
            return -1;
    }
    int pad = (p[0] & 0x20) && length > at ? p[length - 1] : 0;
    if (at + pad > length)
        return -1;
    *offset = at;
    *padding = pad;
    return 0;
}

/* Rewrite the packet (decrypted, in place) as the echo sends it and remember it: what
 * rtp_forwarding.ForwardedStream.rewrite does. */
static int forward(EchoStream *s, unsigned char *p, int length, int offset, int padding,
                   double now) {
    p[8] = (unsigned char)(s->ssrc >> 24);
    p[9] = (unsigned char)(s->ssrc >> 16);
    p[10] = (unsigned char)(s->ssrc >> 8);
    p[11] = (unsigned char)s->ssrc;
    long long seq = (p[2] << 8) | p[3];
    PyObject *kept = PyBytes_FromStringAndSize((const char *)p, length);
    if (kept == NULL)
        return -1;
    if (PyList_SetItem(s->history, (Py_ssize_t)(seq % s->history_size), kept) < 0)
        return -1; /* PyList_SetItem released kept */
    s->packets_sent += 1;
    s->payload_bytes_sent += length - offset - padding;
    s->last_timestamp = ((long long)p[4] << 24) | (p[5] << 16) | (p[6] << 8) | p[7];
    s->last_sent_ntp = (unsigned long long)((now + NTP_UNIX_OFFSET_S) * 4294967296.0);
    s->unflushed = 1;
    return 0;
}

static int EchoStream_init(EchoStream *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"ssrc", "history_size", "nack", NULL};
    unsigned int ssrc;
    Py_ssize_t history_size;
    int nack;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Inp", names, &ssrc, &history_size, &nack))
        return -1;
    if (history_size < 1) {
        PyErr_SetString(PyExc_ValueError, "history_size must be positive");
        return -1;
    }
    PyObject *history = PyList_New(history_size);
    if (history == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < history_size; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(history, i, Py_None);
    }
    Py_XSETREF(self->history, history);
    self->ssrc = ssrc;
    self->history_size = history_size;
    self->nack = nack;
    self->source_ssrc = self->base_seq = self->max_seq = -1;
    self->last_arrival = self->last_rtp_timestamp = self->nack_max_seq = -1;
    self->clockrate = 90000;
    self->receiving = self->allowed = 1;
    return 0;
}

static void EchoStream_dealloc(EchoStream *self) {
    Py_XDECREF(self->history);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *EchoStream_mark_media(EchoStream *self, PyObject *arg) {
    long payload_type = PyLong_AsLong(arg);
    if (payload_type == -1 && PyErr_Occurred())
        return NULL;
    if (payload_type < 0 || payload_type > 127) {
        PyErr_SetString(PyExc_ValueError, "payload type out of range");
        return NULL;
    }
    self->kinds[payload_type] = KIND_MEDIA;
    Py_RETURN_NONE;
}

static PyObject *EchoStream_add(EchoStream *self, PyObject *args) {
    long long seq, timestamp;
    double now;
    if (!PyArg_ParseTuple(args, "LLd", &seq, &timestamp, &now))
        return NULL;
    statistics_add(self, seq, timestamp, now);
    Py_RETURN_NONE;
}

static PyObject *EchoStream_forward(EchoStream *self, PyObject *args) {
    Py_buffer packet;
    double now;
    if (!PyArg_ParseTuple(args, "y*d", &packet, &now))
        return NULL;
    int offset, padding;
    int length = (int)packet.len;
    if (packet.len > SLOT_BYTES ||
        payload_bounds(packet.buf, length, &offset, &padding) < 0) {
        PyBuffer_Release(&packet);
        PyErr_SetString(PyExc_ValueError, "not a well-formed RTP packet");
        return NULL;
    }
    unsigned char copy[SLOT_BYTES];
    memcpy(copy, packet.buf, packet.len);
    PyBuffer_Release(&packet);
    if (forward(self, copy, length, offset, padding, now) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)copy, length);
}

static PyObject *EchoStream_recall(EchoStream *self, PyObject *arg) {
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (seq < 0)
        Py_RETURN_NONE;
    PyObject *kept = PyList_GET_ITEM(self->history, (Py_ssize_t)(seq % self->history_size));
    if (PyBytes_Check(kept) && PyBytes_GET_SIZE(kept) >= 4) {
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(kept);
        if (((p[2] << 8) | p[3]) == seq)
            return Py_NewRef(kept);
    }
    Py_RETURN_NONE;
}

static PyMethodDef EchoStream_methods[] = {
    {"mark_media", (PyCFunction)EchoStream_mark_media, METH_O,
     "Let this loop echo packets of a media payload type."},
    {"add", (PyCFunction)EchoStream_add, METH_VARARGS,
     "add(sequence_number, timestamp, now): account for a received packet "
     "(aiortc's StreamStatistics.add)."},
    {"forward", (PyCFunction)EchoStream_forward, METH_VARARGS,
     "forward(packet, now) -> bytes: the decrypted packet as the echo sends it, remembered "
     "and counted (ForwardedStream.rewrite)."},
    {"recall", (PyCFunction)EchoStream_recall, METH_O,
     "The packet sent with this sequence number, if still remembered."},
    {NULL, NULL, 0, NULL},
};

#define MEMBER(name, type) {#name, type, offsetof(EchoStream, name), 0, NULL}
static PyMemberDef EchoStream_members[] = {
    {"ssrc", T_UINT, offsetof(EchoStream, ssrc), READONLY, NULL},
    MEMBER(packets_sent, T_LONGLONG),
    MEMBER(payload_bytes_sent, T_LONGLONG),
    MEMBER(last_timestamp, T_LONGLONG),
    MEMBER(last_sent_ntp, T_ULONGLONG),
    MEMBER(unflushed, T_INT),
    MEMBER(source_ssrc, T_LONGLONG),
    MEMBER(clockrate, T_LONGLONG),
    MEMBER(base_seq, T_LONGLONG),
    MEMBER(max_seq, T_LONGLONG),
    MEMBER(cycles, T_LONGLONG),
    MEMBER(packets_received, T_LONGLONG),
    MEMBER(jitter_q4, T_LONGLONG),
    MEMBER(nack_max_seq, T_LONGLONG),
    MEMBER(receiving, T_INT),
    MEMBER(allowed, T_INT),
    MEMBER(packets_fast, T_LONGLONG),
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject EchoStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callpath.core.call._rtp_echo.EchoStream",
    .tp_basicsize = sizeof(EchoStream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "EchoStream(ssrc, history_size, nack): one stream echoed under ssrc.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EchoStream_init,
    .tp_dealloc = (destructor)EchoStream_dealloc,
    .tp_methods = EchoStream_methods,
    .tp_members = EchoStream_members,
};

/* --- one media socket -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *rx_owner, *tx_owner; /* keep the sessions behind the pointers alive */
    void *rx_session, *tx_session;
    srtp_call unprotect, protect;
    int stream_count;
    uint32_t stream_ssrcs[MAX_STREAMS]; /* as on the wire (network order) */
    EchoStream *streams[MAX_STREAMS];
    struct sockaddr_storage destination;
    socklen_t destination_length;
    struct mmsghdr receive_headers[BATCH_SIZE];
    struct iovec receive_vectors[BATCH_SIZE];
    struct sockaddr_storage sources[BATCH_SIZE];
    struct mmsghdr send_headers[BATCH_SIZE];
    struct iovec send_vectors[BATCH_SIZE];
    unsigned char slots[BATCH_SIZE][SLOT_BYTES];
    long long reads;
    long long datagrams;
    /* Since the socket was taken over: RTP of known streams read, and echoes the kernel took. */
    long long received;
    long long received_bytes;
    long long sent;
    long long sent_bytes;
} EchoSocket;

static int EchoSocket_init(EchoSocket *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fd", "rx_owner", "rx_session", "tx_owner", "tx_session",
                            "unprotect", "protect", NULL};
    int fd;
    PyObject *rx_owner, *tx_owner;
    unsigned long long rx, tx, unprotect, protect;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOKOKKK", names, &fd, &rx_owner, &rx,
                                     &tx_owner, &tx, &unprotect, &protect))
        return -1;
    if (!rx || !tx || !unprotect || !protect) {
        PyErr_SetString(PyExc_ValueError, "null SRTP session or function");
        return -1;
    }
    self->fd = fd;
    Py_INCREF(rx_owner);
    Py_XSETREF(self->rx_owner, rx_owner);
    Py_INCREF(tx_owner);
    Py_XSETREF(self->tx_owner, tx_owner);
    self->rx_session = (void *)(uintptr_t)rx;
    self->tx_session = (void *)(uintptr_t)tx;
    self->unprotect = (srtp_call)(uintptr_t)unprotect;
    self->protect = (srtp_call)(uintptr_t)protect;
    return 0;
}

static void EchoSocket_dealloc(EchoSocket *self) {
    for (int i = 0; i < self->stream_count; i++)
        Py_XDECREF(self->streams[i]);
    Py_XDECREF(self->rx_owner);
    Py_XDECREF(self->tx_owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *EchoSocket_add_stream(EchoSocket *self, PyObject *args) {
    Py_buffer ssrc;
    PyObject *stream;
    if (!PyArg_ParseTuple(args, "y*O!", &ssrc, &EchoStreamType, &stream))
        return NULL;
    if (ssrc.len != 4) {
        PyBuffer_Release(&ssrc);
        PyErr_SetString(PyExc_ValueError, "an SSRC is 4 bytes");
        return NULL;
    }
    uint32_t key;
    memcpy(&key, ssrc.buf, 4);
    PyBuffer_Release(&ssrc);
    for (int i = 0; i < self->stream_count; i++) {
        if (self->stream_ssrcs[i] == key) {
            Py_INCREF(stream);
            Py_SETREF(self->streams[i], (EchoStream *)stream);
            Py_RETURN_NONE;
        }
    }
    if (self->stream_count == MAX_STREAMS) {
        PyErr_SetString(PyExc_OverflowError, "too many streams on one socket");
        return NULL;
    }
    Py_INCREF(stream);
    self->stream_ssrcs[self->stream_count] = key;
    self->streams[self->stream_count] = (EchoStream *)stream;
    self->stream_count += 1;
    Py_RETURN_NONE;
}

static PyObject *EchoSocket_set_destination(EchoSocket *self, PyObject *arg) {
    Py_buffer raw;
    if (PyObject_GetBuffer(arg, &raw, PyBUF_SIMPLE) < 0)
        return NULL;
    if (raw.len <= 0 || (size_t)raw.len > sizeof(self->destination)) {
        PyBuffer_Release(&raw);
        PyErr_SetString(PyExc_ValueError, "not a socket address");
        return NULL;
    }
    memcpy(&self->destination, raw.buf, raw.len);
    self->destination_length = (socklen_t)raw.len;
    PyBuffer_Release(&raw);
    Py_RETURN_NONE;
}

static EchoStream *find_stream(EchoSocket *self, const unsigned char *p) {
    uint32_t key;
    memcpy(&key, p + 8, 4);
    for (int i = 0; i < self->stream_count; i++)
        if (self->stream_ssrcs[i] == key)
            return self->streams[i];
    return NULL;
}

/* Leave a datagram to Python: (stream or None, bytes, source address or None). */
static int leave(PyObject **left, EchoStream *stream, const unsigned char *p, int length,
                 const struct sockaddr_storage *source, socklen_t source_length) {
    if (*left == NULL && (*left = PyList_New(0)) == NULL)
        return -1;
    PyObject *item;
    if (stream != NULL)
        item = Py_BuildValue("(Oy#O)", (PyObject *)stream, p, (Py_ssize_t)length, Py_None);
    else
        item = Py_BuildValue("(Oy#y#)", Py_None, p, (Py_ssize_t)length, (const char *)source,
                             (Py_ssize_t)source_length);
    if (item == NULL)
        return -1;
    int status = PyList_Append(*left, item);
    Py_DECREF(item);
    return status;
}

static PyObject *EchoSocket_read(EchoSocket *self, PyObject *Py_UNUSED(ignored)) {
    for (int i = 0; i < BATCH_SIZE; i++) {
        self->receive_vectors[i].iov_base = self->slots[i];
        self->receive_vectors[i].iov_len = SLOT_BYTES;
        memset(&self->receive_headers[i], 0, sizeof(self->receive_headers[i]));
        self->receive_headers[i].msg_hdr.msg_name = &self->sources[i];
        self->receive_headers[i].msg_hdr.msg_namelen = sizeof(self->sources[i]);
        self->receive_headers[i].msg_hdr.msg_iov = &self->receive_vectors[i];
        self->receive_headers[i].msg_hdr.msg_iovlen = 1;
    }
    int count = recvmmsg(self->fd, self->receive_headers, BATCH_SIZE, MSG_DONTWAIT, NULL);
    if (count < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            Py_RETURN_NONE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->reads += 1;
    self->datagrams += count;
    struct timespec clock;
    clock_gettime(CLOCK_REALTIME, &clock);
    double now = (double)clock.tv_sec + (double)clock.tv_nsec * 1e-9;
    for (int i = 0; i < self->stream_count; i++)
        self->streams[i]->diverted = 0;

    PyObject *left = NULL;
    long long received = 0, received_bytes = 0; /* counted even when the read fails later */
    int queued = 0;
    for (int i = 0; i < count; i++) {
        struct msghdr *header = &self->receive_headers[i].msg_hdr;
        unsigned char *p = self->slots[i];
        int length = (int)self->receive_headers[i].msg_len;
        if (header->msg_flags & MSG_TRUNC)
            continue; /* longer than a slot: dropped, as datagram_batch does */
        EchoStream *stream = NULL;
        /* RFC 7983: RTP's first byte is 128-191, RTCP's packet types 192-208 follow it. */
        if (length >= RTP_HEADER_BYTES && p[0] > 127 && p[0] < 192 &&
            !(p[1] > 191 && p[1] < 209))
            stream = find_stream(self, p);
        if (stream == NULL) {
            if (length > 0 &&
                leave(&left, NULL, p, length, &self->sources[i], header->msg_namelen) < 0)
                goto error;
            continue;
        }
        received += 1;
        received_bytes += length;
        if (length > SLOT_BYTES - SRTP_TRAILER_BYTES)
            continue; /* no room to encrypt the echo in place; far beyond any media packet */
        if (self->unprotect(self->rx_session, p, &length) != 0)
            continue; /* not authentic, or replayed: dropped, as pylibsrtp raises */
        stream->packets_fast += 1;
        int offset, padding;
        if (stream->diverted) {
            if (leave(&left, stream, p, length, NULL, 0) < 0)
                goto error;
            continue;
        }
        if (payload_bounds(p, length, &offset, &padding) < 0)
            continue;
        long long seq = (p[2] << 8) | p[3];
        long long timestamp = ((long long)p[4] << 24) | (p[5] << 16) | (p[6] << 8) | p[7];
        long long ssrc = ((long long)p[8] << 24) | (p[9] << 16) | (p[10] << 8) | p[11];
        int next_in_sequence = stream->nack_max_seq >= 0 &&
                               seq == ((stream->nack_max_seq + 1) & 0xFFFF);
        if (stream->kinds[p[1] & 0x7F] != KIND_MEDIA || ssrc != stream->source_ssrc ||
            (stream->nack && !next_in_sequence)) {
            stream->diverted = 1;
            if (leave(&left, stream, p, length, NULL, 0) < 0)
                goto error;
            continue;
        }
        if (!stream->receiving)
            continue;
        if (stream->nack)
            stream->nack_max_seq = seq;
        statistics_add(stream, seq, timestamp, now);
        if (!stream->allowed)
            continue;
        if (forward(stream, p, length, offset, padding, now) < 0)
            goto error;
        if (self->protect(self->tx_session, p, &length) != 0)
            continue;
        self->send_vectors[queued].iov_base = p;
        self->send_vectors[queued].iov_len = (size_t)length;
        queued += 1;
    }

    long long sent = 0, sent_bytes = 0;
    if (queued > 0 && self->destination_length > 0) {
        for (int i = 0; i < queued; i++) {
            memset(&self->send_headers[i], 0, sizeof(self->send_headers[i]));
            self->send_headers[i].msg_hdr.msg_name = &self->destination;
            self->send_headers[i].msg_hdr.msg_namelen = self->destination_length;
            self->send_headers[i].msg_hdr.msg_iov = &self->send_vectors[i];
            self->send_headers[i].msg_hdr.msg_iovlen = 1;
        }
        int at = 0;
        while (at < queued) {
            int result = sendmmsg(self->fd, self->send_headers + at, queued - at, 0);
            if (result <= 0)
                break; /* buffer full or an error: the rest is dropped, as UDP may drop it */
            for (int i = at; i < at + result; i++)
                sent_bytes += (long long)self->send_vectors[i].iov_len;
            at += result;
        }
        sent = at;
    }
    self->received += received;
    self->received_bytes += received_bytes;
    self->sent += sent;
    self->sent_bytes += sent_bytes;
    if (left == NULL)
        Py_RETURN_NONE;
    return left;

error:
    self->received += received;
    self->received_bytes += received_bytes;
    Py_XDECREF(left);
    return NULL;
}

static PyMethodDef EchoSocket_methods[] = {
    {"add_stream", (PyCFunction)EchoSocket_add_stream, METH_VARARGS,
     "add_stream(ssrc_bytes, stream): echo packets carrying this SSRC (as on the wire)."},
    {"set_destination", (PyCFunction)EchoSocket_set_destination, METH_O,
     "Where echoes go: a raw socket address (datagram_batch.sockaddr_bytes)."},
    {"read", (PyCFunction)EchoSocket_read, METH_NOARGS,
     "read() -> list or None: echo what is waiting; what is left to Python, as (stream or "
     "None, bytes, source address or None). Counts add up in received, sent, ... ."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef EchoSocket_members[] = {
    {"reads", T_LONGLONG, offsetof(EchoSocket, reads), READONLY, NULL},
    {"datagrams", T_LONGLONG, offsetof(EchoSocket, datagrams), READONLY, NULL},
    {"received", T_LONGLONG, offsetof(EchoSocket, received), READONLY, NULL},
    {"received_bytes", T_LONGLONG, offsetof(EchoSocket, received_bytes), READONLY, NULL},
    {"sent", T_LONGLONG, offsetof(EchoSocket, sent), READONLY, NULL},
    {"sent_bytes", T_LONGLONG, offsetof(EchoSocket, sent_bytes), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject EchoSocketType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "callpath.core.call._rtp_echo.EchoSocket",
    .tp_basicsize = sizeof(EchoSocket),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "EchoSocket(fd, rx_owner, rx_session, tx_owner, tx_session, unprotect, protect)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EchoSocket_init,
    .tp_dealloc = (destructor)EchoSocket_dealloc,
    .tp_methods = EchoSocket_methods,
    .tp_members = EchoSocket_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "callpath.core.call._rtp_echo",
    .m_doc = "The echo server's per-packet loop (see _rtp_echo.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__rtp_echo(void) {
    if (PyType_Ready(&EchoStreamType) < 0 || PyType_Ready(&EchoSocketType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BATCH_SIZE", BATCH_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_BYTES", SLOT_BYTES) < 0 ||
        PyModule_AddObjectRef(m, "EchoStream", (PyObject *)&EchoStreamType) < 0 ||
        PyModule_AddObjectRef(m, "EchoSocket", (PyObject *)&EchoSocketType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
