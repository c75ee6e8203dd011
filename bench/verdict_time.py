"""Time to the first finding and to the verdict, for lab scenarios; parallel against sequential.

For each scenario one lab is started (its start-up time is reported apart and not counted),
then, in the same process and lab:

- *parallel*: one Engine with every lab path, as ``callpath lab`` runs it;
- *sequential* (where asked): one Engine per path, one after another — what the engine would
  cost without running paths at the same time. The ratio is taken within this one run.

Definitions (times from the engine's ``RunStarted`` event):

- *first failure*: the first ``StageFinished`` carrying a failure (a path shown blocked);
- *first path*: the first ``PathFinished`` (a path fully measured, or given up);
- *first finding*: the earlier of the two — the first moment the user learns something
  definite about one path;
- *verdict*: the engine's result (the final verdict), before the diagnosis;
- *report*: the diagnosed run (``DiagnosisFinished``): the same paths again, now with the
  lab's probes beside them and the diagnosis after, as ``callpath lab`` runs them — the moment
  the report is complete. The probes (a UDP flow of several phases above all) outlast the
  calls, so this is later than the verdict; the verdict is streamed before it.

Run: ``python -m bench.verdict_time --mode quick|full``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    TARGET_FIRST_FINDING_S,
    verdict_target_s,
    write_result,
)
from callpath.core.call.engine import Engine
from callpath.core.lab.comparison import compare
from callpath.core.lab.network import LabNetwork
from callpath.core.lab.scenario import Scenario, find_scenario
from callpath.core.model.events import (
    DiagnosisFinished,
    Event,
    PathFinished,
    RunStarted,
    StageFinished,
)
from callpath.core.model.results import RunResult, Stage
from callpath.core.paths.base import PathPlan
from callpath.core.run.investigation import run_investigated

BENCH_SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@dataclass
class EventClock:
    """Times of the events that matter, in seconds after ``RunStarted``."""

    started: float | None = None
    first_failure: float | None = None
    first_failure_what: str = ""
    first_media: float | None = None
    first_media_what: str = ""
    first_path: float | None = None
    first_path_what: str = ""
    verdict: float | None = None
    diagnosed: float | None = None
    paths: dict[str, float] = field(default_factory=dict)

    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        if isinstance(event, RunStarted):
            self.started = now
            return
        assert self.started is not None
        at = now - self.started
        if (
            isinstance(event, StageFinished)
            and event.result.stage == Stage.MEDIA_UP
            and event.result.ok
            and self.first_media is None
        ):
            # Media flowing both ways on a path is the first thing a user can act on.
            self.first_media = at
            self.first_media_what = event.path_id
        if isinstance(event, StageFinished) and event.result.failure and self.first_failure is None:
            self.first_failure = at
            self.first_failure_what = (
                f"{event.path_id} {event.result.stage.value}: {event.result.failure}"
            )
        elif isinstance(event, DiagnosisFinished):
            self.diagnosed = at
        elif isinstance(event, PathFinished):
            self.paths[event.result.path_id] = round(at, 3)
            if self.first_path is None:
                self.first_path = at
                self.first_path_what = event.result.path_id

    @property
    def first_finding(self) -> float | None:
        times = [
            t for t in (self.first_failure, self.first_media, self.first_path) if t is not None
        ]
        return min(times) if times else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def _timed(lab: LabNetwork, plans: list[PathPlan]) -> tuple[EventClock, RunResult, float]:
    clock = EventClock()
    started = time.monotonic()
    run = await Engine(plans, lab.target(), clock, lab.options()).run()
    # The engine's result is the verdict (RunFinished comes later, after the diagnosis).
    clock.verdict = time.monotonic() - (clock.started or started)
    return clock, run, time.monotonic() - started


async def _timed_report(lab: LabNetwork) -> EventClock:
    """The lab's paths with its probes and the diagnosis, as ``callpath lab`` runs them."""
    clock = EventClock()
    engine = Engine(lab.plans(), lab.target(), clock, lab.options())
    try:
        await run_investigated(engine.run(), lab.probe_plan(), clock)
    finally:
        await engine.release()
    return clock


