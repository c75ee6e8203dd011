"""CallPath's MASQUE endpoint: CONNECT-UDP over HTTP/3 (RFC 9298) to an allowlist only.

Mounted by ``callpath echo-server`` so a user behind a censor can reach the echo peer's media
through HTTP/3 on UDP 443. It is never an open proxy: every target must fall in the configured
allowlist (checked on the resolved address), clients must present one of the configured bearer
tokens, and tunnels are limited in number, datagram rate and duration.

Each tunnel gets its own UDP socket, connected to the target (so only the target's replies
come back). The tunnels of one QUIC connection share a local port where the OS allows it
(``SO_REUSEPORT``): a call's relay candidate then has one address whatever ICE destination
the client later sends to. That address is reported in the ``callpath-udp-address`` response
header (docs/masque.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from callpath.core.call.library_adapter import H3DatagramConnection
from callpath.core.paths.masque.capsule import (
    CAPSULE_TYPE_DATAGRAM,
    CONNECT_UDP_PROTOCOL,
    CapsuleError,
    CapsuleParser,
    decode_udp_payload,
    encode_udp_payload,
    encode_varint,
    format_address,
    parse_udp_path,
)
from callpath.core.paths.masque.client import (
    ADDRESS_HEADER,
    DEFAULT_MAX_DATAGRAM_SIZE,
    MAX_DATAGRAM_FRAME_SIZE,
    QUIC_DATAGRAM_OVERHEAD,
)

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- policy (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRule:
    """Targets in ``network`` on ports ``first_port``..``last_port`` (inclusive)."""

    network: IPNetwork
    first_port: int
    last_port: int

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return address in self.network and self.first_port <= port <= self.last_port


def parse_target_rule(text: str) -> TargetRule:
    """``192.0.2.10:3478``, ``203.0.113.0/24:1024-65535``, ``[2001:db8::/64]:443``.

    Hosts must be IP addresses or networks: a name would be resolved by whoever asks, and the
    allowlist must not depend on DNS answers.
    """
    text = text.strip()
    if text.startswith("["):
        host, separator, ports = text[1:].partition("]:")
    else:
        host, separator, ports = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"allowed target {text!r}: write IPv6 in brackets, [addr/prefix]:port")
    if not separator or not host or not ports:
        raise ValueError(f"allowed target {text!r}: expected address[/prefix]:port[-port]")
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(f"allowed target {text!r}: {host!r} is not an IP address") from None
    first_text, dash, last_text = ports.partition("-")
    if not first_text.isdigit() or (dash and not last_text.isdigit()):
        raise ValueError(f"allowed target {text!r}: bad port or port range")
    first = int(first_text)
    last = int(last_text) if dash else first
    if not 0 < first <= last < 65536:
        raise ValueError(f"allowed target {text!r}: ports must be 1-65535, low to high")
    return TargetRule(network, first, last)


@dataclass(frozen=True)
class AllowedTargets:
    """The only destinations the endpoint forwards to; empty allows nothing."""

    rules: tuple[TargetRule, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowedTargets:
        return cls(tuple(parse_target_rule(entry) for entry in entries))

    def allows(self, host: str, port: int) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(rule.allows(address, port) for rule in self.rules)


@dataclass(frozen=True)
class MasqueEndpointConfig:
    allowed_targets: AllowedTargets
    # Bearer tokens accepted in ``authorization``; empty means no authentication (the
    # allowlist still applies).
    tokens: tuple[str, ...] = ()
    max_tunnels: int = 64
    max_tunnels_per_connection: int = 8
    max_datagrams_per_second: float = 2000.0  # per tunnel and direction
    datagram_burst: int = 200
    max_tunnel_s: float = 900.0
    idle_timeout_s: float = 30.0
    resolve_timeout_s: float = 3.0
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE
    # Local address of the sockets towards targets (IPv4); None lets the kernel choose. The
    # lab sets it so the proxy's traffic is told apart from the user's on a shared loopback.
    relay_host: str | None = None


class DatagramRateLimit:
    """Token bucket: ``rate`` datagrams per second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(max(1, burst))
        self._tokens = self._burst
        self._updated = now

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def token_accepted(authorization: bytes | None, tokens: tuple[str, ...]) -> bool:
    """Whether ``authorization`` is ``Bearer <one of tokens>``, compared in constant time."""
    if not tokens:
        return True
    if authorization is None:
        return False
    scheme, _, presented = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    presented = presented.strip()
    accepted = False
    for token in tokens:
        # Compare against every token so the time taken does not tell which one was close.
        accepted |= hmac.compare_digest(presented, token.encode())
    return accepted


