"""Reading every datagram waiting on a UDP socket at once, and sending many to one address.

The echo server's fast path (``callpath.core.call.library_adapter``) reads its media socket
itself; where its loop in C (``core/call/_rtp_echo.c``) is built that loop reads and sends, and
this module only sends what Python hands back; elsewhere this module does both. One wake-up of
the event loop drains what arrived since the last one (under a CPU quota packets queue while
the process is throttled, so batches form on their own), and the echoed packets go out
together. On Linux this is one ``recvmmsg`` and one ``sendmmsg`` call, made through ``ctypes``
on the socket's descriptor with arrays allocated once per socket; where libc lacks them (other
systems) a loop of ``recvfrom`` / ``sendto`` does the same work. Which one is used is decided
once, when this module is loaded (``BATCH_CALLS``).

A datagram that does not fit a slot (longer than ``max_size``) is dropped, as a datagram
socket with a smaller buffer would truncate it; media packets are far smaller.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import sys
from typing import Any

Address = tuple[Any, ...]

BATCH_SIZE = 32  # datagrams per read; what is left waits for the next wake-up
SLOT_BYTES = 2048  # largest datagram read through the batch (RTP, RTCP, STUN, DTLS records)

_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_MSG_TRUNC = 0x20


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_NAME_BYTES = 28  # sizeof(struct sockaddr_in6), the larger of the two families
_MSG_SIZE = ctypes.sizeof(_Mmsghdr)
_IOV_SIZE = ctypes.sizeof(_Iovec)
_LEN_OFFSET = _Mmsghdr.msg_len.offset
_FLAGS_OFFSET = _Msghdr.msg_flags.offset
_IOV_LEN_OFFSET = _Iovec.iov_len.offset
_UINT = struct.Struct("=I")
_INT = struct.Struct("=i")
_SIZE = struct.Struct("N")  # size_t
_FAMILY = struct.Struct("=H")
_PORT = struct.Struct("!H")


def _load_batch_calls() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    int_, pointer, uint = ctypes.c_int, ctypes.c_void_p, ctypes.c_uint
    recvmmsg.argtypes = [int_, pointer, uint, int_, pointer]
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


# (recvmmsg, sendmmsg) from libc, or None: plain recvfrom/sendto then.
BATCH_CALLS = _load_batch_calls()


def sockaddr_bytes(family: int, address: Address) -> bytes:
    """``address`` as the kernel's ``struct sockaddr_in`` / ``sockaddr_in6`` bytes."""
    port = _PORT.pack(int(address[1]))
    if family == socket.AF_INET6:
        flow = int(address[2]) if len(address) > 2 else 0
        scope = int(address[3]) if len(address) > 3 else 0
        return b"".join(
            (
                _FAMILY.pack(socket.AF_INET6),
                port,
                struct.pack("!I", flow),
                socket.inet_pton(socket.AF_INET6, str(address[0])),
                _UINT.pack(scope),
            )
        )
    packed = socket.inet_pton(socket.AF_INET, str(address[0]))
    return b"".join((_FAMILY.pack(socket.AF_INET), port, packed, bytes(8)))


def parse_sockaddr(raw: bytes | memoryview) -> Address | None:
    """The (host, port) a ``struct sockaddr_in`` / ``sockaddr_in6`` holds, as ``recvfrom``
    gives it (IPv6: (host, port, flow info, scope id)); None for another family."""
    if len(raw) < 8:
        return None
    family = _FAMILY.unpack_from(raw)[0]
    port = _PORT.unpack_from(raw, 2)[0]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, bytes(raw[4:8])), port
    if family == socket.AF_INET6 and len(raw) >= _NAME_BYTES:
        host = socket.inet_ntop(socket.AF_INET6, bytes(raw[8:24]))
        flow = struct.unpack_from("!I", raw, 4)[0]
        return host, port, flow, _UINT.unpack_from(raw, 24)[0]
    return None


