"""Terminal front end: live progress, JSON lines, and the final table and headline.

Three modes over the same events: a live display when stdout is a terminal, one plain line per
event otherwise, and one JSON object per line with ``--jsonl`` (for scripts).
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from callpath.core.cli.hold_console import HoldDisplay, hold_event_json
from callpath.core.i18n import _
from callpath.core.model.events import (
    DiagnosisFinished,
    Event,
    HoldFinished,
    HoldPathEnded,
    HoldSampleTaken,
    HoldStarted,
    PathFinished,
    RunFinished,
    RunStarted,
    SampleTaken,
    StageFinished,
    StageStarted,
)
from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.results import STAGE_ORDER, Grade, PathResult, RunResult, Stage
from callpath.core.paths.registry import path_label
from callpath.core.present.headline import confidence_label, grade_label
from callpath.core.present.proxy_failures import explain_path_failure
from callpath.core.present.route import around_refused_text, vpn_sentence
from callpath.core.report.document import Redactor

GRADE_STYLE = {
    Grade.GOOD: "green",
    Grade.DEGRADED: "yellow",
    Grade.UNUSABLE: "red",
    Grade.NOT_TESTED: "dim",
}


def grade_text(grade: Grade) -> str:
    return grade_label(grade)  # the app's words too (callpath.core.present.headline)


def event_to_json(event: Event) -> dict[str, Any]:
    """A JSON-lines record of an event; carries no addresses (evidence stays in the report)."""
    hold_record = hold_event_json(event)
    if hold_record is not None:
        return hold_record
    if isinstance(event, RunStarted):
        return {"event": "run_started", "paths": list(event.path_ids)}
    if isinstance(event, StageStarted):
        return {"event": "stage_started", "path": event.path_id, "stage": event.stage.value}
    if isinstance(event, StageFinished):
        return {
            "event": "stage_finished",
            "path": event.path_id,
            "stage": event.result.stage.value,
            "duration_s": round(event.result.duration, 3),
            "failure": event.result.failure,
        }
    if isinstance(event, SampleTaken):
        sample = event.sample
        return {
            "event": "sample",
            "path": event.path_id,
            "t": sample.t,
            "kind": sample.kind.value,
            "direction": sample.direction.value,
            "rtt_ms": _round(sample.rtt_ms),
            "jitter_ms": _round(sample.jitter_ms),
            "loss_pct": _round(sample.loss_pct),
            "bitrate_kbps": _round(sample.bitrate_kbps),
        }
    if isinstance(event, PathFinished):
        result = event.result
        return {
            "event": "path_finished",
            "path": result.path_id,
            "exercised": result.exercised,
            "failure": result.failure,
            "voice": result.voice.grade.value,
            "video": result.video.grade.value,
        }
    if isinstance(event, DiagnosisFinished):
        # Summaries can name a server (the DNS finding does): redacted like reports.
        redactor = Redactor()
        return {
            "event": "diagnosis_finished",
            "findings": [
                {
                    "mechanism": finding.mechanism,
                    "confidence": finding.confidence.value,
                    "censorship": finding.censorship,
                    "paths": list(finding.paths),
                    "summary": redactor.text(finding.summary),
                    "recommendation": redactor.text(finding.recommendation),
                }
                for finding in event.findings
            ],
        }
    assert isinstance(event, RunFinished)
    return {
        "event": "run_finished",
        "voice_restored_by": list(event.result.verdict.voice_restored_by),
        "video_restored_by": list(event.result.verdict.video_restored_by),
        "headline": event.result.verdict.headline,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class ConsoleProgress:
    """Receives engine events and shows them in the chosen mode."""

    def __init__(self, mode: str, stream: IO[str] | None = None) -> None:
        self.mode = mode  # live | plain | jsonl
        self._stream = stream or sys.stdout
        self._console = Console(file=self._stream, highlight=False)
        self._rows: dict[str, dict[str, str]] = {}
        self._live: Live | None = None
        self._hold_display: HoldDisplay | None = None

    def __call__(self, event: Event) -> None:
        if self.mode == "jsonl":
            self._stream.write(json.dumps(event_to_json(event), ensure_ascii=False) + "\n")
            self._stream.flush()
            return
        if isinstance(event, HoldStarted | HoldSampleTaken | HoldPathEnded | HoldFinished):
            self._hold(event)
            return
        if isinstance(event, RunStarted):
            self._rows = {path_id: {} for path_id in event.path_ids}
            if self.mode == "live":
                self._live = Live(self._table(), console=self._console, refresh_per_second=8)
                self._live.start()
            else:
                self._console.print(
                    _("Testing {count} paths: {paths}").format(
                        count=len(event.path_ids), paths=", ".join(event.path_ids)
                    )
                )
            return
        if isinstance(event, StageStarted):
            self._rows.setdefault(event.path_id, {})[event.stage.value] = "…"
        elif isinstance(event, StageFinished):
            mark = "✓" if event.result.ok else "✗"
            self._rows.setdefault(event.path_id, {})[event.result.stage.value] = mark
            if self.mode == "plain":
                outcome = event.result.failure or _("ok")
                self._console.print(
                    f"{event.path_id:12} {event.result.stage.value:14} "
                    f"{event.result.duration:6.2f}s  {outcome}"
                )
        elif isinstance(event, PathFinished) and self.mode == "plain":
            result = event.result
            self._console.print(
                _("{path}: finished, voice {voice}, video {video}").format(
                    path=result.path_id,
                    voice=grade_text(result.voice.grade),
                    video=grade_text(result.video.grade),
                )
            )
        elif isinstance(event, DiagnosisFinished):
            if self.mode == "plain":
                self._console.print(
                    _("Diagnosis finished: {count} findings").format(count=len(event.findings))
                )
            return
        elif isinstance(event, RunFinished) and self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None
            return
        if self._live is not None:
            self._live.update(self._table())

    def _hold(self, event: Event) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._hold_display is None:
            self._hold_display = HoldDisplay(self._stream)
        self._hold_display(event)

    def _table(self) -> Table:
        table = Table(title=_("CallPath: testing paths"), expand=False)
        table.add_column(_("Path"))
        for stage in STAGE_ORDER:
            table.add_column(stage.value, justify="center")
        for path_id, stages in self._rows.items():
            table.add_row(path_id, *[stages.get(stage.value, "·") for stage in STAGE_ORDER])
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def print_summary(run: RunResult, stream: IO[str] | None = None) -> None:
    """The final table (one row per path) and the one-line headline."""
    console = Console(file=stream or sys.stdout, highlight=False)
    table = Table(title=_("Results"))
    table.add_column(_("Path"))
    table.add_column(_("Route proven"))
    table.add_column(_("Voice"))
    table.add_column(_("MOS"), justify="right")
    table.add_column(_("Video"))
    table.add_column(_("kbit/s"), justify="right")
    table.add_column(_("Failure"))
    for path in run.paths:
        table.add_row(
            path_label(path.path_id),
            _("yes") if path.exercised else _("no"),
            Text(grade_text(path.voice.grade), style=GRADE_STYLE[path.voice.grade]),
            f"{path.voice.mos:.1f}" if path.voice.mos is not None else "–",
            Text(grade_text(path.video.grade), style=GRADE_STYLE[path.video.grade]),
            f"{path.video.bitrate_kbps:.0f}" if path.video.bitrate_kbps is not None else "–",
            _failure_cell(path),
        )
    console.print(table)
    for path in run.paths:
        if path.failure is None:
            continue
        stage = next((s for s in path.stages if s.failure is not None), None)
        evidence = dict(stage.evidence) if stage is not None else {}
        words = explain_path_failure(path.path_id, path.failure, evidence)
        if words is not None:
            console.print(f"{path_label(path.path_id)}: {words}")
    print_server_names(run, console)
    if run.cancelled:
        console.print(_("The run was stopped before it finished; results are partial."))
    console.print(Text(run.verdict.headline, style="bold"))
    for line in (vpn_sentence(run.route), around_refused_text(run.route)):
        if line is not None:
            console.print(line)
    print_findings(run.findings, console)


def print_server_names(run: RunResult, console: Console) -> None:
    """Which server name (SNI) carried each TLS relay's call, where other names were tried."""
    for path in run.paths:
        if not path.sni_attempts:
            continue
        tried = ", ".join(f"{a.server_name} ({a.failure or _('works')})" for a in path.sni_attempts)
        if path.failure is None:
            line = _("{path}: the call went through under the server name {name}").format(
                path=path_label(path.path_id), name=path.server_name
            )
        else:
            line = _("{path}: no server name carried the call").format(
                path=path_label(path.path_id)
            )
        console.print(line + " — " + _("tried: {names}").format(names=tried))


