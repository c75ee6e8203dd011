"""Typed events the engine emits while a run progresses (past-tense names, small and frozen).

Front ends (CLI, GUI bridge) receive them through a plain callable passed to the run;
``DiagnosisFinished`` and then ``RunFinished`` come from ``callpath.core.run.investigation``
once the calls and probes ended; with a hold phase (``callpath.core.call.hold``), ``HoldStarted``,
``HoldSampleTaken``, ``HoldPathEnded`` and the final ``HoldFinished`` follow ``RunFinished``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from callpath.core.model.findings import Finding
from callpath.core.model.results import (
    HoldResult,
    PathResult,
    QualitySample,
    RunResult,
    Stage,
    StageResult,
)


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


@dataclass(frozen=True)
class HoldStarted:
    """The hold phase began, after the verdict: these paths' calls are kept going."""

    path_ids: tuple[str, ...]
    duration_s: float


@dataclass(frozen=True)
class HoldSampleTaken:
    """One second of a held call (``sample.t``: seconds into the hold)."""

    path_id: str
    sample: QualitySample


@dataclass(frozen=True)
class HoldPathEnded:
    """One held call ended: it lasted, stopped, degraded or was stopped by the user."""

    result: HoldResult


@dataclass(frozen=True)
class HoldFinished:
    """The hold phase ended (or was stopped); the run's result now carries its holds."""

    result: RunResult


Event = (
    RunStarted
    | StageStarted
    | StageFinished
    | SampleTaken
    | PathFinished
    | RunFinished
    | DiagnosisFinished
    | HoldStarted
    | HoldSampleTaken
    | HoldPathEnded
    | HoldFinished
)
EventSink = Callable[[Event], None]
