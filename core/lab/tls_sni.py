"""Server name (SNI) extraction from a TLS ClientHello, over TCP or inside a QUIC v1 Initial.

This is what a DPI box reads to block by name. Everything here is pure and defensive: input
comes from the network, so any length may lie and any buffer may end early. The scanners say
whether more bytes could still complete the ClientHello (``NEED_MORE``) or whether the stream
can never be one (``NOT_CLIENT_HELLO``), so a caller can stop buffering early.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, pull_quic_header

_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4
_CONTENT_TYPE_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_EXTENSION_SERVER_NAME = 0x0000
_NAME_TYPE_HOST_NAME = 0x00
# A TLS record carries at most 2^14 bytes of plaintext (RFC 8446 §5.1), 2^14 + 2048 for TLS 1.2.
_MAX_RECORD_LENGTH = 2**14 + 2048
# Post-quantum key shares make ClientHellos ~1.8 KB; anything past this is not a ClientHello a
# censor would bother to reassemble.
MAX_CLIENT_HELLO_LENGTH = 64 * 1024

QUIC_VERSION_1 = int(QuicProtocolVersion.VERSION_1)


class ScanStatus(enum.StrEnum):
    FOUND = "found"  # a complete ClientHello carrying a host_name
    NO_SNI = "no_sni"  # a complete ClientHello without a server_name extension
    NEED_MORE = "need_more"  # a prefix of what may still become a ClientHello
    NOT_CLIENT_HELLO = "not_client_hello"  # not TLS, not a ClientHello, or malformed


@dataclass(frozen=True)
class SniScan:
    status: ScanStatus
    server_name: str | None = None  # lower case, without a trailing dot

    @property
    def decided(self) -> bool:
        return self.status is not ScanStatus.NEED_MORE


_NEED_MORE = SniScan(ScanStatus.NEED_MORE)
_NOT_CLIENT_HELLO = SniScan(ScanStatus.NOT_CLIENT_HELLO)


def scan_tls_stream(data: bytes) -> SniScan:
    """Reads the SNI from the first bytes a TLS client sends over TCP.

    The ClientHello may be split over several TLS records (a known DPI evasion) and the
    records over several TCP segments; ``data`` is everything received so far, from the start
    of the stream.
    """
    handshake = bytearray()
    offset = 0
    while True:
        if len(data) - offset < _RECORD_HEADER:
            # A record header is still incomplete; check what there is of it.
            partial = data[offset:]
            if partial and partial[0] != _CONTENT_TYPE_HANDSHAKE:
                return _NOT_CLIENT_HELLO
            if len(partial) >= 2 and partial[1] != 0x03:
                return _NOT_CLIENT_HELLO
            return _scan_partial_handshake(bytes(handshake))
        content_type = data[offset]
        major = data[offset + 1]
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if content_type != _CONTENT_TYPE_HANDSHAKE or major != 0x03:
            return _NOT_CLIENT_HELLO
        if length == 0 or length > _MAX_RECORD_LENGTH:
            return _NOT_CLIENT_HELLO
        body_start = offset + _RECORD_HEADER
        handshake += data[body_start : body_start + length]
        scan = _scan_partial_handshake(bytes(handshake))
        if scan.decided or body_start + length > len(data):
            return scan
        offset = body_start + length


def _scan_partial_handshake(handshake: bytes) -> SniScan:
    """Scans handshake-layer bytes that may stop before the end of the ClientHello."""
    if not handshake:
        return _NEED_MORE
    if handshake[0] != _HANDSHAKE_CLIENT_HELLO:
        return _NOT_CLIENT_HELLO
    if len(handshake) < _HANDSHAKE_HEADER:
        return _NEED_MORE
    length = int.from_bytes(handshake[1:4], "big")
    if length > MAX_CLIENT_HELLO_LENGTH:
        return _NOT_CLIENT_HELLO
    if len(handshake) < _HANDSHAKE_HEADER + length:
        return _NEED_MORE
    return scan_client_hello_body(handshake[_HANDSHAKE_HEADER : _HANDSHAKE_HEADER + length])


def scan_handshake_message(handshake: bytes) -> SniScan:
    """Reads the SNI from a handshake message without record layer (as in QUIC CRYPTO frames)."""
    return _scan_partial_handshake(handshake)


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, length: int) -> bytes:
        end = self._offset + length
        if end > len(self._data):
            raise _Truncated
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))

    @property
    def exhausted(self) -> bool:
        return self._offset >= len(self._data)


def scan_client_hello_body(body: bytes) -> SniScan:
    """Reads the SNI from a complete ClientHello body (after the 4-byte handshake header)."""
    reader = _Reader(body)
    try:
        reader.take(2)  # legacy_version
        reader.take(32)  # random
        reader.vector(1)  # legacy_session_id
        reader.vector(2)  # cipher_suites
        reader.vector(1)  # legacy_compression_methods
        if reader.exhausted:
            return SniScan(ScanStatus.NO_SNI)  # TLS 1.0-era hello without extensions
        extensions = _Reader(reader.vector(2))
        while not extensions.exhausted:
            extension_type = extensions.number(2)
            extension = extensions.vector(2)
            if extension_type == _EXTENSION_SERVER_NAME:
                return _read_server_name_extension(extension)
    except _Truncated:
        return _NOT_CLIENT_HELLO
    return SniScan(ScanStatus.NO_SNI)


def _read_server_name_extension(extension: bytes) -> SniScan:
    names = _Reader(_Reader(extension).vector(2))
    while not names.exhausted:
        name_type = names.number(1)
        name = names.vector(2)
        if name_type == _NAME_TYPE_HOST_NAME:
            try:
                text = name.decode("ascii")
            except UnicodeDecodeError:
                return _NOT_CLIENT_HELLO
            return SniScan(ScanStatus.FOUND, normalise_name(text))
    return SniScan(ScanStatus.NO_SNI)


def normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def name_matches(name: str, blocked: frozenset[str], *, include_subdomains: bool) -> bool:
    """True when ``name`` is one of ``blocked`` (already normalised) or, optionally, below one."""
    if name in blocked:
        return True
    if not include_subdomains:
        return False
    labels = name.split(".")
    return any(".".join(labels[index:]) in blocked for index in range(1, len(labels)))


# --- QUIC ---------------------------------------------------------------------------------


def is_quic_v1_long_header(datagram: bytes) -> bool:
    """Long-header bit set and version 1: what a censor matches to drop all QUIC v1."""
    return (
        len(datagram) >= 5
        and datagram[0] & 0x80 != 0
        and int.from_bytes(datagram[1:5], "big") == QUIC_VERSION_1
    )


@dataclass(frozen=True)
class CryptoChunk:
    offset: int
    data: bytes


@dataclass(frozen=True)
class QuicInitial:
    """The decrypted CRYPTO frames of the client's QUIC v1 Initial packets in one datagram."""

    destination_cid: bytes
    chunks: tuple[CryptoChunk, ...]


