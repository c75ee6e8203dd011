"""The echo peer sends the caller's RTP packets straight back under its own SSRC, and passes
the caller's feedback about the echo (keyframe requests, bandwidth estimates) on to the
caller's own sender; it answers retransmission requests from the packets it sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
)

from callpath.core.call import library_adapter
from callpath.core.call.echo_peer import EchoCall
from callpath.core.call.library_adapter import ice_round_trip, transport_totals
from callpath.core.call.media import SpeechLikeAudioTrack, TestPatternVideoTrack

TIMEOUT = 20.0


@dataclass
class Caller:
    """A real aiortc caller with taps on what it sends and receives (decrypted)."""

    pc: RTCPeerConnection
    echo: EchoCall
    sent: list[RtpPacket] = field(default_factory=list)
    received: list[RtpPacket] = field(default_factory=list)
    feedback: list[Any] = field(default_factory=list)  # RTCP reaching the video sender
    frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    drop_next_video: bool = False  # lose the next video packet on its way to the echo
    dropped: list[RtpPacket] = field(default_factory=list)

    @property
    def echo_pc(self) -> RTCPeerConnection:
        pc = self.echo._pc
        assert pc is not None
        return pc

    def transceiver(self, kind: str) -> Any:
        return next(t for t in self.pc.getTransceivers() if t.kind == kind)


async def _until(condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), TIMEOUT)


@pytest.fixture(params=["native", "python"])
async def caller(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Caller]:
    """A call through the echo, whose per-packet loop runs in C (core/call/_rtp_echo.c) or in
    Python (where the C one is not built)."""
    if request.param == "python":
        monkeypatch.setattr(library_adapter, "NATIVE_LOOP", None)
    elif library_adapter.NATIVE_LOOP is None:
        pytest.skip("the native echo loop is not built here (tests/test_rtp_echo_native.py)")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    echo = EchoCall(RTCConfiguration(iceServers=[]), ice_addresses=("127.0.0.1",))
    call = Caller(pc, echo)
    tracks: list[MediaStreamTrack] = []
    counters: list[asyncio.Task[None]] = []
    try:
        pc.addTrack(SpeechLikeAudioTrack())
        video_sender = pc.addTrack(TestPatternVideoTrack(160, 120, 15))
        handle_feedback = video_sender._handle_rtcp_packet

        async def recording(packet: Any) -> None:
            call.feedback.append(packet)
            await handle_feedback(packet)

        video_sender._handle_rtcp_packet = recording
        pc.on("track", tracks.append)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await asyncio.wait_for(echo.answer(pc.localDescription.sdp), TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        dtls = video_sender.transport
        send_rtp, handle_rtp = dtls._send_rtp, dtls._handle_rtp_data

        async def sending(data: bytes) -> None:
            if not is_rtcp(data):
                packet = RtpPacket.parse(data)
                if call.drop_next_video and packet.ssrc == video_sender._ssrc:
                    call.drop_next_video = False
                    call.dropped.append(packet)
                    return
                call.sent.append(packet)
            await send_rtp(data)

        async def receiving(data: bytes, arrival_time_ms: int) -> None:
            call.received.append(RtpPacket.parse(data))
            await handle_rtp(data, arrival_time_ms)

        dtls._send_rtp, dtls._handle_rtp_data = sending, receiving

        async def count(track: MediaStreamTrack) -> None:
            while True:
                await track.recv()
                call.frames[track.kind] += 1

        await _until(lambda: len(tracks) == 2)
        counters.extend(asyncio.create_task(count(track)) for track in tracks)
        await _until(lambda: call.frames["audio"] >= 25 and call.frames["video"] >= 10)
        # Every test below runs with the echo reading its media socket itself (the fast path).
        await _until(lambda: all(s.socket_reads is not None for s in echo.echoed))
        yield call
    finally:
        for counter in counters:
            counter.cancel()
        await echo.close()
        await asyncio.wait_for(pc.close(), TIMEOUT)


async def test_packets_come_back_unchanged_but_for_the_ssrc(caller: Caller) -> None:
    video_ssrc = caller.transceiver("video").sender._ssrc
    echo_video = next(s for s in caller.echo.echoed if s.source_ssrc == video_ssrc)
    sent = {p.sequence_number: p for p in caller.sent if p.ssrc == video_ssrc}
    echoed = [p for p in caller.received if p.ssrc == echo_video.forwarded.ssrc]
    assert len(echoed) > 10
    for packet in echoed:
        original = sent[packet.sequence_number]
        assert (packet.timestamp, packet.marker, packet.payload_type, packet.payload) == (
            original.timestamp,
            original.marker,
            original.payload_type,
            original.payload,
        )
    # Media over plain UDP is echoed inside the datagram callback, after the first packet.
    for stream in caller.echo.echoed:
        assert stream.packets_slow >= 1
        assert stream.packets_fast > 10 * stream.packets_slow
        # ... by the native loop where it is on (most packets: a few take Python's way).
        native = stream.native
        assert (native is not None) is (library_adapter.NATIVE_LOOP is not None)
        if native is not None:
            assert native.packets_fast > 10 * stream.python_fast


async def test_reports_flow_both_ways(caller: Caller) -> None:
    async def has_reports() -> bool:
        stats = (await caller.pc.getStats()).values()
        kinds = {(s.type, getattr(s, "kind", None)) for s in stats}
        remote_out = [s for s in stats if s.type == "remote-outbound-rtp"]
        return (
            ("remote-inbound-rtp", "video") in kinds  # the echo's receiver reports
            and ("remote-outbound-rtp", "video") in kinds  # the echo's sender reports
            and all(s.packetsSent > 0 for s in remote_out)
        )

    async def wait() -> None:
        while not await has_reports():
            await asyncio.sleep(0.2)

    await asyncio.wait_for(wait(), TIMEOUT)


async def test_keyframe_requests_reach_the_callers_sender(caller: Caller) -> None:
    receiver = caller.transceiver("video").receiver
    before = len(caller.feedback)
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)
    await _until(lambda: len(caller.feedback) > before)


async def test_bandwidth_estimate_is_relayed_to_the_callers_sender(caller: Caller) -> None:
    video = caller.transceiver("video")
    echo_ssrc = next(
        s.forwarded.ssrc for s in caller.echo.echoed if s.source_ssrc == video.sender._ssrc
    )
    estimate = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1234, media_ssrc=0, fci=pack_remb_fci(321_000, [echo_ssrc])
    )
    await video.receiver._send_rtcp(estimate)

    def relayed() -> bool:
        return any(
            isinstance(packet, RtcpPsfbPacket)
            and packet.fmt == RTCP_PSFB_APP
            and unpack_remb_fci(packet.fci) == (321_000, [video.sender._ssrc])
            for packet in caller.feedback
        )

    await _until(relayed)


async def test_retransmission_requests_are_answered(caller: Caller) -> None:
    video = caller.transceiver("video")
    stream = next(s for s in caller.echo.echoed if s.source_ssrc == video.sender._ssrc)
    echoed = [p for p in caller.received if p.ssrc == stream.forwarded.ssrc]
    wanted = echoed[-1].sequence_number
    await video.receiver._send_rtcp_nack(stream.forwarded.ssrc, [wanted])

    def retransmitted() -> bool:
        for packet in caller.received:
            if packet.ssrc != stream.forwarded.ssrc and packet.payload[:2] == (
                wanted.to_bytes(2, "big")
            ):
                return packet.payload[2:] == echoed[-1].payload
        return False

    await _until(retransmitted)


async def test_packets_lost_on_the_way_in_are_asked_of_the_caller(caller: Caller) -> None:
    """The caller's receiver misses the packet in the echo and asks the echo for it; the echo
    never had it, so it asks the caller's sender, and sends its retransmission on."""
    video = caller.transceiver("video")
    stream = next(s for s in caller.echo.echoed if s.source_ssrc == video.sender._ssrc)
    caller.drop_next_video = True
    await _until(lambda: bool(caller.dropped))
    lost = caller.dropped[0]

    def asked_upstream() -> bool:
        return any(
            isinstance(packet, RtcpRtpfbPacket) and lost.sequence_number in packet.lost
            for packet in caller.feedback
        )

    def came_back() -> bool:
        return any(
            packet.ssrc != stream.forwarded.ssrc
            and packet.payload == lost.sequence_number.to_bytes(2, "big") + lost.payload
            for packet in caller.received
        )

    await _until(asked_upstream)
    await _until(came_back)
    # The echoed stream itself still shows the gap: the loop lost that packet once.
    echoed = {p.sequence_number for p in caller.received if p.ssrc == stream.forwarded.ssrc}
    assert lost.sequence_number not in echoed


