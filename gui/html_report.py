"""A report dict → one self-contained HTML page (inline CSS and SVG, no external resources).

Pure and Qt-free. Every piece of text from the report is escaped: reports come from other
people's machines. ``details_html`` is the support-staff part alone, in the HTML subset that
Qt's rich-text widgets render (tables, no SVG), for the Verdict page's details section.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from callpath.core.i18n import _, current_language, is_rtl
from callpath.core.present.hold import hold_outcome
from callpath.core.report.decode import hold_from_dict
from callpath.gui.check_view import check_section_html
from callpath.gui.report_view import (
    LIGHT_NAMES,
    SERIES,
    FindingKind,
    FindingView,
    Light,
    Report,
    chart_series,
    finding_views,
    next_steps,
    number,
    path_view,
    series_name,
    source_title,
    stage_rows,
    stopped_notice,
    verdict_lines,
    when,
)

LIGHT_COLOURS = {
    Light.GREEN: "#2e7d32",
    Light.AMBER: "#f9a825",
    Light.RED: "#c62828",
    Light.GREY: "#9e9e9e",
}
FINDING_COLOURS = {
    FindingKind.CENSORSHIP: "#c62828",
    FindingKind.NETWORK: "#f9a825",
    FindingKind.INCONCLUSIVE: "#9e9e9e",
}
# Attributes as well as CSS: Qt's rich-text widgets ignore CSS borders on tables.
_TABLE = '<table border="1" cellspacing="0" cellpadding="3">'
CHART_WIDTH = 220
CHART_HEIGHT = 60

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em;
       color: #212121; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.headline { font-size: 1.25em; font-weight: bold; margin: 0.3em 0; }
.notice { background: #fff3e0; padding: 0.5em 0.8em; border-left: 4px solid #f9a825; }
.path { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; margin: 0.8em 0; }
.light { display: inline-block; width: 1em; height: 1em; border-radius: 50%;
         vertical-align: middle; margin-right: 0.4em; }
.failure { font-family: monospace; color: #555; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.chart figcaption { font-size: 0.85em; color: #555; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 0.85em; }
.meta { color: #555; }
.finding { border-left: 4px solid #9e9e9e; padding: 0.3em 0.8em; margin: 0.6em 0; }
.finding p { margin: 0.2em 0; }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _figure(value: float | None, digits: int = 1) -> str:
    return "\u2013" if value is None else number(float(value), digits)


def sparkline_svg(points: Sequence[tuple[float, float]], label: str, colour: str) -> str:
    """An inline SVG line chart of ``points`` with its label and last value as accessible text."""
    width, height, pad = CHART_WIDTH, CHART_HEIGHT, 4
    title = _e(label)
    if not points:
        return (
            f'<svg role="img" width="{width}" '
            f'height="{height}" aria-label="{title}"><title>{title}</title>'
            f'<text x="{pad}" y="{height // 2}" font-size="11" fill="#777">'
            f"{_e(_('no data'))}</text></svg>"
        )
    xs = [t for t, _v in points]
    ys = [v for _t, v in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(0.0, min(ys)), max(ys)
    x_span = (x_high - x_low) or 1.0
    y_span = (y_high - y_low) or 1.0
    coordinates = " ".join(
        f"{pad + (t - x_low) / x_span * (width - 2 * pad):.1f},"
        f"{height - pad - (v - y_low) / y_span * (height - 2 * pad):.1f}"
        for t, v in points
    )
    return (
        f'<svg role="img" width="{width}" height="{height}" '
        f'aria-label="{title}"><title>{title}</title>'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coordinates}"/>'
        f"</svg>"
    )


def _charts(path: Mapping[str, Any]) -> str:
    parts = []
    for media, kind_name in (("voice", _("voice")), ("video", _("video"))):
        samples = path.get(media, {}).get("samples", [])
        if not samples:
            continue
        for metric in SERIES:
            points = chart_series(samples, metric)
            caption = f"{kind_name}: {series_name(metric)}"
            last = _figure(points[-1][1]) if points else "\u2013"
            colour = "#1565c0" if media == "voice" else "#6a1b9a"
            parts.append(
                f'<figure class="chart">{sparkline_svg(points, caption, colour)}'
                f"<figcaption>{_e(caption)}: {_e(last)}</figcaption></figure>"
            )
    if not parts:
        return ""
    return f'<div class="charts">{"".join(parts)}</div>'


def _stage_table(path: Mapping[str, Any]) -> str:
    rows = stage_rows(path)
    if not rows:
        return f"<p>{_e(_('No stage ran.'))}</p>"
    head = "".join(
        f"<th>{_e(text)}</th>"
        for text in (_("Stage"), _("Start, s"), _("Duration, s"), _("Result"), _("Evidence"))
    )
    body = []
    for row in rows:
        evidence = "\n".join(
            f"{key}: {json.dumps(value, ensure_ascii=False)}"
            for key, value in sorted(row.evidence.items())
        )
        result = row.failure or _("ok")
        body.append(
            "<tr>"
            f"<td>{_e(row.name)} <span class='failure'>({_e(row.stage)})</span></td>"
            f"<td>{_e(_figure(row.started_s, 3))}</td>"
            f"<td>{_e(_figure(row.duration_s, 3))}</td>"
            f"<td>{_e(result)}</td>"
            f"<td><pre>{_e(evidence) if row.evidence else ''}</pre></td>"
            "</tr>"
        )
    return f"{_TABLE}<tr>{head}</tr>{''.join(body)}</table>"


def _pair(path: Mapping[str, Any]) -> str:
    pair = path.get("selected_pair")
    if not pair:
        return _server_names(path)
    text = _("Route: {local_type} {local} \u2192 {remote_type} {remote}").format(
        local_type=pair.get("local_type"),
        local=f"{pair.get('local_address')}:{pair.get('local_port')}",
        remote_type=pair.get("remote_type"),
        remote=f"{pair.get('remote_address')}:{pair.get('remote_port')}",
    )
    if pair.get("relay_transport"):
        text += " " + _("(relay over {transport} via {server})").format(
            transport=pair.get("relay_transport"), server=pair.get("relay_server")
        )
    return f"<p class='meta'>{_e(text)}</p>" + _server_names(path)


def _server_names(path: Mapping[str, Any]) -> str:
    """A TLS relay tried under other server names: each name and how it went, in order."""
    attempts = path.get("sni_attempts") or []
    if not attempts:
        return ""
    tried = ", ".join(
        f"{a.get('server_name')} ({a.get('failure') or _('works')})" for a in attempts
    )
    text = _("Server names (SNI) tried: {names}").format(names=tried)
    return f"<p class='meta'>{_e(text)}</p>"


def _samples_table(path: Mapping[str, Any]) -> str:
    head = "".join(
        f"<th>{_e(text)}</th>"
        for text in (
            _("Media"),
            _("t, s"),
            _("Direction"),
            series_name("rtt_ms"),
            series_name("jitter_ms"),
            series_name("loss_pct"),
            series_name("bitrate_kbps"),
        )
    )
    directions = {"sent": _("sent"), "received": _("received")}
    body = []
    for media, kind_name in (("voice", _("voice")), ("video", _("video"))):
        for sample in path.get(media, {}).get("samples", []):
            direction = str(sample.get("direction"))
            body.append(
                "<tr>"
                f"<td>{_e(kind_name)}</td><td>{_e(_figure(sample.get('t'), 0))}</td>"
                f"<td>{_e(directions.get(direction, direction))}</td>"
                f"<td>{_e(_figure(sample.get('rtt_ms')))}</td>"
                f"<td>{_e(_figure(sample.get('jitter_ms')))}</td>"
                f"<td>{_e(_figure(sample.get('loss_pct'), 2))}</td>"
                f"<td>{_e(_figure(sample.get('bitrate_kbps')))}</td>"
                "</tr>"
            )
    if not body:
        return ""
    return f"{_TABLE}<tr>{head}</tr>{''.join(body)}</table>"


def _reasons(path: Mapping[str, Any]) -> str:
    parts = []
    for media, kind_name in (("voice", _("voice")), ("video", _("video"))):
        reasons = path.get(media, {}).get("reasons", [])
        if reasons:
            parts.append(f"{kind_name}: {', '.join(str(r) for r in reasons)}")
    if not parts:
        return ""
    label = _("Grading reasons")
    return f"<p class='meta'>{_e(label)}: <span class='failure'>{_e('; '.join(parts))}</span></p>"


def _finding_details(view: FindingView) -> str:
    heading = f"{view.mechanism} \u00b7 {view.confidence}"
    if view.path_labels:
        heading += f" \u00b7 {view.path_labels}"
    evidence = "\n".join(
        f"{key}: {json.dumps(value, ensure_ascii=False)}"
        for key, value in sorted(view.evidence.items())
    )
    return (
        f"<p><b>{_e(heading)}</b></p>"
        + (f"<p>{_e(view.technical)}</p>" if view.technical else "")
        + (f"<pre>{_e(evidence)}</pre>" if evidence else "")
    )


def findings_html(report: Report) -> str:
    """The diagnosis for end users: each mechanism in plain words, what to do, how sure."""
    parts = []
    for view in finding_views(report):
        colour = FINDING_COLOURS[view.kind]
        parts.append(f"<div class='finding' style='border-left-color:{colour}'>")
        parts.append(f"<p><strong>{_e(view.summary)}</strong></p>")
        if view.recommendation:
            parts.append(f"<p>{_e(view.recommendation)}</p>")
        where = f"{view.path_labels} \u00b7 " if view.path_labels else ""
        parts.append(f"<p class='meta'>{_e(where + view.confidence)}</p></div>")
    return "".join(parts)


def details_html(report: Report) -> str:
    """Support-staff details: the findings' evidence, then every path's route, stage timeline
    with evidence, and samples."""
    parts = []
    meta = _("Report format {version}, written by CallPath {software}; target: {target}.").format(
        version=report.get("schema_version"),
        software=report.get("software", {}).get("version", "?"),
        target=report.get("target", "?"),
    )
    redacted = (
        _("Addresses are replaced by pseudonyms (host-1, host-2, \u2026).")
        if report.get("redacted")
        else _("Addresses are included.")
    )
    parts.append(f"<p class='meta'>{_e(meta)} {_e(redacted)}</p>")
    findings = finding_views(report)
    if findings:
        parts.append(f"<h3>{_e(_('Findings of the diagnosis'))}</h3>")
        parts.extend(_finding_details(view) for view in findings)
    for path in report.get("paths", []):
        view = path_view(path)
        server = path.get("server")
        title = view.label + (f" \u2014 {server}" if server else "")
        parts.append(f"<h3>{_e(title)}</h3>")
        if view.failure:
            parts.append(f"<p class='failure'>{_e(view.failure)}</p>")
        parts.append(_pair(path))
        parts.append(_reasons(path))
        parts.append(_stage_table(path))
        parts.append(_samples_table(path))
    return "".join(parts)


def hold_lines(report: Report) -> list[str]:
    """One line per held path of ``report`` (its ``hold`` sections), in plain words."""
    return [
        hold_outcome(hold_from_dict(str(path["id"]), path["hold"]))
        for path in report.get("paths", [])
        if path.get("hold")
    ]


def hold_section_html(report: Report) -> str:
    """Each held path: how it ended, and the bitrate it received second by second."""
    parts = []
    for path in report.get("paths", []):
        hold = path.get("hold")
        if not hold:
            continue
        line = hold_outcome(hold_from_dict(str(path["id"]), hold))
        ticks = hold.get("series", {}).get("bytes", [])
        points = [
            (float(b["t"]), max(0, b["received"] - a["received"]) * 8 / 1000 / (b["t"] - a["t"]))
            for a, b in itertools.pairwise(ticks)
            if b["t"] > a["t"]
        ]
        chart = sparkline_svg(points, _("Received, kbit/s"), "#1565c0") if points else ""
        parts.append(f"<div class='path'><p>{_e(line)}</p>{chart}</div>")
    return "\n".join(parts)


def render_html(report: Report) -> str:
    """The whole report as a standalone HTML document."""
    title = _("CallPath report")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{_e(current_language())}" dir="{"rtl" if is_rtl() else "ltr"}">'
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} \u2014 {_e(when(report))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='meta'>{_e(when(report))} \u00b7 {_e(source_title(report))}</p>",
        *(f"<p class='headline'>{_e(line)}</p>" for line in verdict_lines(report)),
    ]
    notice = stopped_notice(report)
    if notice:
        parts.append(f"<p class='notice'>{_e(notice)}</p>")
    found = findings_html(report)
    if found:
        parts.append(f"<h2>{_e(_('What CallPath found'))}</h2>")
        parts.append(found)
    parts.append(f"<h2>{_e(_('Paths'))}</h2>")
    for path in report.get("paths", []):
        view = path_view(path)
        light_name = _(LIGHT_NAMES[view.light])
        parts.append(
            f"<div class='path'><p><span class='light' role='img' "
            f"aria-label='{_e(light_name)}' style='background:{LIGHT_COLOURS[view.light]}'>"
            f"</span><strong>{_e(view.label)}</strong>: {_e(light_name)}. {_e(view.status)}</p>"
        )
        if view.explanation:
            parts.append(
                f"<p>{_e(view.explanation)} <span class='failure'>({_e(view.failure)})</span></p>"
            )
        parts.append(_charts(path))
        parts.append("</div>")
    held = hold_section_html(report)
    if held:
        parts.append(f"<h2>{_e(_('Keeping the call going'))}</h2>")
        parts.append(held)
    parts.append(f"<h2>{_e(_('What to do'))}</h2><ul>")
    parts.extend(f"<li>{_e(step)}</li>" for step in next_steps(report))
    parts.append("</ul>")
    check = report.get("messenger_check")
    if isinstance(check, dict):  # a lab run with the messenger check (docs/report-format.md)
        parts.append(check_section_html(check))
    parts.append(f"<h2>{_e(_('Details for support staff'))}</h2>")
    parts.append(details_html(report))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
