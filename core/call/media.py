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