class DatagramBatch:
    """Batched reads from and sends through one non-blocking UDP socket.

    ``receive`` returns the datagrams waiting: at most ``BATCH_SIZE``, none when nothing is
    waiting, an empty one in place of a datagram too long for a slot. ``address(i)`` is where
    the ``i``-th came from (parsed only when asked: the media path never needs it). ``send``
    sends datagrams to one address and returns how many went out (the rest are dropped when
    the socket's buffer is full, as UDP would lose them). ``batched=False`` forces the
    ``recvfrom``/``sendto`` loop (``None``: ``recvmmsg``/``sendmmsg`` where libc has them).
    """

    def __init__(self, sock: socket.socket, *, batched: bool | None = None) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._family = sock.family
        self._calls = BATCH_CALLS if batched is None or batched else None
        self.batched = self._calls is not None
        self._addresses: list[Address] = []
        self._destination: Address | None = None
        if self._calls is None:
            return
        count = BATCH_SIZE
        # Receiving: one slot per datagram, its name, an iovec pointing at the slot.
        self._slots = ctypes.create_string_buffer(count * SLOT_BYTES)
        self._slot_view = memoryview(self._slots).cast("B")
        self._names = ctypes.create_string_buffer(count * _NAME_BYTES)
        self._name_view = memoryview(self._names).cast("B")
        self._recv_iovs = (_Iovec * count)()
        self._recv_msgs = (_Mmsghdr * count)()
        base, names = ctypes.addressof(self._slots), ctypes.addressof(self._names)
        for i in range(count):
            self._recv_iovs[i].iov_base = base + i * SLOT_BYTES
            self._recv_iovs[i].iov_len = SLOT_BYTES
            header = self._recv_msgs[i].msg_hdr
            header.msg_name = names + i * _NAME_BYTES
            header.msg_namelen = _NAME_BYTES
            header.msg_iov = ctypes.addressof(self._recv_iovs[i])
            header.msg_iovlen = 1
        # The kernel writes lengths and flags into the headers: restored before every read.
        self._recv_template = bytes(memoryview(self._recv_msgs).cast("B"))
        self._recv_view = memoryview(self._recv_msgs).cast("B")
        self._received = 0
        # Sending: iovecs pointing at copies of the datagrams, one destination for all.
        self._send_slots = ctypes.create_string_buffer(count * SLOT_BYTES)
        self._send_iovs = (_Iovec * count)()
        self._send_iov_view = memoryview(self._send_iovs).cast("B")
        self._send_msgs = (_Mmsghdr * count)()
        self._send_view = memoryview(self._send_msgs).cast("B")
        self._destination_raw = ctypes.create_string_buffer(_NAME_BYTES)
        send_base = ctypes.addressof(self._send_slots)
        for i in range(count):
            self._send_iovs[i].iov_base = send_base + i * SLOT_BYTES
            header = self._send_msgs[i].msg_hdr
            header.msg_name = ctypes.addressof(self._destination_raw)
            header.msg_iov = ctypes.addressof(self._send_iovs[i])
            header.msg_iovlen = 1
        self._send_base = send_base

    def receive(self) -> list[bytes]:
        """The datagrams waiting on the socket (raises ``OSError`` on a socket error)."""
        if self._calls is None:
            return self._receive_each()
        ctypes.memmove(self._recv_msgs, self._recv_template, len(self._recv_template))
        received = self._calls[0](self._fd, self._recv_msgs, BATCH_SIZE, socket.MSG_DONTWAIT, None)
        if received < 0:
            code = ctypes.get_errno()
            if code in _AGAIN:
                self._received = 0
                return []
            raise OSError(code, "recvmmsg failed")
        self._received = received
        view, slots, datagrams = self._recv_view, self._slot_view, []
        for i in range(received):
            at = i * _MSG_SIZE
            if _INT.unpack_from(view, at + _FLAGS_OFFSET)[0] & _MSG_TRUNC:
                datagrams.append(b"")  # too long for a slot: dropped (kept for indexing)
                continue
            length = _UINT.unpack_from(view, at + _LEN_OFFSET)[0]
            start = i * SLOT_BYTES
            datagrams.append(bytes(slots[start : start + length]))
        return datagrams

    def _receive_each(self) -> list[bytes]:
        datagrams: list[bytes] = []
        addresses = self._addresses = []
        recvfrom = self._sock.recvfrom
        while len(datagrams) < BATCH_SIZE:
            try:
                data, address = recvfrom(SLOT_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                break
            datagrams.append(data if len(data) <= SLOT_BYTES else b"")
            addresses.append(address)
        return datagrams

    def address(self, index: int) -> Address | None:
        """Where the ``index``-th datagram of the last ``receive`` came from."""
        if self._calls is None:
            return self._addresses[index]
        start = index * _NAME_BYTES
        length = _UINT.unpack_from(self._recv_view, index * _MSG_SIZE + _Msghdr.msg_namelen.offset)
        return parse_sockaddr(self._name_view[start : start + min(length[0], _NAME_BYTES)])

    def send(self, datagrams: list[bytes], address: Address) -> int:
        """Send ``datagrams`` to ``address``; how many the kernel took."""
        if self._calls is None or len(datagrams) == 1:
            return self._send_each(datagrams, address)
        if address != self._destination:
            raw = sockaddr_bytes(self._family, address)
            ctypes.memmove(self._destination_raw, raw, len(raw))
            length = len(raw)
            for i in range(BATCH_SIZE):
                self._send_msgs[i].msg_hdr.msg_namelen = length
            self._destination = address
        fitting = [data for data in datagrams if len(data) <= SLOT_BYTES]
        sent = 0
        while sent < len(fitting):
            chunk = fitting[sent : sent + BATCH_SIZE]
            for i, data in enumerate(chunk):
                ctypes.memmove(self._send_base + i * SLOT_BYTES, data, len(data))
                _SIZE.pack_into(self._send_iov_view, i * _IOV_SIZE + _IOV_LEN_OFFSET, len(data))
            result = int(self._calls[1](self._fd, self._send_msgs, len(chunk), 0))
            if result <= 0:
                return sent  # buffer full or an error: the rest is dropped, as UDP may drop it
            sent += result
            if result < len(chunk):
                return sent
        return sent

    def _send_each(self, datagrams: list[bytes], address: Address) -> int:
        sent = 0
        sendto = self._sock.sendto
        for data in datagrams:
            try:
                sendto(data, address)
            except OSError:
                break
            sent += 1
        return sent
