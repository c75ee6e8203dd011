"""The server fixtures are real: TURN relays data, bad credentials fail, Janus answers."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import aioice.ice
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from tests.certs import make_self_signed_certificate, make_server_certificate
from tests.servers import (
    LOOPBACK,
    CoturnServer,
    JanusServer,
    free_port,
    free_port_range,
    http_get_json,
    require_binary,
    stun_binding_ok,
    tls_handshake_ok,
)

pytestmark = pytest.mark.servers

STEP_TIMEOUT_S = 5.0


class DatagramCollector(asyncio.DatagramProtocol):
    """Queues every datagram it receives, with its source."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


def turn_target(
    server: CoturnServer, transport: str
) -> tuple[tuple[str, int], ssl.SSLContext | None]:
    if transport == "tls":
        return (server.tls_host, server.tls_port), server.ssl_context()
    return (server.host, server.port), None


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_turn_allocation_relays_both_ways(coturn: CoturnServer, transport: str) -> None:
    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(
        DatagramCollector, local_addr=(LOOPBACK, 0)
    )
    peer_addr = peer_transport.get_extra_info("sockname")
    server_addr, context = turn_target(coturn, transport)
    turn, client = await asyncio.wait_for(
        create_turn_endpoint(
            DatagramCollector,
            server_addr=server_addr,
            username=coturn.username,
            password=coturn.password,
            ssl=context,
            transport="udp" if transport == "udp" else "tcp",
        ),
        STEP_TIMEOUT_S,
    )
    try:
        relayed = turn.get_extra_info("sockname")
        assert relayed[0] == LOOPBACK
        assert coturn.relay_ports[0] <= relayed[1] <= coturn.relay_ports[1]

        turn.sendto(b"to-peer", peer_addr)
        data, source = await asyncio.wait_for(peer.received.get(), STEP_TIMEOUT_S)
        assert (data, source) == (b"to-peer", tuple(relayed))

        peer_transport.sendto(b"to-client", tuple(relayed))
        data, source = await asyncio.wait_for(client.received.get(), STEP_TIMEOUT_S)
        assert (data, source) == (b"to-client", tuple(peer_addr))
    finally:
        turn.close()
        peer_transport.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_turn_wrong_password_is_refused(coturn: CoturnServer, transport: str) -> None:
    server_addr, context = turn_target(coturn, transport)
    with pytest.raises(stun.TransactionFailed) as failure:
        await asyncio.wait_for(
            create_turn_endpoint(
                DatagramCollector,
                server_addr=server_addr,
                username=coturn.username,
                password="not-the-password",
                ssl=context,
                transport="udp" if transport == "udp" else "tcp",
            ),
            STEP_TIMEOUT_S,
        )
    assert failure.value.response.attributes["ERROR-CODE"][0] == 401


def test_stun_binding_answers(coturn: CoturnServer) -> None:
    assert stun_binding_ok(coturn.host, coturn.port, timeout=2.0)


def test_uris_point_at_the_fixture(coturn: CoturnServer) -> None:
    assert coturn.stun_uri == f"stun:127.0.0.1:{coturn.port}"
    assert coturn.turn_udp_uri == f"turn:127.0.0.1:{coturn.port}?transport=udp"
    assert coturn.turn_tcp_uri == f"turn:127.0.0.1:{coturn.port}?transport=tcp"
    assert coturn.turn_tls_uri == f"turns:localhost:{coturn.tls_port}?transport=tcp"


def test_tls_needs_the_test_ca(coturn: CoturnServer, tmp_path: Path) -> None:
    system_trust = ssl.create_default_context()
    assert not tls_handshake_ok(coturn.host, coturn.tls_port, system_trust, coturn.tls_host)
    assert tls_handshake_ok(coturn.host, coturn.tls_port, coturn.ssl_context(), coturn.tls_host)
    other_ca = ssl.create_default_context(cafile=str(make_server_certificate(tmp_path).ca_path))
    assert not tls_handshake_ok(coturn.host, coturn.tls_port, other_ca, coturn.tls_host)


def test_certificate_names_are_checked(coturn: CoturnServer) -> None:
    context = coturn.ssl_context()
    assert tls_handshake_ok(coturn.host, coturn.tls_port, context, "127.0.0.1")
    assert not tls_handshake_ok(coturn.host, coturn.tls_port, context, "example.test")


async def test_self_signed_certificate_is_rejected_by_the_test_ca(tmp_path: Path) -> None:
    test_ca = make_server_certificate(tmp_path / "good")
    wrong = make_self_signed_certificate(tmp_path / "wrong")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(wrong.cert_path, wrong.key_path)
    server = await asyncio.start_server(
        lambda reader, writer: writer.close(), LOOPBACK, 0, ssl=server_context
    )
    port = server.sockets[0].getsockname()[1]
    trusting_test_ca = ssl.create_default_context(cafile=str(test_ca.ca_path))
    trusting_wrong = ssl.create_default_context(cafile=str(wrong.cert_path))
    try:
        rejected = await asyncio.to_thread(
            tls_handshake_ok, LOOPBACK, port, trusting_test_ca, "localhost"
        )
        accepted = await asyncio.to_thread(
            tls_handshake_ok, LOOPBACK, port, trusting_wrong, "localhost"
        )
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), STEP_TIMEOUT_S)
    assert not rejected
    assert accepted


def test_private_coturn_stops(start_coturn: Callable[..., CoturnServer]) -> None:
    server = start_coturn()
    assert stun_binding_ok(server.host, server.port, timeout=2.0)
    server.process.stop()
    assert not stun_binding_ok(server.host, server.port, timeout=0.5)


def test_free_ports_are_free_for_tcp_and_udp() -> None:
    port = free_port()
    low, high = free_port_range(10)
    assert 1024 < port < 65536
    assert high - low == 9
    assert low % 2 == 0


def test_missing_binary_skips_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="callpath-no-such-binary"):
        require_binary("callpath-no-such-binary", "no-such-package")


def test_missing_binary_fails_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match="no-such-package"):
        require_binary("callpath-no-such-binary", "no-such-package")


def test_host_candidates_are_loopback_only() -> None:
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]


def test_janus_lists_echotest_only(janus: JanusServer) -> None:
    info = http_get_json(f"{janus.base_url}/info", timeout=5.0)
    assert info is not None
    assert info["janus"] == "server_info"
    assert isinstance(info["plugins"], dict)
    assert list(info["plugins"]) == ["janus.plugin.echotest"]
    assert isinstance(info["transports"], dict)
    assert list(info["transports"]) == ["janus.transport.http"]
    assert info["local-ip"] == janus.host
    assert janus.host != janus.client_address
