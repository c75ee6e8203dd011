"""Load generator for the echo-capacity benchmark: N concurrent audio+video echo calls.

Run as its own process by ``bench.capacity`` (one or more at a time), so that its CPU is not the
echo server's and can be measured apart. To keep it light enough not to be the bottleneck:

- media is encoded once, before any call starts (CallPath's own synthetic speech and 320×240
  30 fps test pattern, the engine's defaults, as Opus and VP8 with a keyframe first) and then
  replayed as pre-encoded packets in real time: no encoder runs during the calls;
- received media is not decoded: aiortc's decoder thread is replaced (in this process only) by
  one that counts the complete frames it is handed, which is what a sustained call needs to
  show (the echoed frame rate), and discards them.

Quality comes from RTCP as in the engine: upstream from the server's receiver reports (RTT,
jitter, loss of what we sent), downstream from our own receivers (jitter, loss of the echo: of
the whole loop, since both servers send packets back with their sequence numbers).
ICE gathers host candidates only on ``--host-address`` (127.0.0.1 for our echo server; the veth
address of Janus's test namespace for Janus).

Writes one JSON object to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import queue
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver
import av
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callpath.core.call.media import SpeechLikeAudioTrack, TestPatternVideoTrack
from callpath.core.call.quality import voice_mos
from callpath.core.call.targets import EchoSession, HttpEchoTarget, JanusEchoTarget

VIDEO_FPS = 30
VIDEO_SIZE = (320, 240)
VIDEO_BITRATE = 500_000  # aiortc's default VP8 target
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_FRAME = 960
LOOP_S = 5  # seconds of media encoded once and replayed
CONNECT_TIMEOUT_S = 25.0
SETTLE_S = 2.0
LATE_REPORT_SHARE = 0.2  # of the window: how late a server's first receiver report may come

# Frames each receiver was handed (keyed by the receiver's output queue).
_frames: Counter[int] = Counter()


def _counting_decoder_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: Any,
) -> None:
    """Stands in for aiortc's decoder thread: counts complete frames, decodes nothing."""
    key = id(output_q)
    while True:
        task = input_q.get()
        if task is None:
            return
        _frames[key] += 1


class _InstantPacer:
    """Lets CallPath's synthetic tracks produce frames as fast as we ask (for pre-encoding)."""

    def __init__(self) -> None:
        self.count = -1

    async def wait(self) -> int:
        self.count += 1
        return self.count


async def pre_encode() -> tuple[list[bytes], list[bytes]]:
    """LOOP_S seconds of Opus packets and VP8 frames (the first one a keyframe)."""
    audio_track = SpeechLikeAudioTrack()
    audio_track._pacer = _InstantPacer()  # type: ignore[assignment]
    opus = OpusEncoder()
    audio: list[bytes] = []
    while len(audio) < LOOP_S * 50:
        payloads, _ = opus.encode(await audio_track.recv())
        audio.extend(payloads)
    video_track = TestPatternVideoTrack(*VIDEO_SIZE, VIDEO_FPS)
    video_track._pacer = _InstantPacer()  # type: ignore[assignment]
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = VIDEO_SIZE
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = VIDEO_BITRATE
    codec.time_base = fractions.Fraction(1, VIDEO_FPS)
    codec.gop_size = 10_000
    codec.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}
    video: list[bytes] = []
    for index in range(LOOP_S * VIDEO_FPS):
        frame = await video_track.recv()
        frame.pts = index
        frame.time_base = fractions.Fraction(1, VIDEO_FPS)
        video.extend(bytes(p) for p in codec.encode(frame))
    video.extend(bytes(p) for p in codec.encode(None))
    return audio, video


class ReplayTrack(MediaStreamTrack):
    """Replays pre-encoded packets in real time, looping."""

    def __init__(self, kind: str, packets: list[bytes], period: float, step: int, clock: int):
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._period = period
        self._step = step
        self._time_base = fractions.Fraction(1, clock)
        self._start: float | None = None
        self._count = 0
        self.sent = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + self._count * self._period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        packet = av.Packet(self._packets[self._count % len(self._packets)])
        packet.pts = self._count * self._step
        packet.time_base = self._time_base
        self._count += 1
        self.sent += 1
        return packet


