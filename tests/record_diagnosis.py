"""Record lab runs as diagnosis fixtures: ``python -m tests.record_diagnosis [SCENARIO ...]``.

Each built-in lab scenario (userspace backend; all of them when none is named) is run as
``callpath lab`` runs it, and its path results, probe results and the control server's
availability are written to ``tests/fixtures/diagnosis/recorded/userspace-<scenario>.json`` in
the fixture format of ``tests/test_diagnosis.py``, with the findings the diagnosis made as the
expected ones. A run whose findings do not name exactly the scenario's mechanisms is not
written (the lab disagreed: record it again, or look at the diagnosis). The recorder checks that
the written inputs, read back, give the same findings before writing.

These fixtures pin the diagnosis on real evidence (real timings, real probe evidence) where the
hand-written fixtures beside them isolate one rule each. Re-record them when a rule changes on
purpose, and say so in the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callpath.core.diagnosis.rules import diagnose
from callpath.core.lab.comparison import as_expected, compare
from callpath.core.lab.network import LabNetwork
from callpath.core.lab.scenario import Scenario, find_scenario, list_presets
from callpath.core.lab.source import run_scenario
from callpath.core.model.findings import INCONCLUSIVE
from callpath.core.model.results import MediaQuality, PathResult
from callpath.core.run.investigation import control_answered
from tests.test_diagnosis import FIXTURES, as_recorded, load_path, load_probe

RECORDED = FIXTURES / "recorded"


def _plain(value: Any) -> Any:
    """JSON-ready: enums by value, tuples as lists (evidence is JSON-like already)."""
    return json.loads(json.dumps(value, default=str))


def _quality(quality: MediaQuality) -> dict[str, Any]:
    data = dataclasses.asdict(quality)
    # The diagnosis reads the summary, and the sent-direction series of UDP calls (a call's
    # loss beside a measured rate cap); the received direction is left out.
    data["samples"] = [s for s in data["samples"] if s["direction"] == "sent"]
    plain: dict[str, Any] = _plain(data)
    return plain


def path_fixture(path: PathResult) -> dict[str, Any]:
    return {
        "path_id": str(path.path_id),
        "exercised": path.exercised,
        "failure": path.failure,
        "stages": [
            {
                "stage": str(stage.stage),
                "started_at": stage.started_at,
                "duration": stage.duration,
                "failure": stage.failure,
                "evidence": _plain(stage.evidence),
            }
            for stage in path.stages
        ],
        "server": path.server,
        "selected_pair": _plain(dataclasses.asdict(path.selected_pair))
        if path.selected_pair
        else None,
        "voice": _quality(path.voice),
        "video": _quality(path.video),
        "duration": path.duration,
    }


async def record(scenario: Scenario) -> tuple[dict[str, Any], bool]:
    labs: list[LabNetwork] = []
    run = await run_scenario(scenario, lambda event: None, on_ready=labs.append)
    available = control_answered(run.probes, labs[0].control_exposed)
    paths = [path_fixture(p) for p in run.paths]
    probes = [_plain(dataclasses.asdict(p)) for p in run.probes]
    data: dict[str, Any] = {
        "description": (
            f"Recorded from the userspace lab, scenario {scenario.id}: {scenario.text('title')}"
        ),
        "scenario": scenario.id,
        "backend": "userspace",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "control_available": available,
        "paths": paths,
        "probes": probes,
        "expected": as_recorded(run.findings),
    }
    again = diagnose(
        [load_path(p) for p in paths],
        [load_probe(p) for p in probes],
        control_available=available,
    )
    assert as_recorded(again) == data["expected"], (as_recorded(again), data["expected"])
    named = {f.mechanism for f in run.findings} - {INCONCLUSIVE}
    expected = scenario.expect.mechanisms
    agrees = compare(scenario, run).mechanisms_agree and as_expected(named, expected) == expected
    return data, agrees


def main(names: list[str]) -> int:
    scenarios = [find_scenario(name) for name in names] if names else list_presets()
    RECORDED.mkdir(parents=True, exist_ok=True)
    status = 0
    for scenario in scenarios:
        data, agrees = asyncio.run(record(scenario))
        mechanisms = [f["mechanism"] for f in data["expected"]]
        if not agrees:
            print(f"{scenario.id}: NOT written, the lab disagreed: {mechanisms}", flush=True)
            status = 1
            continue
        out = RECORDED / f"userspace-{scenario.id}.json"
        out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{scenario.id}: {mechanisms} -> {out.relative_to(Path.cwd())}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
