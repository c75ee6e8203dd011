"""The control server on 127.0.0.2: UDP echo with STUN, TCP bulk, QUIC handshake, and its limits."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator

import aioice.stun
import pytest
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

from callpath.core.probes import ProbeConfig
from callpath.core.probes.datagram import DatagramFlow
from callpath.core.probes.stun import padded_binding_request
from callpath.core.servers.control_server import (
    ControlServer,
    ControlServerConfig,
    ControlServerLimits,
    TokenBucket,
    UdpRateLimiter,
    parse_bulk_request,
    udp_reply,
)

SERVER_HOST = "127.0.0.2"
WAIT_S = 2.0


@pytest.fixture
async def control() -> AsyncIterator[ControlServer]:
    async with ControlServer() as server:
        await server.start(SERVER_HOST)
        yield server


async def _ask(server: tuple[str, int], datagram: bytes, wait: float = WAIT_S) -> bytes | None:
    flow = await DatagramFlow.open(server)
    try:
        flow.send(datagram)
        arrival = await flow.next(_deadline(wait))
        return None if arrival is None else arrival[1]
    finally:
        flow.close()


def _deadline(wait: float) -> float:
    return time.monotonic() + wait


# --- pure parts ------------------------------------------------------------------------------


def test_token_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate=10.0, depth=2.0, now=0.0)
    assert bucket.allow(1, 0.0)
    assert bucket.allow(1, 0.0)
    assert not bucket.allow(1, 0.0)
    assert bucket.allow(1, 0.1)  # one token back after 0.1 s at 10/s
    assert not bucket.allow(1, 0.1)


def test_rate_limiter_holds_a_flooding_source_without_starving_others() -> None:
    limits = ControlServerLimits(
        udp_source_packets_per_s=10, udp_total_packets_per_s=1000, udp_burst_s=1.0
    )
    limiter = UdpRateLimiter(limits)
    allowed = sum(limiter.allow("192.0.2.1", 100, 0.0) for _ in range(100))
    assert allowed == 10
    assert limiter.allow("192.0.2.2", 100, 0.0)


def test_stun_answer_is_never_larger_than_the_request() -> None:
    bare = bytes(
        aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST, os.urandom(12))
    )
    assert len(bare) == 20
    assert udp_reply(bare, ("192.0.2.1", 4000)) is None  # its answer would be 32 bytes
    padded = padded_binding_request(64, os.urandom(12))
    reply = udp_reply(padded, ("192.0.2.1", 4000))
    assert reply is not None and len(reply) <= len(padded)
    message = aioice.stun.parse_message(reply)
    assert message.message_class == aioice.stun.Class.RESPONSE
    assert message.attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 4000)
    other = b"\x08" + os.urandom(99)
    assert udp_reply(other, ("192.0.2.1", 4000)) == other


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"GET 100\n", 100),
        (b"GET 100\r\n", 100),
        (b"GET 2000\n", None),  # above the bound
        (b"PUT 100\n", None),
        (b"GET -1\n", None),
        (b"GET 100", None),
    ],
)
def test_bulk_request_parsing(line: bytes, expected: int | None) -> None:
    assert parse_bulk_request(line, 1000) == expected


# --- real sockets ----------------------------------------------------------------------------


async def test_udp_echo_and_stun(control: ControlServer) -> None:
    assert control.udp_address is not None
    datagram = b"\x08" + os.urandom(150)
    assert await _ask(control.udp_address, datagram) == datagram
    request = padded_binding_request(120, os.urandom(12))
    reply = await _ask(control.udp_address, request)
    assert reply is not None
    message = aioice.stun.parse_message(reply)
    assert message.transaction_id == request[8:20]
    assert message.attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"


async def test_udp_echo_ignores_oversized_datagrams() -> None:
    config = ControlServerConfig(limits=ControlServerLimits(max_datagram_bytes=200))
    async with ControlServer(config) as server:
        await server.start(SERVER_HOST, tcp_bulk_port=None, quic_port=None)
        assert server.udp_address is not None
        assert await _ask(server.udp_address, b"\x08" * 201, wait=0.5) is None
        assert await _ask(server.udp_address, b"\x08" * 200) == b"\x08" * 200


async def test_udp_echo_rate_limit_refuses_a_flood() -> None:
    limits = ControlServerLimits(udp_source_packets_per_s=20, udp_burst_s=0.5)
    async with ControlServer(ControlServerConfig(limits=limits)) as server:
        await server.start(SERVER_HOST, tcp_bulk_port=None, quic_port=None)
        assert server.udp_address is not None
        flow = await DatagramFlow.open(server.udp_address)
        try:
            for index in range(200):
                flow.send(index.to_bytes(2, "big") + b"\x08" * 60)
            answers = 0
            deadline = _deadline(1.0)
            while await flow.next(deadline) is not None:
                answers += 1
        finally:
            flow.close()
        answered, refused = server.udp_stats
        # The bucket holds 10 packets; a little refill while the flood is sent is allowed.
        assert 10 <= answers <= 40
        assert refused >= 150
        assert answered == answers


def test_the_default_budget_echoes_the_flow_probes_top_rate_step() -> None:
    """The flow probe's rate steps (8, 32, 128 KB/s in 500-byte datagrams, 0.5 s each) must
    not hit the echo's own per-source budget, or every network would look capped."""
    limits = ControlServerLimits()
    limiter = UdpRateLimiter(limits)
    config = ProbeConfig()
    now, refused = 0.0, 0
    for rate in config.flow_step_rates_kBps:
        pps = rate * 1000 / config.flow_step_packet_bytes
        for _ in range(round(pps * config.flow_step_s)):
            refused += not limiter.allow("192.0.2.1", config.flow_step_packet_bytes, now)
            now += 1 / pps
    assert refused == 0
    # and never an amplifier: the answer is at most the request
    assert len(udp_reply(b"\x08" * 500, ("192.0.2.1", 5000)) or b"") <= 500


