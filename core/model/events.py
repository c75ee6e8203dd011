"""Typed events the engine emits while a run progresses (past-tense names, small and frozen).

Front ends (CLI, GUI bridge) receive them through a plain callable passed to the run;
``DiagnosisFinished`` and then ``RunFinished``, the run's last event, come from
``callpath.core.run.investigation`` once the calls and probes ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from callpath.core.model.findings import Finding
from callpath.core.model.results import PathResult, QualitySample, RunResult, Stage, StageResult


@dataclass(frozen=True)
class RunStarted:
    path_ids: tuple[str, ...]
    quality_window_s: float


@dataclass(frozen=True)
class StageStarted:
    path_id: str
    stage: Stage
    at: float


@dataclass(frozen=True)
class StageFinished:
    path_id: str
    result: StageResult


@dataclass(frozen=True)
class SampleTaken:
    path_id: str
    sample: QualitySample


@dataclass(frozen=True)
class PathFinished:
    result: PathResult


@dataclass(frozen=True)
class RunFinished:
    """The run's last event, once, after the diagnosis: the whole result, findings included."""

    result: RunResult


@dataclass(frozen=True)
class DiagnosisFinished:
    """The probes ended and the diagnosis named what it could; ``RunFinished`` follows."""

    findings: tuple[Finding, ...]


Event = (
    RunStarted
    | StageStarted
    | StageFinished
    | SampleTaken
    | PathFinished
    | RunFinished
    | DiagnosisFinished
)
EventSink = Callable[[Event], None]
