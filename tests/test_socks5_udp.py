"""SOCKS5 UDP ASSOCIATE: the wire format, then real Dante and shadowsocks-libev on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from callpath.core.call.stages import StageFailure
from callpath.core.model.proxy_url import parse_proxy_url
from callpath.core.paths.socks5 import (
    UDP_REFUSAL_FAILURES,
    UDP_REFUSED_EXPLANATION,
    Socks5UdpTunnel,
    check_auth_reply,
    command_request,
    decode_udp_datagram,
    encode_udp_datagram,
    greeting,
    open_socks5_udp,
    parse_method_selection,
    parse_reply,
    udp_relay_address,
    username_password_request,
)
from callpath.core.present.proxy_failures import explain_proxy_failure
from tests.proxy_servers import (
    DanteServer,
    ShadowsocksPair,
    kill_process_group,
    run_dante,
    run_shadowsocks,
    udp_echo,
)
from tests.servers import CoturnServer, free_port

TIMEOUT_S = 5.0


# --- wire format ----------------------------------------------------------------------------


def test_greeting_offers_password_only_when_there_is_one() -> None:
    assert greeting(offer_password=False) == b"\x05\x01\x00"
    assert greeting(offer_password=True) == b"\x05\x02\x00\x02"


def test_method_selection_failures_are_named() -> None:
    assert parse_method_selection(b"\x05\x02", offer_password=True) == 2
    assert parse_method_selection(b"\x05\x00", offer_password=False) == 0
    with pytest.raises(StageFailure) as refused:
        parse_method_selection(b"\x05\xff", offer_password=True)
    assert refused.value.failure == "socks_auth_refused"
    with pytest.raises(StageFailure) as not_socks:
        parse_method_selection(b"HT", offer_password=False)
    assert not_socks.value.failure == "socks_protocol_error"
    with pytest.raises(StageFailure) as echoed:
        parse_method_selection(greeting(offer_password=False)[:2], offer_password=False)
    assert echoed.value.failure == "socks_protocol_error"


def test_username_password_request_follows_rfc1929() -> None:
    assert username_password_request("bob", "pw") == b"\x01\x03bob\x02pw"
    with pytest.raises(ValueError):
        username_password_request("", "pw")
    check_auth_reply(b"\x01\x00")
    with pytest.raises(StageFailure) as refused:
        check_auth_reply(b"\x01\x01")
    assert refused.value.failure == "socks_auth_refused"


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (0x01, "socks_general_failure"),
        (0x02, "socks_connection_not_allowed"),
        (0x03, "socks_network_unreachable"),
        (0x04, "socks_host_unreachable"),
        (0x05, "socks_connection_refused"),
        (0x07, "socks_command_not_supported"),
        (0x08, "socks_address_type_not_supported"),
        (0x42, "socks_protocol_error"),
    ],
)
def test_reply_codes_become_failure_strings(code: int, failure: str) -> None:
    with pytest.raises(StageFailure) as refused:
        parse_reply(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    assert refused.value.failure == failure
    assert refused.value.evidence["reply_code"] == code


def test_reply_addresses_of_every_type_are_parsed() -> None:
    assert parse_reply(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38") == ("127.0.0.1", 1080)
    ipv6 = b"\x05\x00\x00\x04" + bytes(15) + b"\x01" + b"\x00\x35"
    assert parse_reply(ipv6) == ("::1", 53)
    assert parse_reply(b"\x05\x00\x00\x03\x09localhost\x00\x50") == ("localhost", 80)
    assert command_request(3, ("0.0.0.0", 0)) == b"\x05\x03\x00\x01" + bytes(6)


def test_udp_header_round_trip_and_fragments_dropped() -> None:
    datagram = encode_udp_datagram(b"media", ("127.0.0.1", 5000))
    assert datagram[:10] == b"\x00\x00\x00\x01\x7f\x00\x00\x01\x13\x88"
    assert decode_udp_datagram(datagram) == (b"media", ("127.0.0.1", 5000))
    ipv6 = encode_udp_datagram(b"x", ("2001:db8::1", 9))
    assert decode_udp_datagram(ipv6) == (b"x", ("2001:db8::1", 9))
    named = b"\x00\x00\x00\x03\x04peer\x00\x09x"
    assert decode_udp_datagram(named) == (b"x", ("peer", 9))
    fragment = b"\x00\x00\x01" + datagram[3:]
    assert decode_udp_datagram(fragment) is None
    assert decode_udp_datagram(b"\x00\x00\x00\x01\x7f\x00") is None  # truncated


def test_unspecified_bound_address_is_the_proxy() -> None:
    assert udp_relay_address(("0.0.0.0", 4000), "127.0.0.5") == ("127.0.0.5", 4000)
    assert udp_relay_address(("127.0.0.9", 4000), "127.0.0.5") == ("127.0.0.9", 4000)


def test_udp_refusal_has_its_own_explanation() -> None:
    for failure in UDP_REFUSAL_FAILURES:
        assert explain_proxy_failure(failure, udp=True) == UDP_REFUSED_EXPLANATION
    assert explain_proxy_failure("socks_command_not_supported") != UDP_REFUSED_EXPLANATION


# --- real proxies ---------------------------------------------------------------------------


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, (addr[0], addr[1])))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _echo_round_trip(tunnel: Socks5UdpTunnel, echo_address: tuple[str, int]) -> None:
    collector = _Collector()
    tunnel.set_receiver(collector)
    for index in range(3):
        payload = f"through the proxy {index}".encode()
        tunnel.sendto(payload, echo_address)
        data, source = await asyncio.wait_for(collector.queue.get(), TIMEOUT_S)
        assert data == payload
        assert source == echo_address


@pytest.mark.servers
@pytest.mark.parametrize("proxy_name", ["dante", "shadowsocks"])
async def test_udp_echo_through_the_proxy_and_the_address_peers_see(
    proxy_name: str, request: pytest.FixtureRequest, coturn: CoturnServer
) -> None:
    proxy = request.getfixturevalue(proxy_name)
    url = parse_proxy_url(proxy.url)
    evidence: dict[str, Any] = {}
    tunnel = await open_socks5_udp(
        url, None, TIMEOUT_S, stun_server=(coturn.host, coturn.port), evidence=evidence
    )
    try:
        assert tunnel.tunnel_name == "socks5-udp"
        assert tunnel.get_extra_info("proxy_address") == (url.host, url.port)
        assert tunnel.get_extra_info("related_address") is None
        assert tunnel.get_extra_info("address_source") == "stun"
        assert evidence["auth"] == "none"
        async with udp_echo() as echo:
            await _echo_round_trip(tunnel, echo.address)
            # STUN through the tunnel found exactly the address the echo saw datagrams from.
            assert set(echo.sources) == {tunnel.get_extra_info("sockname")}
    finally:
        tunnel.close()
    assert tunnel.is_closing()


@pytest.mark.servers
async def test_dante_relays_from_another_socket_than_its_bound_address(
    dante: DanteServer, coturn: CoturnServer
) -> None:
    """Why the tunnel asks STUN: Dante's BND.ADDR is not what peers see."""
    url = parse_proxy_url(dante.url)
    tunnel = await open_socks5_udp(url, None, TIMEOUT_S, stun_server=(coturn.host, coturn.port))
    try:
        assert tunnel.get_extra_info("sockname") != tunnel.get_extra_info("relay_address")
    finally:
        tunnel.close()