def read_quic_initial(datagram: bytes) -> QuicInitial | None:
    """Decrypts the client Initial packets of a datagram (RFC 9001 §5.2 keys, from the DCID).

    Returns None when the datagram holds no client Initial that decrypts. Initial keys are
    public by design, so any on-path observer (and any censor) can do this.
    """
    buffer = Buffer(data=datagram)
    destination_cid: bytes | None = None
    chunks: list[CryptoChunk] = []
    while not buffer.eof():
        start = buffer.tell()
        try:
            header = pull_quic_header(buffer, host_cid_length=8)
        except (BufferReadError, ValueError):
            break
        if header.version is None:
            break  # a short header packet runs to the end of the datagram
        end = start + header.packet_length
        if header.version == QUIC_VERSION_1 and header.packet_type == QuicPacketType.INITIAL:
            frames = _decrypt_initial(
                datagram[start:end], buffer.tell() - start, header.destination_cid
            )
            if frames is not None:
                destination_cid = destination_cid or header.destination_cid
                chunks.extend(_crypto_frames(frames))
        buffer.seek(end)
    if destination_cid is None:
        return None
    return QuicInitial(destination_cid=destination_cid, chunks=tuple(chunks))


def _decrypt_initial(packet: bytes, encrypted_offset: int, destination_cid: bytes) -> bytes | None:
    crypto = CryptoPair()
    # The server's receive keys are the client's send keys.
    crypto.setup_initial(cid=destination_cid, is_client=False, version=QUIC_VERSION_1)
    try:
        _, payload, _ = crypto.decrypt_packet(packet, encrypted_offset, 0)
    except (ValueError, IndexError):  # aioquic's CryptoError is a ValueError
        return None
    return payload


_FRAME_PADDING = 0x00
_FRAME_PING = 0x01
_FRAME_ACK = 0x02
_FRAME_ACK_ECN = 0x03
_FRAME_CRYPTO = 0x06


def _crypto_frames(payload: bytes) -> list[CryptoChunk]:
    """The CRYPTO frames of an Initial payload; stops quietly at anything unexpected."""
    buffer = Buffer(data=payload)
    chunks: list[CryptoChunk] = []
    try:
        while not buffer.eof():
            frame_type = buffer.pull_uint_var()
            if frame_type in (_FRAME_PADDING, _FRAME_PING):
                continue
            if frame_type in (_FRAME_ACK, _FRAME_ACK_ECN):
                buffer.pull_uint_var()  # largest acknowledged
                buffer.pull_uint_var()  # delay
                range_count = buffer.pull_uint_var()
                buffer.pull_uint_var()  # first range
                for _ in range(2 * range_count + (3 if frame_type == _FRAME_ACK_ECN else 0)):
                    buffer.pull_uint_var()
            elif frame_type == _FRAME_CRYPTO:
                offset = buffer.pull_uint_var()
                length = buffer.pull_uint_var()
                chunks.append(CryptoChunk(offset=offset, data=buffer.pull_bytes(length)))
            else:
                break  # CONNECTION_CLOSE or a frame not allowed in Initial packets
    except BufferReadError:
        pass
    return chunks


def assemble_crypto_stream(chunks: list[CryptoChunk] | tuple[CryptoChunk, ...]) -> bytes:
    """The contiguous prefix (from offset 0) of a CRYPTO stream given out-of-order chunks."""
    stream = bytearray()
    pending = sorted(chunks, key=lambda chunk: chunk.offset)
    progress = True
    while progress:
        progress = False
        for chunk in pending:
            end = chunk.offset + len(chunk.data)
            if chunk.offset <= len(stream) < end:
                stream += chunk.data[len(stream) - chunk.offset :]
                progress = True
    return bytes(stream)
