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
from callpath.core.i18n import _, ngettext
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
from callpath.core.present.failures import explain_failure, stage_name
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


# Stages after which a failed path had connected: its media stalled rather than never started.
_CONNECTED_STAGES = frozenset({Stage.MEDIA_UP, Stage.QUALITY})


def failed_stage(path: PathResult) -> Stage | None:
    return next((s.stage for s in path.stages if s.failure is not None), None)


def media_text(path: PathResult, grade: Grade) -> str:
    """A media kind's grade, or why a failed path has none: it did not connect, or stalled."""
    if grade != Grade.NOT_TESTED or path.failure is None or path.failure == "interrupted":
        return grade_text(grade)
    stage = failed_stage(path)
    if stage in _CONNECTED_STAGES or path.failure == "media_stalled":
        return _("stalled")
    return _("did not connect")


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
                count = len(event.path_ids)
                self._console.print(
                    ngettext(
                        "Testing {count} path: {paths}", "Testing {count} paths: {paths}", count
                    ).format(count=count, paths=", ".join(event.path_ids))
                )
            return
        if isinstance(event, StageStarted):
            self._rows.setdefault(event.path_id, {})[event.stage.value] = "…"
        elif isinstance(event, StageFinished):
            mark = "✓" if event.result.ok else "✗"
            self._rows.setdefault(event.path_id, {})[event.result.stage.value] = mark
            if self.mode == "plain":
                outcome = event.result.failure or _("ok")
                stage = event.result.stage.value
                self._console.print(
                    f"{event.path_id:12} {stage_name(stage)} ({stage}) "
                    f"{event.result.duration:.2f} s: {outcome}"
                )
        elif isinstance(event, PathFinished) and self.mode == "plain":
            result = event.result
            self._console.print(
                _("{path}: finished, voice {voice}, video {video}").format(
                    path=result.path_id,
                    voice=media_text(result, result.voice.grade),
                    video=media_text(result, result.video.grade),
                )
            )
        elif isinstance(event, DiagnosisFinished):
            if self.mode == "plain":
                count = len(event.findings)
                self._console.print(
                    ngettext(
                        "Diagnosis finished: {count} finding",
                        "Diagnosis finished: {count} findings",
                        count,
                    ).format(count=count)
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
        for stage in STAGE_ORDER:  # the plain name; the technical one in plain mode and reports
            table.add_column(stage_name(stage.value), justify="center")
        for path_id, stages in self._rows.items():
            table.add_row(path_id, *[stages.get(stage.value, "·") for stage in STAGE_ORDER])
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def print_summary(run: RunResult, stream: IO[str] | None = None) -> None:
    """The final table (one row per path), why each failed path failed, and the headline.

    The table holds only short cells so that it fits 80 columns; each failure, its stage and
    its plain explanation get lines of their own below it, wrapped at word boundaries, never
    cut.
    """
    console = Console(file=stream or sys.stdout, highlight=False)
    table = Table(title=_("Results"))
    table.add_column(_("Path"))
    table.add_column(_("Route proven"))
    table.add_column(_("Voice"))
    table.add_column(_("MOS"), justify="right")
    table.add_column(_("Video"))
    table.add_column(_("kbit/s"), justify="right")
    for path in run.paths:
        table.add_row(
            path_label(path.path_id),
            _("yes") if path.exercised else _("no"),
            Text(media_text(path, path.voice.grade), style=GRADE_STYLE[path.voice.grade]),
            f"{path.voice.mos:.1f}" if path.voice.mos is not None else "–",
            Text(media_text(path, path.video.grade), style=GRADE_STYLE[path.video.grade]),
            f"{path.video.bitrate_kbps:.0f}" if path.video.bitrate_kbps is not None else "–",
        )
    console.print(table)
    print_failures(run.paths, console)
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


def failure_lines(path: PathResult) -> tuple[str, str] | None:
    """(what failed where, in plain words with the technical names beside, explanation) of a
    failed path, or None when it did not fail."""
    if path.failure is None:
        return None
    stage = failed_stage(path)
    quality = path.stage(Stage.QUALITY)
    stalled_after = quality.evidence.get("stalled_after_s") if quality is not None else None
    if path.failure == "media_stalled" and isinstance(stalled_after, int | float):
        where = _("{path}: stalled after {seconds} s ({failure})").format(
            path=path_label(path.path_id), seconds=f"{stalled_after:g}", failure=path.failure
        )
    elif stage is None or stage == Stage.QUALITY:
        where = _("{path}: {failure}").format(path=path_label(path.path_id), failure=path.failure)
    else:
        where = _("{path}: {failure} at \u201c{stage}\u201d ({stage_id})").format(
            path=path_label(path.path_id),
            failure=path.failure,
            stage=stage_name(stage.value),
            stage_id=stage.value,
        )
    first = next((s for s in path.stages if s.failure is not None), None)
    evidence = dict(first.evidence) if first is not None else {}
    words = explain_path_failure(path.path_id, path.failure, evidence)
    return where, words or explain_failure(path.failure) or ""


def print_indented(console: Console, text: Text, indent: int = 2) -> None:
    """``text`` wrapped at word boundaries to the console's width, every line indented."""
    for line in text.wrap(console, max(20, console.width - indent)):
        line.rstrip()
        console.print(Text(" " * indent) + line)


def print_failures(paths: tuple[PathResult, ...], console: Console) -> None:
    """Each failed path on its own lines: failure and stage, then the explanation, indented."""
    failed = [lines for lines in (failure_lines(path) for path in paths) if lines is not None]
    if not failed:
        return
    console.print(Text(_("Why paths failed"), style="bold"))
    for where, explanation in failed:
        console.print(Text("✗ " + where, style="red"))
        print_indented(console, Text(explanation))


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
        summary = Text(finding.summary, style=CONFIDENCE_STYLE[finding.confidence])
        print_indented(console, summary)
        print_indented(console, Text("→ " + finding.recommendation))
