"""A report dict (``report_to_dict``'s format) back into a ``RunResult``.

For front ends that get a run as a report from another process, such as the kernel lab, which
runs ``callpath run`` inside a network namespace: they print it with the same code as a run
of their own. Texts (headline, findings) stay in the language the report was written in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.probe_results import ProbeResult
from callpath.core.model.results import (
    Direction,
    Grade,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    RunResult,
    SelectedPair,
    Stage,
    StageResult,
    Verdict,
)


def run_from_report(report: Mapping[str, Any]) -> RunResult:
    """The run a (validated) report describes."""
    verdict = report.get("verdict", {})
    return RunResult(
        started_at=_moment(report.get("started_at")),
        finished_at=_moment(report.get("finished_at")),
        profile_name=str(report.get("profile") or ""),
        target=str(report.get("target") or ""),
        paths=tuple(_path(path) for path in report.get("paths", [])),
        verdict=Verdict(
            voice_restored_by=tuple(verdict.get("voice", {}).get("restored_by", [])),
            video_restored_by=tuple(verdict.get("video", {}).get("restored_by", [])),
            headline=str(verdict.get("headline", "")),
        ),
        cancelled=bool(report.get("cancelled", False)),
        scenario=report.get("scenario"),
        probes=tuple(_probe(probe) for probe in report.get("probes", [])),
        findings=tuple(_finding(finding) for finding in report.get("findings", [])),
    )


def _moment(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(0, UTC)


def _float(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float) else default


def _optional(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _path(path: Mapping[str, Any]) -> PathResult:
    pair = path.get("selected_pair")
    return PathResult(
        path_id=str(path["id"]),
        exercised=bool(path.get("exercised", False)),
        failure=path.get("failure"),
        stages=tuple(_stage(stage) for stage in path.get("stages", [])),
        server=path.get("server"),
        selected_pair=None if not pair else _pair(pair),
        voice=_media(path.get("voice", {}), MediaKind.AUDIO),
        video=_media(path.get("video", {}), MediaKind.VIDEO),
        duration=_float(path.get("duration_s")),
    )


def _stage(stage: Mapping[str, Any]) -> StageResult:
    return StageResult(
        stage=Stage(stage["stage"]),
        started_at=_float(stage.get("started_at_s")),
        duration=_float(stage.get("duration_s")),
        failure=stage.get("failure"),
        evidence=dict(stage.get("evidence") or {}),
    )


def _pair(pair: Mapping[str, Any]) -> SelectedPair:
    return SelectedPair(
        local_type=str(pair.get("local_type", "")),
        local_address=str(pair.get("local_address", "")),
        local_port=int(pair.get("local_port", 0)),
        remote_type=str(pair.get("remote_type", "")),
        remote_address=str(pair.get("remote_address", "")),
        remote_port=int(pair.get("remote_port", 0)),
        relay_transport=pair.get("relay_transport"),
        relay_server=pair.get("relay_server"),
    )


def _media(media: Mapping[str, Any], kind: MediaKind) -> MediaQuality:
    return MediaQuality(
        kind=kind,
        grade=Grade(media.get("grade", Grade.NOT_TESTED.value)),
        mos=_optional(media.get("mos")),
        rtt_ms=_optional(media.get("rtt_ms")),
        jitter_ms=_optional(media.get("jitter_ms")),
        loss_pct=_optional(media.get("loss_pct")),
        bitrate_kbps=_optional(media.get("bitrate_kbps")),
        reasons=tuple(str(reason) for reason in media.get("reasons", [])),
        samples=tuple(_sample(sample, kind) for sample in media.get("samples", [])),
    )


def _sample(sample: Mapping[str, Any], kind: MediaKind) -> QualitySample:
    return QualitySample(
        t=_float(sample.get("t")),
        kind=kind,
        direction=Direction(sample["direction"]),
        rtt_ms=_optional(sample.get("rtt_ms")),
        jitter_ms=_optional(sample.get("jitter_ms")),
        loss_pct=_optional(sample.get("loss_pct")),
        bitrate_kbps=_optional(sample.get("bitrate_kbps")),
    )


def _probe(probe: Mapping[str, Any]) -> ProbeResult:
    return ProbeResult(
        probe=str(probe["probe"]),
        target=str(probe.get("target", "")),
        started_at=_float(probe.get("started_at_s")),
        duration=_float(probe.get("duration_s")),
        failure=probe.get("failure"),
        evidence=dict(probe.get("evidence") or {}),
        control=bool(probe.get("control", False)),
    )


def _finding(finding: Mapping[str, Any]) -> Finding:
    return Finding(
        mechanism=str(finding["mechanism"]),
        paths=tuple(str(path) for path in finding.get("paths", [])),
        evidence=dict(finding.get("evidence") or {}),
        confidence=Confidence(finding.get("confidence", Confidence.LOW.value)),
        summary=str(finding.get("summary", "")),
        recommendation=str(finding.get("recommendation", "")),
        technical=str(finding.get("technical", "")),
    )
