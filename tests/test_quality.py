"""MOS, aggregation and grading (callpath.core.call.quality)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from callpath.core.call.quality import (
    MOS_MAX,
    Thresholds,
    rank_key,
    summarize,
    video_bitrate_thresholds,
    voice_mos,
)
from callpath.core.model.results import Direction, Grade, MediaKind, MediaQuality, QualitySample

AUDIO = MediaKind.AUDIO
VIDEO = MediaKind.VIDEO
SENT = Direction.SENT
RECEIVED = Direction.RECEIVED
DEFAULT = Thresholds()


def mos_from_rating(rating: float) -> float:
    """The E-model's R → MOS mapping with its published constants."""
    return 1 + 0.035 * rating + 7e-6 * rating * (rating - 60) * (100 - rating)


def sample(
    direction: Direction,
    t: float,
    *,
    kind: MediaKind = AUDIO,
    rtt: float | None = None,
    jitter: float | None = None,
    loss: float | None = None,
    bitrate: float | None = None,
) -> QualitySample:
    return QualitySample(
        t=t,
        kind=kind,
        direction=direction,
        rtt_ms=rtt,
        jitter_ms=jitter,
        loss_pct=loss,
        bitrate_kbps=bitrate,
    )


def steady(
    kind: MediaKind,
    *,
    rtt: float = 40.0,
    jitter: float = 5.0,
    loss: float = 0.0,
    bitrate: float = 40.0,
    seconds: int = 4,
) -> list[QualitySample]:
    """Identical per-second samples in both directions (RTT only on the sent side)."""
    samples = []
    for second in range(1, seconds + 1):
        samples.append(
            sample(SENT, second, kind=kind, rtt=rtt, jitter=jitter, loss=loss, bitrate=bitrate)
        )
        samples.append(
            sample(RECEIVED, second, kind=kind, jitter=jitter, loss=loss, bitrate=bitrate)
        )
    return samples


# --- MOS ----------------------------------------------------------------------------------


def test_mos_low_latency_branch() -> None:
    # L = 100 + 2*10 + 10 = 130 < 160 → R = 94.768 - 130/40 = 91.518, no loss.
    rating = 94.768 - 130 / 40
    assert voice_mos(100, 10, 0) == pytest.approx(mos_from_rating(rating))
    assert voice_mos(100, 10, 0) == pytest.approx(4.37, abs=0.01)


def test_mos_high_latency_branch() -> None:
    # L = 400 + 2*20 + 10 = 450 ≥ 160 → R = 94.768 - (450-120)/10 = 61.768.
    rating = 94.768 - (450 - 120) / 10
    assert voice_mos(400, 20, 0) == pytest.approx(mos_from_rating(rating))
    assert voice_mos(400, 20, 0) == pytest.approx(3.19, abs=0.01)


def test_mos_branches_meet_at_160() -> None:
    # L = 150 + 0 + 10 = 160 takes the second branch; both give 90.768 there.
    assert voice_mos(150, 0, 0) == pytest.approx(mos_from_rating(90.768))
    assert voice_mos(149.999, 0, 0) == pytest.approx(voice_mos(150, 0, 0), abs=1e-6)


def test_mos_loss_lowers_rating() -> None:
    # L = 50 → R = 93.518; 4 % loss → R = 93.518 - 10 = 83.518.
    rating = 94.768 - 50 / 40 - 2.5 * 4
    assert voice_mos(30, 5, 4) == pytest.approx(mos_from_rating(rating))
    assert voice_mos(30, 5, 4) < voice_mos(30, 5, 0)


def test_mos_rating_floor_6_52() -> None:
    # R = 93.518; loss 36 % ≤ R/2.5 = 37.4 → R - 90 = 3.518, floored to 6.52.
    # The E-model puts R = 6.52 at MOS 1.00003: close to, but measurably not, the zeroed R.
    assert voice_mos(30, 5, 36) == pytest.approx(mos_from_rating(6.52), rel=1e-9)
    assert voice_mos(30, 5, 36) != pytest.approx(1.0, rel=1e-9)


