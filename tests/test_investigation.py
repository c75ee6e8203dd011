"""Probes beside the calls, the diagnosis after them: ``callpath.core.run.investigation`` with the
real lab,
a real control server and echo server on loopback; the console's and the report's findings."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from callpath.core.call.engine import Engine
from callpath.core.cli.console import ConsoleProgress, event_to_json, print_summary
from callpath.core.i18n import set_language
from callpath.core.lab.network import LabNetwork
from callpath.core.lab.scenario import parse_scenario
from callpath.core.model.events import DiagnosisFinished, Event, RunFinished
from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.model.results import RunResult, Verdict
from callpath.core.profile.document import parse_profile
from callpath.core.report.document import report_to_dict, validate_report
from callpath.core.run.investigation import (
    ControlEndpoints,
    PlannedProbe,
    ProbePlan,
    control_answered,
    control_probes,
    discover_control,
    echo_probe_plan,
    profile_probe_plan,
    run_investigated,
)
from callpath.core.run.plan import plan_run
from callpath.core.servers.control_server import ControlServer, ControlServerConfig
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig

TIMEOUT_S = 60.0


def _scenario(paths: str, rules: str) -> str:
    return (
        f"version: 1\nid: probe-test\ntitle: t\nexplanation: e\npaths: [{paths}]\n"
        f"rules:\n{rules}expect: {{voice: [], video: []}}\n"
    )


def _empty_run(*, cancelled: bool = False) -> RunResult:
    now = datetime.now(UTC)
    return RunResult(now, now, "test", "echo", (), Verdict((), (), "-"), cancelled=cancelled)


async def _stub_engine(sink: list[Event], seconds: float) -> RunResult:
    """Stands in for the engine where only the investigation's timing is under test: it
    behaves like Engine.run on cancellation (catches it and returns a partial result)."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        run = _empty_run(cancelled=True)
    else:
        run = _empty_run()
    return run


@pytest.mark.slow
async def test_lab_run_ends_with_findings_from_real_probes() -> None:
    """UDP dropped: the STUN probe's datagrams get no answer while TCP to the control server
    works, so the diagnosis names udp_blocked with high confidence; TURN over TCP still works."""
    scenario = parse_scenario(_scenario("turn-tcp", "  - drop_udp: {}\n"))
    events: list[Event] = []
    async with asyncio.timeout(TIMEOUT_S), LabNetwork(scenario) as lab:
        engine = Engine(lab.plans(), lab.target(), events.append, lab.options())
        run = await run_investigated(engine.run(), lab.probe_plan(), events.append)
    assert run.paths[0].exercised, run.paths[0].stages
    kinds = {probe.probe for probe in run.probes}
    assert {"stun", "udp_flow", "tcp_bulk", "quic_handshake", "tls_handshake", "dns"} <= kinds
    assert control_answered(run.probes, lab.control_exposed)
    stun = next(p for p in run.probes if p.probe == "stun")
    assert stun.evidence["stun_answered"] is False and stun.evidence["random_answered"] is False
    udp = next(f for f in run.findings if f.mechanism == "udp_blocked")
    assert udp.confidence == Confidence.HIGH
    # The diagnosis, then the run's one RunFinished with the whole result.
    assert isinstance(events[-2], DiagnosisFinished) and events[-2].findings == run.findings
    assert isinstance(events[-1], RunFinished) and events[-1].result == run
    assert sum(isinstance(event, RunFinished) for event in events) == 1
    report = report_to_dict(run)
    validate_report(report)
    assert {f["mechanism"] for f in report["findings"]} >= {"udp_blocked"}
    assert any(p["control"] for p in report["probes"])