class Call:
    def __init__(self, index: int, session: EchoSession, audio: list[bytes], video: list[bytes]):
        self.index = index
        self.session = session
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.audio = ReplayTrack("audio", audio, 0.02, AUDIO_FRAME, AUDIO_RATE)
        self.video = ReplayTrack(
            "video", video, 1 / VIDEO_FPS, VIDEO_CLOCK // VIDEO_FPS, VIDEO_CLOCK
        )
        self.pc.addTrack(self.audio)
        self.pc.addTrack(self.video)
        self.failure: str | None = None

    async def connect(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.session.exchange(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed"):
                raise ConnectionError(f"connection {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    def frames(self) -> dict[str, int]:
        counts = {}
        for receiver in self.pc.getReceivers():
            # The remote track's frame queue is what aiortc hands its decoder thread.
            queue_id = id(receiver.track._queue)  # type: ignore[attr-defined]
            counts[receiver.track.kind] = _frames[queue_id]
        return counts

    async def stats(self) -> dict[str, Any]:
        report = await asyncio.wait_for(self.pc.getStats(), 5.0)
        snapshot: dict[str, Any] = {}
        for stat in report.values():
            kind = getattr(stat, "kind", None)
            if kind in ("audio", "video"):
                snapshot[f"{stat.type}:{kind}"] = stat
        return snapshot

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.session.close(), 5.0)


def _loss(lost: float, total: float) -> float | None:
    return max(0.0, lost) / total * 100 if total > 0 else None


def _upstream_baseline(
    kind: str, first: dict[str, Any], per_second: list[dict[str, Any]]
) -> dict[str, Any]:
    """The snapshot the upstream loss is counted from: the window's first, or, when the server's
    first receiver report for ``kind`` came after it (a server setting up many calls at once on
    a small CPU share), the first per-second snapshot that has one, within the window's first
    ``LATE_REPORT_SHARE``. A call whose reports start later than that has no upstream loss."""
    wanted = (f"outbound-rtp:{kind}", f"remote-inbound-rtp:{kind}")
    if all(first.get(key) for key in wanted):
        return first
    for snapshot in per_second[: int(len(per_second) * LATE_REPORT_SHARE)]:
        if all(snapshot.get(key) for key in wanted):
            return snapshot
    return first


def call_quality(
    first: dict[str, Any], last: dict[str, Any], per_second: list[dict[str, Any]]
) -> dict[str, Any]:
    """Loss over the window in both directions, median jitter and RTT, the voice MOS."""
    result: dict[str, Any] = {}
    for kind in ("audio", "video"):
        start = _upstream_baseline(kind, first, per_second)
        out0, out1 = start.get(f"outbound-rtp:{kind}"), last.get(f"outbound-rtp:{kind}")
        rem0, rem1 = start.get(f"remote-inbound-rtp:{kind}"), last.get(f"remote-inbound-rtp:{kind}")
        in0, in1 = first.get(f"inbound-rtp:{kind}"), last.get(f"inbound-rtp:{kind}")
        up = down = None
        if out0 and out1 and rem0 and rem1:
            up = _loss(rem1.packetsLost - rem0.packetsLost, out1.packetsSent - out0.packetsSent)
        if in0 and in1:
            lost = in1.packetsLost - in0.packetsLost
            received = in1.packetsReceived - in0.packetsReceived
            down = _loss(lost, received + max(0, lost))
        result[f"{kind}_loss_up_pct"] = up
        result[f"{kind}_loss_down_pct"] = down
        clock = AUDIO_RATE if kind == "audio" else VIDEO_CLOCK
        jitters_up = [
            s[f"remote-inbound-rtp:{kind}"].jitter / clock * 1000
            for s in per_second
            if f"remote-inbound-rtp:{kind}" in s
        ]
        jitters_down = [
            s[f"inbound-rtp:{kind}"].jitter / clock * 1000
            for s in per_second
            if f"inbound-rtp:{kind}" in s
        ]
        result[f"{kind}_jitter_up_ms"] = statistics.median(jitters_up) if jitters_up else None
        result[f"{kind}_jitter_down_ms"] = statistics.median(jitters_down) if jitters_down else None
    rtts = [
        s["remote-inbound-rtp:audio"].roundTripTime * 1000
        for s in per_second
        if "remote-inbound-rtp:audio" in s and s["remote-inbound-rtp:audio"].roundTripTime
    ]
    result["rtt_ms"] = statistics.median(rtts) if rtts else None
    audio_loss = [result[k] for k in ("audio_loss_up_pct", "audio_loss_down_pct")]
    audio_jitter = [result[k] for k in ("audio_jitter_up_ms", "audio_jitter_down_ms")]
    if result["rtt_ms"] is not None and None not in audio_loss and None not in audio_jitter:
        result["mos"] = voice_mos(result["rtt_ms"], max(audio_jitter), max(audio_loss))
    else:
        result["mos"] = None
    return result


async def run_calls(
    make_session: Callable[[], EchoSession], calls: int, window_s: float, start_at: float
) -> dict[str, Any]:
    audio, video = await pre_encode()
    # Start together with the other generator processes of this step.
    await asyncio.sleep(max(0.0, start_at - time.time()))
    active = [Call(i, make_session(), audio, video) for i in range(calls)]
    connect_started = time.monotonic()
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(c.connect(), CONNECT_TIMEOUT_S) for c in active),
        return_exceptions=True,
    )
    connect_s = time.monotonic() - connect_started
    for call, outcome in zip(active, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            call.failure = f"{type(outcome).__name__}: {outcome}"[:200]
    connected = [c for c in active if c.failure is None]
    await asyncio.sleep(SETTLE_S)
    first = [await c.stats() for c in connected]
    frames0 = [c.frames() for c in connected]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    window_start = time.time()
    per_second: list[list[dict[str, Any]]] = [[] for _ in connected]
    for _ in range(max(1, round(window_s))):
        await asyncio.sleep(1.0)
        for index, call in enumerate(connected):
            with contextlib.suppress(TimeoutError):
                per_second[index].append(await call.stats())
    window_end = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    last = [await c.stats() for c in connected]
    frames1 = [c.frames() for c in connected]
    elapsed = window_end - window_start
    rows = []
    for index, call in enumerate(connected):
        row: dict[str, Any] = {"call": call.index}
        row.update(call_quality(first[index], last[index], per_second[index]))
        for kind in ("audio", "video"):
            got = frames1[index].get(kind, 0) - frames0[index].get(kind, 0)
            row[f"{kind}_echo_fps"] = got / elapsed
        rows.append(row)
    for call in active:
        if call.failure is not None:
            rows.append({"call": call.index, "failure": call.failure})
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    await asyncio.gather(*(c.close() for c in active))
    return {
        "calls": calls,
        "connected": len(connected),
        "connect_s": round(connect_s, 2),
        "window_start": window_start,
        "window_end": window_end,
        "generator_cpu_s": round(cpu, 3),
        "generator_cpu_pct": round(cpu / elapsed * 100, 1),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="echo-call load generator")
    parser.add_argument("--target", choices=("echo", "janus"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--host-address", required=True)
    parser.add_argument("--start-at", type=float, default=0.0, help="UNIX time to start calls")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # Only the one address we are told: never this machine's real interfaces.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.host_address]
    aiortc.rtcrtpreceiver.decoder_worker = _counting_decoder_worker

    def make_session() -> EchoSession:
        if args.target == "echo":
            return HttpEchoTarget(args.url, timeout=20.0).open_session("direct")
        return JanusEchoTarget(args.url, timeout=20.0).open_session("direct")

    result = asyncio.run(run_calls(make_session, args.calls, args.window, args.start_at))
    args.out.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
