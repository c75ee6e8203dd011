"""What the support view says: one report in full, two reports compared, any part as text.

Pure and Qt-free, computed from report dicts (so any report file works) and from
``callpath.core.report.diff``. HTML is the subset Qt's rich-text widgets render (tables, inline
background colours); every text from a report is escaped. The plain-text forms are for pasting
into a ticket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from callpath.core.i18n import N_, _
from callpath.core.paths.registry import path_label
from callpath.core.present.failures import stage_name
from callpath.core.report.diff import (
    GradeChange,
    MetricChange,
    PathDiff,
    Presence,
    ReportDiff,
    Trend,
)
from callpath.gui.check_view import check_text
from callpath.gui.report_view import (
    LIGHT_NAMES,
    Report,
    finding_line,
    finding_views,
    grade_name,
    headline_lines,
    next_steps,
    number,
    path_view,
    series_name,
    source_title,
    stage_rows,
    when,
)

TREND_COLOURS = {
    Trend.BETTER: "#c8e6c9",
    Trend.WORSE: "#ffcdd2",
    Trend.CHANGED: "#fff3c4",
    Trend.SAME: "",
}
TREND_NAMES = {
    Trend.BETTER: N_("better"),
    Trend.WORSE: N_("worse"),
    Trend.CHANGED: N_("changed"),
    Trend.SAME: N_("same"),
}
METRIC_NAMES = {
    "mos": N_("MOS"),
    "rtt_ms": N_("round trip, ms"),
    "jitter_ms": N_("jitter, ms"),
    "loss_pct": N_("loss, %"),
    "bitrate_kbps": N_("bitrate, kbit/s"),
}
METRIC_DIGITS = {"mos": 1, "rtt_ms": 0, "jitter_ms": 1, "loss_pct": 1, "bitrate_kbps": 0}
MEDIA_NAMES = {"voice": N_("voice"), "video": N_("video")}
_TABLE = '<table border="1" cellspacing="0" cellpadding="4" width="100%">'


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def metric_name(metric: str) -> str:
    return _(METRIC_NAMES.get(metric, metric))


def media_name(media: str) -> str:
    return _(MEDIA_NAMES.get(media, media))


def trend_name(trend: Trend) -> str:
    return _(TREND_NAMES[trend])


def _figure(value: float | None, digits: int) -> str:
    return "\u2013" if value is None else number(value, digits)


def _signed(value: float, digits: int) -> str:
    text = number(abs(value), digits)
    return ("+" if value > 0 else "\u2212" if value < 0 else "\u00b1") + text


def _names(path_ids: tuple[str, ...]) -> str:
    return ", ".join(path_label(p) for p in path_ids) or _("none")


def _failure_text(failure: str | None, stage: str | None) -> str:
    if failure is None:
        return _("no failure")
    if stage is None:
        return failure
    return _("{failure} at \u201c{stage}\u201d").format(failure=failure, stage=stage_name(stage))


# --- one report, in full -------------------------------------------------------------------------


def path_text(path: Mapping[str, Any]) -> str:
    """One path for a ticket: verdict line, route, stage timeline with evidence, samples."""
    view = path_view(path)
    lines = [f"{view.label}: {_(LIGHT_NAMES[view.light])}. {view.status}"]
    if path.get("server"):
        lines.append(_("Server: {server}").format(server=path["server"]))
    if view.failure:
        lines.append(_("Failure: {failure}").format(failure=view.failure))
    pair = path.get("selected_pair")
    if isinstance(pair, Mapping):
        lines.append(
            _("Route: {local_type} {local} \u2192 {remote_type} {remote}").format(
                local_type=pair.get("local_type"),
                local=f"{pair.get('local_address')}:{pair.get('local_port')}",
                remote_type=pair.get("remote_type"),
                remote=f"{pair.get('remote_address')}:{pair.get('remote_port')}",
            )
        )
    lines.append(_("Stages:"))
    for row in stage_rows(path):
        result = row.failure or _("ok")
        lines.append(
            f"  {row.stage:<14} {_figure(row.started_s, 3):>8} s "
            f"+{_figure(row.duration_s, 3)} s  {result}"
        )
        for key, value in sorted(row.evidence.items()):
            lines.append(f"      {key}: {json.dumps(value, ensure_ascii=False)}")
    for media in ("voice", "video"):
        quality = path.get(media) or {}
        samples = quality.get("samples") or []
        reasons = quality.get("reasons") or []
        lines.append(
            _("{media}: {grade}").format(
                media=media_name(media), grade=grade_name(str(quality.get("grade", "not_tested")))
            )
            + (f" ({', '.join(str(r) for r in reasons)})" if reasons else "")
        )
        if samples:
            lines.append(
                "    t  "
                + "  ".join(
                    series_name(m) for m in ("rtt_ms", "jitter_ms", "loss_pct", "bitrate_kbps")
                )
            )
        for sample in samples:
            lines.append(
                f"  {_figure(sample.get('t'), 0):>3} {sample.get('direction', '?'):<8} "
                f"{_figure(sample.get('rtt_ms'), 1)} / {_figure(sample.get('jitter_ms'), 1)} / "
                f"{_figure(sample.get('loss_pct'), 2)} / {_figure(sample.get('bitrate_kbps'), 1)}"
            )
    return "\n".join(lines) + "\n"


def findings_text(report: Report) -> str:
    views = finding_views(report)
    if not views:
        return _("The diagnosis named nothing.") + "\n"
    lines = []
    for view in views:
        lines.append(f"- {finding_line(view)} [{view.mechanism}]")
        if view.recommendation:
            lines.append("  " + _("What to do: {advice}").format(advice=view.recommendation))
        if view.technical:
            lines.append("  " + view.technical)
    return "\n".join(lines) + "\n"


def overview_text(report: Report) -> str:
    lines = headline_lines(report)
    lines.append(_("What to do:"))
    lines.extend(f"- {step}" for step in next_steps(report))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Section:
    """A part of the support view that can be copied on its own."""

    key: str
    title: str
    text: str


def report_sections(report: Report, prefix: str = "") -> list[Section]:
    """Overview, findings, and one section per path."""
    head = f"{prefix}: " if prefix else ""
    sections = [
        Section("overview", head + _("Overview"), overview_text(report)),
        Section("findings", head + _("Findings of the diagnosis"), findings_text(report)),
    ]
    for path in report.get("paths", []):
        path_id = str(path.get("id", "?"))
        sections.append(Section(f"path:{path_id}", head + path_label(path_id), path_text(path)))
    check = report.get("messenger_check")
    if isinstance(check, dict):
        title = head + _("Messengers on this network")
        sections.append(Section("messengers", title, check_text(check)))
    return sections


# --- two reports compared ------------------------------------------------------------------------


def _grade_cell(change: GradeChange) -> str:
    before = "\u2013" if change.before is None else grade_name(change.before)
    after = "\u2013" if change.after is None else grade_name(change.after)
    return before if change.trend is Trend.SAME else f"{before} \u2192 {after}"


def _metric_text(change: MetricChange) -> str:
    digits = METRIC_DIGITS.get(change.metric, 1)
    text = f"{_figure(change.before, digits)} \u2192 {_figure(change.after, digits)}"
    delta = change.delta
    if delta is not None:
        text += f" ({_signed(delta, digits)})"
    return text


def _presence_text(path: PathDiff) -> str | None:
    if path.presence is Presence.ONLY_BEFORE:
        return _("only in the first report")
    if path.presence is Presence.ONLY_AFTER:
        return _("only in the second report")
    return None


def path_change_lines(path: PathDiff) -> list[str]:
    """What changed on one path, one fact a line (empty when nothing did)."""
    lines = []
    presence = _presence_text(path)
    if presence:
        lines.append(presence)
    if path.failure_appeared:
        lines.append(
            _("failure appeared: {failure}").format(
                failure=_failure_text(path.failure_after, path.failed_stage_after)
            )
        )
    elif path.failure_disappeared:
        lines.append(
            _("failure gone: {failure}").format(
                failure=_failure_text(path.failure_before, path.failed_stage_before)
            )
        )
    elif path.failure_changed:
        lines.append(
            _("failure changed: {before} \u2192 {after}").format(
                before=_failure_text(path.failure_before, path.failed_stage_before),
                after=_failure_text(path.failure_after, path.failed_stage_after),
            )
        )
    for grade in path.grades:
        if grade.trend is not Trend.SAME:
            lines.append(
                _("{media}: {grades} ({trend})").format(
                    media=media_name(grade.media),
                    grades=_grade_cell(grade),
                    trend=trend_name(grade.trend),
                )
            )
    # A metric only one report has follows from the failure above; deltas say more.
    for metric in path.significant_metrics():
        if metric.delta is None:
            continue
        lines.append(
            _("{media} {metric}: {change} ({trend})").format(
                media=media_name(metric.media),
                metric=metric_name(metric.metric),
                change=_metric_text(metric),
                trend=trend_name(metric.trend),
            )
        )
    return lines


def diff_text(before: Report, after: Report, diff: ReportDiff) -> str:
    """The comparison for a ticket."""
    lines = [
        _("Comparison of two CallPath reports"),
        _("1st: {when} ({source})").format(when=when(before), source=source_title(before)),
        _("2nd: {when} ({source})").format(when=when(after), source=source_title(after)),
        "",
    ]
    if not diff.changed:
        lines.append(_("No difference worth noting."))
    lines.append(
        _("Voice restored by: {before} \u2192 {after}").format(
            before=_names(diff.voice_before), after=_names(diff.voice_after)
        )
    )
    lines.append(
        _("Video restored by: {before} \u2192 {after}").format(
            before=_names(diff.video_before), after=_names(diff.video_after)
        )
    )
    for path in diff.paths:
        changes = path_change_lines(path)
        label = path_label(path.path_id)
        if changes:
            lines.append(f"{label} ({trend_name(path.trend)}):")
            lines.extend(f"  - {line}" for line in changes)
        else:
            lines.append(_("{path}: no change").format(path=label))
    for finding in diff.findings_added:
        lines.append(
            _("New finding: {summary} [{mechanism}]").format(
                summary=finding.summary, mechanism=finding.mechanism
            )
        )
    for finding in diff.findings_removed:
        lines.append(
            _("Finding gone: {summary} [{mechanism}]").format(
                summary=finding.summary, mechanism=finding.mechanism
            )
        )
    return "\n".join(lines) + "\n"


def _cell(text: str, trend: Trend = Trend.SAME) -> str:
    colour = TREND_COLOURS[trend]
    style = f' bgcolor="{colour}"' if colour else ""
    return f"<td{style}>{_e(text)}</td>"


def diff_html(before: Report, after: Report, diff: ReportDiff) -> str:
    """The comparison as a table, one row per path; changed cells coloured (green better, red
    worse, yellow changed) and named in words in the last column."""
    parts = [
        f"<p><b>{_e(_('1st'))}:</b> {_e(when(before))} \u00b7 {_e(source_title(before))}<br>"
        f"<b>{_e(_('2nd'))}:</b> {_e(when(after))} \u00b7 {_e(source_title(after))}</p>"
    ]
    verdict_rows = []
    for title, old, new in (
        (_("Voice restored by"), diff.voice_before, diff.voice_after),
        (_("Video restored by"), diff.video_before, diff.video_after),
    ):
        trend = Trend.SAME if old == new else Trend.CHANGED
        if set(new) > set(old):
            trend = Trend.BETTER
        elif set(new) < set(old):
            trend = Trend.WORSE
        verdict_rows.append(
            f"<tr><th align='left'>{_e(title)}</th>{_cell(_names(old))}"
            f"{_cell(_names(new), trend)}</tr>"
        )
    parts.append(
        f"{_TABLE}<tr><th></th><th>{_e(_('1st'))}</th><th>{_e(_('2nd'))}</th></tr>"
        + "".join(verdict_rows)
        + "</table>"
    )
    head = "".join(
        f"<th>{_e(text)}</th>"
        for text in (_("Path"), _("Failure"), _("Voice"), _("Video"), _("What changed"))
    )
    rows = []
    for path in diff.paths:
        failure_trend = Trend.SAME
        if path.failure_disappeared:
            failure_trend = Trend.BETTER
        elif path.failure_appeared:
            failure_trend = Trend.WORSE
        elif path.failure_changed:
            failure_trend = Trend.CHANGED
        failure = _failure_text(path.failure_before, path.failed_stage_before)
        if failure_trend is not Trend.SAME:
            failure += " \u2192 " + _failure_text(path.failure_after, path.failed_stage_after)
        changes = path_change_lines(path) or [_("no change")]
        rows.append(
            "<tr>"
            + _cell(path_label(path.path_id), path.trend)
            + _cell(failure, failure_trend)
            + "".join(_cell(_grade_cell(grade), grade.trend) for grade in path.grades)
            + f"<td>{'<br>'.join(_e(line) for line in changes)}</td>"
            + "</tr>"
        )
    parts.append(f"{_TABLE}<tr>{head}</tr>{''.join(rows)}</table>")
    found: list[str] = []
    for state, trend, findings in (
        (_("new"), Trend.CHANGED, diff.findings_added),
        (_("gone"), Trend.CHANGED, diff.findings_removed),
        (_("in both"), Trend.SAME, diff.findings_kept),
    ):
        found.extend(
            f"<tr>{_cell(state, trend)}{_cell(finding.summary)}{_cell(finding.mechanism)}</tr>"
            for finding in findings
        )
    if found:
        heading = _e(_("Findings of the diagnosis"))
        parts.append(f"<h3>{heading}</h3>{_TABLE}{''.join(found)}</table>")
    return "".join(parts)


def diff_sections(before: Report, after: Report, diff: ReportDiff) -> list[Section]:
    """Every copyable part of a comparison: the comparison, then each report's sections."""
    return [
        Section("diff", _("Differences"), diff_text(before, after, diff)),
        *report_sections(before, _("1st")),
        *report_sections(after, _("2nd")),
    ]