@pytest.mark.slow
async def test_cancelled_run_returns_the_partial_result_and_stops_the_probes() -> None:
    scenario = parse_scenario(_scenario("direct, turn-tcp", "  - drop_stun: {}\n"))
    events: list[Event] = []
    async with LabNetwork(scenario) as lab:
        engine = Engine(lab.plans(), lab.target(), events.append, lab.options())
        task = asyncio.ensure_future(
            run_investigated(engine.run(), lab.probe_plan(), events.append)
        )
        await asyncio.sleep(2.0)  # calls connecting, the 5-second flow probe still running
        started = time.monotonic()
        task.cancel()
        run = await asyncio.wait_for(task, TIMEOUT_S)
        stopped_in = time.monotonic() - started
    assert run.cancelled
    assert {p.path_id for p in run.paths} == {"direct", "turn-tcp"}
    assert "udp_flow" not in {p.probe for p in run.probes}  # cancelled, not waited for
    assert stopped_in < 15.0
    assert isinstance(events[-2], DiagnosisFinished)
    assert isinstance(events[-1], RunFinished) and events[-1].result.cancelled
    assert all("interrupted" not in str(f.evidence) for f in run.findings)
    leftovers = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") in ("_bounded", "_run_flow", "probe_stun")
    ]
    assert not leftovers


async def test_cancelled_while_finding_the_control_server() -> None:
    events: list[Event] = []

    async def slow_discovery() -> ProbePlan:
        await asyncio.sleep(30)
        return ProbePlan()

    task = asyncio.ensure_future(
        run_investigated(_stub_engine(events, 30), slow_discovery(), events.append)
    )
    await asyncio.sleep(0.2)
    task.cancel()
    run = await asyncio.wait_for(task, 5)
    assert run.cancelled and run.probes == () and run.findings == ()
    assert [type(event) for event in events] == [DiagnosisFinished, RunFinished]


async def test_unreachable_control_server_proves_nothing() -> None:
    """A control server whose TCP endpoint never answers: its probes are kept in the report
    but the diagnosis ignores them (no udp_blocked from its silence, no inconclusive)."""
    server = ControlServer()
    await server.start("127.0.0.1", tcp_bulk_port=0, quic_port=None)
    assert server.udp_address and server.tcp_bulk_address
    dead_tcp = server.tcp_bulk_address
    await server.close()  # both ports now closed
    endpoints = ControlEndpoints(udp=server.udp_address, tcp_bulk=dead_tcp)
    plan = ProbePlan(tuple(p for p in control_probes(endpoints) if p.kind == ProbeKind.STUN))
    plan = replace(plan, control=endpoints)
    events: list[Event] = []
    run = await asyncio.wait_for(
        run_investigated(_stub_engine(events, 0.1), plan, events.append), TIMEOUT_S
    )
    assert {p.probe for p in run.probes} == {"tcp_connect", "stun"}
    check = next(p for p in run.probes if p.probe == "tcp_connect")
    assert check.failure == "connection_refused" and check.control
    assert not control_answered(run.probes, endpoints)
    assert run.findings == ()


async def test_probes_run_bounded_and_a_crashing_probe_becomes_a_failure() -> None:
    running = 0
    most = 0

    async def probe(origin: float) -> ProbeResult:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return ProbeResult("tcp_connect", "x:1", time.monotonic() - origin, 0.05, None)

    async def crash(origin: float) -> ProbeResult:
        raise RuntimeError("bug")

    planned = [PlannedProbe(ProbeKind.TCP_CONNECT, "x:1", probe) for _ in range(6)]
    planned.append(PlannedProbe(ProbeKind.DNS, "relay.example", crash))
    plan = ProbePlan(tuple(planned), max_concurrent=2)
    run = await run_investigated(_stub_engine([], 0.01), plan, lambda event: None)
    assert most == 2
    assert len(run.probes) == 7
    crashed = next(p for p in run.probes if p.probe == "dns")
    assert crashed.failure == "unknown_failure: RuntimeError"
    # A failed probe that no rule explains is listed, never dropped.
    assert [f.mechanism for f in run.findings] == ["inconclusive"]


# --- the echo server's control server --------------------------------------------------------


@pytest.fixture
async def echo_with_control() -> AsyncIterator[EchoServer]:
    config = EchoServerConfig(
        host="127.0.0.1",
        port=0,
        token="secret-token",
        ice_addresses=("127.0.0.1",),
        control_udp_port=0,
        control_tcp_port=0,
        control_quic_port=0,
    )
    server = EchoServer(config)
    await server.start()
    yield server
    await server.stop()
    assert server.control is None