def test_mos_loss_beyond_rating_zeroes_it() -> None:
    # loss 38 % > R/2.5 = 37.4 → R = 0 → MOS 1.
    assert voice_mos(30, 5, 38) == pytest.approx(1.0, rel=1e-9)
    assert voice_mos(30, 5, 100) == pytest.approx(1.0)


def test_mos_clamped_to_range() -> None:
    # An impossible negative latency pushes R over 100, where the cubic would exceed 4.5.
    assert mos_from_rating(94.768 - (-400) / 40) > MOS_MAX
    assert voice_mos(-400, 0, 0) == MOS_MAX
    # Huge latency gives a negative R, where the cubic would shoot up again; the loss rule
    # (0 % > R/2.5 when R < 0) zeroes R, so MOS is 1.
    assert mos_from_rating(94.768 - (5000 - 120) / 10) > MOS_MAX
    assert voice_mos(5000, 0, 0) == 1.0


def test_mos_perfect_line_is_about_4_4() -> None:
    assert voice_mos(0, 0, 0) == pytest.approx(mos_from_rating(94.518))
    assert 4.3 < voice_mos(0, 0, 0) <= MOS_MAX


# --- aggregation ----------------------------------------------------------------------------


def test_aggregates_over_both_directions() -> None:
    samples = [
        sample(SENT, 1, rtt=100, jitter=4, loss=0, bitrate=10),
        sample(SENT, 2, rtt=120, jitter=6, loss=2, bitrate=40),
        sample(SENT, 3, rtt=500, jitter=8, loss=4, bitrate=44),
        sample(RECEIVED, 1, jitter=20, loss=0, bitrate=12),
        sample(RECEIVED, 2, jitter=22, loss=0, bitrate=30),
        sample(RECEIVED, 3, jitter=24, loss=0, bitrate=34),
        # Samples of the other kind are ignored.
        sample(RECEIVED, 2, kind=VIDEO, jitter=900, loss=90, bitrate=1),
    ]
    quality = summarize(AUDIO, samples, DEFAULT)
    assert quality.rtt_ms == 120  # median of the sent side
    assert quality.jitter_ms == 22  # worse direction's median
    assert quality.loss_pct == pytest.approx(2.0)  # worse direction's mean
    # Means without the first (ramp-up) second: sent (40+44)/2 = 42, received 32 → lower.
    assert quality.bitrate_kbps == pytest.approx(32.0)
    assert len(quality.samples) == 6
    assert all(s.kind == AUDIO for s in quality.samples)
    assert quality.mos == pytest.approx(voice_mos(120, 22, 2.0))


def test_ramp_up_sample_kept_with_fewer_than_three_samples() -> None:
    samples = [
        sample(SENT, 1, rtt=50, jitter=1, loss=0, bitrate=10),
        sample(SENT, 2, rtt=50, jitter=1, loss=0, bitrate=30),
        sample(RECEIVED, 1, jitter=1, loss=0, bitrate=20),
        sample(RECEIVED, 2, jitter=1, loss=0, bitrate=40),
    ]
    assert summarize(AUDIO, samples, DEFAULT).bitrate_kbps == pytest.approx(20.0)


def test_ramp_up_sample_is_the_earliest_not_the_first_listed() -> None:
    samples = [
        sample(RECEIVED, 3, jitter=1, loss=0, bitrate=50),
        sample(RECEIVED, 1, jitter=1, loss=0, bitrate=2),
        sample(RECEIVED, 2, jitter=1, loss=0, bitrate=40),
    ]
    assert summarize(AUDIO, samples, DEFAULT).bitrate_kbps == pytest.approx(45.0)


def test_rtt_falls_back_to_any_direction() -> None:
    samples = [sample(RECEIVED, t, rtt=80 + t, jitter=1, loss=0, bitrate=40) for t in (1, 2, 3)]
    assert summarize(AUDIO, samples, DEFAULT).rtt_ms == 82


