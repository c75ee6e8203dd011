"""What the Verdict page, the HTML export and the clipboard summary say about a report.

Pure and Qt-free: everything is computed from the report *dict* (``callpath.core.report.document``
format), so a
live run, a run from history and a report someone else sent render identically. The only
state read is the current language.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from babel.dates import format_datetime
from babel.numbers import format_decimal

from callpath.core.i18n import N_, _, current_language
from callpath.core.model.results import STAGE_ORDER, PathResult, RunResult, Verdict
from callpath.core.paths.registry import path_label, paths_where
from callpath.core.present.failures import (
    NEXT_STEPS,
    explain_failure,
    next_step_for,
    stage_name,
)
from callpath.core.present.proxy_failures import explain_proxy_failure
from callpath.core.report.document import report_to_dict
from callpath.gui.sources import profile_title

Report = Mapping[str, Any]
PathDict = Mapping[str, Any]


class Light(enum.StrEnum):
    """Traffic light of one path."""

    GREEN = "green"  # voice and video good
    AMBER = "amber"  # carried a call, but something was degraded or unusable
    RED = "red"  # failed, or nothing usable got through
    GREY = "grey"  # not tested (e.g. the run was stopped first)


LIGHT_NAMES = {
    Light.GREEN: N_("works"),
    Light.AMBER: N_("works poorly"),
    Light.RED: N_("does not work"),
    Light.GREY: N_("not tested"),
}

GRADE_NAMES = {
    "good": N_("good"),
    "degraded": N_("degraded"),
    "unusable": N_("unusable"),
    "not_tested": N_("not tested"),
}


@dataclass(frozen=True)
class PathView:
    """One path as the Verdict page shows it."""

    path_id: str
    label: str
    light: Light
    status: str
    failure: str | None
    explanation: str | None


def path_to_dict(path: PathResult) -> dict[str, Any]:
    """One path in the report format, through the core's public ``report_to_dict``."""
    moment = datetime.now(UTC)
    run = RunResult(moment, moment, "", "", (path,), Verdict((), (), ""))
    return dict(report_to_dict(run, redact=False)["paths"][0])


def _text(message: str | None) -> str | None:
    return None if message is None else _(message)


def number(value: float, digits: int = 0) -> str:
    """A number in the current language's format (4.3 / 4,3)."""
    pattern = "0" if digits == 0 else "0." + "0" * digits
    return str(format_decimal(value, format=pattern, locale=current_language()))


def failed_stage(path: PathDict) -> str | None:
    for stage in path.get("stages", []):
        if stage.get("failure"):
            return str(stage.get("stage"))
    return None


def grade_name(grade: str) -> str:
    return _text(GRADE_NAMES.get(grade)) or grade


def path_light(path: PathDict) -> Light:
    """Green: voice and video good. Amber: a call got through, not all good. Red: failed or
    nothing usable. Grey: not tested (the user stopped the run before this path finished)."""
    failure = path.get("failure")
    voice = path.get("voice", {}).get("grade", "not_tested")
    video = path.get("video", {}).get("grade", "not_tested")
    if failure == "interrupted":
        return Light.GREY
    if not path.get("exercised"):
        return Light.GREY if failure is None and failed_stage(path) is None else Light.RED
    if voice == "good" and video == "good":
        return Light.GREEN
    if {voice, video} <= {"unusable", "not_tested"}:
        return Light.RED
    return Light.AMBER


def _quality_phrase(path: PathDict) -> str:
    voice = path.get("voice", {})
    video = path.get("video", {})
    voice_text = grade_name(str(voice.get("grade", "not_tested")))
    if voice.get("mos") is not None:
        voice_text = _("{grade} (MOS {mos})").format(
            grade=voice_text, mos=number(float(voice["mos"]), 1)
        )
    video_text = grade_name(str(video.get("grade", "not_tested")))
    if video.get("bitrate_kbps") is not None:
        video_text = _("{grade} ({rate} kbit/s)").format(
            grade=video_text, rate=number(float(video["bitrate_kbps"]))
        )
    return _("Voice {voice}, video {video}.").format(voice=voice_text, video=video_text)


def path_view(path: PathDict) -> PathView:
    path_id = str(path.get("id", "?"))
    light = path_light(path)
    failure = path.get("failure")
    stage = failed_stage(path)
    if light == Light.GREY:
        status = _("Not tested: the test was stopped before this path finished.")
    elif not path.get("exercised"):
        if stage is not None:
            status = _("Failed at step \u201c{stage}\u201d.").format(stage=stage_name(stage))
        else:
            status = _("Failed.")
    else:
        status = _quality_phrase(path)
    return PathView(
        path_id=path_id,
        label=path_label(path_id),
        light=light,
        status=status,
        failure=str(failure) if failure else None,
        explanation=_path_explanation(path_id, path) if failure else None,
    )


def _path_explanation(path_id: str, path: PathDict) -> str | None:
    """A proxy path's own words first (e.g. "this proxy does not carry UDP…"), else the
    failure's general explanation."""
    failure = str(path.get("failure"))
    if path_id in paths_where(proxied=True):
        stage = next((s for s in path.get("stages") or [] if s.get("failure") is not None), None)
        evidence = dict(stage.get("evidence") or {}) if stage else {}
        proxy_words = explain_proxy_failure(failure, evidence, udp=path_id == "socks5-udp")
        if proxy_words is not None:
            return proxy_words
    return explain_failure(failure)