async def measure_scenario(
    scenario: Scenario, *, sequential: bool, calls: int | None = None
) -> dict[str, Any]:
    """``calls``: run that many calls, cycling through the lab's paths (None: each path once)."""
    lab_started = time.monotonic()
    async with LabNetwork(scenario) as lab:
        lab_start_s = time.monotonic() - lab_started
        plans = lab.plans()
        if calls is not None:
            plans = [plans[i % len(plans)] for i in range(calls)]
        clock, run, wall = await _timed(lab, plans)
        comparison = compare(scenario, run)
        result: dict[str, Any] = {
            "scenario": scenario.id,
            "calls": len(plans),
            "lab_start_s": _r(lab_start_s),
            "first_failure_s": _r(clock.first_failure),
            "first_failure": clock.first_failure_what,
            "first_path_s": _r(clock.first_path),
            "first_path": clock.first_path_what,
            "first_finding_s": _r(clock.first_finding),
            "verdict_s": _r(clock.verdict),
            "engine_wall_s": _r(wall),
            "path_finished_s": clock.paths,
            "verdict_as_expected": comparison.verdict_agrees
            if calls is None
            else None,  # paths only: no probes here
            "voice_restored_by": list(run.verdict.voice_restored_by),
            "failures": {p.path_id: p.failure for p in run.paths},
            "target_verdict_s": verdict_target_s(scenario.id),
            "verdict_within_target": (clock.verdict or 1e9) <= verdict_target_s(scenario.id),
            "first_finding_within_target": (clock.first_finding or 1e9) <= TARGET_FIRST_FINDING_S,
        }
        if calls is None:
            report_clock = await _timed_report(lab)
            result["report_s"] = _r(report_clock.diagnosed)
        if sequential:
            per_path = {}
            total = 0.0
            for plan in lab.plans():
                one_clock, _, one_wall = await _timed(lab, [plan])
                per_path[plan.path_id] = _r(one_clock.verdict)
                total += one_clock.verdict or one_wall
            result["sequential_per_path_s"] = per_path
            result["sequential_total_s"] = _r(total)
            result["parallel_over_sequential"] = _r((clock.verdict or wall) / total)
    return result


def scenarios_for(mode: str) -> list[tuple[str, bool, int | None]]:
    """(scenario, with sequential comparison, number of calls or None for each path once)."""
    everything = str(BENCH_SCENARIOS / "everything-blocked.yaml")
    if mode == "quick":
        return [
            ("open-network", True, None),
            ("udp-blocked", False, None),
            (everything, False, None),
            ("open-network", False, 8),  # issue 20's target: eight paths in 5 s
        ]
    return [
        ("open-network", True, None),
        ("udp-blocked", True, None),
        ("russia-2025", True, None),
        (everything, True, None),
        ("open-network", False, 8),  # the brief's "up to 8 paths"
    ]


async def main_async(mode: str) -> dict[str, Any]:
    rows = []
    for name, sequential, calls in scenarios_for(mode):
        scenario = find_scenario(name)
        row = await measure_scenario(scenario, sequential=sequential, calls=calls)
        print(
            f"{row['scenario']:>20} x{row['calls']}: first finding {row['first_finding_s']} s, "
            f"verdict {row['verdict_s']} s, report {row.get('report_s')} s, "
            f"ratio {row.get('parallel_over_sequential')}",
            flush=True,
        )
        rows.append(row)
    return {"runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    args = parser.parse_args()
    data = asyncio.run(main_async(args.mode))
    command = f"python -m bench.verdict_time --mode {args.mode}"
    print(write_result("verdict_time", args.mode, command, data))


if __name__ == "__main__":
    main()