def test_non_finite_values_are_ignored() -> None:
    samples = [*steady(AUDIO), sample(SENT, 5, rtt=math.nan, jitter=math.inf, loss=math.nan)]
    quality = summarize(AUDIO, samples, DEFAULT)
    assert quality.rtt_ms == 40
    assert quality.jitter_ms == 5
    assert quality.grade == Grade.GOOD


# --- voice grading --------------------------------------------------------------------------


def test_voice_good() -> None:
    quality = summarize(AUDIO, steady(AUDIO), DEFAULT)
    assert quality.grade == Grade.GOOD
    assert quality.reasons == ()
    assert quality.mos is not None and quality.mos >= 3.5


@pytest.mark.parametrize(
    ("rtt", "jitter", "loss", "bitrate", "grade", "reasons"),
    [
        # Each good limit on its own, just at the limit (limits are exclusive for "good").
        (300, 5, 0, 40, Grade.DEGRADED, ("rtt_above_300ms",)),
        (299, 5, 0, 40, Grade.GOOD, ()),
        (40, 30, 0, 40, Grade.DEGRADED, ("jitter_above_30ms",)),
        (40, 29.9, 0, 40, Grade.GOOD, ()),
        (40, 5, 5, 40, Grade.DEGRADED, ("loss_above_5pct",)),
        (40, 5, 4.9, 40, Grade.GOOD, ()),
        # Unusable limits.
        (40, 5, 0, 7.9, Grade.UNUSABLE, ("bitrate_below_8kbps",)),
        (40, 5, 0, 8, Grade.GOOD, ()),
        (40, 5, 33.1, 40, Grade.UNUSABLE, ("loss_above_33pct", "mos_below_2.4")),
        # At a third of packets lost the E-model is already near 1: R = 93.268 - 82.5.
        (40, 5, 33, 40, Grade.UNUSABLE, ("mos_below_2.4",)),
        # Several limits at once: every failing one is named.
        (
            350,
            40,
            6,
            40,
            Grade.DEGRADED,
            ("loss_above_5pct", "rtt_above_300ms", "jitter_above_30ms", "mos_below_3.5"),
        ),
    ],
)
def test_voice_grading_table(
    rtt: float,
    jitter: float,
    loss: float,
    bitrate: float,
    grade: Grade,
    reasons: tuple[str, ...],
) -> None:
    samples = steady(AUDIO, rtt=rtt, jitter=jitter, loss=loss, bitrate=bitrate)
    quality = summarize(AUDIO, samples, DEFAULT)
    assert (quality.grade, quality.reasons) == (grade, reasons)


def test_voice_mos_limits_alone() -> None:
    # RTT 280 ms, jitter 29 ms, loss 4.9 %: L = 348, R = 94.768 - 22.8 - 12.25 = 59.718 → 3.06.
    samples = steady(AUDIO, rtt=280, jitter=29, loss=4.9)
    quality = summarize(AUDIO, samples, DEFAULT)
    assert quality.mos == pytest.approx(mos_from_rating(94.768 - 22.8 - 12.25))
    assert (quality.grade, quality.reasons) == (Grade.DEGRADED, ("mos_below_3.5",))
    # With a stricter unusable MOS limit the same call is unusable.
    strict = replace(DEFAULT, voice_unusable_mos=3.2)
    quality = summarize(AUDIO, samples, strict)
    assert (quality.grade, quality.reasons) == (Grade.UNUSABLE, ("mos_below_3.2",))


def test_voice_loss_limit_alone() -> None:
    lenient_mos = replace(DEFAULT, voice_unusable_mos=1.0, voice_good_mos=1.0)
    quality = summarize(AUDIO, steady(AUDIO, loss=33.5), lenient_mos)
    assert (quality.grade, quality.reasons) == (Grade.UNUSABLE, ("loss_above_33pct",))
    quality = summarize(AUDIO, steady(AUDIO, loss=32.5), lenient_mos)
    assert (quality.grade, quality.reasons) == (Grade.DEGRADED, ("loss_above_5pct",))


