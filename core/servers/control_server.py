"""The cooperative side of the probes: UDP echo with STUN Binding, TCP bulk source, QUIC endpoint.

Support staff run it next to the echo peer, outside the censored network. Probes compare what
reaches it with what reaches the call targets, which is how a bad network is told apart from a
censor. It must never become an amplifier or a free bandwidth source:

- UDP: every reply is at most as large as the datagram it answers (a STUN Binding response is
  only sent when it fits in the request; the probes pad their requests), and each source address
  and the server as a whole are held to packet and byte rates (token buckets);
- TCP bulk: ``GET <n>\\n`` returns ``n`` bytes, ``n`` bounded, a bounded number of connections,
  each with a time limit;
- QUIC: handshake only (ALPN ``callpath-probe``); QUIC's own rule limits what an unvalidated
  address receives to three times what it sent, and connections close once the handshake is done.

Independent of aiohttp, so ``callpath echo-server`` can mount it beside its HTTPS signalling.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aioice.stun
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, QuicEvent
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callpath.core.call.library_adapter import quic_connection

Address = tuple[str, int]

BULK_REQUEST = re.compile(rb"GET (\d{1,12})\r?\n")
BULK_REQUEST_MAX_LINE = 32
BULK_CHUNK_BYTES = 4096
DEFAULT_QUIC_ALPN = "callpath-probe"


@dataclass(frozen=True)
class ControlServerLimits:
    max_datagram_bytes: int = 1500  # larger datagrams are ignored
    udp_source_packets_per_s: float = 400.0  # per source IP
    udp_source_bytes_per_s: float = 256 * 1024  # above the flow probe's top rate step
    udp_total_packets_per_s: float = 4000.0  # whole server
    udp_total_bytes_per_s: float = 2 * 1024 * 1024
    udp_burst_s: float = 0.5  # bucket depth, in seconds of the rate
    udp_max_sources: int = 4096  # remembered source IPs (oldest forgotten first)
    bulk_max_bytes: int = 1024 * 1024
    bulk_max_connections: int = 32
    bulk_request_timeout_s: float = 5.0
    bulk_connection_s: float = 30.0
    quic_idle_timeout_s: float = 5.0
    close_timeout_s: float = 2.0


@dataclass(frozen=True)
class ControlServerConfig:
    limits: ControlServerLimits = ControlServerLimits()
    quic_alpn: str = DEFAULT_QUIC_ALPN
    quic_cert_path: Path | None = None  # PEM; without it a throwaway self-signed one is made
    quic_key_path: Path | None = None
    quic_server_name: str = "callpath-control"  # name in the self-signed certificate


# --- pure logic ------------------------------------------------------------------------------


class TokenBucket:
    """``rate`` units per second with ``depth`` units of credit; ``now`` is passed in."""

    def __init__(self, rate: float, depth: float, now: float) -> None:
        self.rate = rate
        self.depth = depth
        self._tokens = depth
        self._updated = now

    def allow(self, cost: float, now: float) -> bool:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.depth, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True


class UdpRateLimiter:
    """Per-source-IP and whole-server packet and byte budgets for the UDP echo."""

    def __init__(self, limits: ControlServerLimits) -> None:
        self._limits = limits
        self._sources: OrderedDict[str, tuple[TokenBucket, TokenBucket]] = OrderedDict()
        self._total: tuple[TokenBucket, TokenBucket] | None = None

    def _buckets(
        self, packets: float, octets: float, now: float
    ) -> tuple[TokenBucket, TokenBucket]:
        depth = self._limits.udp_burst_s
        return (
            TokenBucket(packets, max(1.0, packets * depth), now),
            TokenBucket(octets, max(float(self._limits.max_datagram_bytes), octets * depth), now),
        )

    def allow(self, source_ip: str, size: int, now: float) -> bool:
        limits = self._limits
        if self._total is None:
            self._total = self._buckets(
                limits.udp_total_packets_per_s, limits.udp_total_bytes_per_s, now
            )
        source = self._sources.get(source_ip)
        if source is None:
            source = self._buckets(
                limits.udp_source_packets_per_s, limits.udp_source_bytes_per_s, now
            )
            self._sources[source_ip] = source
            while len(self._sources) > limits.udp_max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source_ip)
        # Charge the source first: a flooding source must not drain the shared budget.
        if not (source[0].allow(1, now) and source[1].allow(size, now)):
            return False
        return self._total[0].allow(1, now) and self._total[1].allow(size, now)


def stun_binding_response(request: bytes, source: Address) -> bytes | None:
    """The Binding success response to ``request``, or None if it is no Binding request.

    Carries XOR-MAPPED-ADDRESS (what the probe's NAT looks like from outside)."""
    try:
        message = aioice.stun.parse_message(request)
    except ValueError:
        return None
    if (
        message.message_method != aioice.stun.Method.BINDING
        or message.message_class != aioice.stun.Class.REQUEST
    ):
        return None
    response = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING,
        message_class=aioice.stun.Class.RESPONSE,
        transaction_id=message.transaction_id,
        attributes={"XOR-MAPPED-ADDRESS": (source[0], source[1])},
    )
    return bytes(response)


