"""Fixtures shared by every test: the loopback-only ICE guard and the real servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import pytest

from callpath.core.call import library_adapter as aiortc_adapter
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from tests.keyrings import memory_keyring, no_keyring  # noqa: F401 (fixtures for every test)
from tests.proxy_servers import DanteServer, ShadowsocksPair, run_dante, run_shadowsocks
from tests.servers import CoturnServer, JanusServer, run_coturn, run_janus

LOOPBACK_HOST_ADDRESSES = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def loopback_host_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aioice gather host candidates on 127.0.0.1 only, in every test.

    aioice normally offers every non-loopback interface address (and skips 127.0.0.1), so without
    this a test call could send traffic to or from this machine's real addresses.
    """

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return list(LOOPBACK_HOST_ADDRESSES) if use_ipv4 else []

    # Replace the default behind CallPath's adapter, so per-call overrides (the lab puts its echo
    # peer on 127.0.0.4) still work, and aioice's own function, for code that bypasses it.
    monkeypatch.setattr(aiortc_adapter, "_original_get_host_addresses", loopback_only)
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aiortc_adapter._get_host_addresses)


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    """One coturn for the whole session (STUN, TURN over UDP/TCP/TLS on 127.0.0.1)."""
    with run_coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


@pytest.fixture
def start_coturn(tmp_path: Path) -> Iterator[Callable[..., CoturnServer]]:
    """Start a private coturn for one test (e.g. to stop it or change its config); keyword
    arguments go to ``tests.servers.run_coturn``."""
    with contextlib.ExitStack() as stack:
        counter = 0

        def start(**options: Any) -> CoturnServer:
            nonlocal counter
            counter += 1
            return stack.enter_context(run_coturn(tmp_path / f"coturn{counter}", **options))

        yield start


@pytest.fixture(scope="session")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JanusServer]:
    """One Janus (echotest over plain HTTP, ICE on lo only) for the whole session."""
    with run_janus(tmp_path_factory.mktemp("janus")) as server:
        yield server


# --- real proxies (Dante, shadowsocks-libev), shared by the proxy test modules -------------


@pytest.fixture(scope="module")
def dante(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DanteServer]:
    with run_dante(tmp_path_factory.mktemp("dante")) as server:
        yield server


@pytest.fixture(scope="module")
def dante_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DanteServer]:
    with run_dante(tmp_path_factory.mktemp("dante-auth"), username_auth=True) as server:
        yield server


@pytest.fixture(scope="module")
def dante_without_udp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DanteServer]:
    with run_dante(tmp_path_factory.mktemp("dante-no-udp"), udp=False) as server:
        yield server


@pytest.fixture(scope="module")
def shadowsocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShadowsocksPair]:
    with run_shadowsocks(tmp_path_factory.mktemp("shadowsocks")) as pair:
        yield pair


EchoServerStarter = Callable[..., Awaitable[EchoServer]]


@pytest.fixture
async def echo_servers() -> AsyncIterator[EchoServerStarter]:
    """Starts echo servers from a config (attributes changed by keyword); stops them after."""
    servers: list[EchoServer] = []

    async def start(config: EchoServerConfig, **changes: object) -> EchoServer:
        for name, value in changes.items():
            setattr(config, name, value)
        server = EchoServer(config)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
