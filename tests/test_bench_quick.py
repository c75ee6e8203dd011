"""The benchmark scripts' pure helpers compute what they claim (no benchmark runs here)."""

from __future__ import annotations

import math
import random

import pytest

from bench.capacity import call_sustained, split_calls
from bench.common import (
    audio_ssrc,
    binomial_se_pct,
    capacity_ratio,
    cpu_seconds_from_stat,
    is_rtcp,
    longest_stall_ms,
    markdown_table,
    percentile,
    rfc3550_jitter_trace,
    rtp_header,
    rtt_tolerance_ms,
    steady_mean,
    stun_binding,
    uniform_jitter_limit,
)
from bench.loadgen import call_quality


def rtp(ssrc: int, sequence: int, timestamp: int, payload_type: int = 111) -> bytes:
    return (
        bytes([0x80, payload_type])
        + sequence.to_bytes(2, "big")
        + timestamp.to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + b"\x00" * 20
    )


def test_binomial_standard_error() -> None:
    assert binomial_se_pct(0.1, 400) == pytest.approx(1.5)
    assert binomial_se_pct(0.0, 100) == 0.0
    assert binomial_se_pct(0.5, 0) == math.inf


def test_rfc3550_estimator_tends_to_two_thirds_of_uniform_jitter() -> None:
    rng = random.Random(7)
    delays = [rng.uniform(-30, 30) for _ in range(20000)]
    trace = rfc3550_jitter_trace(delays)
    assert len(trace) == len(delays) - 1
    mean = steady_mean(trace)
    assert mean is not None
    assert mean == pytest.approx(uniform_jitter_limit(30), rel=0.03)


def test_estimator_of_constant_transit_is_zero_and_follows_a_step() -> None:
    assert rfc3550_jitter_trace([5.0] * 10) == [0.0] * 9
    # One jump of 16 ms moves the estimate by exactly 1/16 of it.
    assert rfc3550_jitter_trace([0.0, 16.0]) == [1.0]


def test_rtt_tolerance_is_the_larger_of_3_ms_and_5_percent() -> None:
    assert rtt_tolerance_ms(20) == 3.0
    assert rtt_tolerance_ms(300) == pytest.approx(15.0)


def test_percentile_and_longest_stall() -> None:
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3
    assert percentile([0, 10], 0.99) == pytest.approx(9.9)
    ticks = [0.0, 0.001, 0.002, 0.060, 0.061]
    assert longest_stall_ms(ticks, 0.001) == pytest.approx(57.0)
    assert longest_stall_ms([0.0], 0.001) == 0.0