def udp_reply(request: bytes, source: Address) -> bytes | None:
    """What the echo sends back: a STUN answer that fits, else the datagram itself.

    Never larger than ``request``; a Binding request too small for its answer gets nothing
    (echoing it would look like a broken STUN server)."""
    if _looks_like_stun(request):
        response = stun_binding_response(request, source)
        if response is not None:
            return response if len(response) <= len(request) else None
    return request


def _looks_like_stun(data: bytes) -> bool:
    return len(data) >= 20 and data[0] & 0xC0 == 0 and data[4:8] == b"\x21\x12\xa4\x42"


def parse_bulk_request(line: bytes, max_bytes: int) -> int | None:
    """Bytes asked for by ``GET <n>\\n``; None for anything else or more than ``max_bytes``."""
    match = BULK_REQUEST.fullmatch(line)
    if match is None:
        return None
    count = int(match.group(1))
    return count if count <= max_bytes else None


# --- I/O -------------------------------------------------------------------------------------


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, limits: ControlServerLimits) -> None:
        self._limits = limits
        self._limiter = UdpRateLimiter(limits)
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0
        self.refused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is None or len(data) > self._limits.max_datagram_bytes:
            return
        source = (str(addr[0]), int(addr[1]))
        now = asyncio.get_running_loop().time()
        if not self._limiter.allow(source[0], len(data), now):
            self.refused += 1
            return
        reply = udp_reply(data, source)
        if reply is not None:
            self.answered += 1
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an earlier reply: nothing to do for a stateless echo


class _BulkSource:
    def __init__(self, limits: ControlServerLimits, block: bytes) -> None:
        self._limits = limits
        self._block = block
        self.connections: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self._limits
        if len(self.connections) >= limits.bulk_max_connections:
            writer.close()
            return
        self.connections.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            async with asyncio.timeout(limits.bulk_connection_s):
                await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # 3.11's stream server logs cancelled callbacks; close() is the only canceller.
            pass
        finally:
            self.connections.discard(writer)
            if task is not None:
                self.tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self._limits
        async with asyncio.timeout(limits.bulk_request_timeout_s):
            line = await reader.readuntil(b"\n")
        count = parse_bulk_request(line[:BULK_REQUEST_MAX_LINE], limits.bulk_max_bytes)
        if count is None:
            return
        sent = 0
        while sent < count:
            size = min(BULK_CHUNK_BYTES, count - sent)
            offset = sent % len(self._block)
            chunk = (self._block[offset:] + self._block)[:size]
            writer.write(chunk)
            await writer.drain()
            sent += size
        if writer.can_write_eof():
            writer.write_eof()
        await writer.drain()

    def abort_all(self) -> None:
        for writer in list(self.connections):
            writer.transport.abort()