async def test_echo_server_advertises_its_control_server(echo_with_control: EchoServer) -> None:
    control = echo_with_control.control
    assert control is not None and control.udp_address and control.tcp_bulk_address
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{echo_with_control.url}/control") as reply,
    ):
        assert reply.status == 401  # like /offer, it needs the token
    found = await discover_control(echo_with_control.url, token="secret-token")
    assert found == ControlEndpoints(
        udp=("127.0.0.1", control.udp_address[1]),
        tcp_bulk=("127.0.0.1", control.tcp_bulk_address[1]),
        quic=("127.0.0.1", control.quic_address[1]) if control.quic_address else None,
    )
    plan = await echo_probe_plan(
        echo_with_control.url, [], token="secret-token", quic_server_name="relay.example"
    )
    assert plan.control_configured
    assert [p.kind for p in plan.probes] == [
        ProbeKind.STUN,
        ProbeKind.UDP_FLOW,
        ProbeKind.TCP_BULK,
        ProbeKind.QUIC_HANDSHAKE,
    ]


@pytest.mark.slow
async def test_the_apps_profile_run_is_investigated_like_callpath_run(
    echo_with_control: EchoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app's source, not a widget: no Qt application needed.
    from callpath.core.run.source import ProfileSource, run_source

    monkeypatch.setenv("CALLPATH_TEST_ECHO_TOKEN", "secret-token")
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "version: 1\nname: app run\npaths: [direct]\n"
        f"target: {{kind: echo, url: '{echo_with_control.url}', "
        "token: '${env:CALLPATH_TEST_ECHO_TOKEN}'}\n"
    )
    events: list[Event] = []
    source = ProfileSource.from_file(profile)
    run = await asyncio.wait_for(run_source(source, events.append), TIMEOUT_S)
    assert [p.path_id for p in run.paths] == ["direct"]
    assert run.paths[0].failure is None
    # The control server the echo target advertises was found and probed; the run was diagnosed.
    assert {p.probe for p in run.probes} >= {"tcp_connect", "stun", "udp_flow", "tcp_bulk"}
    assert any(isinstance(event, DiagnosisFinished) for event in events)
    # An open loopback network: no blocking (a busy machine may still degrade the call).
    assert not [f for f in run.findings if f.censorship], run.findings


async def test_echo_server_without_control_gives_a_path_only_plan() -> None:
    server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=("127.0.0.1",)))
    await server.start()
    try:
        assert server.control is None
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"{server.url}/control") as reply,
        ):
            assert reply.status == 404
        plan = await echo_probe_plan(server.url, [("127.0.0.1", 1)])
    finally:
        await server.stop()
    assert not plan.control_configured
    assert [p.kind for p in plan.probes] == [ProbeKind.TLS_HANDSHAKE]
    assert await discover_control("http://127.0.0.1:1") is None  # nothing listens there


async def test_a_control_server_named_in_the_profile_is_used_without_asking_the_target() -> None:
    server = ControlServer(ControlServerConfig())
    await server.start("127.0.0.1", udp_port=0, tcp_bulk_port=0, quic_port=None)
    assert server.udp_address and server.tcp_bulk_address
    try:
        profile = parse_profile(
            "version: 1\nname: janus beside a control server\n"
            # Nothing listens at the Janus URL: the plan must not need it.
            "target: {kind: janus, url: 'http://127.0.0.1:1/janus'}\n"
            f"control: {{host: 127.0.0.1, udp_port: {server.udp_address[1]}, "
            f"tcp_bulk_port: {server.tcp_bulk_address[1]}}}\n"
        )
        plan = await profile_probe_plan(plan_run(profile))
        assert plan.control == ControlEndpoints(
            udp=("127.0.0.1", server.udp_address[1]),
            tcp_bulk=("127.0.0.1", server.tcp_bulk_address[1]),
        )
        assert [p.kind for p in plan.probes] == [
            ProbeKind.STUN,
            ProbeKind.UDP_FLOW,
            ProbeKind.TCP_BULK,
        ]
        events: list[Event] = []
        run = await asyncio.wait_for(
            run_investigated(_stub_engine(events, 0.1), plan, events.append), TIMEOUT_S
        )
    finally:
        await server.close()
    assert control_answered(run.probes, plan.control)
    assert {p.probe for p in run.probes} == {"tcp_connect", "stun", "udp_flow", "tcp_bulk"}
    assert all(p.failure is None for p in run.probes), run.probes


