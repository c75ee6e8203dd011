"""Timing, bounding and naming the failure of each stage of a path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from callpath.core.model.events import EventSink, StageFinished, StageStarted
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.results import Stage, StageResult

T = TypeVar("T")


class StageFailure(Exception):
    """A stage failed with a known OONI-style failure string and evidence."""

    def __init__(self, failure: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(failure)
        self.failure = failure
        self.evidence = evidence or {}


class StageRecorder:
    """Runs the stages of one path, records their results and reports them as events."""

    def __init__(self, path_id: str, sink: EventSink, run_started: float) -> None:
        self.path_id = path_id
        self._sink = sink
        self._run_started = run_started
        self.results: list[StageResult] = []

    def now(self) -> float:
        return time.monotonic() - self._run_started

    @property
    def failure(self) -> str | None:
        for result in self.results:
            if result.failure is not None:
                return result.failure
        return None

    def record(
        self,
        stage: Stage,
        started_at: float,
        failure: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> StageResult:
        """Record a stage whose timing was measured by the caller."""
        result = StageResult(
            stage=stage,
            started_at=started_at,
            duration=max(0.0, self.now() - started_at),
            failure=failure,
            evidence=dict(evidence or {}),
        )
        self.results.append(result)
        self._sink(StageFinished(self.path_id, result))
        return result

    def started(self, stage: Stage) -> float:
        at = self.now()
        self._sink(StageStarted(self.path_id, stage, at))
        return at

    async def run(
        self,
        stage: Stage,
        action: Callable[[dict[str, Any]], Awaitable[T]],
        timeout: float,
        *,
        timeout_failure: str = "generic_timeout_error",
    ) -> T:
        """Run ``action(evidence)`` within ``timeout``; raise StageFailure after recording it.

        ``action`` may add evidence to the dict it receives, and may raise StageFailure itself
        to name the failure precisely.
        """
        started_at = self.started(stage)
        evidence: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout):
                value = await action(evidence)
        except StageFailure as known:
            evidence.update(known.evidence)
            self.record(stage, started_at, known.failure, evidence)
            raise
        except TimeoutError:
            evidence.setdefault("timeout_s", timeout)
            self.record(stage, started_at, timeout_failure, evidence)
            raise StageFailure(timeout_failure, evidence) from None
        except (OSError, EOFError, ValueError, ConnectionError) as error:
            failure = failure_from_exception(error)
            self.record(stage, started_at, failure, evidence)
            raise StageFailure(failure, evidence) from error
        self.record(stage, started_at, None, evidence)
        return value
