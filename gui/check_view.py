"""The messenger check's report dict -> what the app and the HTML export show: a table of
messengers × routes with traffic lights, the findings in plain words and the fitting fixes.

Pure and Qt-free (``gui/check_page.py`` draws it); reports may come from other machines, so the
HTML escapes every value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from callpath.core.checkup.texts import REACHABILITY_TEXTS, network_line, sides_lines
from callpath.core.i18n import _, current_language, is_rtl
from callpath.core.messengers.judge import AROUND_VPN, REASONS, Reachability
from callpath.core.messengers.network_state import NetworkState
from callpath.core.present.route import around_line, route_lines
from callpath.gui.report_view import Light

LIGHTS = {
    "works": Light.GREEN,
    "tcp_only": Light.AMBER,
    "intermittent": Light.AMBER,
    "blocked": Light.RED,
    "unknown": Light.GREY,
}
COLOURS = {
    Light.GREEN: "#2e7d32",
    Light.AMBER: "#f9a825",
    Light.RED: "#c62828",
    Light.GREY: "#757575",
}
Report = Mapping[str, Any]


@dataclass(frozen=True)
class Cell:
    value: str  # a Reachability value
    light: Light
    text: str  # translated, e.g. "blocked"
    reason: str  # translated reason, or ""


@dataclass(frozen=True)
class Column:
    through: str  # direct or a proxy id
    title: str  # translated


@dataclass(frozen=True)
class Row:
    messenger: str
    name: str
    cells: tuple[tuple[Cell, Cell], ...]  # (messages, calls) per column


def _cell(value: str, reason: str | None) -> Cell:
    known = value if value in LIGHTS else "unknown"
    text = _(REACHABILITY_TEXTS[Reachability(known)])
    text_of_reason = REASONS.get(reason or "", "")
    why = _(text_of_reason) if text_of_reason and reason != "blocked_here" else ""
    return Cell(known, LIGHTS[known], text, why)


def _vpn(report: Report) -> str | None:
    route = report.get("route")
    if not isinstance(route, Mapping) or not route.get("through_vpn"):
        return None
    return str(route.get("vpn_interface") or "")


def _around(report: Report) -> Mapping[str, Any] | None:
    around = report.get("around_vpn")
    return around if isinstance(around, Mapping) else None


def columns(report: Report) -> list[Column]:
    vpn = _vpn(report)
    if vpn is None:
        found = [Column("direct", _("Direct"))]
    else:
        found = [Column("direct", _("Through your VPN ({interface})").format(interface=vpn))]
    throughs = {m.get("through") for m in report.get("messengers", [])}
    around = _around(report)
    if AROUND_VPN in throughs:
        interface = "" if around is None else str(around.get("interface", ""))
        found.append(
            Column(AROUND_VPN, _("Around your VPN ({interface})").format(interface=interface))
        )
    for proxy in report.get("proxies", []):
        if proxy.get("id") in throughs:
            found.append(Column(str(proxy["id"]), _("Via {url}").format(url=proxy.get("url", ""))))
    return found


def rows(report: Report) -> list[Row]:
    by_id: dict[str, dict[str, Mapping[str, Any]]] = {}
    names: dict[str, str] = {}
    for entry in report.get("messengers", []):
        by_id.setdefault(str(entry["id"]), {})[str(entry["through"])] = entry
        names[str(entry["id"])] = str(entry.get("name", entry["id"]))
    result = []
    for messenger, routes in by_id.items():
        cells = []
        for column in columns(report):
            entry = routes.get(column.through, {})
            cells.append(
                (
                    _cell(str(entry.get("messages", "unknown")), entry.get("messages_reason")),
                    _cell(str(entry.get("calls", "unknown")), entry.get("calls_reason")),
                )
            )
        result.append(Row(messenger, names[messenger], tuple(cells)))
    return result


def findings(report: Report) -> list[str]:
    """Plain-language lines: network state, UDP, each proxy's UDP line, DNS tampering."""
    lines = []
    state = str(report.get("network", "online"))
    if state in {s.value for s in NetworkState}:
        lines.append(network_line(NetworkState(state), str(report.get("udp", "unknown"))))
    route = report.get("route")
    lines += side_lines(report, route_lines(route if isinstance(route, Mapping) else None))
    for proxy in report.get("proxies", []):
        carries = proxy.get("carries_udp")
        if carries is True:
            udp = _("carries UDP: yes")
        elif carries is False:
            udp = _("carries UDP: no — it cannot carry calls")
        else:
            udp = _("carries UDP: cannot tell ({reason})").format(reason=proxy.get("failure") or "")
        lines.append(
            _("Proxy {url} ({kind}): {udp}").format(
                url=proxy.get("url", ""), kind=proxy.get("kind", ""), udp=udp
            )
        )
    for lookup in report.get("dns", []):
        if lookup.get("tampered"):
            lines.append(
                _(
                    "DNS: your resolver says {failure} for {name}, while DNS over HTTPS answers "
                    "(dns_tampering)."
                ).format(failure=lookup.get("failure"), name=lookup.get("name"))
            )
    return lines