# --- front ends ------------------------------------------------------------------------------


def _finding(mechanism: str = "tls_sni_reset") -> Finding:
    return Finding(
        mechanism=mechanism,
        paths=("turn-tls",),
        evidence={"server_name": "relay.example.org", "target": "203.0.113.7:443"},
        confidence=Confidence.HIGH,
        summary="The network resets encrypted connections to relay.example.org by its name.",
        recommendation="Use a relay under another name.",
        technical="Reset after the ClientHello to 203.0.113.7.",
    )


def test_summary_prints_the_findings_after_the_table() -> None:
    set_language("en")
    run = replace(_empty_run(), findings=(_finding(),))
    stream = io.StringIO()
    print_summary(run, stream)
    text = stream.getvalue()
    assert text.index("Results") < text.index("Diagnosis") < text.index("tls_sni_reset")
    assert "high confidence" in text
    assert "Use a relay under another name." in text


def test_summary_translates_the_findings_frame() -> None:
    set_language("ru")
    try:
        stream = io.StringIO()
        print_summary(replace(_empty_run(), findings=(_finding(),)), stream)
    finally:
        set_language("en")
    assert "Диагноз" in stream.getvalue()
    assert "высокая уверенность" in stream.getvalue()


def test_diagnosis_event_as_json_line_and_plain_text() -> None:
    record = event_to_json(DiagnosisFinished((_finding(),)))
    assert record["event"] == "diagnosis_finished"
    finding = record["findings"][0]
    assert finding["mechanism"] == "tls_sni_reset" and finding["censorship"] is True
    assert "relay.example.org" not in json.dumps(record)  # redacted like reports
    stream = io.StringIO()
    ConsoleProgress("plain", stream)(DiagnosisFinished((_finding(),)))
    assert "1" in stream.getvalue()
    stream = io.StringIO()
    ConsoleProgress("jsonl", stream)(DiagnosisFinished(()))
    assert json.loads(stream.getvalue()) == {"event": "diagnosis_finished", "findings": []}


def test_report_carries_redacted_probes_and_findings() -> None:
    probe = ProbeResult(
        "tls_handshake",
        "203.0.113.7:443",
        0.5,
        0.1,
        "connection_reset",
        {"server_name": "relay.example.org", "password": "hunter2"},
    )
    run = replace(_empty_run(), probes=(probe,), findings=(_finding(),))
    report = report_to_dict(run)
    validate_report(report)
    text = json.dumps(report)
    assert "203.0.113.7" not in text and "relay.example.org" not in text and "hunter2" not in text
    assert report["probes"][0]["target"] == "host-1:443"
    assert report["findings"][0]["confidence"] == "high"
    plain = report_to_dict(run, redact=False)
    assert plain["findings"][0]["evidence"]["server_name"] == "relay.example.org"
    # Reports written before probes existed are still valid.
    del plain["probes"], plain["findings"]
    validate_report(plain)


def test_summary_says_when_a_stalled_path_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI table reads the report's value: "stalled after N s", not the bare failure."""
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    from callpath.core.model.results import PathResult, Stage, StageResult

    quality = StageResult(Stage.QUALITY, 1.0, 10.0, "media_stalled", {"stalled_after_s": 0.4})
    path = PathResult("turn-tls", True, "media_stalled", (quality,), "turns:relay:443")
    set_language("en")
    stream = io.StringIO()
    print_summary(replace(_empty_run(), paths=(path,)), stream)
    assert "stalled after 0.4 s" in stream.getvalue()