def test_voice_unknown_metrics_are_not_good() -> None:
    samples = [
        sample(d, t, jitter=5, loss=0, bitrate=40) for t in (1, 2, 3) for d in (SENT, RECEIVED)
    ]
    quality = summarize(AUDIO, samples, DEFAULT)
    assert quality.mos is None
    assert (quality.grade, quality.reasons) == (Grade.DEGRADED, ("rtt_unknown", "mos_unknown"))


def test_no_samples_is_unusable() -> None:
    quality = summarize(AUDIO, [], DEFAULT)
    assert (quality.grade, quality.reasons) == (Grade.UNUSABLE, ("no_samples",))
    only_video = steady(VIDEO)
    assert summarize(AUDIO, only_video, DEFAULT).reasons == ("no_samples",)
    stalled = summarize(VIDEO, [], DEFAULT, stalled=True)
    assert (stalled.grade, stalled.reasons) == (Grade.UNUSABLE, ("media_stalled", "no_samples"))


def test_nothing_received_is_unusable() -> None:
    samples = [sample(SENT, t, rtt=40, jitter=5, loss=0, bitrate=40) for t in (1, 2, 3)]
    quality = summarize(AUDIO, samples, DEFAULT)
    assert quality.grade == Grade.UNUSABLE
    assert quality.reasons[0] == "no_media_received"
    zero = steady(AUDIO, bitrate=0.0)
    assert summarize(AUDIO, zero, DEFAULT).reasons[:2] == (
        "no_media_received",
        "bitrate_below_8kbps",
    )


def test_stalled_caps_a_good_path_at_degraded_and_reports_no_mos() -> None:
    quality = summarize(AUDIO, steady(AUDIO), DEFAULT, stalled=True)
    assert (quality.grade, quality.reasons) == (Grade.DEGRADED, ("media_stalled",))
    assert quality.mos is None  # one number cannot describe a call that stopped


def test_a_stall_counts_the_silent_seconds_as_lost() -> None:
    """Media for the first second of ten, then nothing: the stale receiver reports still say
    0 % loss and the first second's MOS was 4.4; the silent seconds are what did not arrive."""
    samples = []
    for second in range(1, 11):
        arrived = second == 1
        samples.append(sample(SENT, second, rtt=40, jitter=5, loss=0, bitrate=40))
        samples.append(
            sample(
                RECEIVED,
                second,
                jitter=5,
                loss=0 if arrived else None,
                bitrate=40 if arrived else 0.0,
            )
        )
    unstalled = summarize(AUDIO, samples, DEFAULT)
    assert unstalled.loss_pct == 0  # what the old summary said
    quality = summarize(AUDIO, samples, DEFAULT, stalled=True)
    assert quality.loss_pct == pytest.approx(90.0)
    assert quality.grade == Grade.UNUSABLE
    assert quality.mos is not None and quality.mos < DEFAULT.voice_unusable_mos


def test_stalled_without_received_media_is_unusable() -> None:
    samples = [sample(SENT, 1, rtt=40, jitter=5, loss=0, bitrate=40)]
    quality = summarize(AUDIO, samples, DEFAULT, stalled=True)
    assert quality.grade == Grade.UNUSABLE
    assert quality.reasons[:2] == ("media_stalled", "no_media_received")


def test_stalled_keeps_an_unusable_grade() -> None:
    samples = steady(AUDIO, loss=50)
    quality = summarize(AUDIO, samples, DEFAULT, stalled=True)
    assert quality.grade == Grade.UNUSABLE
    assert quality.reasons[0] == "media_stalled"
    assert "loss_above_33pct" in quality.reasons


# --- video --------------------------------------------------------------------------------


