"""The echo peer forwards encoded frames and passes keyframe requests back to the caller."""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from core.echo_peer import EchoCall
from core.media import SpeechLikeAudioTrack, TestPatternVideoTrack

TIMEOUT = 20.0


async def test_echo_forwards_encoded_frames_and_keyframe_requests() -> None:
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    echo = EchoCall(RTCConfiguration(iceServers=[]), ice_addresses=("127.0.0.1",))
    keyframe_requests = 0
    frames: dict[str, int] = {"audio": 0, "video": 0}
    received: list[MediaStreamTrack] = []
    try:
        caller.addTrack(SpeechLikeAudioTrack())
        video_sender = caller.addTrack(TestPatternVideoTrack(160, 120, 15))
        original = video_sender._send_keyframe

        def counting() -> None:
            nonlocal keyframe_requests
            keyframe_requests += 1
            original()

        video_sender._send_keyframe = counting

        @caller.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            received.append(track)

        await caller.setLocalDescription(await caller.createOffer())
        answer = await asyncio.wait_for(echo.answer(caller.localDescription.sdp), TIMEOUT)
        await caller.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        async def count(track: MediaStreamTrack) -> None:
            while True:
                await track.recv()
                frames[track.kind] += 1

        async def enough_frames() -> None:
            while not received or len(received) < 2:
                await asyncio.sleep(0.05)
            counters = [asyncio.create_task(count(track)) for track in received]
            try:
                while frames["audio"] < 25 or frames["video"] < 10:
                    await asyncio.sleep(0.05)
            finally:
                for counter in counters:
                    counter.cancel()

        await asyncio.wait_for(enough_frames(), TIMEOUT)
        before = keyframe_requests
        video_receiver = next(t.receiver for t in caller.getTransceivers() if t.kind == "video")
        for source in video_receiver.getSynchronizationSources():
            await video_receiver._send_rtcp_pli(source.source)

        async def forwarded() -> None:
            while keyframe_requests == before:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(forwarded(), TIMEOUT)
    finally:
        await echo.close()
        await asyncio.wait_for(caller.close(), TIMEOUT)
