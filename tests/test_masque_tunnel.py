"""The MASQUE client against the project's endpoint on loopback: datagrams round-trip through
CONNECT-UDP, and every refusal or breakage gets its failure name."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent

from callpath.core.call.library_adapter import H3DatagramConnection, remote_max_datagram_frame_size
from callpath.core.call.stages import StageFailure
from callpath.core.paths.masque.capsule import (
    SETTING_ENABLE_CONNECT_PROTOCOL,
    SETTING_H3_DATAGRAM,
    encode_datagram_capsule,
    encode_udp_payload,
)
from callpath.core.paths.masque.client import (
    MasqueUdpTunnel,
    open_masque_udp,
    quic_handshake,
    termination_failure,
)
from callpath.core.servers.masque_endpoint import (
    AllowedTargets,
    DatagramRateLimit,
    MasqueEndpoint,
    MasqueEndpointConfig,
    check_request,
    parse_target_rule,
    token_accepted,
)
from tests.certs import ServerCertificate, make_self_signed_certificate, make_server_certificate

NAME = "masque.test"
TOKEN = "s3cret-token"
IO_TIMEOUT = 5.0
SHORT = 1.5


# -- pure policy ------------------------------------------------------------------------------


def test_target_rules() -> None:
    allowed = AllowedTargets.parse(
        ["192.0.2.10:3478", "203.0.113.0/24:1024-65535", "[2001:db8::/64]:443"]
    )
    assert allowed.allows("192.0.2.10", 3478)
    assert not allowed.allows("192.0.2.10", 3479)
    assert not allowed.allows("192.0.2.11", 3478)
    assert allowed.allows("203.0.113.200", 1024)
    assert not allowed.allows("203.0.113.200", 1023)
    assert allowed.allows("2001:db8::99", 443)
    assert allowed.allows("::ffff:192.0.2.10", 3478)
    assert not allowed.allows("relay.example", 3478)
    assert not AllowedTargets().allows("127.0.0.1", 9)
    for bad in ["relay.example:3478", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:9-3", "::1:443"]:
        with pytest.raises(ValueError):
            parse_target_rule(bad)


def test_rate_limit_token_bucket() -> None:
    limit = DatagramRateLimit(rate=4.0, burst=3, now=100.0)
    assert [limit.allow(100.0) for _ in range(4)] == [True, True, True, False]
    assert not limit.allow(100.125)
    assert limit.allow(100.25)  # one token back after 0.25 s at 4/s
    assert not limit.allow(100.25)
    assert [limit.allow(200.0) for _ in range(4)] == [True, True, True, False]


def test_token_check() -> None:
    assert token_accepted(b"Bearer abc", ("x", "abc"))
    assert token_accepted(b"bearer abc", ("abc",))
    assert not token_accepted(b"Bearer abd", ("abc",))
    assert not token_accepted(b"Basic abc", ("abc",))
    assert not token_accepted(None, ("abc",))
    assert token_accepted(None, ())


def _request(changes: Mapping[bytes, bytes | None] | None = None) -> list[tuple[bytes, bytes]]:
    """A valid CONNECT-UDP request, with some fields replaced (None removes one)."""
    fields: dict[bytes, bytes | None] = {
        b":method": b"CONNECT",
        b":protocol": b"connect-udp",
        b":scheme": b"https",
        b":authority": b"masque.test",
        b":path": b"/.well-known/masque/udp/192.0.2.6/443/",
        b"capsule-protocol": b"?1",
        b"authorization": b"Bearer abc",
    }
    fields.update(changes or {})
    return [(key, value) for key, value in fields.items() if value is not None]


def test_request_check_order() -> None:
    tokens = ("abc",)
    assert check_request(_request(), tokens).target == ("192.0.2.6", 443)
    assert check_request(_request({b":method": b"GET"}), tokens).status == 405
    assert check_request(_request({b":protocol": b"websocket"}), tokens).status == 501
    assert check_request(_request({b":scheme": b"http"}), tokens).status == 400
    assert check_request(_request({b"authorization": None}), tokens).status == 401
    assert check_request(_request({b"authorization": b"Bearer abd"}), tokens).status == 401
    # Without a valid token the path is not even looked at.
    unauthorised_bad_path = {b"authorization": None, b":path": b"/x"}
    assert check_request(_request(unauthorised_bad_path), tokens).status == 401
    bad_port = {b":path": b"/.well-known/masque/udp/192.0.2.6/0/"}
    assert check_request(_request(bad_port), tokens).status == 404
    assert check_request(_request({b"authorization": None}), ()).status == 200


def test_termination_names() -> None:
    assert termination_failure(0x1, "Idle timeout", handshake_done=False) == "quic_blocked"
    assert (
        termination_failure(0x12A, "unable to get local issuer certificate", handshake_done=False)
        == "ssl_unknown_authority"
    )
    assert (
        termination_failure(0x12A, "hostname 'x' doesn't match 'masque.test'", handshake_done=False)
        == "ssl_invalid_hostname"
    )
    assert termination_failure(0x178, "No common ALPN", handshake_done=False) == (
        "ssl_failed_handshake"
    )


def test_aioquic_internals_the_client_relies_on() -> None:
    # aioquic 1.7.2 (pinned): the peer's datagram transport parameter is private, and
    # H3_DATAGRAM is added by overriding _get_local_settings. Fail loudly if either moves.
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    assert remote_max_datagram_frame_size(quic) is None
    sent = H3DatagramConnection(quic).sent_settings
    assert sent is not None
    assert sent[SETTING_H3_DATAGRAM] == 1
    assert sent[SETTING_ENABLE_CONNECT_PROTOCOL] == 1


# -- real servers on loopback -------------------------------------------------------------------


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


async def _udp_echo() -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    address = transport.get_extra_info("sockname")
    return transport, (address[0], address[1])


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.lost = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


@pytest.fixture
def certificate(tmp_path: Path) -> ServerCertificate:
    return make_server_certificate(tmp_path / "certs", (NAME,))


@pytest.fixture
async def echo_target() -> AsyncIterator[tuple[str, int]]:
    transport, address = await _udp_echo()
    yield address
    transport.close()


StartEndpoint = Callable[..., Awaitable[MasqueEndpoint]]


@pytest.fixture
async def start_endpoint(certificate: ServerCertificate) -> AsyncIterator[StartEndpoint]:
    started: list[MasqueEndpoint] = []

    async def start(**changes: Any) -> MasqueEndpoint:
        config = MasqueEndpointConfig(
            allowed_targets=AllowedTargets.parse(["127.0.0.1:1024-65535"]),
            tokens=(TOKEN,),
            idle_timeout_s=10.0,
        )
        endpoint = MasqueEndpoint(replace(config, **changes))
        await endpoint.start("127.0.0.1", 0, certificate.cert_path, certificate.key_path)
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        await endpoint.close()


async def _open(
    endpoint: MasqueEndpoint,
    certificate: ServerCertificate,
    target: tuple[str, int],
    **options: Any,
) -> MasqueUdpTunnel:
    host, port = endpoint.address
    settings: dict[str, Any] = {
        "server_name": NAME,
        "token": TOKEN,
        "cafile": certificate.ca_path,
        "handshake_timeout": IO_TIMEOUT,
        "request_timeout": IO_TIMEOUT,
    }
    settings.update(options)
    return await open_masque_udp(host, port, target, **settings)


async def _next(collector: _Collector) -> tuple[bytes, tuple[str, int]]:
    return await asyncio.wait_for(collector.received.get(), IO_TIMEOUT)


async def test_datagrams_round_trip(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint()
    evidence: dict[str, Any] = {}
    tunnel = await _open(endpoint, certificate, echo_target, evidence=evidence)
    collector = _Collector()
    tunnel.set_receiver(collector)
    try:
        assert tunnel.tunnel_name == "masque"
        assert tunnel.get_extra_info("proxy_address") == endpoint.address
        sockname = tunnel.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1" and sockname != endpoint.address
        assert evidence["status"] == 200 and evidence["h3_datagram"] == 1
        assert evidence["udp_address_reported"] is True
        for index in range(5):
            tunnel.sendto(f"ping {index}".encode(), echo_target)
        got = sorted([await _next(collector) for _ in range(5)])
        assert got == [(f"echo:ping {index}".encode(), echo_target) for index in range(5)]
        # A media-sized datagram (aiortc sends RTP payloads up to 1300 bytes plus headers).
        big = bytes(range(256)) * 5 + bytes(90)
        tunnel.sendto(big, echo_target)
        assert await _next(collector) == (b"echo:" + big, echo_target)
        assert endpoint.active_tunnels == 1
    finally:
        await tunnel.aclose()
    await asyncio.wait_for(collector.lost.wait(), IO_TIMEOUT)
    assert tunnel.is_closing()
    for _ in range(50):
        if endpoint.active_tunnels == 0:
            break
        await asyncio.sleep(0.1)
    assert endpoint.active_tunnels == 0


async def test_second_target_opens_its_own_stream_on_the_same_port(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint()
    other_transport, other_target = await _udp_echo()
    tunnel = await _open(endpoint, certificate, echo_target)
    collector = _Collector()
    tunnel.set_receiver(collector)
    try:
        # Sent before the second request is answered: queued, then delivered.
        tunnel.sendto(b"one", other_target)
        tunnel.sendto(b"two", other_target)
        tunnel.sendto(b"first", echo_target)
        got = sorted([await _next(collector) for _ in range(3)])
        assert got == sorted(
            [
                (b"echo:first", echo_target),
                (b"echo:one", other_target),
                (b"echo:two", other_target),
            ]
        )
        assert tunnel.flow_state(other_target) == "open"
        assert endpoint.active_tunnels == 2
        first, second = tunnel.flow_sockname(echo_target), tunnel.flow_sockname(other_target)
        assert first is not None and second is not None
        if hasattr(socket, "SO_REUSEPORT"):
            assert first == second  # one relay address for the whole call
    finally:
        await tunnel.aclose()
        other_transport.close()


async def test_datagram_capsules_on_the_stream_are_forwarded(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint()
    tunnel = await _open(endpoint, certificate, echo_target)
    collector = _Collector()
    tunnel.set_receiver(collector)
    try:
        # Reach into the client to write capsules on the request stream, as an HTTP/2-style
        # client would; the endpoint must forward them like HTTP Datagrams.
        flow = tunnel._flows[echo_target]
        capsules = encode_datagram_capsule(encode_udp_payload(b"via capsule"))
        capsules += b"\x17\x02??"  # an unknown capsule type is skipped
        protocol = tunnel._protocol
        protocol.h3.send_data(flow.stream_id, capsules[:3], end_stream=False)
        protocol.h3.send_data(flow.stream_id, capsules[3:], end_stream=False)
        protocol.transmit()
        assert await _next(collector) == (b"echo:via capsule", echo_target)
    finally:
        await tunnel.aclose()


async def test_target_outside_allowlist_is_refused_403(
    start_endpoint: StartEndpoint, certificate: ServerCertificate
) -> None:
    endpoint = await start_endpoint(allowed_targets=AllowedTargets.parse(["127.0.0.1:40000-40010"]))
    with pytest.raises(StageFailure) as raised:
        await _open(endpoint, certificate, ("127.0.0.1", 9))
    assert raised.value.failure == "masque_connect_udp_refused"
    assert raised.value.evidence["status"] == 403
    assert endpoint.active_tunnels == 0


async def test_allowlist_also_applies_to_later_targets(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint(
        allowed_targets=AllowedTargets.parse([f"127.0.0.1:{echo_target[1]}"])
    )
    tunnel = await _open(endpoint, certificate, echo_target)
    try:
        tunnel.sendto(b"x", ("127.0.0.2", 9))
        assert await tunnel.wait_settled(("127.0.0.2", 9), IO_TIMEOUT) == "refused"
        assert tunnel.flow_status(("127.0.0.2", 9)) == 403
    finally:
        await tunnel.aclose()


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_token_is_refused_401(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
    token: str | None,
) -> None:
    endpoint = await start_endpoint()
    with pytest.raises(StageFailure) as raised:
        await _open(endpoint, certificate, echo_target, token=token)
    assert raised.value.failure == "masque_connect_udp_refused"
    assert raised.value.evidence["status"] == 401


async def test_untrusted_certificate_is_unknown_authority(
    start_endpoint: StartEndpoint, tmp_path: Path, echo_target: tuple[str, int]
) -> None:
    endpoint = await start_endpoint()
    stranger = make_self_signed_certificate(tmp_path / "stranger", (NAME,))
    host, port = endpoint.address
    with pytest.raises(StageFailure) as raised:
        await open_masque_udp(
            host,
            port,
            echo_target,
            server_name=NAME,
            token=TOKEN,
            cafile=stranger.cert_path,
            handshake_timeout=IO_TIMEOUT,
        )
    assert raised.value.failure == "ssl_unknown_authority"


async def test_wrong_name_is_invalid_hostname(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint()
    with pytest.raises(StageFailure) as raised:
        await _open(endpoint, certificate, echo_target, server_name="other.test")
    assert raised.value.failure == "ssl_invalid_hostname"


class _PlainH3Server(QuicConnectionProtocol):
    """HTTP/3 as aioquic does it by default: no H3_DATAGRAM, no QUIC datagrams."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler=stream_handler)
        self.h3 = H3Connection(quic)

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.h3.send_headers(h3_event.stream_id, [(b":status", b"200")])
                self.transmit()


