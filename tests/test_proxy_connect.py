"""TCP streams through real SOCKS5 (Dante, ss-local) and HTTP CONNECT (tinyproxy) proxies."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from python_socks import ProxyError

from callpath.core.call.stages import StageFailure
from callpath.core.model.proxy_url import parse_proxy_url
from callpath.core.paths.proxy_stream import proxy_failure, proxy_stream_opener
from callpath.core.present.proxy_failures import explain_proxy_failure
from tests.proxy_servers import (
    DanteServer,
    TinyproxyServer,
    kill_process_group,
    run_dante,
    run_tinyproxy,
    tcp_echo,
)
from tests.servers import free_port

TIMEOUT_S = 5.0
TINYPROXY_AUTH = ("cpuser", "tiny-secret")


@pytest.fixture
async def echo_address() -> AsyncIterator[tuple[str, int]]:
    async with tcp_echo() as address:
        yield address


@pytest.fixture(scope="module")
def allowed_port() -> int:
    """The port tinyproxy lets CONNECT reach; each test's TCP echo binds it (they run in turn)."""
    return free_port()


@pytest.fixture
async def allowed_echo(allowed_port: int) -> AsyncIterator[tuple[str, int]]:
    async with tcp_echo(allowed_port) as address:
        yield address


@pytest.fixture(scope="module")
def tinyproxy(
    tmp_path_factory: pytest.TempPathFactory, allowed_port: int
) -> Iterator[TinyproxyServer]:
    with run_tinyproxy(tmp_path_factory.mktemp("tinyproxy"), connect_ports=[allowed_port]) as tp:
        yield tp


@pytest.fixture(scope="module")
def tinyproxy_with_auth(
    tmp_path_factory: pytest.TempPathFactory, allowed_port: int
) -> Iterator[TinyproxyServer]:
    with run_tinyproxy(
        tmp_path_factory.mktemp("tinyproxy-auth"),
        connect_ports=[allowed_port],
        basic_auth=TINYPROXY_AUTH,
    ) as tp:
        yield tp


async def _round_trip(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        for index in range(3):
            payload = f"tunnelled line {index}\n".encode()
            writer.write(payload)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(payload)), TIMEOUT_S) == payload
    finally:
        writer.close()


async def _failure(url: str, password: str | None, target: tuple[str, int]) -> StageFailure:
    opener = proxy_stream_opener(parse_proxy_url(url), password)
    with pytest.raises(StageFailure) as failed:
        sock = await asyncio.wait_for(opener(target, TIMEOUT_S), TIMEOUT_S * 2)
        sock.close()
    return failed.value


pytestmark = pytest.mark.servers


@pytest.mark.parametrize("proxy_name", ["dante", "shadowsocks"])
async def test_socks5_connect_reaches_a_tcp_echo(
    proxy_name: str, request: pytest.FixtureRequest, echo_address: tuple[str, int]
) -> None:
    proxy = request.getfixturevalue(proxy_name)
    opener = proxy_stream_opener(parse_proxy_url(proxy.url), None)
    sock = await opener(echo_address, TIMEOUT_S)
    assert not sock.getblocking()
    await _round_trip(sock)


async def test_socks5_connect_with_username_auth(
    dante_with_auth: DanteServer, echo_address: tuple[str, int]
) -> None:
    opener = proxy_stream_opener(parse_proxy_url(dante_with_auth.url), dante_with_auth.password)
    await _round_trip(await opener(echo_address, TIMEOUT_S))


async def test_socks5_wrong_password_is_socks_auth_refused(
    dante_with_auth: DanteServer, echo_address: tuple[str, int]
) -> None:
    failure = await _failure(dante_with_auth.url, "wrong", echo_address)
    assert failure.failure == "socks_auth_refused"
    assert failure.evidence["reason"] == "username/password rejected"


async def test_socks5_missing_credentials_are_socks_auth_refused(
    dante_with_auth: DanteServer, echo_address: tuple[str, int]
) -> None:
    url = f"socks5://{dante_with_auth.host}:{dante_with_auth.port}"
    failure = await _failure(url, None, echo_address)
    assert failure.failure == "socks_auth_refused"
    assert failure.evidence["reason"] == "no acceptable method"