@pytest.mark.servers
async def test_without_stun_the_bound_address_is_advertised(dante: DanteServer) -> None:
    tunnel = await open_socks5_udp(parse_proxy_url(dante.url), None, TIMEOUT_S)
    try:
        assert tunnel.get_extra_info("address_source") == "bound_address"
        assert tunnel.get_extra_info("sockname") == tunnel.get_extra_info("relay_address")
        async with udp_echo() as echo:
            await _echo_round_trip(tunnel, echo.address)
    finally:
        tunnel.close()


@pytest.mark.servers
async def test_udp_echo_with_username_auth(dante_with_auth: DanteServer) -> None:
    evidence: dict[str, Any] = {}
    tunnel = await open_socks5_udp(
        parse_proxy_url(dante_with_auth.url),
        dante_with_auth.password,
        TIMEOUT_S,
        evidence=evidence,
    )
    try:
        assert evidence["auth"] == "username"
        async with udp_echo() as echo:
            await _echo_round_trip(tunnel, echo.address)
    finally:
        tunnel.close()


@pytest.mark.servers
async def test_wrong_password_is_socks_auth_refused(dante_with_auth: DanteServer) -> None:
    with pytest.raises(StageFailure) as refused:
        await open_socks5_udp(parse_proxy_url(dante_with_auth.url), "wrong", TIMEOUT_S)
    assert refused.value.failure == "socks_auth_refused"
    assert refused.value.evidence["reason"] == "username/password rejected"


