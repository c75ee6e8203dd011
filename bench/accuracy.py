"""Accuracy of RTT, jitter and loss, measured through the lab's censor against the truth.

Each cell of the grid (injected round trip × per-packet jitter × random loss) is one Engine run
of the ``direct`` path through a lab built from a scenario made in code. The measurement is the
voice upstream (``sent``) direction: the echo peer's receiver reports about what we sent, which
crossed the censor once (docs/lab.md explains why the echoed direction is not comparable).

The truth is taken from the packets the censor actually handled, not assumed: a wrapper around
``Censor.evaluate`` sees every datagram of the call with the censor's decision, so

- loss truth: the injected probability p; the standard error is sqrt(p(1-p)/n) for the n voice
  RTP packets sent during the quality window (the realised fraction is reported too);
- jitter truth: the RFC 3550 estimator run over the delays the censor gave to the voice RTP
  packets, in order (its steady-state mean). With uniform ±J and no reordering this tends to
  2J/3; the censor keeps packets in order (a late packet holds back the next), which lowers it;
- RTT truth: the mean delay of the outbound STUN Binding requests plus the mean delay of the
  inbound responses during the window: the engine's round trips are those checks on the media's
  candidate pair (``QualityConfig.rtt_check_interval_s``), so these are the packets measured.

Run: ``python -m bench.accuracy --mode quick|full``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

from bench.common import (
    TARGET_JITTER_MS,
    TARGET_LOSS_SE,
    audio_ssrc,
    binomial_se_pct,
    rfc3550_jitter_trace,
    rtp_header,
    rtt_tolerance_ms,
    steady_mean,
    stun_binding,
    uniform_jitter_limit,
    write_result,
)
from callpath.core.call.engine import Engine
from callpath.core.lab.network import ECHO_HOST, LabNetwork
from callpath.core.lab.rules import Action, Decision, FlowDirection, Packet, Transport
from callpath.core.lab.scenario import Scenario, parse_scenario
from callpath.core.model.config import QualityConfig
from callpath.core.model.events import Event, RunStarted, StageStarted
from callpath.core.model.results import Direction, Stage

FULL_RTT_MS = (0, 50, 150, 300)
FULL_JITTER_MS = (0, 10, 30, 50)
FULL_LOSS_PCT = (0, 2, 5, 10, 20)
QUICK_CELLS = ((0, 0, 0), (150, 30, 10))
FULL_WINDOW_S = 10.0
QUICK_WINDOW_S = 5.0
AUDIO_CLOCK = 48000


@dataclass(frozen=True)
class Seen:
    """One UDP datagram of the call as the censor handled it."""

    now: float
    outbound: bool
    payload_head: bytes  # enough for the RTP/RTCP header
    dropped: bool
    delay_s: float


def cell_scenario(rtt_ms: float, jitter_ms: float, loss_pct: float, seed: int) -> Scenario:
    rules = []
    if loss_pct:
        rules.append(f"  - random_loss: {{percent: {loss_pct}, seed: {seed}}}")
    if rtt_ms or jitter_ms:
        rules.append(f"  - delay: {{rtt_ms: {rtt_ms}, jitter_ms: {jitter_ms}, seed: {seed + 1}}}")
    body = "\n".join(rules) if rules else "  []"
    text = (
        "version: 1\nid: accuracy-cell\ntitle: accuracy\nexplanation: accuracy\n"
        f"paths: [direct]\nrules:\n{body}\nexpect: {{voice: [], video: []}}\n"
    )
    if not rules:
        text = text.replace("rules:\n  []", "rules: []")
    return parse_scenario(text)


def _record_censor(lab: LabNetwork, seen: list[Seen]) -> None:
    """Wrap the censor's ``evaluate`` (this lab instance only) to log the call's datagrams."""
    censor = lab.censor
    evaluate = censor.evaluate

    def recording(packet: Packet) -> Decision:
        decision = evaluate(packet)
        if packet.transport is Transport.UDP and packet.target[0] == ECHO_HOST:
            seen.append(
                Seen(
                    now=packet.now,
                    outbound=packet.direction is FlowDirection.OUTBOUND,
                    payload_head=bytes(packet.payload[:12]),
                    dropped=decision.action is Action.DROP,
                    delay_s=decision.delay_s if decision.action is Action.DELAY else 0.0,
                )
            )
        return decision

    censor.evaluate = recording  # type: ignore[method-assign]


def truth_from_packets(seen: list[Seen], window: tuple[float, float]) -> dict[str, Any]:
    """What the censor did to the voice stream and to RTCP during ``window``."""
    start, end = window
    outbound = [s for s in seen if s.outbound]
    headers = [(s, rtp_header(s.payload_head)) for s in outbound]
    ssrc = audio_ssrc(h for _, h in headers if h is not None)
    audio = [(s, h) for s, h in headers if h is not None and h.ssrc == ssrc]
    in_window = [(s, h) for s, h in audio if start <= s.now <= end]
    sent = len(in_window)
    dropped = sum(1 for s, _ in in_window if s.dropped)
    passed = [(s, h) for s, h in audio if not s.dropped]
    delays_ms = [s.delay_s * 1000 for s, _ in passed]
    trace = rfc3550_jitter_trace(delays_ms)
    # Transit as a perfect receiver would compute it: arrival minus RTP time, which also holds
    # the sender's own pacing noise (event-loop lag), not only the injected delay.
    first_ts = passed[0][1].timestamp if passed else 0
    transits = [
        (s.now + s.delay_s - ((h.timestamp - first_ts) & 0xFFFFFFFF) / AUDIO_CLOCK) * 1000
        for s, h in passed
    ]
    transit_trace = rfc3550_jitter_trace(transits)
    window_index = [i for i, (s, _) in enumerate(passed[1:]) if start <= s.now <= end]
    injected = [trace[i] for i in window_index]
    observed = [transit_trace[i] for i in window_index]

    def check_delays(outbound: bool, kind: str) -> list[float]:
        return [
            s.delay_s
            for s in seen
            if s.outbound == outbound
            and start <= s.now <= end
            and not s.dropped
            and stun_binding(s.payload_head) == kind
        ]

    checks_out, checks_in = check_delays(True, "request"), check_delays(False, "response")
    # One round trip is one request out and its response back: their spread sets how well the
    # engine's estimate (the median of per-second means) can hit the mean.
    spread = (
        (statistics.pstdev(checks_out) ** 2 + statistics.pstdev(checks_in) ** 2) ** 0.5 * 1000
        if len(checks_out) > 1 and len(checks_in) > 1
        else None
    )
    return {
        "audio_packets_in_window": sent,
        "rtt_checks_answered": len(checks_in),
        "rtt_sample_spread_ms": spread,
        "realised_loss_pct": dropped / sent * 100 if sent else None,
        "jitter_truth_ms": steady_mean(injected, settle=0) if injected else steady_mean(trace),
        "jitter_with_sender_pacing_ms": (
            steady_mean(observed, settle=0) if observed else steady_mean(transit_trace)
        ),
        "rtt_truth_ms": (
            (statistics.fmean(checks_out) + statistics.fmean(checks_in)) * 1000
            if checks_out and checks_in
            else None
        ),
    }


async def measure_cell(
    rtt_ms: float, jitter_ms: float, loss_pct: float, window_s: float, seed: int
) -> dict[str, Any]:
    scenario = cell_scenario(rtt_ms, jitter_ms, loss_pct, seed)
    seen: list[Seen] = []
    marks: dict[str, float] = {}

    def sink(event: Event) -> None:
        if isinstance(event, RunStarted):
            marks["run"] = time.monotonic()
        elif isinstance(event, StageStarted) and event.stage is Stage.QUALITY:
            marks["quality"] = event.at

    async with LabNetwork(scenario) as lab:
        _record_censor(lab, seen)
        options = replace(lab.options(), quality=QualityConfig(window_s=window_s))
        run = await Engine(lab.plans(), lab.target(), sink, options).run()
    path = run.paths[0]
    cell: dict[str, Any] = {
        "rtt_ms": rtt_ms,
        "jitter_ms": jitter_ms,
        "loss_pct": loss_pct,
        "exercised": path.exercised,
        "failure": path.failure,
    }
    if not path.exercised or "quality" not in marks:
        return cell
    quality_start = marks["run"] + marks["quality"]
    truth = truth_from_packets(seen, (quality_start, quality_start + window_s))
    sent = [s for s in path.voice.samples if s.direction == Direction.SENT]
    rtts = [s.rtt_ms for s in sent if s.rtt_ms is not None]
    jitters = [s.jitter_ms for s in sent if s.jitter_ms is not None]
    losses = [s.loss_pct for s in sent if s.loss_pct is not None]
    measured_rtt = statistics.median(rtts) if rtts else None
    measured_jitter = statistics.median(jitters) if jitters else None
    # The engine's upstream loss: counted over the window when two receiver reports came (the
    # quality stage's evidence), else the mean of the per-second figures.
    (quality,) = [stage for stage in path.stages if stage.stage == Stage.QUALITY]
    counted = quality.evidence.get("upstream_loss_pct", {}).get("audio")
    measured_loss = counted if counted is not None else statistics.fmean(losses) if losses else None
    cell.update(truth)
    cell.update(
        {
            "measured_rtt_ms": measured_rtt,
            "measured_jitter_ms": measured_jitter,
            "measured_loss_pct": measured_loss,
            "jitter_uniform_limit_ms": uniform_jitter_limit(jitter_ms),
        }
    )
    rtt_truth = truth["rtt_truth_ms"]
    if measured_rtt is not None and rtt_truth is not None:
        error = measured_rtt - rtt_truth
        cell["rtt_error_ms"] = error
        cell["rtt_error_vs_injected_ms"] = measured_rtt - rtt_ms
        cell["rtt_ok"] = abs(error) <= rtt_tolerance_ms(rtt_truth)
        spread = truth["rtt_sample_spread_ms"]
        if spread is not None and truth["rtt_checks_answered"]:
            sampling_se = 1.2533 * spread / truth["rtt_checks_answered"] ** 0.5
            cell["rtt_sampling_se_ms"] = sampling_se
            # Within the target, or explained by the number of round trips sampled.
            cell["rtt_within_sampling_noise"] = abs(error) <= max(
                rtt_tolerance_ms(rtt_truth), 2 * sampling_se
            )
    jitter_truth = truth["jitter_truth_ms"]
    if measured_jitter is not None and jitter_truth is not None:
        cell["jitter_error_ms"] = measured_jitter - jitter_truth
        cell["jitter_ok"] = abs(measured_jitter - jitter_truth) <= TARGET_JITTER_MS
    packets = truth["audio_packets_in_window"]
    if measured_loss is not None and packets:
        se = binomial_se_pct(loss_pct / 100, packets)
        cell["loss_se_pct"] = se
        cell["loss_error_pct"] = measured_loss - loss_pct
        cell["loss_error_in_se"] = (measured_loss - loss_pct) / se if se else None
        cell["loss_ok"] = abs(measured_loss - loss_pct) <= TARGET_LOSS_SE * se + 1e-9
        if truth["realised_loss_pct"] is not None:
            cell["loss_error_vs_realised_pct"] = measured_loss - truth["realised_loss_pct"]
    return cell


def grid(mode: str) -> list[tuple[int, int, int]]:
    if mode == "quick":
        return list(QUICK_CELLS)
    return list(itertools.product(FULL_RTT_MS, FULL_JITTER_MS, FULL_LOSS_PCT))


def worst(cells: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    rated = [c for c in cells if c.get(key) is not None]
    if not rated:
        return None
    cell = max(rated, key=lambda c: abs(c[key]))
    return {k: cell[k] for k in ("rtt_ms", "jitter_ms", "loss_pct", key)}


async def main_async(mode: str) -> dict[str, Any]:
    window = QUICK_WINDOW_S if mode == "quick" else FULL_WINDOW_S
    cells = []
    for index, (rtt, jitter, loss) in enumerate(grid(mode)):
        cell = await measure_cell(rtt, jitter, loss, window, seed=100 + index * 7)
        print(
            f"rtt {rtt:>3} jitter {jitter:>2} loss {loss:>2}: "
            f"rtt {cell.get('measured_rtt_ms')} / {cell.get('rtt_truth_ms')} "
            f"jitter {cell.get('measured_jitter_ms')} / {cell.get('jitter_truth_ms')} "
            f"loss {cell.get('measured_loss_pct')} / {loss} ±{cell.get('loss_se_pct')}",
            flush=True,
        )
        cells.append(cell)
    summary = {
        "cells": len(cells),
        "measured": sum(1 for c in cells if c.get("exercised")),
        "rtt_ok": sum(1 for c in cells if c.get("rtt_ok")),
        "jitter_ok": sum(1 for c in cells if c.get("jitter_ok")),
        "loss_ok": sum(1 for c in cells if c.get("loss_ok")),
        "rtt_within_sampling_noise": sum(1 for c in cells if c.get("rtt_within_sampling_noise")),
        "worst_rtt": worst(cells, "rtt_error_ms"),
        "worst_jitter": worst(cells, "jitter_error_ms"),
        "worst_loss_in_se": worst(cells, "loss_error_in_se"),
    }
    return {"window_s": window, "summary": summary, "cells": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    args = parser.parse_args()
    data = asyncio.run(main_async(args.mode))
    command = f"python -m bench.accuracy --mode {args.mode}"
    print(write_result("accuracy", args.mode, command, data))


if __name__ == "__main__":
    main()