async def test_tcp_bulk_sends_exactly_what_was_asked(control: ControlServer) -> None:
    assert control.tcp_bulk_address is not None
    reader, writer = await asyncio.open_connection(*control.tcp_bulk_address)
    try:
        writer.write(b"GET 70000\n")
        data = await asyncio.wait_for(reader.read(), WAIT_S * 2)
    finally:
        writer.close()
    assert len(data) == 70000
    assert len(set(data[:4096])) > 200  # random, not a constant a middlebox could compress


async def test_tcp_bulk_refuses_more_than_its_bound() -> None:
    limits = ControlServerLimits(bulk_max_bytes=1000)
    async with ControlServer(ControlServerConfig(limits=limits)) as server:
        await server.start(SERVER_HOST, udp_port=None, quic_port=None)
        assert server.tcp_bulk_address is not None
        reader, writer = await asyncio.open_connection(*server.tcp_bulk_address)
        try:
            writer.write(b"GET 1001\n")
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
        finally:
            writer.close()


async def test_tcp_bulk_drops_a_silent_client_and_close_ends_open_connections() -> None:
    limits = ControlServerLimits(bulk_request_timeout_s=0.3)
    server = ControlServer(ControlServerConfig(limits=limits))
    await server.start(SERVER_HOST, udp_port=None, quic_port=None)
    assert server.tcp_bulk_address is not None
    reader, writer = await asyncio.open_connection(*server.tcp_bulk_address)
    assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # said nothing: closed
    writer.close()
    reader, writer = await asyncio.open_connection(*server.tcp_bulk_address)
    await asyncio.wait_for(server.close(), 5.0)
    with pytest.raises((ConnectionError, OSError)):
        data = await asyncio.wait_for(reader.read(), WAIT_S)
        if data == b"":
            raise ConnectionResetError("closed")
    writer.close()


async def test_quic_endpoint_completes_a_handshake(control: ControlServer) -> None:
    assert control.quic_address is not None
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["callpath-probe"], server_name="anything.test"
    )
    configuration.verify_mode = 0  # ssl.CERT_NONE: the endpoint's certificate is throwaway
    async with asyncio.timeout(5.0):
        async with connect(*control.quic_address, configuration=configuration) as client:
            await client.ping()


def test_udp_port_is_bound_to_the_given_host() -> None:
    async def run() -> tuple[str, int] | None:
        async with ControlServer() as server:
            await server.start(SERVER_HOST, tcp_bulk_port=None, quic_port=None)
            return server.udp_address

    address = asyncio.run(run())
    assert address is not None and address[0] == SERVER_HOST
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(address)  # free again after close