@dataclass(frozen=True)
class RequestCheck:
    """What the request headers alone decide: a refusal status, or the target asked for."""

    status: int
    target: tuple[str, int] | None = None
    reason: str = ""


def check_request(headers: list[tuple[bytes, bytes]], tokens: tuple[str, ...]) -> RequestCheck:
    """Validate a request as a CONNECT-UDP request (RFC 9298 §3) from an authorised client.

    Authentication comes before the path, so a client without a token learns nothing about
    which targets exist.
    """
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        fields.setdefault(name, value)
    if fields.get(b":method") != b"CONNECT":
        return RequestCheck(405, reason="not CONNECT")
    if fields.get(b":protocol") != CONNECT_UDP_PROTOCOL.encode():
        return RequestCheck(501, reason="not connect-udp")
    if fields.get(b":scheme") != b"https" or not fields.get(b":authority"):
        return RequestCheck(400, reason="bad scheme or authority")
    if not token_accepted(fields.get(b"authorization"), tokens):
        return RequestCheck(401, reason="missing or wrong token")
    try:
        target = parse_udp_path(fields.get(b":path", b"").decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return RequestCheck(404, reason="not a CONNECT-UDP path")
    return RequestCheck(200, target=target)


# --- I/O -----------------------------------------------------------------------------------


class _TargetProtocol(asyncio.DatagramProtocol):
    def __init__(self, tunnel: _Tunnel) -> None:
        self._tunnel = tunnel

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._tunnel.from_target(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from the target (port unreachable) are normal for UDP; keep going.
        self._tunnel.target_errors += 1


@dataclass
class _Tunnel:
    connection: _EndpointProtocol
    stream_id: int
    started: float
    to_target_limit: DatagramRateLimit
    from_target_limit: DatagramRateLimit
    parser: CapsuleParser = field(default_factory=CapsuleParser)
    transport: asyncio.DatagramTransport | None = None
    target: tuple[str, int] | None = None
    expiry: asyncio.TimerHandle | None = None
    closed: bool = False
    responded: bool = False
    target_errors: int = 0
    dropped: int = 0

    def to_target(self, http_datagram_payload: bytes) -> None:
        payload = decode_udp_payload(http_datagram_payload)
        if payload is None or self.transport is None or self.closed:
            return
        if not self.to_target_limit.allow(time.monotonic()):
            self.dropped += 1
            return
        self.transport.sendto(payload)

    def from_target(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.from_target_limit.allow(time.monotonic()):
            self.dropped += 1
            return
        self.connection.send_datagram(self, encode_udp_payload(data))


class _EndpointProtocol(QuicConnectionProtocol):
    """One client's QUIC connection."""

    def __init__(
        self, quic: QuicConnection, stream_handler: Any = None, *, endpoint: MasqueEndpoint
    ) -> None:
        super().__init__(quic, stream_handler=stream_handler)
        self._endpoint = endpoint
        self.h3 = H3DatagramConnection(quic)
        self.tunnels: dict[int, _Tunnel] = {}
        self.requests_seen: set[int] = set()
        self.shared_ports: dict[int, int] = {}  # address family -> local port
        self.ended = False
        self._max_http_datagram = endpoint.config.max_datagram_size - QUIC_DATAGRAM_OVERHEAD

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.ended = True
            for tunnel in list(self.tunnels.values()):
                self.close_tunnel(tunnel, send_end=False)
            self._endpoint._connection_ended(self)
            return
        if isinstance(event, StreamReset):
            reset = self.tunnels.get(event.stream_id)
            if reset is not None:
                self.close_tunnel(reset, send_end=False)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            # Only a stream's first HEADERS is a request; trailers are ignored.
            if event.stream_id not in self.requests_seen:
                self.requests_seen.add(event.stream_id)
                self._endpoint._spawn(self._handle_request(event.stream_id, event.headers))
        elif isinstance(event, DatagramReceived):
            tunnel = self.tunnels.get(event.stream_id)
            if tunnel is not None:
                tunnel.to_target(event.data)
        elif isinstance(event, DataReceived):
            tunnel = self.tunnels.get(event.stream_id)
            if tunnel is None:
                return
            try:
                capsules = tunnel.parser.feed(event.data)
                if event.stream_ended:
                    tunnel.parser.finish()
            except CapsuleError:
                self.close_tunnel(tunnel, send_end=True)
                return
            for capsule in capsules:
                if capsule.type == CAPSULE_TYPE_DATAGRAM:
                    tunnel.to_target(capsule.value)
                # Unknown capsule types are skipped (RFC 9297 §3.2).
            if event.stream_ended:
                self.close_tunnel(tunnel, send_end=True)

    def respond(
        self, stream_id: int, status: int, extra: list[tuple[bytes, bytes]], end: bool
    ) -> None:
        if self.ended:
            return
        headers = [(b":status", str(status).encode()), *extra]
        self.h3.send_headers(stream_id, headers, end_stream=end)
        self.transmit()

    def send_datagram(self, tunnel: _Tunnel, http_datagram_payload: bytes) -> None:
        if self.ended:
            return
        size = len(encode_varint(tunnel.stream_id // 4)) + len(http_datagram_payload)
        if size > self._max_http_datagram:
            tunnel.dropped += 1
            return
        self.h3.send_datagram(tunnel.stream_id, http_datagram_payload)
        self.transmit()

    def close_tunnel(self, tunnel: _Tunnel, *, send_end: bool) -> None:
        if tunnel.closed:
            return
        tunnel.closed = True
        if tunnel.expiry is not None:
            tunnel.expiry.cancel()
        if tunnel.transport is not None:
            tunnel.transport.close()
        if self.tunnels.get(tunnel.stream_id) is tunnel:
            del self.tunnels[tunnel.stream_id]
        self._endpoint._tunnel_closed()
        if send_end and tunnel.responded and not self.ended:
            with contextlib.suppress(Exception):
                self.h3.send_data(tunnel.stream_id, b"", end_stream=True)
                self.transmit()

    async def _handle_request(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        endpoint = self._endpoint
        config = endpoint.config
        check = check_request(headers, config.tokens)
        if check.target is None:
            extra = [(b"www-authenticate", b"Bearer")] if check.status == 401 else []
            logger.info("MASQUE request refused (%d): %s", check.status, check.reason)
            self.respond(stream_id, check.status, extra, end=True)
            return
        if len(self.tunnels) >= config.max_tunnels_per_connection or not endpoint._reserve():
            self.respond(stream_id, 429, [], end=True)
            return
        now = time.monotonic()
        tunnel = _Tunnel(
            connection=self,
            stream_id=stream_id,
            started=now,
            to_target_limit=DatagramRateLimit(
                config.max_datagrams_per_second, config.datagram_burst, now
            ),
            from_target_limit=DatagramRateLimit(
                config.max_datagrams_per_second, config.datagram_burst, now
            ),
        )
        self.tunnels[stream_id] = tunnel
        status = await self._open_target(tunnel, check.target)
        if tunnel.closed:  # the client gave up meanwhile
            return
        if status != 200:
            self.close_tunnel(tunnel, send_end=False)
            self.respond(stream_id, status, [], end=True)
            return
        assert tunnel.transport is not None
        local = tunnel.transport.get_extra_info("sockname")
        extra = [
            (b"capsule-protocol", b"?1"),
            (ADDRESS_HEADER, format_address(str(local[0]), int(local[1])).encode()),
        ]
        tunnel.responded = True
        self.respond(stream_id, 200, extra, end=False)
        tunnel.expiry = asyncio.get_running_loop().call_later(
            config.max_tunnel_s, self._expire, tunnel
        )

    def _expire(self, tunnel: _Tunnel) -> None:
        logger.info("MASQUE tunnel reached its maximum duration")
        self.close_tunnel(tunnel, send_end=True)

    async def _open_target(self, tunnel: _Tunnel, requested: tuple[str, int]) -> int:
        config = self._endpoint.config
        host, port = requested
        try:
            candidates = await _resolve_all(host, port, config.resolve_timeout_s)
        except (OSError, TimeoutError):
            return 502
        allowed = [address for address in candidates if config.allowed_targets.allows(*address)]
        if not allowed:
            logger.info("MASQUE request refused (403): target not in the allowlist")
            return 403
        target = allowed[0]
        try:
            sock = self._target_socket(target)
        except OSError:
            return 502
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _TargetProtocol(tunnel), sock=sock
            )
        except OSError:
            sock.close()
            return 502
        tunnel.transport = transport
        tunnel.target = target
        if tunnel.closed:
            transport.close()
        return 200

    def _target_socket(self, target: tuple[str, int]) -> socket.socket:
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            shared = self.shared_ports.get(family)
            same_target = any(t.target == target for t in self.tunnels.values())
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            relay_host = self._endpoint.config.relay_host
            any_host = "::" if family == socket.AF_INET6 else (relay_host or "0.0.0.0")
            try:
                sock.bind((any_host, 0 if shared is None or same_target else shared))
            except OSError:
                sock.bind((any_host, 0))
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        self.shared_ports.setdefault(family, int(sock.getsockname()[1]))
        return sock


async def _resolve_all(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
    try:
        ipaddress.ip_address(host)
        return [(host, port)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return [(str(info[4][0]), int(info[4][1])) for info in infos]


class MasqueEndpoint:
    """The MASQUE endpoint: ``await start(...)``, then ``await close()``."""

    def __init__(self, config: MasqueEndpointConfig) -> None:
        self.config = config
        self._server: QuicServer | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._connections: set[_EndpointProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the endpoint listens on."""
        if self._transport is None:
            raise RuntimeError("the MASQUE endpoint is not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    @property
    def active_tunnels(self) -> int:
        return self._active

    @property
    def datagrams_dropped(self) -> int:
        """Datagrams dropped by the rate limit or for size, over the open tunnels."""
        return sum(
            tunnel.dropped
            for connection in self._connections
            for tunnel in connection.tunnels.values()
        )

    async def start(
        self, host: str, port: int, certificate: str | Path, private_key: str | Path
    ) -> tuple[str, int]:
        """Listen on UDP ``host:port`` with the PEM ``certificate`` chain and ``private_key``."""
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=H3_ALPN,
            idle_timeout=self.config.idle_timeout_s,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            max_datagram_size=self.config.max_datagram_size,
        )
        configuration.load_cert_chain(certificate, private_key)

        def create_protocol(quic: QuicConnection, stream_handler: Any = None) -> Any:
            protocol = _EndpointProtocol(quic, stream_handler, endpoint=self)
            self._connections.add(protocol)
            return protocol

        loop = asyncio.get_running_loop()
        transport, server = await loop.create_datagram_endpoint(
            lambda: QuicServer(configuration=configuration, create_protocol=create_protocol),
            local_addr=(host, port),
        )
        self._transport = transport
        self._server = server
        return self.address

    async def close(self, timeout: float = 5.0) -> None:
        """Close every tunnel and connection, stop listening, and wait (bounded) for tasks."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for connection in list(self._connections):
            for tunnel in list(connection.tunnels.values()):
                connection.close_tunnel(tunnel, send_end=False)
        # Connections first, socket last: aioquic's timers send through the socket during
        # the closing period, and asyncio fails loudly on a closed unconnected transport.
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        if connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(c.wait_closed() for c in connections))
        if self._server is not None:
            self._server.close()
            self._server = None
        self._connections.clear()
        self._transport = None

    # called by the connections

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("MASQUE request handler failed", exc_info=task.exception())

    def _reserve(self) -> bool:
        if self._active >= self.config.max_tunnels:
            return False
        self._active += 1
        return True

    def _tunnel_closed(self) -> None:
        self._active = max(0, self._active - 1)

    def _connection_ended(self, connection: _EndpointProtocol) -> None:
        self._connections.discard(connection)