def test_video_thresholds_scale_with_pixels() -> None:
    assert video_bitrate_thresholds(640 * 480) == (750, 60)
    # 320×240 is a quarter: 187.5 kbit/s for good, 15 → floored at 30 for unusable.
    assert video_bitrate_thresholds(320 * 240) == (187.5, 30)
    # Larger video never asks for more than the published thresholds.
    assert video_bitrate_thresholds(1280 * 720) == (750, 60)
    # Tiny video never asks for less than the floors.
    assert video_bitrate_thresholds(160 * 120) == (150, 30)
    assert video_bitrate_thresholds(480 * 360) == pytest.approx((421.875, 33.75))
    custom = replace(DEFAULT, video_good_bitrate_kbps=1000, video_good_bitrate_floor_kbps=100)
    assert video_bitrate_thresholds(320 * 240, custom)[0] == 250


def test_video_has_no_mos() -> None:
    quality = summarize(VIDEO, steady(VIDEO, bitrate=300), DEFAULT)
    assert quality.mos is None
    assert quality.grade == Grade.GOOD


@pytest.mark.parametrize(
    ("pixels", "bitrate", "loss", "grade", "reasons"),
    [
        (320 * 240, 200, 0, Grade.GOOD, ()),
        (320 * 240, 187.5, 5, Grade.GOOD, ()),  # loss ≤ 5 % is still good
        (320 * 240, 180, 0, Grade.DEGRADED, ("bitrate_below_187.5kbps",)),
        (320 * 240, 31, 0, Grade.DEGRADED, ("bitrate_below_187.5kbps",)),
        (320 * 240, 29, 0, Grade.UNUSABLE, ("bitrate_below_30kbps",)),
        (320 * 240, 300, 5.1, Grade.DEGRADED, ("loss_above_5pct",)),  # tearing
        (320 * 240, 300, 10, Grade.DEGRADED, ("loss_above_5pct",)),
        (320 * 240, 300, 10.1, Grade.UNUSABLE, ("loss_above_10pct",)),  # freezing
        (640 * 480, 700, 0, Grade.DEGRADED, ("bitrate_below_750kbps",)),
        (640 * 480, 750, 0, Grade.GOOD, ()),
        (640 * 480, 59, 0, Grade.UNUSABLE, ("bitrate_below_60kbps",)),
        (640 * 480, 40, 20, Grade.UNUSABLE, ("bitrate_below_60kbps", "loss_above_10pct")),
    ],
)
def test_video_grading_table(
    pixels: int, bitrate: float, loss: float, grade: Grade, reasons: tuple[str, ...]
) -> None:
    quality = summarize(VIDEO, steady(VIDEO, bitrate=bitrate, loss=loss), video_pixels=pixels)
    assert (quality.grade, quality.reasons) == (grade, reasons)


def test_video_without_bitrate_is_not_good() -> None:
    samples = [sample(d, t, kind=VIDEO, loss=0) for t in (1, 2, 3) for d in (SENT, RECEIVED)]
    quality = summarize(VIDEO, samples, DEFAULT)
    assert (quality.grade, quality.reasons) == (Grade.DEGRADED, ("bitrate_unknown",))


def test_video_uses_the_worse_leg() -> None:
    samples = steady(VIDEO, bitrate=400)
    samples += [sample(RECEIVED, t, kind=VIDEO, loss=12, bitrate=400) for t in (5, 6, 7, 8)]
    quality = summarize(VIDEO, samples, DEFAULT)
    assert quality.loss_pct == pytest.approx(6.0)  # received: (0*4 + 12*4) / 8
    assert (quality.grade, quality.reasons) == (Grade.DEGRADED, ("loss_above_5pct",))


# --- ranking --------------------------------------------------------------------------------


def test_rank_key_orders_best_first() -> None:
    good_high = MediaQuality(AUDIO, Grade.GOOD, mos=4.3, loss_pct=0, rtt_ms=40)
    good_low = MediaQuality(AUDIO, Grade.GOOD, mos=3.9, loss_pct=0, rtt_ms=20)
    good_low_lossy = MediaQuality(AUDIO, Grade.GOOD, mos=3.9, loss_pct=2, rtt_ms=20)
    good_low_slow = MediaQuality(AUDIO, Grade.GOOD, mos=3.9, loss_pct=2, rtt_ms=90)
    degraded = MediaQuality(AUDIO, Grade.DEGRADED, mos=4.4, loss_pct=0, rtt_ms=10)
    unknown_mos = MediaQuality(AUDIO, Grade.DEGRADED, loss_pct=0, rtt_ms=10)
    unusable = MediaQuality(AUDIO, Grade.UNUSABLE, mos=4.4)
    untested = MediaQuality.not_tested(AUDIO)
    ordered = [
        good_high,
        good_low,
        good_low_lossy,
        good_low_slow,
        degraded,
        unknown_mos,
        unusable,
        untested,
    ]
    assert sorted(reversed(ordered), key=rank_key) == ordered


