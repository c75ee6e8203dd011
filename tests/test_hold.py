"""The hold phase with real calls: the verdict first, then the best call kept going, its report
section, Ctrl-C keeping the partial result, and a TURN allocation refreshed past its lifetime
(coturn granting short lifetimes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from callpath.core.call import library_adapter
from callpath.core.call.engine import Engine, EngineOptions
from callpath.core.call.hold import choose_held, run_hold
from callpath.core.call.targets import HttpEchoTarget
from callpath.core.model.config import HoldConfig
from callpath.core.model.events import (
    Event,
    HoldFinished,
    HoldPathEnded,
    HoldSampleTaken,
    HoldStarted,
    RunFinished,
)
from callpath.core.model.results import HoldEnd, MediaKind, RunResult, Verdict
from callpath.core.paths.base import PathPlan
from callpath.core.report.decode import report_from_dict
from callpath.core.report.document import report_to_dict, validate_report
from callpath.core.run.source import DemoSource, run_source
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from tests.servers import CoturnServer

pytestmark = [pytest.mark.slow]

LOOPBACK = ("127.0.0.1",)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    def __call__(self, event: Event) -> None:
        self.events.append((time.monotonic(), event))

    def of(self, kind: type) -> list[Event]:
        return [event for _, event in self.events if isinstance(event, kind)]


async def test_the_demo_call_is_held_after_the_verdict_and_reported() -> None:
    events = Recorder()
    run = await run_source(DemoSource(), events, HoldConfig(duration_s=4.0))

    names = [type(event).__name__ for _, event in events.events]
    assert names.index("RunFinished") < names.index("HoldStarted")
    assert names[-1] == "HoldFinished"
    assert events.of(HoldStarted)[0] == HoldStarted(("direct",), 4.0)

    (hold,) = run.holds
    assert hold.path_id == "direct"
    assert hold.held_for == (MediaKind.AUDIO, MediaKind.VIDEO)
    assert hold.ended == HoldEnd.HELD, hold
    assert hold.achieved_s == 4.0
    assert hold.flow_age_s >= 2.5  # the fast window ran on the same call before the hold
    # Media kept flowing both ways: each second added bytes in both directions.
    assert len(hold.ticks) == 4
    previous = None
    for tick in hold.ticks:
        if previous is not None:
            assert tick.sent_bytes > previous.sent_bytes + 10_000
            assert tick.received_bytes > previous.received_bytes + 10_000
        previous = tick
    samples = events.of(HoldSampleTaken)
    assert len(samples) == 4 * 4  # per second: voice and video, sent and received
    assert [event.result for event in events.of(HoldPathEnded)] == [hold]  # type: ignore[attr-defined]
    assert events.of(HoldFinished)[0].result == run  # type: ignore[attr-defined]

    report = report_to_dict(run, redact=True)
    validate_report(report)
    section = report["paths"][0]["hold"]
    assert section["version"] == 1
    assert section["ended"] == "held"
    assert len(section["series"]["bytes"]) == 4
    assert len(section["series"]["video"]) == 8
    decoded = report_from_dict(report)
    assert report_to_dict(decoded, redact=True) == report
    assert decoded.holds[0].ended == HoldEnd.HELD


async def test_stopping_the_hold_keeps_the_partial_result() -> None:
    events = Recorder()
    task = asyncio.create_task(run_source(DemoSource(), events, HoldConfig(duration_s=60.0)))
    while not events.of(HoldSampleTaken) or len(events.of(HoldSampleTaken)) < 8:
        await asyncio.sleep(0.1)
        assert not task.done()
    task.cancel()  # what Ctrl-C and the app's Stop do
    run = await asyncio.wait_for(task, 10)
    assert not run.cancelled  # the verdict was complete before the hold
    (hold,) = run.holds
    assert hold.ended == HoldEnd.STOPPED_BY_USER
    assert 1.5 <= hold.achieved_s < 10
    assert hold.ticks
    assert isinstance(events.events[-1][1], HoldFinished)
    validate_report(report_to_dict(run))


def test_the_best_path_per_kind_is_held_or_every_working_path_on_request() -> None:
    from datetime import UTC, datetime

    from callpath.core.model.results import PathResult

    paths = tuple(PathResult(p, True, None, (), None) for p in ("direct", "turn-udp", "turn-tls"))
    now = datetime.now(UTC)
    run = RunResult(now, now, "", "echo", paths, Verdict(("turn-udp", "direct"), ("turn-tls",), ""))
    kept = {"direct", "turn-udp", "turn-tls"}
    assert choose_held(run, kept, False) == {
        "turn-udp": (MediaKind.AUDIO,),
        "turn-tls": (MediaKind.VIDEO,),
    }
    assert choose_held(run, kept - {"turn-udp"}, False) == {
        "direct": (MediaKind.AUDIO,),
        "turn-tls": (MediaKind.VIDEO,),
    }
    assert list(choose_held(run, kept, True)) == ["direct", "turn-udp", "turn-tls"]
    assert choose_held(run, set(), False) == {}


@pytest.mark.servers
async def test_a_held_turn_call_outlives_its_allocation_and_permissions(
    start_coturn: Callable[..., CoturnServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """coturn grants 12 s allocations, channels and permissions: the call only lasts 30 s if
    the allocation is refreshed (aioice, at 5/6 of the lifetime) and the channel rebound (which
    refreshes the permission; CallPath's channel refresh time, shortened here to match)."""
    lifetime = 12
    monkeypatch.setattr(library_adapter, "CHANNEL_REFRESH_S", 8)
    coturn = start_coturn(
        extra_config=(
            f"max-allocate-lifetime={lifetime}",
            f"default-allocate-lifetime={lifetime}",
            f"channel-lifetime={lifetime}",
            f"permission-lifetime={lifetime}",
        )
    )
    server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=LOOPBACK))
    await server.start()
    try:
        plan = PathPlan(
            "turn-udp",
            coturn.turn_udp_uri,
            coturn.host,
            coturn.port,
            coturn.username,
            coturn.password,
        )
        hold = HoldConfig(duration_s=30.0)
        options = replace(EngineOptions(host_addresses=LOOPBACK), hold=hold)
        events = Recorder()
        engine = Engine([plan], HttpEchoTarget(server.url), events, options)
        try:
            run = await engine.run()
            assert run.paths[0].failure is None, run.paths[0].stages
            run = await run_hold(engine, run, hold, events)
        finally:
            await engine.release()
    finally:
        await server.stop()
    (held,) = run.holds
    assert held.evidence["allocation_lifetime_s"] == lifetime
    assert held.evidence["allocation_refreshes"] >= 2
    assert held.evidence["allocation_refresh_failures"] == 0
    assert held.ended == HoldEnd.HELD, held
    assert held.achieved_s == 30.0
    # Media came back through the relay in the hold's last seconds, long past the lifetime.
    last, before = held.ticks[-1], held.ticks[-4]
    assert last.received_bytes - before.received_bytes > 30_000
    assert not any(isinstance(e, RunFinished) for _, e in events.events)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m", 120.0), ("45s", 45.0), ("1m30s", 90.0), ("90", 90.0), ("1.5m", 90.0)],
)
def test_hold_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    from callpath.core.cli.hold_console import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "2h", "-5s", "0s", "2 minutes", "3601"])
def test_a_bad_hold_duration_is_refused(text: str) -> None:
    import argparse

    from callpath.core.cli.hold_console import parse_duration

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_the_cli_refuses_a_bad_hold_and_a_hold_on_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from callpath.core.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["--lang", "en", "lab", "--scenario", "open-network", "--hold", "soon"])
    assert exited.value.code == 2
    assert "not a duration: 'soon'" in capsys.readouterr().err
    assert main(["--lang", "en", "check", "--hold", "2m", "--lab", "open-network"]) == 2
    assert "callpath check places none" in capsys.readouterr().err
    assert main(["--lang", "en", "lab", "--backend", "kernel", "--hold", "45s"]) == 2
    assert "--hold runs in the userspace lab only" in capsys.readouterr().err


async def test_hold_events_as_json_lines() -> None:
    from callpath.core.cli.console import event_to_json

    events = Recorder()
    run = await run_source(DemoSource(), events, HoldConfig(duration_s=2.0))
    records = [event_to_json(event) for _, event in events.events]
    kinds = [record["event"] for record in records]
    assert kinds.index("run_finished") < kinds.index("hold_started") < kinds.index("hold_sample")
    assert kinds[-2:] == ["hold_path_ended", "hold_finished"]
    ended = records[-2]
    assert ended == {
        "event": "hold_path_ended",
        "path": "direct",
        "ended": "held",
        "achieved_s": run.holds[0].achieved_s,
        "ended_at_s": None,
        "mechanism": None,
    }