async def test_proxy_without_h3_datagram_is_named(
    certificate: ServerCertificate, echo_target: tuple[str, int]
) -> None:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    configuration.load_cert_chain(certificate.cert_path, certificate.key_path)
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=_PlainH3Server),
        local_addr=("127.0.0.1", 0),
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        with pytest.raises(StageFailure) as raised:
            await open_masque_udp(
                "127.0.0.1",
                port,
                echo_target,
                server_name=NAME,
                cafile=certificate.ca_path,
                handshake_timeout=IO_TIMEOUT,
                request_timeout=IO_TIMEOUT,
            )
        assert raised.value.failure == "h3_datagram_unsupported"
        assert raised.value.evidence["h3_datagram"] == 0
        assert raised.value.evidence["max_datagram_frame_size"] is None
    finally:
        server.close()


async def test_silent_port_is_quic_blocked(echo_target: tuple[str, int]) -> None:
    # A bound UDP socket that never answers: what a censor dropping QUIC looks like.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StageFailure) as raised:
            await open_masque_udp(
                "127.0.0.1", port, echo_target, server_name=NAME, handshake_timeout=SHORT
            )
        assert raised.value.failure == "quic_blocked"
        assert loop.time() - started < SHORT + 3.0
        assert await quic_handshake("127.0.0.1", port, "neutral.example", SHORT) == ("quic_blocked")
    finally:
        silent.close()