CONFIDENCE_STYLE = {Confidence.HIGH: "bold", Confidence.MEDIUM: "", Confidence.LOW: "dim"}


def confidence_text(confidence: Confidence) -> str:
    return confidence_label(confidence)


def print_findings(findings: tuple[Finding, ...], console: Console) -> None:
    """What the diagnosis found: mechanism, confidence, summary and what to do, per finding."""
    if not findings:
        return
    console.print()
    console.print(Text(_("Diagnosis"), style="bold underline"))
    for finding in findings:
        line = Text()
        line.append(finding.mechanism, style="bold red" if finding.censorship else "bold")
        line.append(f" ({confidence_text(finding.confidence)})", style="dim")
        if finding.paths:
            line.append(" – " + ", ".join(path_label(p) for p in finding.paths))
        console.print(line)
        console.print(Text("  " + finding.summary, style=CONFIDENCE_STYLE[finding.confidence]))
        console.print(Text("  → " + finding.recommendation))


def _failure_cell(path: PathResult) -> str:
    if path.failure is None:
        return ""
    stage = next((s.stage for s in path.stages if s.failure is not None), None)
    quality = path.stage(Stage.QUALITY)
    if path.failure == "media_stalled" and quality is not None:
        after = quality.evidence.get("stalled_after_s")
        if isinstance(after, int | float):
            return _("stalled after {seconds} s").format(seconds=f"{after:g}")
    if stage is None or stage == Stage.QUALITY:
        return path.failure
    return f"{path.failure} ({stage.value})"
