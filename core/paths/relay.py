"""TURN allocations made by CallPath itself, so each step is timed and its failure named.

aiortc would swallow every allocation error (the relay candidate is just missing); doing the
connect and Allocate here first gives ``connection_refused``, ``ssl_unknown_authority``,
``turn_auth_failed`` and friends. The finished allocation is then handed to aiortc through the
adapter, so the call really runs over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aioice.stun
import aioice.turn

from callpath.core.call.library_adapter import (
    PreparedTurn,
    stream_closed,
    turn_client_protocol,
    watch_datagram_errors,
    watch_stream_closed,
)
from callpath.core.call.stages import StageFailure
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.results import PathResult, SniAttempt

# A connected TCP socket to the TURN server, or to a proxy tunnelling to it.
StreamOpener = Callable[[tuple[str, int], float], Awaitable[socket.socket]]


@dataclass(frozen=True)
class TurnEndpoint:
    host: str  # as written in the profile: the certificate is always checked against it
    address: str  # resolved address
    port: int
    transport: str  # udp | tcp | tls
    username: str
    password: str
    sni: str | None = None  # another server name for the ClientHello; None: ``host``

    @property
    def server_name(self) -> str:
        return self.sni or self.host


# --- server names (SNI) ----------------------------------------------------------------------

# How a TLS relay fails when a censor acts on the ClientHello's server name: reset at once,
# silently dropped (a timeout), closed, or frozen after a few kilobytes (the call connects,
# then stalls). Any of these under the relay's own name is worth a try under another name;
# a certificate problem or a refused login is not.
SNI_SENSITIVE_FAILURES = frozenset(
    {
        "connection_reset",
        "eof_error",
        "generic_timeout_error",
        "ssl_failed_handshake",
        "ice_failed",
        "dtls_handshake_timeout",
        "media_stalled",
    }
)


def server_names_to_try(host: str, alternatives: tuple[str, ...]) -> tuple[str, ...]:
    """The relay's own name first, then each alternative once, in the profile's order."""
    names = [host]
    for name in alternatives:
        if name.lower() not in (n.lower() for n in names):
            names.append(name)
    return tuple(names)


def worth_another_name(failure: str | None) -> bool:
    """Whether a TLS relay's failure could come from the name in its ClientHello."""
    return failure is not None and failure in SNI_SENSITIVE_FAILURES


def tls_server_names(
    host: str | None, alternatives: tuple[str, ...], relay_transport: str | None
) -> tuple[str, ...]:
    """The names a path tries, or () when it has no alternatives or is not a TLS relay."""
    if host is None or not alternatives or relay_transport != "tls":
        return ()
    return server_names_to_try(host, alternatives)


async def try_server_names(
    names: tuple[str, ...], attempt: Callable[[str], Awaitable[PathResult]]
) -> PathResult:
    """Run ``attempt`` under each name until one carries the call or a failure that no other
    name could change; the result is the last attempt's, with every name tried and its outcome.
    """
    tried: list[SniAttempt] = []
    result: PathResult | None = None
    for name in names:
        result = await attempt(name)
        tried.append(SniAttempt(name, result.failure))
        if result.failure is None or not worth_another_name(result.failure):
            break
    assert result is not None
    return replace(result, sni_attempts=tuple(tried))


def certificate_matches(certificate: dict[str, Any], host: str) -> bool:
    """RFC 6125 host check of a verified peer certificate (``SSLSocket.getpeercert()``).

    DNS names compare without case; a wildcard is only the whole left-most label and matches
    exactly one label (``*.example.org`` covers ``a.example.org``, not ``example.org`` nor
    ``a.b.example.org``). An address matches only an IP Address entry. Names come from the
    subjectAltName only: the common name is not consulted, as in browsers and OpenSSL's default.
    """
    entries = certificate.get("subjectAltName") or ()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        for kind, value in entries:
            if kind == "IP Address":
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_address(str(value).strip()) == address:
                        return True
        return False
    wanted = host.rstrip(".").lower().split(".")
    for kind, value in entries:
        if kind != "DNS":
            continue
        pattern = str(value).rstrip(".").lower().split(".")
        if len(pattern) != len(wanted):
            continue
        if pattern[0] == "*" and len(pattern) >= 3:
            if pattern[1:] == wanted[1:] and wanted[0]:
                return True
        elif pattern == wanted:
            return True
    return False


