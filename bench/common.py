"""Pure helpers shared by the benchmarks: statistics, RTP parsing, targets, results files.

Nothing here does I/O except ``write_result`` / ``read_result``; everything else is unit-tested
in ``tests/test_bench_quick.py``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"

# RFC 3550 §A.8: the interarrival-jitter estimator's gain.
JITTER_GAIN = 1 / 16

# The product brief's targets (docs/performance.md repeats them beside each measurement).
# Issue 20: eight paths on the open lab in 5 s, 6 s when everything is blocked (the earlier
# targets were 12 and 15 s); the first finding within 1 s (was 3 s).
TARGET_VERDICT_OPEN_S = 5.0
TARGET_VERDICT_UDP_BLOCKED_S = 6.0
TARGET_FIRST_FINDING_S = 1.0
TARGET_CPU_S = 15.0
TARGET_PEAK_MB = 300.0
TARGET_GUI_STALL_MS = 50.0
TARGET_RTT_ABS_MS = 3.0
TARGET_RTT_REL = 0.05
TARGET_JITTER_MS = 3.0
TARGET_LOSS_SE = 1.5
TARGET_CAPACITY_RATIO = 0.5  # whole machine
TARGET_CAPACITY_RATIO_BUDGET = 1.0  # at equal CPU budgets (issue 20; was 0.5)


# --- statistics -----------------------------------------------------------------------------


def binomial_se_pct(probability: float, trials: int) -> float:
    """Standard error, in percent, of a loss rate estimated from ``trials`` packets."""
    if trials <= 0:
        return math.inf
    return math.sqrt(probability * (1 - probability) / trials) * 100


def rfc3550_jitter_trace(transits: Sequence[float]) -> list[float]:
    """The RFC 3550 interarrival-jitter estimate after each packet, for transit times in any unit
    (arrival time minus the RTP timestamp as time, in arrival order)."""
    jitter = 0.0
    trace = []
    for previous, current in itertools.pairwise(transits):
        jitter += (abs(current - previous) - jitter) * JITTER_GAIN
        trace.append(jitter)
    return trace


def steady_mean(trace: Sequence[float], settle: int = 48) -> float | None:
    """Mean of an estimator's trace once it has settled (three time constants of 1/16)."""
    steady = trace[settle:] if len(trace) > settle * 2 else trace[len(trace) // 2 :]
    return statistics.fmean(steady) if steady else None


def uniform_jitter_limit(jitter: float) -> float:
    """E|X − Y| for X, Y independent uniform in ±J: what the estimator tends to (2J/3)."""
    return 2 * jitter / 3


def rtt_tolerance_ms(truth_ms: float) -> float:
    return max(TARGET_RTT_ABS_MS, TARGET_RTT_REL * truth_ms)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolation percentile (``fraction`` in 0–1) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def longest_stall_ms(ticks: Sequence[float], period_s: float) -> float:
    """Longest time a periodic timer was late: the largest gap between ticks minus its period."""
    if len(ticks) < 2:
        return 0.0
    gap = max(b - a for a, b in itertools.pairwise(ticks))
    return max(0.0, gap - period_s) * 1000


def cpu_seconds_from_stat(stat_line: str, clock_ticks: int) -> float:
    """User + system CPU seconds of a process from one line of ``/proc/PID/stat``."""
    # The command name (field 2) may contain spaces; fields after the closing ')' are fixed.
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    user, system = int(fields[11]), int(fields[12])
    return (user + system) / clock_ticks


# --- RTP/RTCP on the wire -------------------------------------------------------------------


@dataclass(frozen=True)
class RtpHeader:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int


def is_rtcp(payload: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192–223 in the second byte."""
    return len(payload) >= 8 and payload[0] >> 6 == 2 and 192 <= payload[1] <= 223


STUN_MAGIC_COOKIE = 0x2112A442


def stun_binding(payload: bytes) -> str | None:
    """``"request"`` or ``"response"`` for a STUN Binding request or success response (RFC 8489
    header: type 0x0001 or 0x0101, the magic cookie), None for anything else."""
    if len(payload) < 8 or int.from_bytes(payload[4:8], "big") != STUN_MAGIC_COOKIE:
        return None
    kind = int.from_bytes(payload[0:2], "big")
    return {0x0001: "request", 0x0101: "response"}.get(kind)


def rtp_header(payload: bytes) -> RtpHeader | None:
    """The (unencrypted) header of an SRTP packet, or None for anything else (STUN, DTLS, RTCP)."""
    if len(payload) < 12 or payload[0] >> 6 != 2 or is_rtcp(payload):
        return None
    return RtpHeader(
        payload_type=payload[1] & 0x7F,
        sequence=int.from_bytes(payload[2:4], "big"),
        timestamp=int.from_bytes(payload[4:8], "big"),
        ssrc=int.from_bytes(payload[8:12], "big"),
    )


def audio_ssrc(headers: Iterable[RtpHeader], samples_per_packet: int = 960) -> int | None:
    """The SSRC whose timestamps step by one Opus frame (20 ms at 48 kHz) most of the time."""
    last: dict[int, int] = {}
    steps: dict[int, list[int]] = {}
    for header in headers:
        previous = last.get(header.ssrc)
        if previous is not None:
            steps.setdefault(header.ssrc, []).append((header.timestamp - previous) & 0xFFFFFFFF)
        last[header.ssrc] = header.timestamp
    best, best_share = None, 0.5
    for ssrc, values in steps.items():
        share = sum(1 for v in values if v == samples_per_packet) / len(values)
        if share > best_share:
            best, best_share = ssrc, share
    return best


# --- targets --------------------------------------------------------------------------------


def verdict_target_s(scenario_id: str) -> float:
    """Open networks must answer in 5 s; when something is blocked, timeouts are unavoidable:
    6 s."""
    return TARGET_VERDICT_OPEN_S if scenario_id == "open-network" else TARGET_VERDICT_UDP_BLOCKED_S


def capacity_ratio(
    ours: int,
    ours_limited: bool,
    theirs: int,
    theirs_limited: bool,
    target: float = TARGET_CAPACITY_RATIO,
) -> tuple[float | None, str, bool | None]:
    """(ratio, what kind of bound it is, whether the ≥ ``target`` is met — None: unknown).

    A ramp that never failed gives only a lower bound of that server's capacity.
    """
    if not theirs:
        return None, "undetermined", None
    ratio = ours / theirs
    if ours_limited and theirs_limited:
        return ratio, "exact", ratio >= target
    if ours_limited:  # Janus could do more: the true ratio is at most this
        return ratio, "upper bound", False if ratio < target else None
    if theirs_limited:  # we could do more: the true ratio is at least this
        return ratio, "lower bound", True if ratio >= target else None
    return ratio, "undetermined", None


def mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- result files ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(load[0], 2),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(name: str, mode: str, command: str, data: Mapping[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{mode}.json"
    body = {"benchmark": name, "mode": mode, "command": command, "machine": machine_info()}
    body.update(data)
    path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def read_result(name: str, mode: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}-{mode}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
