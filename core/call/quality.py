"""Voice MOS, every grading threshold, and per-second samples → ``MediaQuality`` summaries.

Pure functions: no I/O, no clocks. The thresholds start from the peers' published numbers
(GUIDE §5) and all live in :class:`Thresholds`, so a front end or a test can change them in one
place.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from callpath.core.model.results import Direction, Grade, MediaKind, MediaQuality, QualitySample

MOS_MIN = 1.0
MOS_MAX = 4.5
_REFERENCE_VIDEO_PIXELS = 640 * 480


@dataclass(frozen=True)
class Thresholds:
    """Every limit used to grade a path. Percentages are 0–100, bitrates kbit/s, times ms."""

    # Voice is good only when all four hold (MOS at or above, the others strictly below).
    voice_good_mos: float = 3.5
    voice_good_loss_pct: float = 5.0
    voice_good_rtt_ms: float = 300.0
    voice_good_jitter_ms: float = 30.0
    # Voice is unusable when any of these holds: too little audio arrives to carry speech,
    # a third of the packets is lost, or the E-model says nobody would put up with it.
    voice_unusable_bitrate_kbps: float = 8.0
    voice_unusable_loss_pct: float = 33.0
    voice_unusable_mos: float = 2.4
    # Video thresholds as published, for 640×480-class video; see ``video_bitrate_thresholds``.
    video_good_bitrate_kbps: float = 750.0
    video_unusable_bitrate_kbps: float = 60.0
    # Floors the scaled video thresholds never go below, so a tiny test pattern still has to
    # move a meaningful amount of data to count as good (or as usable).
    video_good_bitrate_floor_kbps: float = 150.0
    video_unusable_bitrate_floor_kbps: float = 30.0
    # Video loss: up to 5 % is good, above 10 % the picture freezes, in between it tears.
    video_good_loss_pct: float = 5.0
    video_unusable_loss_pct: float = 10.0
    # The first per-second bitrate sample covers the encoders' ramp-up; it is left out of the
    # mean once a direction has at least this many samples.
    ramp_up_min_samples: int = 3


DEFAULT_THRESHOLDS = Thresholds()


def voice_mos(rtt_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """Mean opinion score (1–4.5) from the simplified E-model in GUIDE §5."""
    latency = rtt_ms + 2.0 * jitter_ms + 10.0
    rating = 94.768 - latency / 40.0 if latency < 160.0 else 94.768 - (latency - 120.0) / 10.0
    # Loss beyond what the rating can absorb zeroes it; otherwise it is floored at 6.52.
    rating = 0.0 if loss_pct > rating / 2.5 else max(rating - 2.5 * loss_pct, 6.52)
    mos = 1.0 + 0.035 * rating + 7e-6 * rating * (rating - 60.0) * (100.0 - rating)
    return min(max(mos, MOS_MIN), MOS_MAX)


def video_bitrate_thresholds(
    video_pixels: int, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> tuple[float, float]:
    """(good, unusable) bitrate thresholds in kbit/s for video of ``video_pixels`` pixels.

    The published 750 / 60 kbit/s are for 640×480-class video. Our test pattern is usually
    320×240 and its VP8 encoder aims well below 750 kbit/s, so unscaled thresholds would call
    every small-video path degraded. They scale linearly with the pixel count, capped at the
    published values and floored so that a nearly static stream still is not called good.
    """
    scale = max(video_pixels, 0) / _REFERENCE_VIDEO_PIXELS
    good = _clamp(
        thresholds.video_good_bitrate_kbps * scale,
        thresholds.video_good_bitrate_floor_kbps,
        thresholds.video_good_bitrate_kbps,
    )
    unusable = _clamp(
        thresholds.video_unusable_bitrate_kbps * scale,
        thresholds.video_unusable_bitrate_floor_kbps,
        thresholds.video_unusable_bitrate_kbps,
    )
    return good, unusable


@dataclass(frozen=True)
class _Aggregates:
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    bitrate_kbps: float | None
    received_media: bool  # the local receiver saw at least some bytes of this kind


def summarize(
    kind: MediaKind,
    samples: Sequence[QualitySample],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    video_pixels: int = 320 * 240,
    stalled: bool = False,
    sent_loss_pct: float | None = None,
) -> MediaQuality:
    """Aggregate one media kind's samples over both directions and grade it.

    ``stalled`` means media stopped flowing for longer than the stall limit after it started;
    such a path is never good: unusable when nothing at all was received, else degraded at best.
    Its loss counts every second in which nothing arrived as wholly lost, so loss and MOS cover
    the whole window, not just the seconds before the stall; a MOS that still came out above the
    unusable limit is left out (one number cannot describe a call that stopped).
    ``sent_loss_pct``, when known, is the upstream loss counted over the whole window (packets
    lost over packets expected): it stands for the sent direction instead of the mean of the
    per-second figures, which weighs a second with few packets like one with many.
    """
    own = tuple(sample for sample in samples if sample.kind == kind)
    if not own:
        empty_reasons = ("media_stalled", "no_samples") if stalled else ("no_samples",)
        return MediaQuality(kind=kind, grade=Grade.UNUSABLE, reasons=empty_reasons)

    if stalled:
        own = tuple(_silent_second_lost(sample) for sample in own)
    # A stalled path's silent seconds already count as lost; the reports' count stops with them.
    aggregates = _aggregate(own, thresholds, None if stalled else sent_loss_pct)
    mos: float | None = None
    if kind == MediaKind.AUDIO:
        if (
            aggregates.rtt_ms is not None
            and aggregates.jitter_ms is not None
            and aggregates.loss_pct is not None
        ):
            mos = voice_mos(aggregates.rtt_ms, aggregates.jitter_ms, aggregates.loss_pct)
        unusable, not_good = _voice_findings(aggregates, mos, thresholds)
    else:
        unusable, not_good = _video_findings(aggregates, video_pixels, thresholds)

    if not aggregates.received_media:
        unusable = ["no_media_received", *unusable]
    reasons: list[str]
    if unusable:
        grade, reasons = Grade.UNUSABLE, unusable
    elif not_good:
        grade, reasons = Grade.DEGRADED, not_good
    else:
        grade, reasons = Grade.GOOD, []
    if stalled:
        reasons = ["media_stalled", *reasons]
        if grade == Grade.GOOD:
            grade = Grade.DEGRADED
        if mos is not None and mos >= thresholds.voice_unusable_mos:
            mos = None

    return MediaQuality(
        kind=kind,
        grade=grade,
        mos=mos,
        rtt_ms=aggregates.rtt_ms,
        jitter_ms=aggregates.jitter_ms,
        loss_pct=aggregates.loss_pct,
        bitrate_kbps=aggregates.bitrate_kbps,
        reasons=tuple(reasons),
        samples=own,
    )


def _silent_second_lost(sample: QualitySample) -> QualitySample:
    """A received-direction second in which nothing arrived: everything of it was lost."""
    if sample.direction != Direction.RECEIVED or (sample.bitrate_kbps or 0.0) > 0:
        return sample
    return dataclasses.replace(sample, loss_pct=100.0)


def rank_key(quality: MediaQuality) -> tuple[int, float, float, float, float]:
    """Sort key, best first: grade, then higher MOS, lower loss, lower RTT, higher bitrate.

    Unknown values sort after known ones.
    """
    grade_order = {Grade.GOOD: 0, Grade.DEGRADED: 1, Grade.UNUSABLE: 2, Grade.NOT_TESTED: 3}
    return (
        grade_order[quality.grade],
        -quality.mos if quality.mos is not None else math.inf,
        quality.loss_pct if quality.loss_pct is not None else math.inf,
        quality.rtt_ms if quality.rtt_ms is not None else math.inf,
        -quality.bitrate_kbps if quality.bitrate_kbps is not None else math.inf,
    )


def _aggregate(
    samples: Sequence[QualitySample], thresholds: Thresholds, sent_loss_pct: float | None = None
) -> _Aggregates:
    by_direction = {
        direction: sorted(
            (sample for sample in samples if sample.direction == direction),
            key=lambda sample: sample.t,
        )
        for direction in Direction
    }
    # RTT comes from the peer's receiver reports about what we sent; any other direction's RTT
    # is only a fallback for engines that attach it elsewhere.
    rtts = _values(by_direction[Direction.SENT], lambda sample: sample.rtt_ms)
    if not rtts:
        rtts = _values(samples, lambda sample: sample.rtt_ms)
    rtt = statistics.median(rtts) if rtts else None

    jitter = _worst(
        statistics.median(values)
        for values in _per_direction(by_direction, lambda sample: sample.jitter_ms)
    )
    loss_means = {
        direction: statistics.fmean(values)
        for direction in Direction
        if (values := _values(by_direction[direction], lambda sample: sample.loss_pct))
    }
    if sent_loss_pct is not None:
        loss_means[Direction.SENT] = sent_loss_pct
    loss = _worst(loss_means.values())
    bitrate_means = []
    for values in _per_direction(by_direction, lambda sample: sample.bitrate_kbps):
        steady = values[1:] if len(values) >= thresholds.ramp_up_min_samples else values
        bitrate_means.append(statistics.fmean(steady))
    bitrate = min(bitrate_means) if bitrate_means else None

    # Without any bitrate figure, a received-direction sample (inbound stats exist) is the
    # evidence that something arrived.
    received = by_direction[Direction.RECEIVED]
    received_bitrates = _values(received, lambda sample: sample.bitrate_kbps)
    received_media = (
        any(value > 0 for value in received_bitrates) if received_bitrates else bool(received)
    )
    return _Aggregates(rtt, jitter, loss, bitrate, received_media)


def _voice_findings(
    aggregates: _Aggregates, mos: float | None, thresholds: Thresholds
) -> tuple[list[str], list[str]]:
    """(reasons it is unusable, reasons it is not good) for voice."""
    unusable: list[str] = []
    not_good: list[str] = []
    bitrate, loss = aggregates.bitrate_kbps, aggregates.loss_pct
    rtt, jitter = aggregates.rtt_ms, aggregates.jitter_ms
    if bitrate is not None and bitrate < thresholds.voice_unusable_bitrate_kbps:
        unusable.append(f"bitrate_below_{_number(thresholds.voice_unusable_bitrate_kbps)}kbps")
    if loss is not None and loss > thresholds.voice_unusable_loss_pct:
        unusable.append(f"loss_above_{_number(thresholds.voice_unusable_loss_pct)}pct")
    if mos is not None and mos < thresholds.voice_unusable_mos:
        unusable.append(f"mos_below_{_number(thresholds.voice_unusable_mos)}")

    if loss is None:
        not_good.append("loss_unknown")
    elif loss >= thresholds.voice_good_loss_pct:
        not_good.append(f"loss_above_{_number(thresholds.voice_good_loss_pct)}pct")
    if rtt is None:
        not_good.append("rtt_unknown")
    elif rtt >= thresholds.voice_good_rtt_ms:
        not_good.append(f"rtt_above_{_number(thresholds.voice_good_rtt_ms)}ms")
    if jitter is None:
        not_good.append("jitter_unknown")
    elif jitter >= thresholds.voice_good_jitter_ms:
        not_good.append(f"jitter_above_{_number(thresholds.voice_good_jitter_ms)}ms")
    if mos is None:
        not_good.append("mos_unknown")
    elif mos < thresholds.voice_good_mos:
        not_good.append(f"mos_below_{_number(thresholds.voice_good_mos)}")
    return unusable, not_good


def _video_findings(
    aggregates: _Aggregates, video_pixels: int, thresholds: Thresholds
) -> tuple[list[str], list[str]]:
    """(reasons it is unusable, reasons it is not good) for video."""
    good_kbps, unusable_kbps = video_bitrate_thresholds(video_pixels, thresholds)
    unusable: list[str] = []
    not_good: list[str] = []
    bitrate, loss = aggregates.bitrate_kbps, aggregates.loss_pct
    if bitrate is None:
        not_good.append("bitrate_unknown")
    elif bitrate < unusable_kbps:
        unusable.append(f"bitrate_below_{_number(unusable_kbps)}kbps")
    elif bitrate < good_kbps:
        not_good.append(f"bitrate_below_{_number(good_kbps)}kbps")
    if loss is None:
        not_good.append("loss_unknown")
    elif loss > thresholds.video_unusable_loss_pct:
        unusable.append(f"loss_above_{_number(thresholds.video_unusable_loss_pct)}pct")
    elif loss > thresholds.video_good_loss_pct:
        not_good.append(f"loss_above_{_number(thresholds.video_good_loss_pct)}pct")
    return unusable, not_good


def _values(
    samples: Sequence[QualitySample], metric: Callable[[QualitySample], float | None]
) -> list[float]:
    values = (metric(sample) for sample in samples)
    return [value for value in values if value is not None and math.isfinite(value)]


def _per_direction(
    by_direction: dict[Direction, list[QualitySample]],
    metric: Callable[[QualitySample], float | None],
) -> list[list[float]]:
    """The metric's values of each direction that has any, in time order."""
    per_direction = (_values(samples, metric) for samples in by_direction.values())
    return [values for values in per_direction if values]


