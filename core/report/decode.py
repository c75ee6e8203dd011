"""A report dict (``report_to_dict``'s output, or a loaded file) → ``RunResult``.

The inverse of the encoder in ``document.py`` up to its rounding and redaction: what the app,
the kernel lab and the tests read back from reports is the same typed result a run produces,
so nothing parses report dicts by hand. Validate untrusted files first (``load_report``); a
dict that lacks a required field raises ``ReportError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.probe_results import ProbeResult
from callpath.core.model.results import (
    Direction,
    DirectionEnd,
    Grade,
    HoldEnd,
    HoldResult,
    HoldTick,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    RunResult,
    SelectedPair,
    SniAttempt,
    Stage,
    StageResult,
    Verdict,
)
from callpath.core.model.route import route_from_dict
from callpath.core.report.document import ReportError


def report_from_dict(data: Mapping[str, Any]) -> RunResult:
    """The run a report describes (see the module's docstring)."""
    try:
        return _run(data)
    except (KeyError, TypeError, ValueError) as error:
        raise ReportError(f"not a readable CallPath report: {error!r}") from error


def _run(data: Mapping[str, Any]) -> RunResult:
    verdict = data.get("verdict") or {}
    return RunResult(
        started_at=_time(data["started_at"]),
        finished_at=_time(data["finished_at"]),
        profile_name=str(data.get("profile") or ""),
        target=str(data.get("target") or ""),
        paths=tuple(path_from_dict(path) for path in data.get("paths") or ()),
        verdict=Verdict(
            voice_restored_by=tuple(verdict.get("voice", {}).get("restored_by", ())),
            video_restored_by=tuple(verdict.get("video", {}).get("restored_by", ())),
            headline=str(verdict.get("headline") or ""),
        ),
        cancelled=bool(data.get("cancelled", False)),
        scenario=data.get("scenario"),
        probes=tuple(_probe(probe) for probe in data.get("probes") or ()),
        findings=tuple(_finding(finding) for finding in data.get("findings") or ()),
        route=route_from_dict(data["route"]) if isinstance(data.get("route"), Mapping) else None,
        holds=tuple(
            hold_from_dict(str(path["id"]), path["hold"])
            for path in data.get("paths") or ()
            if path.get("hold") is not None
        ),
    )


def hold_from_dict(path_id: str, hold: Mapping[str, Any]) -> HoldResult:
    """A path's ``hold`` section (version 1; a newer one is read for what it shares)."""
    series = hold.get("series") or {}
    return HoldResult(
        path_id=path_id,
        held_for=tuple(MediaKind(kind) for kind in hold.get("held_for") or ()),
        asked_s=float(hold["asked_s"]),
        achieved_s=float(hold["achieved_s"]),
        ended=HoldEnd(hold["ended"]),
        ended_at_s=hold.get("ended_at_s"),
        mechanism=hold.get("mechanism"),
        flow_age_s=float(hold.get("flow_age_s") or 0.0),
        directions=tuple(
            DirectionEnd(
                direction=Direction(end["direction"]),
                at_s=end.get("stopped_at_s"),
                bytes=int(end.get("bytes") or 0),
                flow_age_s=end.get("flow_age_s"),
            )
            for end in hold.get("directions") or ()
        ),
        evidence=dict(hold.get("evidence") or {}),
        ticks=tuple(
            HoldTick(
                t=float(tick["t"]),
                sent_bytes=int(tick["sent"]),
                received_bytes=int(tick["received"]),
            )
            for tick in series.get("bytes") or ()
        ),
        samples=tuple(
            _sample(kind, sample) for kind in MediaKind for sample in series.get(kind.value) or ()
        ),
    )


def path_from_dict(path: Mapping[str, Any]) -> PathResult:
    """One path of a report."""
    pair = path.get("selected_pair")
    return PathResult(
        path_id=str(path["id"]),
        exercised=bool(path.get("exercised", False)),
        failure=path.get("failure"),
        stages=tuple(_stage(stage) for stage in path.get("stages") or ()),
        server=path.get("server"),
        selected_pair=None if pair is None else _pair(pair),
        voice=_media(MediaKind.AUDIO, path.get("voice")),
        video=_media(MediaKind.VIDEO, path.get("video")),
        duration=float(path.get("duration_s") or 0.0),
        sni_attempts=tuple(
            SniAttempt(server_name=str(attempt["server_name"]), failure=attempt.get("failure"))
            for attempt in path.get("sni_attempts") or ()
        ),
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _stage(stage: Mapping[str, Any]) -> StageResult:
    return StageResult(
        stage=Stage(stage["stage"]),
        started_at=float(stage.get("started_at_s") or 0.0),
        duration=float(stage.get("duration_s") or 0.0),
        failure=stage.get("failure"),
        evidence=dict(stage.get("evidence") or {}),
    )


def _pair(pair: Mapping[str, Any]) -> SelectedPair:
    return SelectedPair(
        local_type=str(pair["local_type"]),
        local_address=str(pair["local_address"]),
        local_port=int(pair["local_port"]),
        remote_type=str(pair["remote_type"]),
        remote_address=str(pair["remote_address"]),
        remote_port=int(pair["remote_port"]),
        relay_transport=pair.get("relay_transport"),
        relay_server=pair.get("relay_server"),
    )


def _media(kind: MediaKind, media: Mapping[str, Any] | None) -> MediaQuality:
    if not media:
        return MediaQuality.not_tested(kind)
    return MediaQuality(
        kind=kind,
        grade=Grade(media.get("grade", Grade.NOT_TESTED)),
        mos=media.get("mos"),
        rtt_ms=media.get("rtt_ms"),
        jitter_ms=media.get("jitter_ms"),
        loss_pct=media.get("loss_pct"),
        bitrate_kbps=media.get("bitrate_kbps"),
        reasons=tuple(media.get("reasons") or ()),
        samples=tuple(_sample(kind, sample) for sample in media.get("samples") or ()),
    )


def _sample(kind: MediaKind, sample: Mapping[str, Any]) -> QualitySample:
    return QualitySample(
        t=float(sample["t"]),
        kind=kind,
        direction=Direction(sample["direction"]),
        rtt_ms=sample.get("rtt_ms"),
        jitter_ms=sample.get("jitter_ms"),
        loss_pct=sample.get("loss_pct"),
        bitrate_kbps=sample.get("bitrate_kbps"),
    )


def _probe(probe: Mapping[str, Any]) -> ProbeResult:
    return ProbeResult(
        probe=str(probe["probe"]),
        target=str(probe.get("target") or ""),
        started_at=float(probe.get("started_at_s") or 0.0),
        duration=float(probe.get("duration_s") or 0.0),
        failure=probe.get("failure"),
        evidence=dict(probe.get("evidence") or {}),
        control=bool(probe.get("control", False)),
    )


def _finding(finding: Mapping[str, Any]) -> Finding:
    return Finding(
        mechanism=str(finding["mechanism"]),
        paths=tuple(finding.get("paths") or ()),
        evidence=dict(finding.get("evidence") or {}),
        confidence=Confidence(finding.get("confidence", Confidence.LOW)),
        summary=str(finding.get("summary") or ""),
        recommendation=str(finding.get("recommendation") or ""),
        technical=str(finding.get("technical") or ""),
    )
