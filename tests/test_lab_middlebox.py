"""The censor middlebox with real sockets on loopback: client 127.0.0.1, box 127.0.0.3, servers
127.0.0.2. Assertions leave generous slack for a busy two-core machine."""

from __future__ import annotations

import asyncio
import random
import ssl
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aioice import stun
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from callpath.core.lab.middlebox import Middlebox, MiddleboxLimits
from callpath.core.lab.rules import (
    Action,
    BlockMode,
    BlockTcpConnect,
    BlockTlsSni,
    Censor,
    CutUdpFlow,
    Delay,
    DropQuic,
    DropStun,
    DropUdp,
    FlowDirection,
    FreezeTcp,
    RandomLoss,
    Throttle,
    Transport,
)
from tests.certs import make_server_certificate

CLIENT_HOST = "127.0.0.1"
OUTSIDE_HOST = "127.0.0.2"
BOX_HOST = "127.0.0.3"
QUIET_S = 0.4  # how long "nothing arrives" is waited for

Address = tuple[str, int]


class UdpPeer(asyncio.DatagramProtocol):
    """A UDP socket that queues what it receives and, as a server, echoes it."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.sources: set[Address] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector datagram transports do not subclass DatagramTransport in 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = (str(addr[0]), int(addr[1]))
        self.sources.add(source)
        self.received.put_nowait((data, source))
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    def send(self, data: bytes, destination: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, destination)

    async def next(self, timeout: float = 2.0) -> bytes:
        data, _ = await asyncio.wait_for(self.received.get(), timeout)
        return data

    async def nothing(self, timeout: float = QUIET_S) -> bool:
        try:
            await asyncio.wait_for(self.received.get(), timeout)
        except TimeoutError:
            return True
        return False

    def drain(self) -> list[bytes]:
        items = []
        while not self.received.empty():
            items.append(self.received.get_nowait()[0])
        return items

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def udp_peer(host: str, *, echo: bool = False) -> UdpPeer:
    loop = asyncio.get_running_loop()
    peer = UdpPeer(echo)
    await loop.create_datagram_endpoint(lambda: peer, local_addr=(host, 0))
    return peer


@pytest.fixture
async def box() -> AsyncIterator[Middlebox]:
    middlebox = Middlebox(Censor())
    yield middlebox
    await asyncio.wait_for(middlebox.close(), 5)


@pytest.fixture
async def udp_echo() -> AsyncIterator[UdpPeer]:
    server = await udp_peer(OUTSIDE_HOST, echo=True)
    yield server
    server.close()


@pytest.fixture
async def client() -> AsyncIterator[UdpPeer]:
    peer = await udp_peer(CLIENT_HOST)
    yield peer
    peer.close()


def stun_request() -> bytes:
    return bytes(stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST))


# --- UDP -------------------------------------------------------------------------------------


async def test_udp_forwarder_is_a_symmetric_nat(
    box: Middlebox, udp_echo: UdpPeer, client: UdpPeer
) -> None:
    exposed = await box.expose_udp(udp_echo.address)
    assert exposed[0] == BOX_HOST
    other = await udp_peer(CLIENT_HOST)
    try:
        client.send(b"one", exposed)
        other.send(b"two", exposed)
        assert await client.next() == b"one"
        assert await other.next() == b"two"
        seen_from = udp_echo.sources
        # Each source got its own upstream socket on the box.
        assert len(seen_from) == 2
        assert {host for host, _ in seen_from} == {BOX_HOST}
        assert box.exposed[exposed] == (Transport.UDP, udp_echo.address)
        # A datagram from anyone but the target to the mapping's socket is not let in.
        stranger = await udp_peer(OUTSIDE_HOST)
        try:
            for source in seen_from:
                stranger.send(b"unsolicited", source)
            assert await client.nothing()
        finally:
            stranger.close()
    finally:
        other.close()


async def test_drop_all_udp(box: Middlebox, udp_echo: UdpPeer, client: UdpPeer) -> None:
    box.censor.set_rules([DropUdp()])
    exposed = await box.expose_udp(udp_echo.address)
    for _ in range(3):
        client.send(b"hello", exposed)
    assert await client.nothing()
    assert udp_echo.received.empty()
    assert box.censor.count("drop_udp", Action.DROP) == 3


async def test_rules_change_live(box: Middlebox, udp_echo: UdpPeer, client: UdpPeer) -> None:
    exposed = await box.expose_udp(udp_echo.address)
    client.send(b"before", exposed)
    assert await client.next() == b"before"
    box.censor.set_rules([DropUdp()])
    client.send(b"during", exposed)
    assert await client.nothing()
    box.censor.set_rules([])
    client.send(b"after", exposed)
    assert await client.next() == b"after"


async def test_stun_is_dropped_but_a_random_datagram_of_the_same_size_passes(
    box: Middlebox, udp_echo: UdpPeer, client: UdpPeer
) -> None:
    box.censor.set_rules([DropStun()])
    exposed = await box.expose_udp(udp_echo.address)
    request = stun_request()
    decoy = bytes(random.Random(3).randrange(256) for _ in range(len(request)))
    client.send(request, exposed)
    assert await client.nothing()
    client.send(decoy, exposed)
    assert await client.next() == decoy
    assert udp_echo.drain() == [decoy]


async def test_flow_cut_after_n_packets(box: Middlebox, udp_echo: UdpPeer, client: UdpPeer) -> None:
    # Six packets both ways: three echoed round trips, then the flow is dead.
    box.censor.set_rules([CutUdpFlow(max_packets=6)])
    exposed = await box.expose_udp(udp_echo.address)
    for index in range(3):
        client.send(b"ping %d" % index, exposed)
        assert await client.next() == b"ping %d" % index
    for index in range(3, 6):
        client.send(b"ping %d" % index, exposed)
    assert await client.nothing()
    assert box.censor.count("cut_udp_flow", Action.DROP) == 3


async def test_loss_rate_with_a_fixed_seed(
    box: Middlebox, udp_echo: UdpPeer, client: UdpPeer
) -> None:
    sent = 400
    box.censor.set_rules([RandomLoss(0.3, seed=8, directions=frozenset({FlowDirection.OUTBOUND}))])
    exposed = await box.expose_udp(udp_echo.address)
    for index in range(sent):
        client.send(b"%05d" % index + bytes(60), exposed)
        if index % 20 == 19:
            await asyncio.sleep(0.005)  # pace, so loopback socket buffers never overflow
    await asyncio.sleep(1.0)
    received = len(client.drain())
    lost = box.censor.count("random_loss", Action.DROP)
    assert received == sent - lost
    # Binomial(400, 0.3): mean 120 lost, standard deviation 9.2; five deviations either way.
    assert 74 <= lost <= 166


async def test_delay_is_applied_both_ways(
    box: Middlebox, udp_echo: UdpPeer, client: UdpPeer
) -> None:
    exposed = await box.expose_udp(udp_echo.address)
    client.send(b"warm-up", exposed)
    await client.next()
    box.censor.set_rules([Delay.round_trip(0.12, outbound_share=0.25)])
    round_trips = []
    for index in range(8):
        started = time.monotonic()
        client.send(b"timed %d" % index, exposed)
        await client.next()
        round_trips.append(time.monotonic() - started)
    assert min(round_trips) >= 0.12 - 0.002
    assert statistics.median(round_trips) < 0.12 + 0.15
    applied = box.censor.applied_delays
    outbound = [r.delay_s for r in applied if r.direction is FlowDirection.OUTBOUND]
    inbound = [r.delay_s for r in applied if r.direction is FlowDirection.INBOUND]
    assert outbound == pytest.approx([0.03] * 8)
    assert inbound == pytest.approx([0.09] * 8)


async def test_delayed_datagrams_keep_their_order(
    box: Middlebox, udp_echo: UdpPeer, client: UdpPeer
) -> None:
    box.censor.set_rules([Delay(outbound_s=0.03, jitter_s=0.02, seed=4)])
    exposed = await box.expose_udp(udp_echo.address)
    for index in range(50):
        client.send(b"%03d" % index, exposed)
    received = [await client.next() for _ in range(50)]
    assert received == [b"%03d" % index for index in range(50)]


def quic_initial(server_name: str) -> bytes:
    connection = QuicConnection(
        configuration=QuicConfiguration(is_client=True, server_name=server_name)
    )
    connection.connect((OUTSIDE_HOST, 443), now=0.0)
    return connection.datagrams_to_send(now=0.0)[0][0]


async def test_quic_dropped_by_the_sni_of_its_initial(
    box: Middlebox, udp_echo: UdpPeer, client: UdpPeer
) -> None:
    box.censor.set_rules([DropQuic(server_names=frozenset({"blocked.example"}))])
    exposed = await box.expose_udp(udp_echo.address)
    client.send(quic_initial("call.blocked.example"), exposed)
    assert await client.nothing()
    client.send(b"\x41" + bytes(40), exposed)  # the flow stays blocked
    assert await client.nothing()
    other = await udp_peer(CLIENT_HOST)
    try:
        neutral = quic_initial("neutral.example")
        other.send(neutral, exposed)
        assert await other.next() == neutral
    finally:
        other.close()
    assert box.censor.mechanisms() == ("quic_sni_blocked",)


async def test_flows_between_lab_servers_are_not_censored(
    box: Middlebox, udp_echo: UdpPeer
) -> None:
    box.censor.set_rules([DropUdp()])
    exposed = await box.expose_udp(udp_echo.address)
    relay = await udp_peer("127.0.0.4")
    try:
        relay.send(b"relayed media", exposed)
        assert await relay.next() == b"relayed media"
    finally:
        relay.close()
    assert box.censor.evaluated == 0


async def test_an_exposed_client_candidate_is_censored_as_inbound(box: Middlebox) -> None:
    candidate = await udp_peer(CLIENT_HOST, echo=True)  # the client's ICE candidate
    outside_peer = await udp_peer(OUTSIDE_HOST)  # the echo peer sending checks to it
    try:
        exposed = await box.expose_udp(candidate.address)
        box.censor.set_rules([DropUdp(directions=frozenset({FlowDirection.OUTBOUND}))])
        outside_peer.send(b"check", exposed)
        assert await candidate.next() == b"check"  # inbound passes
        assert await outside_peer.nothing()  # the client's answer (outbound) is dropped
        box.censor.set_rules([DropUdp(directions=frozenset({FlowDirection.INBOUND}))])
        outside_peer.send(b"check 2", exposed)
        assert await candidate.nothing()
        record = box.censor.blocking_records[-1]
        assert record.flow.client == candidate.address
        assert record.flow.target == outside_peer.address
    finally:
        candidate.close()
        outside_peer.close()


async def test_idle_mappings_expire_and_the_censor_forgets_them(
    udp_echo: UdpPeer, client: UdpPeer
) -> None:
    limits = MiddleboxLimits(udp_idle_s=0.3, sweep_interval_s=0.1)
    async with Middlebox(Censor([CutUdpFlow(max_packets=4)]), limits=limits) as box:
        exposed = await box.expose_udp(udp_echo.address)
        for index in range(2):
            client.send(b"%d" % index, exposed)
            await client.next()
        assert len(box.censor.flows) == 1
        await asyncio.sleep(0.8)
        assert box.censor.flows == {}
        # A fresh mapping is a fresh flow: the cut-off counts from zero again.
        for index in range(2):
            client.send(b"again %d" % index, exposed)
            assert await client.next() == b"again %d" % index
        assert len(udp_echo.sources) == 2


# --- TCP -------------------------------------------------------------------------------------


class TcpServer:
    """Echoes, or (bulk) sends ``bulk`` bytes first and records what it receives."""

    def __init__(self, bulk: int = 0) -> None:
        self.bulk = bulk
        self.connections = 0
        self.received = bytearray()
        self.server: asyncio.Server | None = None
        self.tls: ssl.SSLContext | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> Address:
        self.server = await asyncio.start_server(self._handle, OUTSIDE_HOST, 0, ssl=tls)
        host, port = self.server.sockets[0].getsockname()[:2]
        return (str(host), int(port))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.bulk:
                writer.write(bytes(random.Random(0).randbytes(self.bulk)))
                await writer.drain()
            while data := await reader.read(65536):
                self.received += data
                if not self.bulk:
                    writer.write(data)
                    await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 5)


async def connect(
    address: Address, **kwargs: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(address[0], address[1], local_addr=(CLIENT_HOST, 0), **kwargs), 5
    )


async def read_until_stall(reader: asyncio.StreamReader, stall_s: float = QUIET_S) -> bytes:
    received = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), stall_s)
        except TimeoutError:
            return bytes(received)
        if not chunk:
            raise AssertionError("EOF where a stall was expected")
        received += chunk


async def test_tcp_echo_and_half_close(box: Middlebox) -> None:
    server = TcpServer()
    target = await server.start()
    try:
        exposed = await box.expose_tcp(target)
        reader, writer = await connect(exposed)
        payload = random.Random(1).randbytes(300_000)
        writer.write(payload)
        writer.write_eof()  # half-close: the echo must still come back
        echoed = await asyncio.wait_for(reader.read(), 10)  # until EOF
        assert echoed == payload
        writer.close()
        assert server.connections == 1
    finally:
        await server.close()


async def test_tcp_backpressure_holds_the_sender_back(box: Middlebox) -> None:
    """A client that does not read must stall the server, not fill the box's memory."""
    block = bytes(1024 * 1024)
    total_blocks = 64
    written = 0
    stalled = asyncio.Event()

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        try:
            for _ in range(total_blocks):
                writer.write(block)
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except TimeoutError:
                    stalled.set()
                    await writer.drain()
                written += len(block)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(firehose, OUTSIDE_HOST, 0)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await connect(await box.expose_tcp((host, port)))
        await asyncio.wait_for(stalled.wait(), 10)
        # Kernel buffers on both hops hold a few MB; the box adds at most its bounded queue.
        assert written < total_blocks * len(block) // 2
        received = 0
        while received < total_blocks * len(block):
            chunk = await asyncio.wait_for(reader.read(1024 * 1024), 10)
            assert chunk
            received += len(chunk)
        assert received == total_blocks * len(block)
        writer.close()
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def test_tcp_bulk_with_jittered_delay_arrives_intact_and_in_order(box: Middlebox) -> None:
    server = TcpServer(bulk=1_000_000)
    target = await server.start()
    box.censor.set_rules([Delay(outbound_s=0.01, inbound_s=0.01, jitter_s=0.005, seed=2)])
    try:
        reader, writer = await connect(await box.expose_tcp(target))
        received = await asyncio.wait_for(reader.readexactly(1_000_000), 20)
        assert received == random.Random(0).randbytes(1_000_000)
        writer.close()
    finally:
        await server.close()