class _QuicHandshakeOnly(QuicConnectionProtocol):
    """Completes the handshake, then closes: the probe only needs to know it got through."""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            # Let the client see HANDSHAKE_DONE before the close arrives.
            asyncio.get_running_loop().call_later(0.5, self._finish)

    def _finish(self) -> None:
        quic_connection(self).close(error_code=0, reason_phrase="probe done")
        self.transmit()


def self_signed_quic_credentials(
    server_name: str,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A throwaway certificate for the QUIC endpoint (probes do not check it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


class ControlServer:
    """Start with ``await start(host, ...)``; ports 0 pick free ports, None leaves a part off."""

    def __init__(self, config: ControlServerConfig | None = None) -> None:
        self.config = config if config is not None else ControlServerConfig()
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._udp: _UdpEcho | None = None
        self._bulk: _BulkSource | None = None
        self._bulk_server: asyncio.Server | None = None
        self._quic_server: QuicServer | None = None
        self.udp_address: Address | None = None
        self.tcp_bulk_address: Address | None = None
        self.quic_address: Address | None = None

    async def __aenter__(self) -> ControlServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(
        self,
        host: str,
        udp_port: int | None = 0,
        tcp_bulk_port: int | None = 0,
        quic_port: int | None = 0,
    ) -> None:
        try:
            if udp_port is not None:
                await self._start_udp(host, udp_port)
            if tcp_bulk_port is not None:
                await self._start_bulk(host, tcp_bulk_port)
            if quic_port is not None:
                await self._start_quic(host, quic_port)
        except BaseException:
            await self.close()
            raise

    @property
    def udp_stats(self) -> tuple[int, int]:
        """(datagrams answered, datagrams refused by the rate limits)."""
        return (self._udp.answered, self._udp.refused) if self._udp is not None else (0, 0)

    async def _start_udp(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        echo = _UdpEcho(self.config.limits)
        transport, _ = await loop.create_datagram_endpoint(lambda: echo, local_addr=(host, port))
        self._udp = echo
        self._udp_transport = transport
        self.udp_address = _address(transport.get_extra_info("sockname"))

    async def _start_bulk(self, host: str, port: int) -> None:
        # Incompressible content, so a compressing middlebox cannot shrink the transfer.
        self._bulk = _BulkSource(self.config.limits, os.urandom(64 * 1024))
        self._bulk_server = await asyncio.start_server(self._bulk.handle, host, port)
        self.tcp_bulk_address = _address(self._bulk_server.sockets[0].getsockname())

    async def _start_quic(self, host: str, port: int) -> None:
        config = self.config
        quic = QuicConfiguration(
            is_client=False,
            alpn_protocols=[config.quic_alpn],
            idle_timeout=config.limits.quic_idle_timeout_s,
        )
        if config.quic_cert_path is not None:
            quic.load_cert_chain(config.quic_cert_path, config.quic_key_path)
        else:
            quic.certificate, quic.private_key = self_signed_quic_credentials(
                config.quic_server_name
            )
        loop = asyncio.get_running_loop()
        # aioquic's serve() without its local_addr, so the bound port can be read back.
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: QuicServer(configuration=quic, create_protocol=_QuicHandshakeOnly),
            local_addr=(host, port),
        )
        self._quic_server = protocol
        self.quic_address = _address(transport.get_extra_info("sockname"))

    async def close(self) -> None:
        timeout = self.config.limits.close_timeout_s
        if self._udp_transport is not None:
            self._udp_transport.close()
            self._udp_transport = None
        if self._quic_server is not None:
            self._quic_server.close()
            self._quic_server = None
        if self._bulk_server is not None:
            self._bulk_server.close()
            assert self._bulk is not None
            self._bulk.abort_all()
            pending = [task for task in self._bulk.tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bulk_server.wait_closed(), timeout)
            self._bulk_server = None


def _address(raw: Any) -> Address:
    host = str(raw[0])
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return (host, int(raw[1]))