async def test_the_echo_reads_its_socket_and_answers_consent_checks(caller: Caller) -> None:
    """Once media flows over plain UDP the echo reads the nominated pair's socket itself;
    STUN consent checks on that socket still reach aioice and are answered."""
    stream = caller.echo.echoed[0]
    before = stream.socket_reads
    assert before is not None
    assert await ice_round_trip(caller.echo_pc) is not None  # the echo's check, answered
    assert await ice_round_trip(caller.pc) is not None  # the caller's check, answered
    await asyncio.sleep(0.5)
    after = stream.socket_reads
    assert after is not None and after[1] > before[1]
    audio_before = caller.frames["audio"]
    await _until(lambda: caller.frames["audio"] >= audio_before + 10)  # still echoed whole
    sent, received = transport_totals(caller.echo_pc)
    assert sent > 0 and received > 0  # the byte counters the server reports count the fast path


async def test_video_pauses_while_the_echo_would_send_more_than_it_receives(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The amplification limit holds on the fast path: with no allowance left, echoed video
    stops within the budget's one-second check while voice keeps flowing."""
    from callpath.core.call import echo_peer

    video = caller.transceiver("video")
    stream = next(s for s in caller.echo.echoed if s.source_ssrc == video.sender._ssrc)
    monkeypatch.setattr(echo_peer, "AMPLIFICATION_ALLOWANCE_BYTES", -(10**12))

    def echoed_video() -> int:
        return sum(1 for p in caller.received if p.ssrc == stream.forwarded.ssrc)

    await asyncio.sleep(1.5)  # the budget is checked once a second
    paused_at, audio_at = echoed_video(), caller.frames["audio"]
    await _until(lambda: caller.frames["audio"] >= audio_at + 20)
    assert echoed_video() == paused_at
    monkeypatch.undo()
    await _until(lambda: echoed_video() > paused_at + 5)  # and resumes within the budget