async def test_tcp_freeze_after_16k_without_reset(box: Middlebox) -> None:
    server = TcpServer(bulk=64 * 1024)
    target = await server.start()
    box.censor.set_rules([FreezeTcp(after_bytes=16 * 1024)])
    try:
        reader, writer = await connect(await box.expose_tcp(target))
        received = await read_until_stall(reader)
        assert received == random.Random(0).randbytes(64 * 1024)[: 16 * 1024]
        # Still open: the client's data keeps reaching the server, and no RST came.
        writer.write(b"are you there?")
        await writer.drain()
        for _ in range(50):
            if server.received:
                break
            await asyncio.sleep(0.05)
        assert bytes(server.received) == b"are you there?"
        assert not reader.at_eof()
        assert box.censor.mechanisms() == ("tcp_freeze_16k",)
        writer.close()
    finally:
        await server.close()


async def test_tcp_throttle_shapes_the_stream(box: Middlebox) -> None:
    size = 200_000
    server = TcpServer(bulk=size)
    target = await server.start()
    box.censor.set_rules([Throttle(rate_bytes_per_s=200_000, burst_bytes=50_000)])
    try:
        reader, writer = await connect(await box.expose_tcp(target))
        started = time.monotonic()
        await asyncio.wait_for(reader.readexactly(size), 10)
        # (200 000 - 50 000 burst) / 200 000 B/s = 0.75 s at least.
        assert time.monotonic() - started >= 0.7
        writer.close()
    finally:
        await server.close()