async def test_socks5_reply_code_names_a_refused_target(dante: DanteServer) -> None:
    failure = await _failure(dante.url, None, ("127.0.0.1", free_port()))
    assert failure.failure == "socks_connection_refused"
    assert failure.evidence["reply_code"] == 5


async def test_socks5_rules_refusing_a_target(dante: DanteServer) -> None:
    # The test Dante only passes 127.0.0.0/8; this address is never contacted (rules first).
    failure = await _failure(dante.url, None, ("192.0.2.1", 3478))
    assert failure.failure == "socks_connection_not_allowed"


async def test_http_connect_reaches_a_tcp_echo(
    tinyproxy: TinyproxyServer, allowed_echo: tuple[str, int]
) -> None:
    opener = proxy_stream_opener(parse_proxy_url(tinyproxy.url), None)
    await _round_trip(await opener(allowed_echo, TIMEOUT_S))


async def test_http_connect_with_basic_auth(
    tinyproxy_with_auth: TinyproxyServer, allowed_echo: tuple[str, int]
) -> None:
    opener = proxy_stream_opener(
        parse_proxy_url(tinyproxy_with_auth.url), tinyproxy_with_auth.password
    )
    await _round_trip(await opener(allowed_echo, TIMEOUT_S))


@pytest.mark.parametrize(
    ("password", "status"),
    [(None, 407), ("wrong", 401)],  # tinyproxy answers wrong credentials with 401
)
async def test_http_proxy_wanting_credentials_is_its_status(
    tinyproxy_with_auth: TinyproxyServer,
    allowed_echo: tuple[str, int],
    password: str | None,
    status: int,
) -> None:
    failure = await _failure(tinyproxy_with_auth.url, password, allowed_echo)
    assert failure.failure == "http_unexpected_status_code"
    assert failure.evidence["status"] == status
    explanation = explain_proxy_failure(failure.failure, failure.evidence)
    assert explanation is not None and "user name and password" in explanation


async def test_http_proxy_forbidding_a_port_is_its_status(
    tinyproxy: TinyproxyServer, echo_address: tuple[str, int]
) -> None:
    failure = await _failure(tinyproxy.url, None, echo_address)  # not a ConnectPort
    assert failure.failure == "http_unexpected_status_code"
    assert failure.evidence["status"] == 403


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_proxy_not_listening_is_connection_refused(
    scheme: str, echo_address: tuple[str, int]
) -> None:
    failure = await _failure(f"{scheme}://127.0.0.1:{free_port()}", None, echo_address)
    assert failure.failure == "connection_refused"
    assert failure.evidence["proxy_unreachable"] is True


async def test_silent_proxy_is_a_timeout(
    tinyproxy: TinyproxyServer, echo_address: tuple[str, int]
) -> None:
    """tinyproxy waits for a full request line, so a SOCKS5 greeting gets no answer."""
    opener = proxy_stream_opener(
        parse_proxy_url(f"socks5://{tinyproxy.host}:{tinyproxy.port}"), None
    )
    with pytest.raises(StageFailure) as failed:
        await asyncio.wait_for(opener(echo_address, 1.0), TIMEOUT_S)
    assert failed.value.failure == "generic_timeout_error"


async def test_wrong_protocol_is_named(dante: DanteServer, echo_address: tuple[str, int]) -> None:
    failure = await _failure(f"http://{dante.host}:{dante.port}", None, echo_address)
    assert failure.failure == "eof_error"  # Dante hangs up on an HTTP request


async def test_proxy_dying_ends_the_stream(tmp_path: Path, echo_address: tuple[str, int]) -> None:
    with run_dante(tmp_path) as proxy:
        opener = proxy_stream_opener(parse_proxy_url(proxy.url), None)
        sock = await opener(echo_address, TIMEOUT_S)
        reader, writer = await asyncio.open_connection(sock=sock)
        kill_process_group(proxy.process)
        assert await asyncio.wait_for(reader.read(100), TIMEOUT_S) == b""
        writer.close()


def test_unrecognised_errors_keep_their_text_without_addresses() -> None:
    url = parse_proxy_url("socks5://127.0.0.1:1080")
    failure = proxy_failure(ProxyError("odd reply from 10.1.2.3"), url)
    assert failure.failure == "unknown_failure: odd reply from [scrubbed]"
