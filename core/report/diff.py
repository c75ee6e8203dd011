"""What changed between two reports: before/after a fix, or two users on different networks.

Pure: two report dicts (``callpath.core.report.document`` format, as written or as loaded) go in, a
``ReportDiff``
comes out. Per path: grade changes, failures appearing or disappearing, the failing stage, and
the RTT, jitter, loss, bitrate and MOS deltas with whether each is a real change (beyond the
thresholds below, which are larger than the run-to-run noise of a healthy path). Findings of the
diagnosis are matched by mechanism and path set, so a mechanism that now explains other paths
shows as one removed and one added. Front ends turn the result into words.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Report = Mapping[str, Any]

MEDIA = ("voice", "video")
METRICS = ("mos", "rtt_ms", "jitter_ms", "loss_pct", "bitrate_kbps")
HIGHER_IS_BETTER = frozenset({"mos", "bitrate_kbps"})
# A change smaller than this is not worth a highlight: (absolute, relative to the larger value).
# A metric changes significantly when the delta exceeds both.
SIGNIFICANT: Mapping[str, tuple[float, float]] = {
    "mos": (0.3, 0.0),
    "rtt_ms": (20.0, 0.2),
    "jitter_ms": (5.0, 0.2),
    "loss_pct": (1.0, 0.0),
    "bitrate_kbps": (20.0, 0.2),
}
GRADE_ORDER: Mapping[str, int] = {"good": 0, "degraded": 1, "unusable": 2, "not_tested": 3}


class Trend(enum.StrEnum):
    BETTER = "better"
    WORSE = "worse"
    SAME = "same"  # equal, or a difference within the noise
    CHANGED = "changed"  # different, but neither better nor worse (e.g. one failure for another)


class Presence(enum.StrEnum):
    BOTH = "both"
    ONLY_BEFORE = "only_before"
    ONLY_AFTER = "only_after"


@dataclass(frozen=True)
class GradeChange:
    media: str  # voice | video
    before: str | None  # None: the path is not in that report
    after: str | None

    @property
    def trend(self) -> Trend:
        if self.before == self.after:
            return Trend.SAME
        if self.before is None or self.after is None:
            return Trend.CHANGED
        rank_before = GRADE_ORDER.get(self.before, len(GRADE_ORDER))
        rank_after = GRADE_ORDER.get(self.after, len(GRADE_ORDER))
        if rank_after == rank_before:
            return Trend.CHANGED
        return Trend.BETTER if rank_after < rank_before else Trend.WORSE


@dataclass(frozen=True)
class MetricChange:
    media: str
    metric: str  # one of METRICS
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def significant(self) -> bool:
        delta = self.delta
        if delta is None:
            return (self.before is None) != (self.after is None)
        absolute, relative = SIGNIFICANT.get(self.metric, (0.0, 0.0))
        scale = max(abs(self.before or 0.0), abs(self.after or 0.0))
        return abs(delta) > absolute and abs(delta) > relative * scale

    @property
    def trend(self) -> Trend:
        delta = self.delta
        if not self.significant:
            return Trend.SAME
        if delta is None:
            return Trend.CHANGED
        improved = delta > 0 if self.metric in HIGHER_IS_BETTER else delta < 0
        return Trend.BETTER if improved else Trend.WORSE


@dataclass(frozen=True)
class PathDiff:
    path_id: str
    presence: Presence
    failure_before: str | None
    failure_after: str | None
    failed_stage_before: str | None
    failed_stage_after: str | None
    exercised_before: bool
    exercised_after: bool
    grades: tuple[GradeChange, ...]  # voice, video
    metrics: tuple[MetricChange, ...]  # every metric either report has, in METRICS order

    @property
    def failure_appeared(self) -> bool:
        return self.failure_before is None and self.failure_after is not None

    @property
    def failure_disappeared(self) -> bool:
        return self.failure_before is not None and self.failure_after is None

    @property
    def failure_changed(self) -> bool:
        """Failed in both, with different failure strings."""
        return None not in (self.failure_before, self.failure_after) and (
            self.failure_before != self.failure_after
        )

    @property
    def trend(self) -> Trend:
        """The path as a whole: carried a call now and not before is better, and so on."""
        if self.presence is not Presence.BOTH:
            return Trend.CHANGED
        if self.exercised_after != self.exercised_before:
            return Trend.BETTER if self.exercised_after else Trend.WORSE
        trends = {grade.trend for grade in self.grades}
        if Trend.WORSE in trends and Trend.BETTER not in trends:
            return Trend.WORSE
        if Trend.BETTER in trends and Trend.WORSE not in trends:
            return Trend.BETTER
        if trends - {Trend.SAME} or self.failure_changed or self.failure_appeared:
            return Trend.CHANGED
        metric_trends = {metric.trend for metric in self.metrics}
        if Trend.WORSE in metric_trends and Trend.BETTER not in metric_trends:
            return Trend.WORSE
        if Trend.BETTER in metric_trends and Trend.WORSE not in metric_trends:
            return Trend.BETTER
        return Trend.CHANGED if metric_trends - {Trend.SAME} else Trend.SAME

    @property
    def changed(self) -> bool:
        return self.trend is not Trend.SAME

    def significant_metrics(self) -> tuple[MetricChange, ...]:
        return tuple(metric for metric in self.metrics if metric.significant)


@dataclass(frozen=True)
class FindingRef:
    """A finding as both reports can be matched on: its mechanism and the paths it explains."""

    mechanism: str
    paths: tuple[str, ...]
    summary: str
    confidence: str
    censorship: bool


@dataclass(frozen=True)
class ReportDiff:
    paths: tuple[PathDiff, ...]  # the paths of ``before`` in order, then the new ones of ``after``
    findings_added: tuple[FindingRef, ...]
    findings_removed: tuple[FindingRef, ...]
    findings_kept: tuple[FindingRef, ...]
    voice_before: tuple[str, ...]  # the verdict's restored_by lists
    voice_after: tuple[str, ...]
    video_before: tuple[str, ...]
    video_after: tuple[str, ...]

    @property
    def verdict_changed(self) -> bool:
        return self.voice_before != self.voice_after or self.video_before != self.video_after

    @property
    def changed(self) -> bool:
        return (
            self.verdict_changed
            or bool(self.findings_added or self.findings_removed)
            or any(path.changed for path in self.paths)
        )

    def path(self, path_id: str) -> PathDiff | None:
        return next((path for path in self.paths if path.path_id == path_id), None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _failed_stage(path: Mapping[str, Any] | None) -> str | None:
    if path is None:
        return None
    for stage in path.get("stages") or []:
        if isinstance(stage, Mapping) and stage.get("failure"):
            return str(stage.get("stage"))
    return None


def _media(path: Mapping[str, Any] | None, media: str) -> Mapping[str, Any]:
    if path is None:
        return {}
    value = path.get(media)
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def diff_path(
    path_id: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> PathDiff:
    """One path of both reports (``None`` where a report does not have it)."""
    if before is not None and after is not None:
        presence = Presence.BOTH
    elif before is not None:
        presence = Presence.ONLY_BEFORE
    else:
        presence = Presence.ONLY_AFTER
    grades = []
    metrics = []
    for media in MEDIA:
        old, new = _media(before, media), _media(after, media)
        grades.append(
            GradeChange(
                media,
                None if before is None else str(old.get("grade", "not_tested")),
                None if after is None else str(new.get("grade", "not_tested")),
            )
        )
        for metric in METRICS:
            old_value, new_value = _number(old.get(metric)), _number(new.get(metric))
            if old_value is not None or new_value is not None:
                metrics.append(MetricChange(media, metric, old_value, new_value))
    return PathDiff(
        path_id=path_id,
        presence=presence,
        failure_before=None if before is None else _text(before.get("failure")),
        failure_after=None if after is None else _text(after.get("failure")),
        failed_stage_before=_failed_stage(before),
        failed_stage_after=_failed_stage(after),
        exercised_before=bool(before and before.get("exercised")),
        exercised_after=bool(after and after.get("exercised")),
        grades=tuple(grades),
        metrics=tuple(metrics),
    )


def _paths(report: Report) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for path in report.get("paths") or []:
        if isinstance(path, Mapping) and "id" in path:
            found.setdefault(str(path["id"]), path)
    return found


def _findings(report: Report) -> list[FindingRef]:
    found = []
    for finding in report.get("findings") or []:
        if not isinstance(finding, Mapping):
            continue
        found.append(
            FindingRef(
                mechanism=str(finding.get("mechanism", "")),
                paths=tuple(sorted(str(p) for p in finding.get("paths") or [])),
                summary=str(finding.get("summary", "")),
                confidence=str(finding.get("confidence", "")),
                censorship=bool(finding.get("censorship")),
            )
        )
    return found


def _restored(report: Report, media: str) -> tuple[str, ...]:
    verdict = report.get("verdict")
    if not isinstance(verdict, Mapping):
        return ()
    kind = verdict.get(media)
    if not isinstance(kind, Mapping):
        return ()
    return tuple(str(p) for p in kind.get("restored_by") or [])


def _key(finding: FindingRef) -> tuple[str, tuple[str, ...]]:
    return finding.mechanism, finding.paths


def _unmatched(
    ours: Sequence[FindingRef], theirs: Sequence[FindingRef]
) -> tuple[list[FindingRef], list[FindingRef]]:
    """(ours that have no match in theirs, ours that do)."""
    keys = [_key(finding) for finding in theirs]
    missing, matched = [], []
    for finding in ours:
        key = _key(finding)
        if key in keys:
            keys.remove(key)
            matched.append(finding)
        else:
            missing.append(finding)
    return missing, matched


def diff_reports(before: Report, after: Report) -> ReportDiff:
    """Compare ``before`` with ``after`` (any two reports; the names give the reading order)."""
    old_paths, new_paths = _paths(before), _paths(after)
    order = list(old_paths) + [path_id for path_id in new_paths if path_id not in old_paths]
    old_findings, new_findings = _findings(before), _findings(after)
    removed, kept = _unmatched(old_findings, new_findings)
    added, _matched = _unmatched(new_findings, old_findings)
    return ReportDiff(
        paths=tuple(
            diff_path(path_id, old_paths.get(path_id), new_paths.get(path_id)) for path_id in order
        ),
        findings_added=tuple(added),
        findings_removed=tuple(removed),
        findings_kept=tuple(kept),
        voice_before=_restored(before, "voice"),
        voice_after=_restored(after, "voice"),
        video_before=_restored(before, "video"),
        video_after=_restored(after, "video"),
    )
