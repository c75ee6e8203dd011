"""Wire formats of UDP proxying over HTTP, without any I/O.

- QUIC variable-length integers (RFC 9000 §16), through aioquic's ``Buffer``;
- the UDP proxying payload of an HTTP Datagram: Context ID 0 then the UDP payload
  (RFC 9298 §5);
- capsules on the request stream: Type, Length, Value, with DATAGRAM = 0x00 (RFC 9297 §3.2,
  §3.5), and a parser that accepts the stream in arbitrary pieces;
- the default URI template ``/.well-known/masque/udp/{target_host}/{target_port}/`` and its
  reverse (RFC 9298 §2, §3.1).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from aioquic.buffer import UINT_VAR_MAX, Buffer, BufferReadError, size_uint_var

CONTEXT_ID_UDP_PAYLOAD = 0
CAPSULE_TYPE_DATAGRAM = 0x00
SETTING_H3_DATAGRAM = 0x33
SETTING_ENABLE_CONNECT_PROTOCOL = 0x08
CONNECT_UDP_PROTOCOL = "connect-udp"
WELL_KNOWN_UDP_PREFIX = "/.well-known/masque/udp/"
# Generous for a UDP payload plus framing; a peer announcing more is treated as broken.
DEFAULT_MAX_CAPSULE_LENGTH = 65_535 + 16


class IncompleteVarint(ValueError):
    """The bytes end inside a variable-length integer."""


class CapsuleError(ValueError):
    """The capsule stream is malformed or announces a capsule larger than allowed."""


def encode_varint(value: int) -> bytes:
    """The shortest QUIC variable-length encoding of ``value`` (0 ≤ value < 2**62)."""
    if not 0 <= value <= UINT_VAR_MAX:
        raise ValueError(f"{value} does not fit in a QUIC variable-length integer")
    buffer = Buffer(capacity=size_uint_var(value))
    buffer.push_uint_var(value)
    return buffer.data


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode the integer starting at ``offset``; return it and the offset just after it.

    Raises IncompleteVarint when ``data`` ends inside the integer.
    """
    if offset >= len(data):
        raise IncompleteVarint("no bytes left for a variable-length integer")
    length = 1 << (data[offset] >> 6)
    if offset + length > len(data):
        raise IncompleteVarint(f"variable-length integer needs {length} bytes")
    buffer = Buffer(data=data[offset : offset + length])
    try:
        value = buffer.pull_uint_var()
    except BufferReadError as error:  # cannot happen after the length check; keep it typed
        raise IncompleteVarint(str(error)) from error
    return value, offset + length


# --- HTTP Datagram payload of a UDP proxying request ---------------------------------------


def encode_udp_payload(payload: bytes) -> bytes:
    """HTTP Datagram payload carrying one UDP payload: Context ID 0, then the bytes."""
    return encode_varint(CONTEXT_ID_UDP_PAYLOAD) + payload


def decode_udp_payload(http_datagram_payload: bytes) -> bytes | None:
    """The UDP payload inside an HTTP Datagram payload, or None when it is not one.

    RFC 9298 §5: datagrams with an unknown Context ID are dropped silently, and so are
    truncated ones.
    """
    try:
        context_id, offset = decode_varint(http_datagram_payload)
    except IncompleteVarint:
        return None
    if context_id != CONTEXT_ID_UDP_PAYLOAD:
        return None
    return http_datagram_payload[offset:]


# --- capsules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capsule:
    type: int
    value: bytes


def encode_capsule(capsule_type: int, value: bytes) -> bytes:
    """Type (varint), Length (varint), Value."""
    return encode_varint(capsule_type) + encode_varint(len(value)) + value


def encode_datagram_capsule(http_datagram_payload: bytes) -> bytes:
    """A DATAGRAM capsule (type 0x00) carrying an HTTP Datagram payload."""
    return encode_capsule(CAPSULE_TYPE_DATAGRAM, http_datagram_payload)


class CapsuleParser:
    """Splits the data of a request stream into capsules, whatever the pieces it comes in."""

    def __init__(self, max_capsule_length: int = DEFAULT_MAX_CAPSULE_LENGTH) -> None:
        self._max_capsule_length = max_capsule_length
        self._pending = b""

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole capsule."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[Capsule]:
        """Add stream bytes; return every capsule they complete, in order."""
        self._pending += data
        capsules: list[Capsule] = []
        offset = 0
        while True:
            try:
                capsule_type, after_type = decode_varint(self._pending, offset)
                length, after_length = decode_varint(self._pending, after_type)
            except IncompleteVarint:
                break
            if length > self._max_capsule_length:
                raise CapsuleError(
                    f"capsule of {length} bytes exceeds the limit of {self._max_capsule_length}"
                )
            end = after_length + length
            if end > len(self._pending):
                break
            capsules.append(Capsule(capsule_type, self._pending[after_length:end]))
            offset = end
        self._pending = self._pending[offset:]
        return capsules

    def finish(self) -> None:
        """The stream ended: a capsule cut short is an error (RFC 9297 §3.3)."""
        if self._pending:
            raise CapsuleError(f"stream ended inside a capsule ({len(self._pending)} bytes)")


# --- URI template --------------------------------------------------------------------------

# RFC 6570 simple expansion keeps only unreserved characters (RFC 3986 §2.3) as they are.
_UNRESERVED = "-._~"
_REG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$")


def _pct_encode(value: str) -> str:
    return quote(value, safe=_UNRESERVED)


def _normalise_host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "%" in host:
        raise ValueError("IPv6 zone identifiers cannot be proxied (RFC 9298 §2)")
    return host


def expand_udp_path(target_host: str, target_port: int) -> str:
    """The request path for ``target`` with the default template (RFC 9298 §3.1).

    IPv6 literals go without brackets and with their colons percent-encoded:
    ``2001:db8::42`` becomes ``2001%3Adb8%3A%3A42``.
    """
    if not 0 < target_port < 65536:
        raise ValueError(f"UDP port {target_port} is out of range")
    host = _normalise_host(target_host)
    return f"{WELL_KNOWN_UDP_PREFIX}{_pct_encode(host)}/{target_port}/"


def parse_udp_path(path: str) -> tuple[str, int]:
    """The (host, port) of a request path built from the default template.

    Raises ValueError for any other path, a port out of range, or a host that is neither an
    IP literal nor a DNS name.
    """
    if not path.startswith(WELL_KNOWN_UDP_PREFIX):
        raise ValueError("not a CONNECT-UDP well-known path")
    parts = path[len(WELL_KNOWN_UDP_PREFIX) :].split("/")
    if len(parts) != 3 or parts[2] != "":
        raise ValueError("expected {target_host}/{target_port}/")
    host = unquote(parts[0], errors="strict")
    port_text = parts[1]
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError("target port is not a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"UDP port {port} is out of range")
    host = _normalise_host(host)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _REG_NAME.match(host):
            raise ValueError("target host is neither an IP address nor a DNS name") from None
    return host, port


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets (used by the CallPath address header)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """The reverse of ``format_address``; the host must be an IP literal."""
    host, separator, port_text = text.strip().rpartition(":")
    if not separator or not port_text.isdigit():
        raise ValueError(f"not an address: {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    address = ipaddress.ip_address(host)
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return str(address), port