def test_rank_key_video_prefers_higher_bitrate_on_ties() -> None:
    slow = MediaQuality(VIDEO, Grade.GOOD, loss_pct=0, rtt_ms=20, bitrate_kbps=200)
    fast = MediaQuality(VIDEO, Grade.GOOD, loss_pct=0, rtt_ms=20, bitrate_kbps=400)
    assert sorted([slow, fast], key=rank_key) == [fast, slow]


def test_grade_bands_are_the_thresholds_contiguous_from_zero() -> None:
    import itertools

    from callpath.core.call.quality import (
        DEFAULT_THRESHOLDS,
        grade_bands,
        video_bitrate_thresholds,
    )

    t = DEFAULT_THRESHOLDS
    for kind in (MediaKind.AUDIO, MediaKind.VIDEO):
        for metric in ("rtt_ms", "jitter_ms", "loss_pct", "bitrate_kbps"):
            bands = grade_bands(kind, metric)
            if not bands:
                continue
            assert bands[0].low == 0.0
            assert all(a.high == b.low for a, b in itertools.pairwise(bands))
            assert all(band.high is not None for band in bands[:-1])
    edges = [b.low for b in grade_bands(MediaKind.AUDIO, "loss_pct")]
    assert edges == [0.0, t.voice_good_loss_pct, t.voice_unusable_loss_pct]
    assert [b.grade for b in grade_bands(MediaKind.AUDIO, "loss_pct")] == [
        Grade.GOOD,
        Grade.DEGRADED,
        Grade.UNUSABLE,
    ]
    assert grade_bands(MediaKind.AUDIO, "rtt_ms")[0].high == t.voice_good_rtt_ms
    good, unusable = video_bitrate_thresholds(320 * 240)
    video = grade_bands(MediaKind.VIDEO, "bitrate_kbps")
    assert [(b.low, b.grade) for b in video] == [
        (0.0, Grade.UNUSABLE),
        (unusable, Grade.DEGRADED),
        (good, Grade.GOOD),
    ]
    assert grade_bands(MediaKind.VIDEO, "rtt_ms") == ()


def test_a_loss_counted_over_the_window_stands_for_the_sent_direction() -> None:
    # Per-second figures from report intervals of different lengths (the first report covered
    # a few packets): their plain mean reads 6.6 %, the count over the window 9 %.
    samples = [
        sample(SENT, 1, rtt=40, jitter=5, loss=2.7, bitrate=40),
        sample(SENT, 3, rtt=40, jitter=5, loss=7.0, bitrate=40),
        sample(SENT, 5, rtt=40, jitter=5, loss=10.0, bitrate=40),
        sample(RECEIVED, 1, jitter=5, loss=0.0, bitrate=40),
        sample(RECEIVED, 3, jitter=5, loss=0.0, bitrate=40),
    ]
    assert summarize(AUDIO, samples).loss_pct == pytest.approx(6.5667, abs=1e-3)
    counted = summarize(AUDIO, samples, sent_loss_pct=9.0)
    assert counted.loss_pct == 9.0
    assert "loss_above_5pct" in counted.reasons
    # The worse direction still decides: a downstream loss above the count wins.
    worse_down = [*samples, sample(RECEIVED, 5, jitter=5, loss=45.0, bitrate=40)]
    assert summarize(AUDIO, worse_down, sent_loss_pct=9.0).loss_pct == pytest.approx(15.0)
