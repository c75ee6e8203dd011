"""callpath.core.report.diff: two report dicts (written by callpath.core.report.document from real
dataclasses) compared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callpath.core.call.verdict import decide
from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.results import (
    Grade,
    MediaKind,
    MediaQuality,
    PathResult,
    RunResult,
    Stage,
    StageResult,
)
from callpath.core.report.diff import (
    GradeChange,
    MetricChange,
    Presence,
    Trend,
    diff_reports,
)
from callpath.core.report.document import report_to_dict

START = datetime(2025, 8, 14, 10, 0, tzinfo=UTC)


def carried(path_id: str, *, rtt: float, loss: float, bitrate: float, mos: float) -> PathResult:
    return PathResult(
        path_id=path_id,
        exercised=True,
        failure=None,
        stages=(StageResult(Stage.ICE, 0.1, 0.2), StageResult(Stage.QUALITY, 1.0, 4.0)),
        server=None,
        voice=MediaQuality(
            MediaKind.AUDIO,
            Grade.GOOD if mos >= 4 else Grade.DEGRADED,
            mos=mos,
            rtt_ms=rtt,
            loss_pct=loss,
            bitrate_kbps=40,
        ),
        video=MediaQuality(
            MediaKind.VIDEO,
            Grade.GOOD if bitrate >= 300 else Grade.DEGRADED,
            rtt_ms=rtt,
            loss_pct=loss,
            bitrate_kbps=bitrate,
        ),
    )


def failed(path_id: str, stage: Stage, failure: str) -> PathResult:
    return PathResult(
        path_id=path_id,
        exercised=False,
        failure=failure,
        stages=(StageResult(stage, 0.1, 4.0, failure),),
        server=None,
    )


def finding(mechanism: str, paths: tuple[str, ...]) -> Finding:
    return Finding(mechanism, paths, {}, Confidence.HIGH, f"{mechanism} summary", "do", "tech")


def report(*paths: PathResult, findings: tuple[Finding, ...] = ()) -> dict[str, Any]:
    run = RunResult(
        START, START + timedelta(seconds=9), "p", "echo", paths, decide(paths), findings=findings
    )
    return report_to_dict(run, redact=False)


def test_a_path_that_now_carries_calls_is_better_and_its_failure_is_gone() -> None:
    before = report(
        failed("direct", Stage.ICE, "ice_failed"),
        carried("turn-tls", rtt=60, loss=0, bitrate=500, mos=4.3),
        findings=(finding("udp_blocked", ("direct",)),),
    )
    after = report(
        carried("direct", rtt=30, loss=0, bitrate=520, mos=4.4),
        carried("turn-tls", rtt=62, loss=0.2, bitrate=510, mos=4.3),
    )
    diff = diff_reports(before, after)
    assert [p.path_id for p in diff.paths] == ["direct", "turn-tls"]
    direct = diff.path("direct")
    assert direct is not None
    assert direct.failure_disappeared and not direct.failure_appeared
    assert direct.failed_stage_before == "ice" and direct.failed_stage_after is None
    assert direct.trend is Trend.BETTER
    assert [g.trend for g in direct.grades] == [Trend.BETTER, Trend.BETTER]
    # turn-tls moved within the noise: no highlight.
    tls = diff.path("turn-tls")
    assert tls is not None and tls.trend is Trend.SAME and not tls.changed
    assert tls.significant_metrics() == ()
    assert [f.mechanism for f in diff.findings_removed] == ["udp_blocked"]
    assert diff.findings_added == () and diff.findings_kept == ()
    assert diff.voice_before == ("turn-tls",) and "direct" in diff.voice_after
    assert diff.verdict_changed and diff.changed


def test_worse_quality_is_flagged_per_metric_with_deltas() -> None:
    before = report(carried("turn-udp", rtt=40, loss=0.5, bitrate=520, mos=4.4))
    after = report(carried("turn-udp", rtt=180, loss=6.0, bitrate=150, mos=3.1))
    path = diff_reports(before, after).path("turn-udp")
    assert path is not None and path.trend is Trend.WORSE
    metrics = {(m.media, m.metric): m for m in path.significant_metrics()}
    assert metrics[("voice", "rtt_ms")].delta == 140
    assert metrics[("voice", "loss_pct")].trend is Trend.WORSE
    assert metrics[("video", "bitrate_kbps")].trend is Trend.WORSE
    assert metrics[("voice", "mos")].trend is Trend.WORSE
    assert ("voice", "bitrate_kbps") not in metrics  # 40 → 40


def test_failures_appearing_changing_and_paths_only_in_one_report() -> None:
    before = report(
        carried("turn-tcp", rtt=40, loss=0, bitrate=500, mos=4.4),
        failed("turn-udp", Stage.TURN_ALLOCATE, "stun_no_response"),
        failed("direct", Stage.ICE, "ice_failed"),
        findings=(finding("udp_blocked", ("direct", "turn-udp")),),
    )
    after = report(
        failed("turn-tcp", Stage.CONNECT, "connection_reset"),
        failed("turn-udp", Stage.TURN_ALLOCATE, "generic_timeout_error"),
        failed("turn-tls", Stage.CONNECT, "connection_reset"),
        findings=(
            finding("udp_blocked", ("turn-udp",)),
            finding("tls_sni_reset", ("turn-tls",)),
        ),
    )
    diff = diff_reports(before, after)
    assert [p.path_id for p in diff.paths] == ["turn-tcp", "turn-udp", "direct", "turn-tls"]
    tcp = diff.path("turn-tcp")
    assert tcp is not None and tcp.failure_appeared and tcp.trend is Trend.WORSE
    udp = diff.path("turn-udp")
    assert udp is not None and udp.failure_changed and not udp.failure_appeared
    assert udp.trend is Trend.CHANGED
    direct = diff.path("direct")
    assert direct is not None and direct.presence is Presence.ONLY_BEFORE
    tls = diff.path("turn-tls")
    assert tls is not None and tls.presence is Presence.ONLY_AFTER
    # The same mechanism over other paths counts as one gone and one new.
    assert {(f.mechanism, f.paths) for f in diff.findings_removed} == {
        ("udp_blocked", ("direct", "turn-udp"))
    }
    assert {(f.mechanism, f.paths) for f in diff.findings_added} == {
        ("udp_blocked", ("turn-udp",)),
        ("tls_sni_reset", ("turn-tls",)),
    }


def test_identical_reports_show_no_change() -> None:
    same = report(carried("direct", rtt=30, loss=0, bitrate=520, mos=4.4))
    diff = diff_reports(same, same)
    assert not diff.changed and not diff.verdict_changed
    assert all(p.trend is Trend.SAME for p in diff.paths)


def test_grade_and_metric_rules() -> None:
    assert GradeChange("voice", "degraded", "good").trend is Trend.BETTER
    assert GradeChange("voice", "good", "unusable").trend is Trend.WORSE
    assert GradeChange("voice", None, "good").trend is Trend.CHANGED
    assert MetricChange("voice", "rtt_ms", 100, 115).trend is Trend.SAME  # 15 ms: noise
    assert MetricChange("voice", "rtt_ms", 100, 150).trend is Trend.WORSE
    assert MetricChange("voice", "rtt_ms", 400, 450).trend is Trend.SAME  # 12 %: noise
    assert MetricChange("video", "bitrate_kbps", 200, 400).trend is Trend.BETTER
    assert MetricChange("voice", "loss_pct", None, 3.0).trend is Trend.CHANGED
    assert MetricChange("voice", "mos", 4.4, 4.2).delta is not None


def test_reports_without_findings_or_with_junk_do_not_break_the_diff() -> None:
    diff = diff_reports({"paths": [{"id": "direct"}], "findings": ["junk"]}, {})
    assert diff.paths[0].presence is Presence.ONLY_BEFORE
    assert diff.findings_removed == () and diff.voice_after == ()