@pytest.mark.servers
async def test_missing_credentials_are_socks_auth_refused(dante_with_auth: DanteServer) -> None:
    url = parse_proxy_url(f"socks5://{dante_with_auth.host}:{dante_with_auth.port}")
    with pytest.raises(StageFailure) as refused:
        await open_socks5_udp(url, None, TIMEOUT_S)
    assert refused.value.failure == "socks_auth_refused"


@pytest.mark.servers
async def test_proxy_refusing_udp_is_named_and_explained(dante_without_udp: DanteServer) -> None:
    with pytest.raises(StageFailure) as refused:
        await open_socks5_udp(parse_proxy_url(dante_without_udp.url), None, TIMEOUT_S)
    # Dante answers "not allowed by ruleset" (0x02) when its rules leave out udpassociate.
    assert refused.value.failure == "socks_connection_not_allowed"
    assert refused.value.evidence["command"] == "udp_associate"
    assert explain_proxy_failure(refused.value.failure, udp=True) == UDP_REFUSED_EXPLANATION


@pytest.mark.servers
async def test_proxy_not_listening_is_connection_refused() -> None:
    url = parse_proxy_url(f"socks5://127.0.0.1:{free_port()}")
    with pytest.raises(StageFailure) as refused:
        await open_socks5_udp(url, None, TIMEOUT_S)
    assert refused.value.failure == "connection_refused"


@pytest.mark.servers
async def test_proxy_that_carries_no_udp_fails_stun_discovery(
    tmp_path: Path, coturn: CoturnServer
) -> None:
    """ss-local without -u accepts UDP ASSOCIATE but relays nothing."""
    with run_shadowsocks(tmp_path, udp=False) as pair, pytest.raises(StageFailure) as silent:
        await open_socks5_udp(
            parse_proxy_url(pair.url), None, 2.0, stun_server=(coturn.host, coturn.port)
        )
    assert silent.value.failure == "stun_no_response"


@pytest.mark.servers
@pytest.mark.parametrize("run_proxy", [run_dante, run_shadowsocks], ids=["dante", "ss-local"])
async def test_proxy_dying_mid_tunnel_ends_it_with_a_named_failure(
    run_proxy: Callable[[Path], AbstractContextManager[DanteServer | ShadowsocksPair]],
    tmp_path: Path,
) -> None:
    with run_proxy(tmp_path) as proxy:
        tunnel = await open_socks5_udp(parse_proxy_url(proxy.url), None, TIMEOUT_S)
        collector = _Collector()
        try:
            async with udp_echo() as echo:
                await _echo_round_trip(tunnel, echo.address)
                tunnel.set_receiver(collector)
                process = proxy.process if isinstance(proxy, DanteServer) else proxy.local
                kill_process_group(process)
                await asyncio.wait_for(tunnel.ended.wait(), TIMEOUT_S)
                lost = await asyncio.wait_for(collector.lost, TIMEOUT_S)
        finally:
            tunnel.close()
    assert tunnel.failure in ("eof_error", "connection_reset")
    assert isinstance(lost, ConnectionError)
    assert str(lost) == tunnel.failure
    tunnel.sendto(b"after the end", ("127.0.0.1", 9))  # dropped, no error


@pytest.mark.servers
async def test_closing_the_tunnel_tells_the_receiver_once(dante: DanteServer) -> None:
    tunnel = await open_socks5_udp(parse_proxy_url(dante.url), None, TIMEOUT_S)
    collector = _Collector()
    tunnel.set_receiver(collector)
    tunnel.close()
    tunnel.close()
    assert await asyncio.wait_for(collector.lost, TIMEOUT_S) is None
    assert tunnel.failure is None
    assert tunnel.ended.is_set()
