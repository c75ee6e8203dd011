"""UDP flow probe: a sustained RTP-like flow to the control server's echo.

Real RTP headers (version 2, Opus payload type, one SSRC, 20 ms timestamps), 160–200 byte
packets at ``flow_rate_pps`` for ``flow_duration_s``, then a faster phase to see whether loss
rises with the rate. Records when and after how many packets/bytes the echo stops
(``cutoff_*``: evidence for ``udp_flow_cutoff``), loss per phase (``udp_throttled``) and RTT.
After a cut-off, a few packets on a fresh flow (new local port) tell a per-flow cut from a block
of the whole address (``residual_block``).

Then the rate steps: a short phase at each of ``flow_step_rates_kBps`` (about 8, 32 and 128 KB/s,
larger packets, ``flow_step_s`` each). Under a rate cap the echoed throughput stays flat while
the offered rate grows, so the loss rises with the rate and the flat throughput is the cap
(``ceiling_kBps``); on a merely lossy network the loss is the same at every rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import statistics
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from callpath.core.model.failures import failure_from_exception
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer, host_port, milliseconds
from callpath.core.probes.datagram import Address, DatagramFlow

RTP_HEADER = struct.Struct("!BBHII")
RTP_VERSION_BYTE = 0x80  # version 2, no padding, no extension, no CSRC
OPUS_PAYLOAD_TYPE = 111
RTP_CLOCK_PER_PACKET = 960  # 20 ms at 48 kHz
BASE_PHASE = "base"
BURST_PHASE = "burst"
STEP_PHASE = "step"  # + the step's index: step0, step1, …
# A cap (``rate_ceiling``): the top step loses at least this much, this many points more than
# the low-rate reference, and its echo grew by at most this share of the growth of the rate
# sent (on a lossy network the echo grows with the rate sent: a share of 1).
STEP_MIN_TOP_LOSS_PCT = 50.0
STEP_MIN_RISE_PCT = 20.0
STEP_FLAT_SHARE = 0.35
STEP_MIN_REFERENCE_PACKETS = 20  # a low-rate reference needs this many packets to count


# --- pure logic ------------------------------------------------------------------------------


def rtp_packet(sequence: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    header = RTP_HEADER.pack(
        RTP_VERSION_BYTE, OPUS_PAYLOAD_TYPE, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )
    return header + payload


def parse_rtp(data: bytes) -> tuple[int, int] | None:
    """(sequence, ssrc) of an RTP packet, or None."""
    if len(data) < RTP_HEADER.size or data[0] & 0xC0 != 0x80:
        return None
    _, _, sequence, _, ssrc = RTP_HEADER.unpack_from(data)
    return sequence, ssrc


@dataclass
class _Sent:
    at: float
    size: int
    phase: str
    replied_at: float | None = None


@dataclass
class FlowMeter:
    """Sent and echoed packets of one flow; ``summary`` turns them into evidence.

    Times are whatever clock the caller passes (monotonic seconds in the probe)."""

    started: float
    silence_s: float
    packets: dict[int, _Sent] = field(default_factory=dict)
    echoed_bytes: int = 0
    outstanding: int = 0  # packets sent and not echoed (yet)

    def sent(self, sequence: int, size: int, phase: str, now: float) -> None:
        previous = self.packets.get(sequence)
        if previous is None or previous.replied_at is not None:
            self.outstanding += 1
        self.packets[sequence] = _Sent(now, size, phase)

    def received(self, sequence: int, size: int, now: float) -> None:
        packet = self.packets.get(sequence)
        if packet is None or packet.replied_at is not None:
            return  # not ours, or a duplicate
        packet.replied_at = now
        self.echoed_bytes += size
        self.outstanding -= 1

    def cutoff(self) -> dict[str, Any] | None:
        """Where the echo stopped for good, if it did: some packets came back, and the packets
        sent after the last echoed one span at least ``silence_s`` with none answered."""
        ordered = sorted(self.packets.items())
        if not ordered:
            return None
        last_answered = max(
            (index for index, (_, p) in enumerate(ordered) if p.replied_at is not None),
            default=-1,
        )
        unanswered = ordered[last_answered + 1 :]
        if last_answered < 0 or not unanswered:
            return None  # never answered is no cut-off: the flow never got through at all
        span = ordered[-1][1].at - unanswered[0][1].at
        if span < self.silence_s:
            return None  # the tail is too short to tell a cut from loss
        before = [packet for _, packet in ordered[: last_answered + 1]]
        sent_bytes = sum(packet.size for packet in before)
        echoed = sum(packet.size for packet in before if packet.replied_at is not None)
        return {
            "cutoff_packets": len(before),
            "cutoff_bytes": sent_bytes,
            "cutoff_bytes_both_ways": sent_bytes + echoed,
            "cutoff_s": round(unanswered[0][1].at - self.started, 3),
        }

    def loss_pct(self, phase: str, until: float | None = None) -> float | None:
        packets = [
            p for p in self.packets.values() if p.phase == phase and (until is None or p.at < until)
        ]
        if not packets:
            return None
        lost = sum(1 for p in packets if p.replied_at is None)
        return round(100.0 * lost / len(packets), 1)

    def step_summary(
        self, phases: Sequence[tuple[str, float | None, float]]
    ) -> list[dict[str, Any]]:
        """Per phase ``(name, nominal KB/s or None, seconds)``: offered and echoed throughput
        (KB/s, 1 KB = 1000 bytes) and loss; phases that sent nothing are left out."""
        steps = []
        for phase, rate, seconds in phases:
            packets = [p for p in self.packets.values() if p.phase == phase]
            if not packets:
                continue
            echoed = [p for p in packets if p.replied_at is not None]
            sent_bytes = sum(p.size for p in packets)
            echoed_bytes = sum(p.size for p in echoed)
            span = max(seconds, max(p.at for p in packets) - min(p.at for p in packets))
            offered = round(sent_bytes / span / 1000, 1)
            steps.append(
                {
                    "phase": phase,
                    "rate_kBps": rate if rate is not None else offered,
                    "packets_sent": len(packets),
                    "packets_echoed": len(echoed),
                    "loss_pct": round(100.0 * (len(packets) - len(echoed)) / len(packets), 1),
                    "offered_kBps": offered,
                    "echoed_kBps": round(echoed_bytes / span / 1000, 1),
                }
            )
        return steps

    def summary(self) -> dict[str, Any]:
        packets = list(self.packets.values())
        rtts = [p.replied_at - p.at for p in packets if p.replied_at is not None]
        cut = self.cutoff()
        # Loss before the cut only: after it every packet is lost, which is not "loss".
        until = None if cut is None else self.started + cut["cutoff_s"]
        evidence: dict[str, Any] = {
            "packets_sent": len(packets),
            "packets_echoed": len(rtts),
            "bytes_sent": sum(p.size for p in packets),
            "bytes_echoed": self.echoed_bytes,
            "base_loss_pct": self.loss_pct(BASE_PHASE, until),
            "burst_loss_pct": self.loss_pct(BURST_PHASE),
            "rtt_ms": milliseconds(statistics.median(rtts)) if rtts else None,
            "rtt_max_ms": milliseconds(max(rtts)) if rtts else None,
            "jitter_ms": milliseconds(_jitter(packets)) if len(rtts) > 2 else None,
            "cut_off": cut is not None,
        }
        if cut is not None:
            evidence.update(cut)
        return evidence


def rate_ceiling(steps: Sequence[dict[str, Any]]) -> float | None:
    """The echoed throughput (KB/s) where a cap shows, or None when the loss does not depend
    on the rate.

    The low reference is the lowest-rate phase with at least ``STEP_MIN_REFERENCE_PACKETS``
    (the long normal phase), the high one the top step. A cap: the top step loses at least
    ``STEP_MIN_TOP_LOSS_PCT``, that many points more than the reference, and its echo grew by at
    most ``STEP_FLAT_SHARE`` of the growth of the rate sent (on a lossy network the echo grows
    with the rate sent). The ceiling is the top step's echo, the most saturated phase."""
    if len(steps) < 2:
        return None
    counted = [s for s in steps if s["packets_sent"] >= STEP_MIN_REFERENCE_PACKETS] or list(steps)
    low = min(counted, key=lambda step: step["offered_kBps"])
    high = max(steps, key=lambda step: step["offered_kBps"])
    if high is low:
        return None
    rose = high["loss_pct"] - low["loss_pct"] >= STEP_MIN_RISE_PCT
    offered_growth = high["offered_kBps"] / max(low["offered_kBps"], 0.1)
    echoed_growth = high["echoed_kBps"] / max(low["echoed_kBps"], 0.1)
    flat = echoed_growth <= STEP_FLAT_SHARE * offered_growth
    if rose and flat and high["loss_pct"] >= STEP_MIN_TOP_LOSS_PCT:
        return float(high["echoed_kBps"])
    return None


