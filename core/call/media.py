"""Synthetic media for test calls: speech-like audio and a moving test pattern.

No microphone or camera is used. Audio alternates talk spurts and short pauses (so Opus behaves
as it does with a voice, not with a steady tone); video is a moving pattern so VP8 has real
motion to encode. Frames are paced in real time like aiortc's own sample tracks.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

AUDIO_RATE = 48000
AUDIO_PTIME = 0.020
VIDEO_CLOCK = 90000


class _Pacer:
    """Releases frame n at start + n * period, the way a capture device would."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.start: float | None = None
        self.count = 0

    async def wait(self) -> int:
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.count += 1
            delay = self.start + self.count * self.period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return self.count


class SpeechLikeAudioTrack(MediaStreamTrack):
    """Mono 48 kHz audio: voiced talk spurts of 0.4–1.2 s separated by 0.15–0.4 s pauses."""

    kind = "audio"

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        self._pacer = _Pacer(AUDIO_PTIME)
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)
        self._rng = np.random.default_rng(seed)
        self._phase = 0.0
        self._segment_left = 0
        self._voiced = False
        self._pitch = 140.0
        self._time_base = fractions.Fraction(1, AUDIO_RATE)

    def _next_segment(self) -> None:
        self._voiced = not self._voiced
        length_s = self._rng.uniform(0.4, 1.2) if self._voiced else self._rng.uniform(0.15, 0.4)
        self._segment_left = int(length_s / AUDIO_PTIME)
        self._pitch = float(self._rng.uniform(100.0, 220.0))

    def _voice(self) -> np.ndarray:
        t = np.arange(self._samples) / AUDIO_RATE
        phase = self._phase + 2 * math.pi * self._pitch * t
        self._phase = float((phase[-1] + 2 * math.pi * self._pitch / AUDIO_RATE) % (2 * math.pi))
        # A few harmonics and a little noise: a crude vowel that exercises the codec.
        wave = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
        wave += self._rng.normal(0.0, 0.05, self._samples)
        return wave * 6000.0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        count = await self._pacer.wait()
        if self._segment_left <= 0:
            self._next_segment()
        self._segment_left -= 1
        # Pauses carry faint noise, as a real microphone does.
        samples = self._voice() if self._voiced else self._rng.normal(0.0, 30.0, self._samples)
        data = np.clip(samples, -32767, 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = count * self._samples
        frame.time_base = self._time_base
        return frame


class TestPatternVideoTrack(MediaStreamTrack):
    """A moving YUV test pattern (colour bars scrolling over a gradient, plus a moving box)."""

    kind = "video"
    __test__ = False  # a media track, not a pytest test class

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        self._width = width - width % 2
        self._height = height - height % 2
        self._pacer = _Pacer(1.0 / fps)
        self._fps = fps
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
        # Pattern twice as wide as the frame; each frame is a shifted window onto it.
        x = np.arange(2 * self._width)
        bars = ((x // max(1, self._width // 8)) * 37 % 256).astype(np.uint8)
        gradient = (np.arange(self._height) * 255 // max(1, self._height - 1)).astype(np.uint8)
        self._luma = ((bars[None, :].astype(np.uint16) + gradient[:, None]) // 2).astype(np.uint8)
        chroma_w, chroma_h = self._width // 2, self._height // 2
        columns = np.arange(2 * chroma_w)
        self._u = np.tile(((columns * 3) % 256).astype(np.uint8), (chroma_h, 1))
        self._v = np.tile(((columns * 5) % 256).astype(np.uint8), (chroma_h, 1))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        count = await self._pacer.wait()
        shift = (count * 4) % self._width
        w, h = self._width, self._height
        y = np.ascontiguousarray(self._luma[:, shift : shift + w])
        box = (count * 3) % max(1, h - 32)
        y[box : box + 32, box : box + 32] = 255 - y[box : box + 32, box : box + 32]
        cshift = shift // 2
        u = self._u[:, cshift : cshift + w // 2].reshape(h // 4, w)
        v = self._v[:, cshift : cshift + w // 2].reshape(h // 4, w)
        planes = np.concatenate([y, u, v])
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = int(count * VIDEO_CLOCK / self._fps)
        frame.time_base = self._time_base
        return frame


# --- encoding once for every path ---------------------------------------------------------------

OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
OPUS_BITRATE = 96_000  # as aiortc's own Opus encoder
VP8_BITRATE = 500_000  # aiortc's default VP8 target (it adapts per call; the shared one does not)
KEYFRAME_MIN_INTERVAL_S = 0.25  # keyframe requests closer together than this are merged
SUBSCRIBER_QUEUE = 30  # encoded frames a slow path may fall behind before frames are dropped


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame, shared by every path that sends it. aiortc's senders packetise it
    themselves (a track that returns encoded data instead of a frame: ``Encoder.pack``), each
    with its own sequence numbers, SSRC and timestamp origin."""

    data: bytes
    pts: int
    time_base: fractions.Fraction
    keyframe: bool

    def __bytes__(self) -> bytes:
        return self.data


class _SharedEncoder:
    """Encodes one synthetic source once and hands every frame to all subscribed paths.

    Encoding runs only while someone subscribes. Video subscribers start at a keyframe (one
    is made when a path joins or asks for it), so a path can join the stream at any time."""

    def __init__(self, source: MediaStreamTrack, encode: Callable[[Any, bool], list[EncodedFrame]]):
        self._source = source
        self._encode = encode
        self._subscribers: set[asyncio.Queue[EncodedFrame]] = set()
        self._task: asyncio.Task[None] | None = None
        self._keyframe_wanted = True
        self._last_keyframe = -1e9
        self.frames_encoded = 0

    def subscribe(self) -> asyncio.Queue[EncodedFrame]:
        queue: asyncio.Queue[EncodedFrame] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        self._keyframe_wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"shared {self._source.kind}")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[EncodedFrame]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        video = self._source.kind == "video"
        while self._subscribers:
            frame = await self._source.recv()
            now = time.monotonic()
            keyframe = (
                self._keyframe_wanted and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL_S
            )
            if keyframe:
                self._keyframe_wanted = False
                self._last_keyframe = now
            if video:  # a few milliseconds: kept off the event loop, as aiortc does
                encoded = await loop.run_in_executor(None, self._encode, frame, keyframe)
            else:
                encoded = self._encode(frame, keyframe)
            self.frames_encoded += len(encoded)
            for item in encoded:
                for queue in self._subscribers:
                    if queue.full():  # a path that fell behind loses its oldest frame
                        queue.get_nowait()
                    queue.put_nowait(item)

    def stop(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._source.stop()


def _opus_encoder() -> Callable[[Any, bool], list[EncodedFrame]]:
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = OPUS_BITRATE
    codec.format = "s16"
    codec.layout = "stereo"
    codec.options = {"application": "voip"}
    codec.sample_rate = AUDIO_RATE
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    resampler = av.AudioResampler(
        format="s16", layout="stereo", rate=AUDIO_RATE, frame_size=OPUS_FRAME_SAMPLES
    )
    time_base = fractions.Fraction(1, AUDIO_RATE)
    count = 0

    def encode(frame: Any, keyframe: bool) -> list[EncodedFrame]:
        nonlocal count
        out = []
        for resampled in resampler.resample(frame):
            for packet in codec.encode(resampled):
                out.append(EncodedFrame(bytes(packet), count * OPUS_FRAME_SAMPLES, time_base, True))
                count += 1
        return out

    return encode


def _vp8_encoder(width: int, height: int, fps: int) -> Callable[[Any, bool], list[EncodedFrame]]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = width - width % 2
    codec.height = height - height % 2
    codec.bit_rate = VP8_BITRATE
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(fps, 1)
    codec.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    codec.gop_size = 3000  # keyframes only when a path joins or asks for one
    codec.qmin = 2
    codec.qmax = 56
    # The real-time constant-bitrate settings aiortc's own VP8 encoder uses.
    codec.options = {
        "bufsize": str(VP8_BITRATE),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(VP8_BITRATE),
        "maxrate": str(VP8_BITRATE),
        "noise-sensitivity": "4",
        "overshoot-pct": "15",
        "partitions": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
    }
    codec.thread_count = 1
    time_base = fractions.Fraction(1, VIDEO_CLOCK)

    def encode(frame: Any, keyframe: bool) -> list[EncodedFrame]:
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        data = b"".join(bytes(packet) for packet in codec.encode(frame))
        if not data:
            return []
        # A VP8 frame tag's lowest bit is 0 on a key frame (RFC 6386, 9.1).
        return [EncodedFrame(data, int(frame.pts), time_base, not data[0] & 1)]

    return encode


class SharedMedia:
    """The test call's voice and video, encoded once for all paths of a run.

    Each path sends the same Opus and VP8 frames (``track``); what differs per path —
    packetising, SRTP, the network — is all that costs per path, so every path's media can be
    measured at the same time. The video bitrate is fixed (aiortc's per-call encoder would
    follow each path's bandwidth estimate): a path too narrow for it shows loss instead."""

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        self._encoders = {
            "audio": _SharedEncoder(SpeechLikeAudioTrack(), _opus_encoder()),
            "video": _SharedEncoder(
                TestPatternVideoTrack(width, height, fps), _vp8_encoder(width, height, fps)
            ),
        }

    def track(self, kind: str, gate: asyncio.Event) -> EncodedTrack:
        """A path's track of ``kind``: silent until ``gate`` is set, then the shared frames."""
        return EncodedTrack(self._encoders[kind], kind, gate)

    def frames_encoded(self, kind: str) -> int:
        return self._encoders[kind].frames_encoded

    def close(self) -> None:
        for encoder in self._encoders.values():
            encoder.stop()


class EncodedTrack(MediaStreamTrack):
    """One path's share of a :class:`SharedMedia` stream (returns encoded frames)."""

    def __init__(self, encoder: _SharedEncoder, kind: str, gate: asyncio.Event) -> None:
        super().__init__()
        self.kind = kind
        self._encoder = encoder
        self._gate = gate
        self._queue: asyncio.Queue[EncodedFrame] | None = None
        self._started = False  # video: a keyframe was sent

    def request_keyframe(self) -> None:
        self._encoder.request_keyframe()

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        await self._gate.wait()
        if self._queue is None:
            self._queue = self._encoder.subscribe()
        while True:
            frame = await self._queue.get()
            if self.kind == "audio" or self._started or frame.keyframe:
                self._started = True
                return frame

    def stop(self) -> None:
        super().stop()
        if self._queue is not None:
            self._encoder.unsubscribe(self._queue)
            self._queue = None
