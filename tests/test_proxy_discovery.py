"""Discovery of local proxies: real Dante, ss-local and tinyproxy on free loopback ports."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callpath.core.discovery.proxies import (
    SOURCE_ENVIRONMENT,
    SOURCE_PORT_SCAN,
    FoundProxy,
    discover_local_proxies,
    proxies_from_environment,
)
from callpath.core.model.proxy_url import ProxyUrl
from tests.proxy_servers import (
    DanteServer,
    ShadowsocksPair,
    TinyproxyServer,
    run_dante,
    run_shadowsocks,
    run_tinyproxy,
    tcp_echo,
)
from tests.servers import free_port

TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Proxies:
    dante: DanteServer
    dante_without_udp: DanteServer
    dante_with_auth: DanteServer
    shadowsocks: ShadowsocksPair
    tinyproxy: TinyproxyServer
    tinyproxy_with_auth: TinyproxyServer


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    root = tmp_path_factory.mktemp("discovery")
    closed = free_port()
    with ExitStack() as stack:
        yield Proxies(
            dante=stack.enter_context(run_dante(root / "dante")),
            dante_without_udp=stack.enter_context(run_dante(root / "dante-no-udp", udp=False)),
            dante_with_auth=stack.enter_context(run_dante(root / "dante-auth", username_auth=True)),
            shadowsocks=stack.enter_context(run_shadowsocks(root / "shadowsocks")),
            tinyproxy=stack.enter_context(run_tinyproxy(root / "tiny", connect_ports=[closed])),
            tinyproxy_with_auth=stack.enter_context(
                run_tinyproxy(root / "tiny-auth", connect_ports=[closed], basic_auth=("u", "p"))
            ),
        )


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail the test if discovery opens a connection to anything but loopback."""
    contacted: list[str] = []
    original = asyncio.open_connection

    async def guarded(host: str, port: int, **kwargs: Any) -> Any:
        contacted.append(host)
        assert ipaddress.ip_address(host).is_loopback, f"discovery contacted {host}"
        return await original(host, port, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", guarded)
    return contacted


def _by_port(found: list[FoundProxy]) -> dict[tuple[str, int], FoundProxy]:
    return {(item.kind, item.url.port): item for item in found}


@pytest.mark.servers
async def test_port_scan_finds_each_proxy_with_its_capabilities(
    proxies: Proxies, loopback_only: list[str]
) -> None:
    closed_port = free_port()
    async with tcp_echo() as (_host, echo_port):
        ports = [
            proxies.dante.port,
            proxies.dante_without_udp.port,
            proxies.dante_with_auth.port,
            proxies.shadowsocks.port,
            proxies.tinyproxy.port,
            proxies.tinyproxy_with_auth.port,
            closed_port,
            echo_port,  # answers anything with a copy: neither a SOCKS5 nor an HTTP proxy
        ]
        found = await asyncio.wait_for(
            discover_local_proxies(ports, environ={}, timeout=TIMEOUT_S), TIMEOUT_S * 3
        )
    by_port = _by_port(found)
    expected = {
        ("socks5", proxies.dante.port): (True, False),
        ("socks5", proxies.dante_without_udp.port): (False, False),
        ("socks5", proxies.dante_with_auth.port): (None, True),
        ("socks5", proxies.shadowsocks.port): (True, False),
        ("http", proxies.tinyproxy.port): (None, False),
        ("http", proxies.tinyproxy_with_auth.port): (None, True),
    }
    assert set(by_port) == set(expected)
    for key, (supports_udp, auth_required) in expected.items():
        item = by_port[key]
        assert item.supports_udp is supports_udp, key
        assert item.auth_required is auth_required, key
        assert item.source == SOURCE_PORT_SCAN
        assert item.url == ProxyUrl(scheme=key[0], host="127.0.0.1", port=key[1])
        assert item.responded is True
    assert loopback_only and set(loopback_only) == {"127.0.0.1"}


@pytest.mark.servers
async def test_environment_proxies_are_listed_and_only_loopback_ones_probed(
    proxies: Proxies, loopback_only: list[str]
) -> None:
    environ = {
        "ALL_PROXY": f"socks5h://127.0.0.1:{proxies.dante.port}",
        "https_proxy": "http://someone:their-pass@192.0.2.10:3128",  # TEST-NET: never contacted
        "HTTPS_PROXY": f"127.0.0.1:{proxies.tinyproxy_with_auth.port}",  # no scheme: HTTP
    }
    found = await asyncio.wait_for(
        discover_local_proxies([proxies.dante.port], environ=environ, timeout=TIMEOUT_S),
        TIMEOUT_S * 3,
    )
    assert [item.source for item in found] == [SOURCE_ENVIRONMENT] * 3
    dante, tiny, remote = found
    assert dante.url == ProxyUrl("socks5h", "127.0.0.1", proxies.dante.port)
    assert (dante.kind, dante.supports_udp, dante.auth_required) == ("socks5", True, False)
    assert tiny.url == ProxyUrl("http", "127.0.0.1", proxies.tinyproxy_with_auth.port)
    assert (tiny.auth_required, tiny.responded) == (True, True)
    # Listed with what the variable says, never contacted; the password is not kept.
    assert remote.url == ProxyUrl("http", "192.0.2.10", 3128, "someone")
    assert (remote.responded, remote.supports_udp, remote.auth_required) == (None, None, True)
    assert "their-pass" not in repr(found)
    assert "192.0.2.10" not in loopback_only


@pytest.mark.servers
async def test_configured_loopback_proxy_that_is_down_is_listed_as_silent(
    loopback_only: list[str],
) -> None:
    port = free_port()
    found = await discover_local_proxies([], environ={"ALL_PROXY": f"socks5://127.0.0.1:{port}"})
    assert len(found) == 1
    assert found[0].responded is False
    assert found[0].supports_udp is None


async def test_nothing_listening_finds_nothing(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    assert await discover_local_proxies(ports, environ={}, timeout=TIMEOUT_S) == []


def test_environment_parsing_skips_what_cannot_be_used() -> None:
    environ = {
        "ALL_PROXY": "socks4://127.0.0.1:1080",
        "all_proxy": "socks5://127.0.0.1:1080",
        "HTTPS_PROXY": "https://127.0.0.1:8443",
        "https_proxy": "socks5://127.0.0.1:1080",  # the same as all_proxy: listed once
    }
    assert proxies_from_environment(environ) == [ProxyUrl("socks5", "127.0.0.1", 1080)]
    assert proxies_from_environment({"ALL_PROXY": "socks5://[::1]:9050/"}) == [
        ProxyUrl("socks5", "::1", 9050)
    ]
    assert proxies_from_environment({"ALL_PROXY": "socks5://127.0.0.1:99999"}) == []