CONFIDENCE_NAMES = {
    "high": N_("high confidence"),
    "medium": N_("medium confidence"),
    "low": N_("low confidence"),
}
INCONCLUSIVE = "inconclusive"


class FindingKind(enum.StrEnum):
    """What a finding is about, for its colour and its order on the page."""

    CENSORSHIP = "censorship"  # a blocking mechanism
    NETWORK = "network"  # a bad or restrictive network, no censor involved
    INCONCLUSIVE = "inconclusive"  # failures the evidence does not explain


@dataclass(frozen=True)
class FindingView:
    """One finding of the diagnosis as the Verdict page, the HTML and the summary show it.

    The texts were written in the run's language when the diagnosis ran; the report keeps them
    as they were (they quote measured numbers), so they are shown as they are.
    """

    mechanism: str
    kind: FindingKind
    summary: str
    recommendation: str
    technical: str
    confidence: str  # translated, e.g. "high confidence"
    paths: tuple[str, ...]  # path ids
    path_labels: str  # translated path names, comma separated
    evidence: Mapping[str, Any]


def finding_views(report: Report) -> list[FindingView]:
    """The report's findings: blocking mechanisms first, then the network, inconclusive last."""
    views = []
    for finding in report.get("findings") or []:
        if not isinstance(finding, Mapping):
            continue
        mechanism = str(finding.get("mechanism", ""))
        if mechanism == INCONCLUSIVE:
            kind = FindingKind.INCONCLUSIVE
        elif finding.get("censorship"):
            kind = FindingKind.CENSORSHIP
        else:
            kind = FindingKind.NETWORK
        paths = tuple(str(p) for p in finding.get("paths") or [])
        confidence = str(finding.get("confidence", ""))
        views.append(
            FindingView(
                mechanism=mechanism,
                kind=kind,
                summary=str(finding.get("summary") or mechanism),
                recommendation=str(finding.get("recommendation") or ""),
                technical=str(finding.get("technical") or ""),
                confidence=_text(CONFIDENCE_NAMES.get(confidence)) or confidence,
                paths=paths,
                path_labels=", ".join(path_label(p) for p in paths),
                evidence=finding.get("evidence") or {},
            )
        )
    order = {FindingKind.CENSORSHIP: 0, FindingKind.NETWORK: 1, FindingKind.INCONCLUSIVE: 2}
    views.sort(key=lambda view: order[view.kind])
    return views


def finding_line(view: FindingView) -> str:
    """How a finding reads in one line of text: what, where, how sure."""
    if view.path_labels:
        return _("{summary} ({paths}; {confidence})").format(
            summary=view.summary, paths=view.path_labels, confidence=view.confidence
        )
    return _("{summary} ({confidence})").format(summary=view.summary, confidence=view.confidence)


def _best(report: Report, kind: str) -> PathDict | None:
    """The tested path with the best grade of ``kind`` (restored_by order wins for good ones)."""
    paths = {str(p.get("id")): p for p in report.get("paths", [])}
    restored = report.get("verdict", {}).get(kind, {}).get("restored_by", [])
    for path_id in restored:
        if path_id in paths:
            found: PathDict = paths[path_id]
            return found
    media = "voice" if kind == "voice" else "video"
    order = {"good": 0, "degraded": 1, "unusable": 2}
    tested = [
        p for p in paths.values() if p.get("exercised") and p.get(media, {}).get("grade") in order
    ]
    return min(tested, key=lambda p: order[p[media]["grade"]], default=None)


def voice_headline(report: Report) -> str:
    best = _best(report, "voice")
    if best is None:
        if _any_tried(report):
            return _("Voice calls: no tested path carried a call.")
        return _("Voice calls: not tested.")
    voice = best.get("voice", {})
    path = path_label(str(best.get("id")))
    grade = voice.get("grade")
    if grade == "good":
        if voice.get("mos") is not None:
            return _("Voice calls work via {path} (quality {mos} of 4.5).").format(
                path=path, mos=number(float(voice["mos"]), 1)
            )
        return _("Voice calls work via {path}.").format(path=path)
    if grade == "degraded":
        return _("Voice calls work poorly at best (via {path}).").format(path=path)
    return _("Voice calls do not work on any tested path.")


def video_headline(report: Report) -> str:
    best = _best(report, "video")
    if best is None:
        if _any_tried(report):
            return _("Video calls: no tested path carried a call.")
        return _("Video calls: not tested.")
    path = path_label(str(best.get("id")))
    grade = best.get("video", {}).get("grade")
    if grade == "good":
        return _("Video calls work via {path}.").format(path=path)
    if grade == "degraded":
        return _("Video calls work poorly at best (via {path}).").format(path=path)
    return _("Video calls do not work on any tested path.")


def _any_tried(report: Report) -> bool:
    return any(path_light(p) != Light.GREY for p in report.get("paths", []))