def side_lines(report: Report, route: list[str]) -> list[str]:
    """The route's lines; where the check went around the VPN too, that side's network and
    each messenger on both sides instead of why it did not."""
    around = _around(report)
    vpn = _vpn(report)
    if around is None or vpn is None:
        return route
    lines = [*route[:1], around_line(str(around.get("interface", "")))]
    state = str(around.get("network", "online"))
    if state in {s.value for s in NetworkState}:
        line = network_line(NetworkState(state), str(around.get("udp", "unknown")))
        lines.append(_("Around your VPN: {line}").format(line=line))
    entries: dict[str, dict[str, Mapping[str, Any]]] = {}
    for entry in report.get("messengers", []):
        entries.setdefault(str(entry.get("id")), {})[str(entry.get("through"))] = entry
    for sides in entries.values():
        through, outside = sides.get("direct"), sides.get(AROUND_VPN)
        if through is not None and outside is not None:
            lines += sides_lines(str(through.get("name", "")), vpn, through, outside)
    return lines


def fixes(report: Report) -> list[tuple[str, str, str, str]]:
    """(messenger name, text, source, date) of the direct routes' fixes, each text once."""
    seen: set[str] = set()
    found = []
    for entry in report.get("messengers", []):
        if entry.get("through") != "direct":
            continue
        for fix in entry.get("fixes", []):
            text = str(fix.get("text", ""))
            if text and text not in seen:
                seen.add(text)
                found.append(
                    (str(entry.get("name", "")), text, str(fix.get("source")), str(fix.get("date")))
                )
    return found


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def check_section_html(report: Report) -> str:
    """The section alone: a table with coloured lights, findings and fixes (Qt rich text too)."""
    head = "".join(f"<th colspan='2'>{_e(c.title)}</th>" for c in columns(report))
    sub = "".join(
        f"<th>{_e(_('Messages'))}</th><th>{_e(_('Calls'))}</th>" for _c in columns(report)
    )
    body = []
    for row in rows(report):
        cells = []
        for pair in row.cells:
            for cell in pair:
                title = f" title='{_e(cell.reason)}'" if cell.reason else ""
                cells.append(
                    f"<td{title}><span style='color:{COLOURS[cell.light]}'>●</span> "
                    f"{_e(cell.text)}</td>"
                )
        body.append(f"<tr><th>{_e(row.name)}</th>{''.join(cells)}</tr>")
    parts = [
        f"<h2>{_e(_('Messengers on this network'))}</h2>",
        f"<table border='1' cellspacing='0' cellpadding='4'><tr><th></th>{head}</tr>"
        f"<tr><th></th>{sub}</tr>{''.join(body)}</table>",
        "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in findings(report)) + "</ul>",
    ]
    found = fixes(report)
    if found:
        parts.append(f"<h3>{_e(_('What can fix it'))}</h3><ul>")
        for name, text, source, date in found:
            parts.append(
                f"<li><b>{_e(name)}</b>: {_e(text)} <small>({_e(source)}, {_e(date)})</small></li>"
            )
        parts.append("</ul>")
    return "".join(parts)


def render_check_html(report: Report) -> str:
    """One self-contained page (no external resources) for the HTML export."""
    direction = "rtl" if is_rtl() else "ltr"
    title = _e(_("Test my network: messengers"))
    return (
        f"<!DOCTYPE html><html lang='{_e(current_language())}' dir='{direction}'><head>"
        f"<meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
        "td,th{text-align:start}</style></head><body>"
        f"<h1>{title}</h1><p>{_e(report.get('started_at', ''))}</p>"
        f"{check_section_html(report)}</body></html>\n"
    )


def summary(report: Report, names: Sequence[str] = ("whatsapp", "telegram")) -> str:
    """One line for the page's head: the first messengers' calls, directly."""
    parts = []
    for entry in report.get("messengers", []):
        if entry.get("through") == "direct" and entry.get("id") in names:
            cell = _cell(str(entry.get("calls")), None)
            parts.append(_("{name} calls: {value}").format(name=entry.get("name"), value=cell.text))
    return "; ".join(parts)


def check_text(report: Report) -> str:
    """The section as plain text (support view, copy and paste)."""
    lines = []
    titles = [c.title for c in columns(report)]
    for row in rows(report):
        cells = [
            _("{route}: messages {messages}, calls {calls}").format(
                route=title, messages=messages.text, calls=calls.text
            )
            for title, (messages, calls) in zip(titles, row.cells, strict=True)
        ]
        lines.append(f"- {row.name}: " + "; ".join(cells))
    lines.extend(findings(report))
    lines.extend(
        _("\u2022 {messenger}: {text} (source: {source}, {date})").format(
            messenger=name, text=text, source=source, date=date
        )
        for name, text, source, date in fixes(report)
    )
    return "\n".join(lines) + "\n"
