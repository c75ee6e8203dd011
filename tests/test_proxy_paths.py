"""Proxy paths through the real engine, from a profile: socks5-udp, socks5-turn and http-turn
against real Dante, shadowsocks-libev, tinyproxy and coturn on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callpath.core.call.engine import Engine, EngineOptions
from callpath.core.cli.console import print_summary
from callpath.core.model.events import Event, StageFinished
from callpath.core.model.results import Grade, RunResult, Stage
from callpath.core.profile.document import parse_profile
from callpath.core.report.document import report_to_dict, validate_report
from callpath.core.run.plan import plan_run
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from tests.proxy_servers import (
    DanteServer,
    ShadowsocksPair,
    TinyproxyServer,
    kill_process_group,
    run_dante,
    run_shadowsocks,
    run_tinyproxy,
)
from tests.servers import CoturnServer

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture(scope="module")
def tinyproxy(
    tmp_path_factory: pytest.TempPathFactory, coturn: CoturnServer
) -> Iterator[TinyproxyServer]:
    with run_tinyproxy(
        tmp_path_factory.mktemp("tinyproxy"), connect_ports=[coturn.port, coturn.tls_port]
    ) as server:
        yield server


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=("127.0.0.1",)))
    await server.start()
    yield server
    await server.stop()


def profile_text(coturn: CoturnServer, echo_url: str, proxies: list[str], paths: list[str]) -> str:
    proxy_lines = "".join(
        f"  - url: {url}\n    stun: {coturn.stun_uri}\n"
        if url.startswith("socks5")
        else f"  - url: {url}\n"
        for url in proxies
    )
    return (
        "version: 1\nname: proxies\n"
        f"target: {{kind: echo, url: '{echo_url}'}}\n"
        "ice_servers:\n"
        f"  - urls: ['{coturn.turn_tcp_uri}', '{coturn.turn_tls_uri}']\n"
        f"    username: {coturn.username}\n"
        "    credential: ${env:CALLPATH_TEST_TURN_PASSWORD}\n"
        f"proxies:\n{proxy_lines}"
        f"paths: [{', '.join(paths)}]\n"
        f"ca_bundle: {coturn.ca_path}\n"
    )


async def run_profile(
    text: str, monkeypatch: pytest.MonkeyPatch, coturn: CoturnServer, events: list[Event]
) -> RunResult:
    monkeypatch.setenv("CALLPATH_TEST_TURN_PASSWORD", coturn.password)
    plan = plan_run(
        parse_profile(text, Path("proxies.yaml")),
        base_options=EngineOptions(host_addresses=("127.0.0.1",)),
    )
    return await Engine(plan.plans, plan.target, events.append, plan.options).run()


async def test_every_proxy_path_carries_voice_and_video(
    coturn: CoturnServer,
    dante: DanteServer,
    tinyproxy: TinyproxyServer,
    echo_server: EchoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = profile_text(
        coturn,
        echo_server.url,
        [dante.url, tinyproxy.url],
        ["socks5-udp", "socks5-turn", "http-turn"],
    )
    run = await run_profile(text, monkeypatch, coturn, [])
    by_id = {path.path_id: path for path in run.paths}
    for path_id, transport in (
        ("socks5-udp", "socks5-udp"),
        ("socks5-turn", "tls"),
        ("http-turn", "tls"),
    ):
        path = by_id[path_id]
        assert path.failure is None, (path_id, path.stages)
        assert path.exercised
        assert path.selected_pair is not None
        assert path.selected_pair.local_type == "relay"
        assert path.selected_pair.relay_transport == transport
        assert path.voice.grade != Grade.NOT_TESTED and path.voice.samples
        assert path.video.grade != Grade.NOT_TESTED and path.video.samples
    # The tunnel learned, through the proxy, the address the far side really sees.
    connect = by_id["socks5-udp"].stage(Stage.CONNECT)
    assert connect is not None and connect.ok
    assert set(run.verdict.voice_restored_by) <= set(by_id)
    validate_report(report_to_dict(run))


async def test_socks5_udp_through_shadowsocks(
    tmp_path: Path, coturn: CoturnServer, echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair: ShadowsocksPair
    with run_shadowsocks(tmp_path / "ss") as pair:
        text = profile_text(coturn, echo_server.url, [pair.url], ["socks5-udp"])
        run = await run_profile(text, monkeypatch, coturn, [])
    path = run.paths[0]
    assert path.failure is None, path.stages
    assert path.exercised
    assert path.selected_pair is not None
    assert path.selected_pair.relay_transport == "socks5-udp"


async def test_proxy_without_udp_is_named_and_turn_through_it_still_works(
    tmp_path: Path, coturn: CoturnServer, echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_dante(tmp_path / "dante", udp=False) as no_udp:
        text = profile_text(coturn, echo_server.url, [no_udp.url], ["socks5-udp", "socks5-turn"])
        run = await run_profile(text, monkeypatch, coturn, [])
    by_id = {path.path_id: path for path in run.paths}
    udp = by_id["socks5-udp"]
    assert udp.failure is not None and udp.failure.startswith("socks_"), udp.failure
    assert udp.stages[-1].stage == Stage.CONNECT
    assert by_id["socks5-turn"].exercised, by_id["socks5-turn"].stages
    summary = io.StringIO()
    print_summary(run, summary)
    words = " ".join(summary.getvalue().split())  # the console wraps long lines
    assert "this proxy does not carry UDP; TURN through it may still work" in words


async def test_a_proxy_that_dies_mid_call_fails_by_name_and_nothing_hangs(
    tmp_path: Path, coturn: CoturnServer, echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[Event] = []
    with run_dante(tmp_path / "dante") as doomed:
        text = profile_text(coturn, echo_server.url, [doomed.url], ["socks5-udp"])
        run_task = asyncio.create_task(run_profile(text, monkeypatch, coturn, events))
        while not any(
            isinstance(e, StageFinished) and e.result.stage == Stage.MEDIA_UP for e in events
        ):
            assert not run_task.done(), run_task.result().paths
            await asyncio.sleep(0.05)
        kill_process_group(doomed.process)
        run = await asyncio.wait_for(run_task, timeout=30)
    path = run.paths[0]
    # The call was up, then the tunnel died: media stops and the path says so by name.
    assert path.failure == "media_stalled", path.stages
    assert path.voice.grade != Grade.GOOD
    assert run.finished_at >= run.started_at