def name_checking_context(verified: ssl.SSLContext | None) -> ssl.SSLContext:
    """A client context for a ClientHello under another name: the same certificate chain
    checks (system store plus every CA ``verified`` trusts), with the host check left to
    ``certificate_matches`` against the relay's own name after the handshake — Python's
    ``server_hostname`` sets both the SNI and the name checked, so they cannot differ otherwise.
    """
    context = ssl.create_default_context()
    if verified is not None:
        for der in verified.get_ca_certs(binary_form=True):
            context.load_verify_locations(cadata=der)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED  # the chain is still verified during the handshake
    return context


class StreamCounters:
    """Bytes received and sent on one TCP/TLS relay connection, and when they last moved.

    Times are ``time.monotonic()`` seconds; ``evidence`` turns them into seconds since the
    connection opened. Over TLS the counts are the bytes inside the TLS session."""

    def __init__(self) -> None:
        self.opened_at: float | None = None
        self.bytes_received = 0
        self.bytes_sent = 0
        self.last_received_at: float | None = None
        self.last_sent_at: float | None = None
        self.closed_at: float | None = None  # the far side closed or reset it
        self.sock: socket.socket | None = None  # for the kernel's own count (TCP_INFO)

    def received(self, size: int) -> None:
        self.bytes_received += size
        self.last_received_at = time.monotonic()

    def sent(self, size: int) -> None:
        self.bytes_sent += size
        self.last_sent_at = time.monotonic()

    def evidence(self, port: int, now: float | None = None) -> dict[str, Any]:
        """``relay_*`` evidence at ``now`` (the end of the path's call)."""
        now = time.monotonic() if now is None else now
        opened = self.opened_at if self.opened_at is not None else now

        def since_open(at: float | None) -> float | None:
            return None if at is None else round(at - opened, 3)

        evidence: dict[str, Any] = {
            "relay_port": port,
            "relay_bytes_received": self.bytes_received,
            "relay_bytes_sent": self.bytes_sent,
            "relay_received_stopped_s": since_open(self.last_received_at),
            "relay_sent_stopped_s": since_open(self.last_sent_at),
            "relay_idle_s": round(now - (self.last_received_at or opened), 3),
            "relay_open": self.closed_at is None,
        }
        wire = _kernel_bytes_received(self.sock)
        if wire is not None:  # TCP payload bytes, TLS records and handshake included
            evidence["relay_wire_bytes_received"] = wire
        return evidence


# struct tcp_info (linux/tcp.h): tcpi_bytes_received is the u64 at this offset (Linux 4.1+).
_TCP_INFO_BYTES_RECEIVED = 128


def _kernel_bytes_received(sock: socket.socket | None) -> int | None:
    """The TCP payload bytes the kernel received on ``sock`` (Linux), or None."""
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None or sock.fileno() < 0:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 256)
    except OSError:
        return None
    if len(info) < _TCP_INFO_BYTES_RECEIVED + 8:
        return None
    received: int = struct.unpack_from("=Q", info, _TCP_INFO_BYTES_RECEIVED)[0]
    return received