def _worst(values: Iterable[float]) -> float | None:
    collected = list(values)
    return max(collected) if collected else None


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _number(value: float) -> str:
    """Threshold as it appears in a reason: ``5``, ``2.4``, ``187.5``."""
    return f"{value:g}"


@dataclass(frozen=True)
class GradeBand:
    """A range of one metric's per-second values and the grade the thresholds give it there.

    ``high`` is None for an open upper end. Bands are what charts draw behind the live values;
    the grade itself is decided over the whole call by ``summarize``.
    """

    low: float
    high: float | None
    grade: Grade


def grade_bands(
    kind: MediaKind,
    metric: str,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    video_pixels: int = 320 * 240,
) -> tuple[GradeBand, ...]:
    """The threshold bands of ``metric`` (``rtt_ms``, ``jitter_ms``, ``loss_pct`` or
    ``bitrate_kbps``) for ``kind``, lowest first; empty when no threshold grades it."""
    good, degraded, unusable = Grade.GOOD, Grade.DEGRADED, Grade.UNUSABLE
    if kind == MediaKind.AUDIO:
        if metric == "rtt_ms":
            limit = thresholds.voice_good_rtt_ms
            return (GradeBand(0.0, limit, good), GradeBand(limit, None, degraded))
        if metric == "jitter_ms":
            limit = thresholds.voice_good_jitter_ms
            return (GradeBand(0.0, limit, good), GradeBand(limit, None, degraded))
        if metric == "loss_pct":
            low, high = thresholds.voice_good_loss_pct, thresholds.voice_unusable_loss_pct
            return (
                GradeBand(0.0, low, good),
                GradeBand(low, high, degraded),
                GradeBand(high, None, unusable),
            )
        if metric == "bitrate_kbps":
            return (GradeBand(0.0, thresholds.voice_unusable_bitrate_kbps, unusable),)
        return ()
    if metric == "loss_pct":
        low, high = thresholds.video_good_loss_pct, thresholds.video_unusable_loss_pct
        return (
            GradeBand(0.0, low, good),
            GradeBand(low, high, degraded),
            GradeBand(high, None, unusable),
        )
    if metric == "bitrate_kbps":
        good_kbps, unusable_kbps = video_bitrate_thresholds(video_pixels, thresholds)
        return (
            GradeBand(0.0, unusable_kbps, unusable),
            GradeBand(unusable_kbps, good_kbps, degraded),
            GradeBand(good_kbps, None, good),
        )
    return ()