def next_steps(report: Report) -> list[str]:
    """Concrete advice, most useful first, without repeats."""
    steps: list[str] = []
    voice = report.get("verdict", {}).get("voice", {}).get("restored_by", [])
    video = report.get("verdict", {}).get("video", {}).get("restored_by", [])
    if report.get("profile") == "local-demo":
        steps.append(
            _(
                "This was a demo on this computer only: it tells nothing about your network. "
                "Open a profile from your support contact to test real paths."
            )
        )
    elif voice:
        best = path_label(str(voice[0]))
        if voice[0] == "direct":
            steps.append(
                _(
                    "Calls are not blocked on the network level here. If your messenger's calls "
                    "still fail, its own servers may be blocked: try again with a relay or VPN."
                )
            )
        else:
            steps.append(
                _("Use {path} for calls: set up your app or VPN to relay calls that way.").format(
                    path=best
                )
            )
        if not video:
            steps.append(_("For video, lower the video quality or use voice only."))
    # The diagnosis knows the mechanism: its advice is more precise than the per-failure one.
    for view in finding_views(report):
        advice = view.recommendation
        if view.kind != FindingKind.INCONCLUSIVE and advice and advice not in steps:
            steps.append(advice)
    for path in report.get("paths", []):
        step = next_step_for(path.get("failure"))
        if step is not None and step not in steps:
            steps.append(step)
    if report.get("cancelled"):
        step = _text(NEXT_STEPS["interrupted"])
        if step is not None and step not in steps:
            steps.append(step)
    if not steps:
        steps.append(_("Send the report to your support contact; it tells them what to fix."))
    return steps


def when(report: Report) -> str:
    """The run's start time in local time, formatted for the current language."""
    text = str(report.get("started_at", ""))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return str(format_datetime(moment.astimezone(), "medium", locale=current_language()))


def source_title(report: Report) -> str:
    title = profile_title(str(report.get("profile", "")))
    scenario = report.get("scenario")
    return f"{title} \u00b7 {scenario}" if scenario else title


def stopped_notice(report: Report) -> str | None:
    if report.get("cancelled"):
        return _("The test was stopped before it finished; the results are partial.")
    return None


def headline_lines(report: Report) -> list[str]:
    """When and what was tested, the two headlines, and the stopped notice if any."""
    lines = [
        _("CallPath test of {when} ({source})").format(
            when=when(report), source=source_title(report)
        ),
        voice_headline(report),
        video_headline(report),
    ]
    notice = stopped_notice(report)
    if notice:
        lines.append(notice)
    return lines


def summary_text(report: Report) -> str:
    """A plain-text summary to paste into a chat or an e-mail."""
    lines = headline_lines(report)
    lines.append("")
    findings = finding_views(report)
    if findings:
        lines.append(_("What CallPath found:"))
        lines.extend(f"- {finding_line(finding)}" for finding in findings)
        lines.append("")
    for path in report.get("paths", []):
        view = path_view(path)
        line = f"- {view.label}: {_(LIGHT_NAMES[view.light])}. {view.status}"
        if view.failure:
            line += f" [{view.failure}]"
        lines.append(line)
    lines.append("")
    lines.append(_("What to do:"))
    lines.extend(f"- {step}" for step in next_steps(report))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class StageRow:
    stage: str
    name: str
    started_s: float | None
    duration_s: float | None
    failure: str | None
    evidence: Mapping[str, Any]


def stage_rows(path: PathDict) -> list[StageRow]:
    """The path's stages in the order they ran."""
    rows = []
    for stage in path.get("stages", []):
        key = str(stage.get("stage"))
        rows.append(
            StageRow(
                stage=key,
                name=stage_name(key),
                started_s=stage.get("started_at_s"),
                duration_s=stage.get("duration_s"),
                failure=stage.get("failure"),
                evidence=stage.get("evidence") or {},
            )
        )
    order = {stage.value: index for index, stage in enumerate(STAGE_ORDER)}
    rows.sort(key=lambda row: (row.started_s or 0.0, order.get(row.stage, len(order))))
    return rows


SERIES = ("rtt_ms", "jitter_ms", "loss_pct", "bitrate_kbps")
SERIES_NAMES = {
    "rtt_ms": N_("round trip, ms"),
    "jitter_ms": N_("jitter, ms"),
    "loss_pct": N_("loss, %"),
    "bitrate_kbps": N_("bitrate, kbit/s"),
}


def series_name(metric: str) -> str:
    return _(SERIES_NAMES[metric])


def combine(metric: str, values: Sequence[float]) -> float:
    """One figure per second from both directions: the worse leg decides the call."""
    return min(values) if metric == "bitrate_kbps" else max(values)


def chart_series(samples: Sequence[Mapping[str, Any]], metric: str) -> list[tuple[float, float]]:
    """(t, value) per second, both directions combined as in ``combine``."""
    by_t: dict[float, list[float]] = {}
    for sample in samples:
        value = sample.get(metric)
        if value is not None:
            by_t.setdefault(float(sample["t"]), []).append(float(value))
    return [(t, combine(metric, values)) for t, values in sorted(by_t.items())]