class _CountingWriter:
    """The transport as the TURN protocol sees it: every write is counted."""

    def __init__(self, transport: asyncio.BaseTransport, counters: StreamCounters) -> None:
        self._transport = transport
        self._counters = counters

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._counters.sent(len(data))
        self._transport.write(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CountingProtocol(asyncio.Protocol):
    """Sits between asyncio's stream transport and aioice's TURN protocol, counting bytes."""

    def __init__(self, inner: Any, counters: StreamCounters) -> None:
        self._inner = inner
        self._counters = counters

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counters.opened_at = time.monotonic()
        self._inner.connection_made(_CountingWriter(transport, self._counters))

    def data_received(self, data: bytes) -> None:
        self._counters.received(len(data))
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        self._counters.closed_at = time.monotonic()
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counters.closed_at is None:
            self._counters.closed_at = time.monotonic()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


async def open_tcp(address: tuple[str, int], timeout: float) -> socket.socket:
    """A plain non-blocking TCP connection (no proxy)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_stream(
    endpoint: TurnEndpoint,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
    evidence: dict[str, Any],
    opener: StreamOpener = open_tcp,
    counters: StreamCounters | None = None,
) -> tuple[asyncio.BaseTransport, Any]:
    """TCP (and TLS) connection to a TURN server carrying aioice's TURN client protocol;
    ``counters`` record the bytes each way once the connection is up."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sock = await opener((endpoint.address, endpoint.port), timeout)
    evidence["tcp_connect_ms"] = round((loop.time() - start) * 1000, 1)
    protocol = turn_client_protocol(
        "tcp", (endpoint.address, endpoint.port), endpoint.username, endpoint.password
    )
    watch_stream_closed(protocol)
    outer: Any = protocol
    if counters is not None:
        outer = _CountingProtocol(protocol, counters)
        counters.sock = sock
    tls_start = loop.time()
    try:
        if endpoint.transport == "tls":
            other_name = endpoint.server_name != endpoint.host
            if other_name:
                context = name_checking_context(ssl_context)
            else:
                context = ssl_context or ssl.create_default_context()
            evidence["sni"] = endpoint.server_name
            transport, _ = await loop.create_connection(
                lambda: outer,
                sock=sock,
                ssl=context,
                server_hostname=endpoint.server_name,
                ssl_handshake_timeout=max(0.1, timeout - (loop.time() - start)),
            )
            evidence["tls_handshake_ms"] = round((loop.time() - tls_start) * 1000, 1)
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                evidence["tls_version"] = ssl_object.version()
            if other_name:
                certificate = None if ssl_object is None else ssl_object.getpeercert()
                if not certificate or not certificate_matches(certificate, endpoint.host):
                    transport.abort()
                    evidence["certificate_name"] = endpoint.host
                    raise StageFailure("ssl_invalid_hostname", evidence)
        else:
            transport, _ = await loop.create_connection(lambda: outer, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


async def open_udp(endpoint: TurnEndpoint) -> tuple[asyncio.BaseTransport, Any]:
    loop = asyncio.get_running_loop()
    server = (endpoint.address, endpoint.port)
    protocol = turn_client_protocol("udp", server, endpoint.username, endpoint.password)
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, remote_addr=server)
    watch_datagram_errors(protocol)
    return transport, protocol


async def _allocate_unless_closed(protocol: Any) -> tuple[str, int]:
    """The Allocate, or ConnectionResetError/EOFError if a stream closes before its answer, or
    the OSError of an ICMP error (port or host unreachable) on UDP."""
    closed = stream_closed(protocol)
    if closed is None:
        relayed: tuple[str, int] = await protocol.connect()
        return relayed
    allocation = asyncio.ensure_future(protocol.connect())
    await asyncio.wait({allocation, closed}, return_when=asyncio.FIRST_COMPLETED)
    if allocation.done():
        result: tuple[str, int] = allocation.result()
        return result
    allocation.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await allocation
    error = closed.result()
    if isinstance(error, ConnectionResetError):
        raise error
    if isinstance(error, OSError) and isinstance(protocol, aioice.turn.TurnClientUdpProtocol):
        raise error  # an ICMP error: the failure is certain now
    raise EOFError("the relay closed the connection before answering the Allocate")


async def allocate(
    endpoint: TurnEndpoint,
    transport: asyncio.BaseTransport,
    protocol: Any,
    evidence: dict[str, Any],
) -> PreparedTurn:
    """Run the TURN Allocate transaction; failures become turn_* strings."""
    try:
        relayed = await _allocate_unless_closed(protocol)
    except aioice.stun.TransactionFailed as failed:
        code, reason = failed.response.attributes.get("ERROR-CODE", (0, ""))
        evidence["error_code"] = code
        evidence["error_reason"] = str(reason)
        if code == 401:
            raise StageFailure("turn_auth_failed", evidence) from None
        raise StageFailure(f"turn_allocate_failed:{code}", evidence) from None
    except aioice.stun.TransactionTimeout:
        failure = "stun_no_response" if endpoint.transport == "udp" else "generic_timeout_error"
        raise StageFailure(failure, evidence) from None
    except ConnectionResetError:
        raise StageFailure("connection_reset", evidence) from None
    except OSError as error:  # ICMP port or host unreachable, reported at once
        raise StageFailure(failure_from_exception(error), evidence) from None
    except EOFError:
        raise StageFailure("eof_error", evidence) from None
    evidence["relayed_port"] = relayed[1]
    if protocol.mapped_address is not None:
        evidence["mapped_address"] = protocol.mapped_address[0]
    return PreparedTurn(
        inner_transport=transport,
        inner_protocol=protocol,
        relayed_address=(str(relayed[0]), int(relayed[1])),
        transport_name=endpoint.transport,
        server=(endpoint.address, endpoint.port),
    )