async def test_quic_handshake_probe_succeeds_with_any_name(
    start_endpoint: StartEndpoint,
) -> None:
    endpoint = await start_endpoint()
    host, port = endpoint.address
    assert await quic_handshake(host, port, "neutral.example", IO_TIMEOUT) is None
    assert await quic_handshake(host, port, NAME, IO_TIMEOUT) is None


async def test_max_tunnels_is_enforced(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint(max_tunnels=1)
    first = await _open(endpoint, certificate, echo_target)
    try:
        with pytest.raises(StageFailure) as raised:
            await _open(endpoint, certificate, echo_target)
        assert raised.value.failure == "masque_connect_udp_refused"
        assert raised.value.evidence["status"] == 429
    finally:
        await first.aclose()


async def test_datagram_rate_is_limited(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint(max_datagrams_per_second=2.0, datagram_burst=2)
    tunnel = await _open(endpoint, certificate, echo_target)
    collector = _Collector()
    tunnel.set_receiver(collector)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for index in range(30):
            tunnel.sendto(b"%d" % index, echo_target)
        await _next(collector)  # the burst gets through
        await asyncio.sleep(0.5)
        elapsed = loop.time() - started
        received = 1 + collector.received.qsize()
        assert received <= 2 + 2.0 * elapsed + 1  # burst plus refill, whatever the load
        assert endpoint.datagrams_dropped > 0
    finally:
        await tunnel.aclose()


async def test_tunnel_duration_is_limited(
    start_endpoint: StartEndpoint,
    certificate: ServerCertificate,
    echo_target: tuple[str, int],
) -> None:
    endpoint = await start_endpoint(max_tunnel_s=0.3)
    tunnel = await _open(endpoint, certificate, echo_target)
    try:
        for _ in range(int(IO_TIMEOUT / 0.05)):
            if tunnel.flow_state(echo_target) == "closed":
                break
            await asyncio.sleep(0.05)
        assert tunnel.flow_state(echo_target) == "closed"
        assert endpoint.active_tunnels == 0
        collector = _Collector()
        tunnel.set_receiver(collector)
        tunnel.sendto(b"after expiry", echo_target)
        assert tunnel.datagrams_dropped == 1
    finally:
        await tunnel.aclose()