@pytest.fixture
def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    names = ("blocked.example", "neutral.example")
    certificate = make_server_certificate(tmp_path, names)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificate.cert_path, certificate.key_path)
    client = ssl.create_default_context(cafile=str(certificate.ca_path))
    return server, client


async def test_tls_sni_reset_and_neutral_sni_passes(
    box: Middlebox, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls_contexts
    server = TcpServer()
    target = await server.start(server_context)
    box.censor.set_rules([BlockTlsSni(frozenset({"blocked.example"}))])
    try:
        exposed = await box.expose_tcp(target)
        reader, writer = await connect(
            exposed, ssl=client_context, server_hostname="neutral.example"
        )
        writer.write(b"hello over tls")
        assert await asyncio.wait_for(reader.readexactly(14), 5) == b"hello over tls"
        writer.close()

        with pytest.raises(ConnectionResetError):
            await connect(exposed, ssl=client_context, server_hostname="blocked.example")
        assert box.censor.mechanisms() == ("tls_sni_reset",)
    finally:
        await server.close()


async def test_tls_sni_drop_blackholes_the_handshake(
    box: Middlebox, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls_contexts
    server = TcpServer()
    target = await server.start(server_context)
    box.censor.set_rules([BlockTlsSni(frozenset({"blocked.example"}), mode=BlockMode.DROP)])
    try:
        exposed = await box.expose_tcp(target)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                asyncio.open_connection(
                    exposed[0],
                    exposed[1],
                    local_addr=(CLIENT_HOST, 0),
                    ssl=client_context,
                    server_hostname="blocked.example",
                    ssl_handshake_timeout=30,
                ),
                1.0,
            )
        assert box.censor.mechanisms() == ("tls_sni_drop",)
    finally:
        await server.close()


async def test_tcp_connect_reset(box: Middlebox) -> None:
    server = TcpServer()
    target = await server.start()
    box.censor.set_rules([BlockTcpConnect(mode=BlockMode.RESET)])
    try:
        reader, writer = await connect(await box.expose_tcp(target))
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        assert server.connections == 0
    finally:
        await server.close()


async def test_tcp_connect_drop_never_answers(box: Middlebox) -> None:
    server = TcpServer()
    target = await server.start()
    box.censor.set_rules([BlockTcpConnect(ports=frozenset({target[1]}))])
    try:
        reader, writer = await connect(await box.expose_tcp(target))
        writer.write(b"anyone?")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), QUIET_S)
        writer.close()
        assert server.connections == 0
        assert box.censor.mechanisms() == ("tcp_connect_blocked",)
    finally:
        await server.close()


async def test_an_unreachable_target_resets_the_client(box: Middlebox) -> None:
    server = TcpServer()
    target = await server.start()
    await server.close()  # nothing listens there any more
    reader, writer = await connect(await box.expose_tcp(target))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(100), 5)
    writer.close()


async def test_close_ends_every_connection(udp_echo: UdpPeer, client: UdpPeer) -> None:
    server = TcpServer()
    target = await server.start()
    middlebox = Middlebox(Censor([FreezeTcp(after_bytes=0)]))
    try:
        reader, writer = await connect(await middlebox.expose_tcp(target))
        writer.write(b"x")
        await writer.drain()
        exposed_udp = await middlebox.expose_udp(udp_echo.address)
        client.send(b"y", exposed_udp)
        await client.next()
        await asyncio.wait_for(middlebox.close(), 5)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        client.send(b"z", exposed_udp)
        assert await client.nothing()
        with pytest.raises(RuntimeError):
            await middlebox.expose_udp(udp_echo.address)
    finally:
        await server.close()