def test_rtp_and_rtcp_are_told_apart_and_audio_found_by_its_timestamp_step() -> None:
    audio = [rtp(0xAAAA, i, 960 * i) for i in range(20)]
    video = [rtp(0xBBBB, i, 3000 * (i // 3), 96) for i in range(20)]
    rtcp = bytes([0x80, 200, 0, 6]) + b"\x00" * 24
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12
    assert is_rtcp(rtcp) and rtp_header(rtcp) is None
    assert rtp_header(stun) is None and not is_rtcp(stun)
    # The engine's round-trip checks and their answers; nothing else is either.
    assert stun_binding(stun) == "request"
    assert stun_binding(b"\x01\x01" + stun[2:]) == "response"
    assert stun_binding(b"\x01\x11" + stun[2:]) is None  # an error response
    assert stun_binding(rtcp) is None and stun_binding(audio[0]) is None
    header = rtp_header(audio[3])
    assert header is not None
    assert (header.ssrc, header.sequence, header.timestamp) == (0xAAAA, 3, 2880)
    headers = [rtp_header(p) for p in audio + video]
    assert audio_ssrc(h for h in headers if h is not None) == 0xAAAA


def test_cpu_seconds_from_proc_stat_with_spaces_in_the_name() -> None:
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    line = "1234 (python3 -m x) " + " ".join(fields)
    assert cpu_seconds_from_stat(line, 100) == pytest.approx(3.0)


def test_markdown_table_formats_cells() -> None:
    table = markdown_table(("a", "b"), [(1.234, None), (12.345, "x|y")])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.23 | – |", "| 12.3 | x\\|y |"]


def test_calls_are_split_evenly_over_generator_processes() -> None:
    assert split_calls(1) == [1]
    assert split_calls(8) == [8]
    assert split_calls(9) == [5, 4]
    assert split_calls(32) == [8, 8, 8, 8]
    assert sum(split_calls(21)) == 21


class _Stat:
    def __init__(self, **values: float) -> None:
        self.__dict__.update(values)


def _snapshot(sent: int, lost_up: int, received: int, lost_down: int) -> dict[str, _Stat]:
    snapshot = {}
    for kind in ("audio", "video"):
        snapshot[f"outbound-rtp:{kind}"] = _Stat(packetsSent=sent)
        snapshot[f"remote-inbound-rtp:{kind}"] = _Stat(
            packetsLost=lost_up, jitter=480, roundTripTime=0.02
        )
        snapshot[f"inbound-rtp:{kind}"] = _Stat(
            packetsReceived=received, packetsLost=lost_down, jitter=960
        )
    return snapshot


def test_call_quality_counts_loss_over_the_window_in_both_directions() -> None:
    first = _snapshot(sent=100, lost_up=1, received=100, lost_down=0)
    last = _snapshot(sent=600, lost_up=6, received=590, lost_down=10)
    quality = call_quality(first, last, [last, last])
    assert quality["audio_loss_up_pct"] == pytest.approx(1.0)  # 5 of 500 sent
    assert quality["audio_loss_down_pct"] == pytest.approx(2.0)  # 10 of 500
    assert quality["audio_jitter_up_ms"] == pytest.approx(10.0)  # 480 / 48 kHz
    assert quality["rtt_ms"] == pytest.approx(20.0)
    assert quality["mos"] is not None and quality["mos"] < 4.4
    row = {**quality, "audio_echo_fps": 50.0, "video_echo_fps": 30.0}
    sustained, missed = call_sustained(row)
    assert not sustained
    assert any(m.startswith("audio_loss_up_pct") for m in missed)


def test_upstream_loss_counts_from_a_late_first_report_only_early_in_the_window() -> None:
    """A server setting up many calls at once may send its first receiver report after the
    window opened: the loss is then counted from the first snapshot that has one, if it came
    within the window's first fifth; later than that, the call has no upstream loss."""
    first = _snapshot(sent=100, lost_up=0, received=100, lost_down=0)
    del first["remote-inbound-rtp:video"]
    late = _snapshot(sent=160, lost_up=3, received=160, lost_down=0)
    last = _snapshot(sent=600, lost_up=8, received=600, lost_down=0)
    seconds = [first, late, *[last] * 8]  # the report came in the window's second second
    quality = call_quality(first, last, seconds)
    assert quality["video_loss_up_pct"] == pytest.approx(5 / 440 * 100)
    assert quality["audio_loss_up_pct"] == pytest.approx(8 / 500 * 100)  # from the first
    too_late = [first, first, first, late, *[last] * 6]
    assert call_quality(first, last, too_late)["video_loss_up_pct"] is None


def test_a_clean_call_is_sustained_and_a_frozen_echo_is_not() -> None:
    first = _snapshot(sent=100, lost_up=0, received=100, lost_down=0)
    last = _snapshot(sent=600, lost_up=0, received=600, lost_down=0)
    quality = call_quality(first, last, [last])
    row = {**quality, "audio_echo_fps": 50.0, "video_echo_fps": 29.0}
    assert call_sustained(row) == (True, [])
    frozen = {**row, "video_echo_fps": 12.0}
    assert call_sustained(frozen)[0] is False
    assert call_sustained({"call": 1, "failure": "TimeoutError"})[0] is False


def test_capacity_ratio_says_what_a_ramp_that_never_failed_can_prove() -> None:
    assert capacity_ratio(4, True, 8, True) == (0.5, "exact", True)
    assert capacity_ratio(4, True, 32, False) == (0.125, "upper bound", False)
    assert capacity_ratio(16, True, 16, False) == (1.0, "upper bound", None)
    assert capacity_ratio(8, False, 32, True) == (0.25, "lower bound", None)
    assert capacity_ratio(2, False, 2, False) == (1.0, "undetermined", None)
    assert capacity_ratio(2, False, 0, True) == (None, "undetermined", None)
