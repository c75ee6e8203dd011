"""The test call's media encoded once per run and shared by every path (core/call/media.py)."""

from __future__ import annotations

import asyncio
import itertools

import av

from callpath.core.call.media import OPUS_FRAME_SAMPLES, SharedMedia


async def test_paths_share_one_encoding_and_each_starts_at_a_keyframe() -> None:
    media = SharedMedia(160, 120, 15)
    gate = asyncio.Event()
    first, second = media.track("video", gate), media.track("video", gate)
    try:
        waiting = asyncio.create_task(first.recv())
        await asyncio.sleep(0.2)
        assert media.frames_encoded("video") == 0  # nothing is encoded before the gate opens
        gate.set()
        start = await asyncio.wait_for(waiting, 5)
        assert start.keyframe
        for _ in range(4):
            assert not (await asyncio.wait_for(first.recv(), 5)).keyframe
        joined = await asyncio.wait_for(second.recv(), 5)
        assert joined.keyframe  # a path joining later gets a keyframe made for it
        seen_by_first = [await asyncio.wait_for(first.recv(), 5) for _ in range(3)]
        assert joined in seen_by_first  # the very same encoded frame, not a second encoding
        assert media.frames_encoded("video") <= 5 + 3 + 2
        decoder = av.CodecContext.create("libvpx", "r")
        pictures = decoder.decode(av.Packet(bytes(joined)))
        assert [(p.width, p.height) for p in pictures] == [(160, 120)]
    finally:
        first.stop()
        second.stop()
        media.close()


async def test_voice_frames_are_opus_in_20_ms_steps() -> None:
    media = SharedMedia(160, 120, 15)
    gate = asyncio.Event()
    gate.set()
    track = media.track("audio", gate)
    try:
        frames = [await asyncio.wait_for(track.recv(), 5) for _ in range(5)]
        steps = {b.pts - a.pts for a, b in itertools.pairwise(frames)}
        assert steps == {OPUS_FRAME_SAMPLES}
        decoder = av.CodecContext.create("libopus", "r")
        assert decoder.decode(av.Packet(bytes(frames[-1])))[0].samples == OPUS_FRAME_SAMPLES
    finally:
        track.stop()
        media.close()


async def test_a_keyframe_request_from_any_path_makes_the_next_frame_one() -> None:
    media = SharedMedia(160, 120, 15)
    gate = asyncio.Event()
    gate.set()
    track = media.track("video", gate)
    try:
        await asyncio.wait_for(track.recv(), 5)
        await asyncio.sleep(0.3)  # past the merging interval of keyframe requests
        for _ in range(3):
            await asyncio.wait_for(track.recv(), 5)
        track.request_keyframe()
        later = [await asyncio.wait_for(track.recv(), 5) for _ in range(4)]
        assert any(frame.keyframe for frame in later)
    finally:
        track.stop()
        media.close()