def _jitter(packets: list[_Sent]) -> float:
    """Mean absolute change of the round-trip time between consecutive echoed packets."""
    rtts = [p.replied_at - p.at for p in packets if p.replied_at is not None]
    changes = [abs(b - a) for a, b in itertools.pairwise(rtts)]
    return statistics.fmean(changes) if changes else 0.0


# --- I/O -------------------------------------------------------------------------------------


class _Sender:
    def __init__(self, flow: DatagramFlow, meter: FlowMeter, config: ProbeConfig) -> None:
        self.flow = flow
        self.meter = meter
        self.config = config
        self.ssrc = random.getrandbits(32)
        self.sequence = random.getrandbits(12)  # leaves room before the 16-bit wrap
        self.timestamp = random.getrandbits(32)
        self.all_echoed = asyncio.Event()  # set by the collector, cleared by every send

    def send_one(self, phase: str, size: int | None = None) -> None:
        config = self.config
        if size is None:
            size = random.randint(config.flow_packet_min_bytes, config.flow_packet_max_bytes)
        payload = os.urandom(max(0, size - RTP_HEADER.size))
        packet = rtp_packet(self.sequence, self.timestamp, self.ssrc, payload)
        self.meter.sent(self.sequence & 0xFFFF, len(packet), phase, time.monotonic())
        self.all_echoed.clear()
        self.flow.send(packet)
        self.sequence += 1
        self.timestamp += RTP_CLOCK_PER_PACKET

    async def run_phase(self, phase: str, rate_pps: int, seconds: float) -> None:
        start = time.monotonic()
        count = max(1, round(rate_pps * seconds))
        for index in range(count):
            delay = start + index / rate_pps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send_one(phase)

    async def late_echoes(self, longest_s: float) -> None:
        """Give echoes still on their way up to ``longest_s``; none are once every packet sent
        has come back, so a clean path does not wait (a lossy one waits the whole time: a
        lost packet and a late one look the same until then)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest_s):
                await self.all_echoed.wait()

    async def run_step(self, phase: str, rate_kbps: float, seconds: float) -> None:
        """``rate_kbps`` KB/s for ``seconds`` in ``flow_step_packet_bytes`` packets."""
        size = self.config.flow_step_packet_bytes
        rate_pps = max(1.0, rate_kbps * 1000 / size)
        start = time.monotonic()
        for index in range(max(1, round(rate_pps * seconds))):
            delay = start + index / rate_pps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send_one(phase, size)


async def _collect(flow: DatagramFlow, meter: FlowMeter, sender: _Sender) -> None:
    while True:
        at, data = await flow.received.get()
        parsed = parse_rtp(data)
        if parsed is not None and parsed[1] == sender.ssrc:
            meter.received(parsed[0], len(data), at)
            if meter.outstanding == 0:
                sender.all_echoed.set()


async def _fresh_flow_answered(server: Address, config: ProbeConfig) -> bool:
    flow = await DatagramFlow.open(server, config.bind_interface)
    try:
        meter = FlowMeter(time.monotonic(), config.flow_silence_s)
        sender = _Sender(flow, meter, config)
        for _ in range(config.flow_fresh_attempts):
            sender.send_one(BASE_PHASE)
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + config.flow_silence_s
        while (arrival := await flow.next(deadline)) is not None:
            parsed = parse_rtp(arrival[1])
            if parsed is not None and parsed[1] == sender.ssrc:
                return True
        return False
    finally:
        flow.close()


async def _run_flow(server: Address, config: ProbeConfig) -> dict[str, Any]:
    flow = await DatagramFlow.open(server, config.bind_interface)
    meter = FlowMeter(time.monotonic(), config.flow_silence_s)
    sender = _Sender(flow, meter, config)
    collector = asyncio.ensure_future(_collect(flow, meter, sender))
    try:
        await sender.run_phase(BASE_PHASE, config.flow_rate_pps, config.flow_duration_s)
        await sender.late_echoes(config.flow_silence_s)
        evidence: dict[str, Any] = {
            "rate_pps": config.flow_rate_pps,
            "burst_rate_pps": config.flow_burst_rate_pps,
        }
        if meter.cutoff() is None and any(p.replied_at for p in meter.packets.values()):
            await sender.run_phase(BURST_PHASE, config.flow_burst_rate_pps, config.flow_burst_s)
            await sender.late_echoes(config.flow_silence_s)
            if meter.cutoff() is None:
                for index, rate in enumerate(config.flow_step_rates_kBps):
                    await sender.run_step(f"{STEP_PHASE}{index}", rate, config.flow_step_s)
                # Late echoes of the top step (the last phase) must not count as lost: on a
                # busy machine round trips of a second or more happen.
                await sender.late_echoes(config.flow_step_wait_s)
        evidence.update(meter.summary())
        phases: list[tuple[str, float | None, float]] = [(BASE_PHASE, None, config.flow_duration_s)]
        phases += [
            (f"{STEP_PHASE}{index}", rate, config.flow_step_s)
            for index, rate in enumerate(config.flow_step_rates_kBps)
        ]
        steps = meter.step_summary(phases)
        if len(steps) < 2:
            steps = []  # the base phase alone is no step
        if steps:
            evidence["rate_steps"] = steps
            evidence["ceiling_kBps"] = rate_ceiling(steps)
        evidence["icmp_refused"] = flow.refused
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        flow.close()
    if evidence["cut_off"]:
        evidence["fresh_flow_answered"] = await _fresh_flow_answered(server, config)
    return evidence


async def probe_udp_flow(
    server: Address, config: ProbeConfig, *, origin: float = 0.0, control: bool = True
) -> ProbeResult:
    """RTP-like flow to a UDP echo; ``failure`` is ``generic_timeout_error`` when nothing came
    back, ``media_stalled`` when the echo stopped part-way."""
    timer = ProbeTimer(origin)
    target = host_port(*server)
    budget = (
        config.flow_duration_s
        + config.flow_burst_s
        + len(config.flow_step_rates_kBps) * config.flow_step_s
        + config.flow_step_wait_s
        + 4 * config.flow_silence_s
        + config.flow_fresh_attempts * 0.1
        + 5.0
    )
    try:
        async with asyncio.timeout(budget):
            evidence = await _run_flow(server, config)
    except (OSError, TimeoutError) as error:
        failed = failure_from_exception(error)
        return timer.result(ProbeKind.UDP_FLOW, target, failed, {}, control=control)
    failure: str | None = None
    if evidence["packets_echoed"] == 0:
        failure = "connection_refused" if evidence["icmp_refused"] else "generic_timeout_error"
    elif evidence["cut_off"]:
        failure = "media_stalled"
    return timer.result(ProbeKind.UDP_FLOW, target, failure, evidence, control=control)
