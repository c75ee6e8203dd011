"""The engine against real servers on loopback: coturn, CallPath's echo server, Janus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from callpath.core.call.engine import (
    Engine,
    EngineOptions,
    downstream_loss_pct,
    report_loss_pct,
)
from callpath.core.call.library_adapter import ReportCounters
from callpath.core.call.targets import HttpEchoTarget, JanusEchoTarget
from callpath.core.model.events import (
    Event,
    PathFinished,
    RunFinished,
    RunStarted,
    SampleTaken,
    StageFinished,
)
from callpath.core.model.results import Direction, Grade, MediaKind, RunResult, Stage
from callpath.core.paths.base import PathPlan
from callpath.core.report.document import report_to_dict, validate_report
from callpath.core.run.plan import _RelayLoopbackTarget
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from tests.servers import CoturnServer, JanusServer

pytestmark = [pytest.mark.servers, pytest.mark.slow]

LOOPBACK = ("127.0.0.1",)


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=LOOPBACK))
    await server.start()
    yield server
    await server.stop()


def turn_plans(coturn: CoturnServer, password: str | None = None) -> list[PathPlan]:
    secret = password or coturn.password
    return [
        PathPlan(
            "turn-udp", coturn.turn_udp_uri, coturn.host, coturn.port, coturn.username, secret
        ),
        PathPlan(
            "turn-tcp", coturn.turn_tcp_uri, coturn.host, coturn.port, coturn.username, secret
        ),
        PathPlan(
            "turn-tls",
            coturn.turn_tls_uri,
            coturn.tls_host,
            coturn.tls_port,
            coturn.username,
            secret,
        ),
    ]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def options(coturn: CoturnServer | None = None, **changes: object) -> EngineOptions:
    base = EngineOptions(
        host_addresses=LOOPBACK, ssl_context=coturn.ssl_context() if coturn else None
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


async def test_every_turn_path_and_direct_carry_voice_and_video_both_ways(
    coturn: CoturnServer, echo_server: EchoServer
) -> None:
    events = Recorder()
    plans = [*turn_plans(coturn), PathPlan("direct")]
    engine = Engine(plans, HttpEchoTarget(echo_server.url), events, options(coturn))
    run = await engine.run()

    by_id = {path.path_id: path for path in run.paths}
    expected_transport = {"turn-udp": "udp", "turn-tcp": "tcp", "turn-tls": "tls"}
    for path_id, transport in expected_transport.items():
        path = by_id[path_id]
        assert path.failure is None, (path_id, path.stages)
        assert path.exercised
        assert path.selected_pair is not None
        assert path.selected_pair.local_type == "relay"
        assert path.selected_pair.relay_transport == transport
    direct = by_id["direct"]
    assert direct.exercised and direct.selected_pair is not None
    assert direct.selected_pair.local_type == "host"
    # The TCP/TLS paths' own relay connections counted their bytes into the connect stage
    # (the freeze is read from them); a path that carried media for the window was not idle.
    for path_id, port in (("turn-tcp", coturn.port), ("turn-tls", coturn.tls_port)):
        connect = by_id[path_id].stage(Stage.CONNECT)
        assert connect is not None
        assert connect.evidence["relay_port"] == port
        assert connect.evidence["relay_bytes_received"] > 34_000, connect.evidence
        assert connect.evidence["relay_bytes_sent"] > 34_000, connect.evidence
        assert connect.evidence["relay_open"] is True
        assert connect.evidence["relay_idle_s"] < 2.0, connect.evidence
    assert by_id["turn-udp"].stage(Stage.CONNECT) is None

    for path in run.paths:
        assert [s.stage for s in path.stages][-3:] == [Stage.DTLS, Stage.MEDIA_UP, Stage.QUALITY]
        for kind in MediaKind:
            for direction in Direction:
                rates = [
                    s.bitrate_kbps
                    for s in (path.voice if kind == MediaKind.AUDIO else path.video).samples
                    if s.direction == direction and s.bitrate_kbps is not None
                ]
                assert rates and max(rates) > 5, (path.path_id, kind, direction, rates)
        assert path.voice.grade == Grade.GOOD, (path.path_id, path.voice)
        assert path.video.grade == Grade.GOOD, (path.path_id, path.video)

    assert set(run.verdict.voice_restored_by) == set(by_id)
    assert isinstance(events.events[0], RunStarted)
    # The run's RunFinished comes after the diagnosis (run_source), not from the engine.
    assert isinstance(events.events[-1], PathFinished)
    assert not any(isinstance(e, RunFinished) for e in events.events)
    assert sum(isinstance(e, PathFinished) for e in events.events) == len(plans)
    assert any(isinstance(e, SampleTaken) for e in events.events)
    validate_report(report_to_dict(run))


async def test_wrong_turn_password_is_named_turn_auth_failed(
    coturn: CoturnServer, echo_server: EchoServer
) -> None:
    plans = turn_plans(coturn, password="not-the-password")[:2]
    run = await Engine(plans, HttpEchoTarget(echo_server.url), Recorder(), options(coturn)).run()
    for path in run.paths:
        assert path.failure == "turn_auth_failed"
        allocate = path.stage(Stage.TURN_ALLOCATE)
        assert allocate is not None and allocate.evidence["error_code"] == 401
        assert not path.exercised


async def test_untrusted_certificate_is_named_not_silent(
    coturn: CoturnServer, echo_server: EchoServer
) -> None:
    plans = turn_plans(coturn)[2:]
    # No CA bundle: the system store does not know the test CA.
    run = await Engine(plans, HttpEchoTarget(echo_server.url), Recorder(), options(None)).run()
    path = run.paths[0]
    assert path.failure == "ssl_unknown_authority"
    connect = path.stage(Stage.CONNECT)
    assert connect is not None and connect.failure == "ssl_unknown_authority"


class _FixedResolver:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(self, host: str) -> list[str]:
        if host not in self.table:
            import socket

            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


async def test_certificate_for_another_name_is_ssl_invalid_hostname(
    coturn: CoturnServer, echo_server: EchoServer
) -> None:
    plan = PathPlan(
        "turn-tls",
        "turns:wrong-name.invalid:443",
        "wrong-name.invalid",
        coturn.tls_port,
        coturn.username,
        coturn.password,
    )
    resolver = _FixedResolver({"wrong-name.invalid": ["127.0.0.1"]})
    engine = Engine(
        [plan], HttpEchoTarget(echo_server.url), Recorder(), options(coturn, resolver=resolver)
    )
    run = await engine.run()
    assert run.paths[0].failure == "ssl_invalid_hostname"


async def test_unknown_name_and_refused_port_are_named(
    coturn: CoturnServer, echo_server: EchoServer
) -> None:
    from tests.servers import free_port

    plans = [
        PathPlan("turn-tcp", "turn:nowhere.invalid", "nowhere.invalid", 3478, "u", "p"),
        PathPlan("turn-tls", "turns:127.0.0.1", "127.0.0.1", free_port(), "u", "p"),
    ]
    resolver = _FixedResolver({})
    engine = Engine(
        plans, HttpEchoTarget(echo_server.url), Recorder(), options(coturn, resolver=resolver)
    )
    run = await engine.run()
    assert run.paths[0].failure == "dns_nxdomain_error"
    assert run.paths[0].stages[0].stage == Stage.RESOLVE
    assert run.paths[1].failure == "connection_refused"
    assert run.verdict.voice_restored_by == ()


async def test_relay_loopback_needs_no_echo_peer(coturn: CoturnServer) -> None:
    plans = turn_plans(coturn)[:1]
    run = await Engine(plans, _RelayLoopbackTarget(), Recorder(), options(coturn)).run()
    path = run.paths[0]
    assert path.failure is None and path.exercised
    assert path.selected_pair is not None
    assert path.selected_pair.local_type == "relay"
    assert path.selected_pair.remote_type == "relay"
    assert path.voice.grade != Grade.NOT_TESTED


async def test_janus_echotest_as_the_echo_target(
    start_coturn: Callable[..., CoturnServer], janus: JanusServer
) -> None:
    # Janus lives in a network namespace the test created; coturn relays into it.
    relay = start_coturn(relay_ip=janus.client_address)
    plans = turn_plans(relay)[:1]
    run = await Engine(plans, JanusEchoTarget(janus.base_url), Recorder(), options(relay)).run()
    path = run.paths[0]
    assert path.failure is None, path.stages
    assert path.exercised
    received = [
        s.bitrate_kbps
        for s in path.voice.samples
        if s.direction == Direction.RECEIVED and s.bitrate_kbps
    ]
    assert received and max(received) > 5
    assert run.target == "janus"


async def test_stopping_a_run_keeps_a_partial_result(
    coturn: CoturnServer, echo_server: EchoServer
) -> None:
    events = Recorder()
    engine = Engine(turn_plans(coturn), HttpEchoTarget(echo_server.url), events, options(coturn))
    task = asyncio.create_task(engine.run())
    while not any(
        isinstance(e, StageFinished) and e.result.stage == Stage.MEDIA_UP for e in events.events
    ):
        await asyncio.sleep(0.05)
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    task.cancel()
    run: RunResult = await asyncio.wait_for(task, timeout=15)
    assert run.cancelled
    assert len(run.paths) == 3
    assert any(p.failure == "interrupted" for p in run.paths)
    assert any(p.stages for p in run.paths)
    validate_report(report_to_dict(run))
    await asyncio.sleep(0.5)
    leftover = {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and not t.done() and t not in before
    }
    path_tasks = [t for t in leftover if t.get_name().startswith("path ")]
    assert not path_tasks
    # The echo server ends the calls when the caller hangs up.
    for _ in range(50):
        if not echo_server.calls:
            break
        await asyncio.sleep(0.1)
    assert not echo_server.calls


def test_downstream_loss_is_the_loops_loss_beyond_the_upstreams() -> None:
    # The echo forwards sequence numbers: what went missing upstream is missing downstream too.
    assert downstream_loss_pct(19.0, 10.0) == pytest.approx(10.0)
    assert downstream_loss_pct(15.0, 15.0) == pytest.approx(0.0)
    assert downstream_loss_pct(12.0, None) == 12.0  # no receiver report yet
    assert downstream_loss_pct(12.0, 0.0) == 12.0
    assert downstream_loss_pct(5.0, 8.0) == 0.0  # noise between the two intervals
    assert downstream_loss_pct(100.0, 100.0) == 0.0


def test_upstream_loss_is_counted_between_reports_not_read_from_one() -> None:
    first = ReportCounters(packets_lost=7, highest_sequence=1000)
    # 12 of the 60 packets expected since the first report were lost: 20 %, where the second
    # report's 8-bit fraction for its own interval (51/256, truncated) would say 19.9 %.
    second = ReportCounters(packets_lost=19, highest_sequence=1060)
    assert report_loss_pct(first, second, 19.92) == pytest.approx(20.0)
    # No report since the last second: nothing new to say (the old figure is not repeated).
    assert report_loss_pct(second, second, 19.92) is None
    assert report_loss_pct(first, None, 0.0) is None
    # The first report of a call: only its own fraction is known.
    assert report_loss_pct(None, first, 3.5) == 3.5
    # Sequence numbers wrap at 16 bits.
    wrapped = ReportCounters(packets_lost=9, highest_sequence=10)
    assert report_loss_pct(ReportCounters(4, 65530), wrapped, 0.0) == pytest.approx(31.25)
    # An older report arriving after a newer one is not a negative interval.
    assert report_loss_pct(second, first, 0.0) is None
    # Late packets can lower the cumulative count: never below zero.
    assert report_loss_pct(second, ReportCounters(17, 1110), 0.0) == 0.0


def test_counting_between_reports_has_no_bias_where_fractions_truncate() -> None:
    # At 10 % loss, intervals of 47..53 packets: the 8-bit fraction floors every interval's
    # figure, the counters do not. Pure arithmetic over one long synthetic run.
    lost_total, sent_total, fractions, counted = 0, 0, [], []
    previous = ReportCounters(0, 0)
    for index in range(200):
        expected = 47 + index % 7
        lost = expected // 10 + (1 if index % 3 == 0 else 0)
        fractions.append(((lost << 8) // expected) / 256 * 100)
        lost_total, sent_total = lost_total + lost, sent_total + expected
        report = ReportCounters(lost_total, sent_total % 0x10000)
        value = report_loss_pct(previous, report, fractions[-1])
        assert value is not None
        counted.append(value * expected)
        previous = report
    truth = lost_total / sent_total * 100
    assert sum(counted) / sent_total == pytest.approx(truth)
    assert sum(fractions) / len(fractions) < truth - 0.1  # the truncated figure reads low
