"""JanusEchoSession against a real Janus: a full echo call, and each way it can fail."""

from __future__ import annotations

import array
import asyncio
import fractions
import json
import math
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aioice.ice
import av
import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from callpath.core.call.janus import JanusEchoSession, JanusError
from tests.servers import LOOPBACK, CoturnServer, JanusServer, free_port, run_janus

pytestmark = pytest.mark.servers

REQUEST_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 20.0
MEDIA_TIMEOUT_S = 20.0
AUDIO_RATE = 48000
AUDIO_PTIME_S = 0.02
VIDEO_FPS = 15
VIDEO_CLOCK_RATE = 90000


class ToneTrack(MediaStreamTrack):
    """20 ms frames of a 440 Hz tone, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._samples_sent = 0

    async def recv(self) -> av.AudioFrame:
        samples = int(AUDIO_RATE * AUDIO_PTIME_S)
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self._samples_sent / AUDIO_RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        pcm = array.array(
            "h",
            (
                int(8000 * math.sin(2 * math.pi * 440 * (self._samples_sent + i) / AUDIO_RATE))
                for i in range(samples)
            ),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples_sent
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples_sent += samples
        return frame


class BarTrack(MediaStreamTrack):
    """Small frames with a moving bright bar, so the VP8 encoder has something to encode."""

    kind = "video"

    def __init__(self, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self._width = width
        self._height = height
        self._start: float | None = None
        self._frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self._frames_sent / VIDEO_FPS
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame(width=self._width, height=self._height, format="yuv420p")
        luma, *chroma = frame.planes
        column = (self._frames_sent * 4) % self._width
        row = bytearray([40]) * luma.line_size
        row[column : column + 8] = bytes([230]) * len(row[column : column + 8])
        luma.update(bytes(row) * self._height)
        for plane in chroma:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = self._frames_sent * VIDEO_CLOCK_RATE // VIDEO_FPS
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self._frames_sent += 1
        return frame


async def wait_for_condition(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


async def inbound_packets(pc: RTCPeerConnection, kind: str) -> int:
    report = await asyncio.wait_for(pc.getStats(), REQUEST_TIMEOUT_S)
    return sum(
        stats.packetsReceived
        for stats in report.values()
        if stats.type == "inbound-rtp" and stats.kind == kind
    )


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        reply = json.loads(response.read())
    assert isinstance(reply, dict)
    return reply


def candidate_addresses(sdp: str) -> set[str]:
    return {match[0] for match in re.findall(r"a=candidate:\S+ \d+ \w+ \d+ (\S+) (\d+)", sdp)}


@pytest.fixture
async def peer_factory() -> AsyncIterator[Callable[[RTCConfiguration], RTCPeerConnection]]:
    created: list[RTCPeerConnection] = []

    def make(configuration: RTCConfiguration) -> RTCPeerConnection:
        pc = RTCPeerConnection(configuration)
        created.append(pc)
        return pc

    yield make
    for pc in created:
        await asyncio.wait_for(pc.close(), REQUEST_TIMEOUT_S)


def relay_configuration(turn: CoturnServer) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=turn.turn_udp_uri, username=turn.username, credential=turn.password)
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("route", ["host", "relay"])
async def test_echotest_call_echoes_media(
    janus: JanusServer,
    start_coturn: Callable[..., CoturnServer],
    peer_factory: Callable[[RTCConfiguration], RTCPeerConnection],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    if route == "host":
        # Janus lives in its own namespace; our only host candidate is our end of its veth.
        monkeypatch.setattr(
            aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: janus.ice_host_addresses
        )
        # Never None, which would add Google's STUN server.
        configuration = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    else:
        # TURN on 127.0.0.1 whose relayed traffic leaves towards Janus's namespace.
        configuration = relay_configuration(start_coturn(relay_ip=janus.client_address))
    pc = peer_factory(configuration)
    pc.addTrack(ToneTrack())
    pc.addTrack(BarTrack())
    received_kinds: list[str] = []
    pc.on("track", lambda track: received_kinds.append(track.kind))

    await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), CONNECT_TIMEOUT_S)
    offer_sdp = pc.localDescription.sdp
    assert re.search(rf"a=candidate:.* typ {route}\b", offer_sdp)
    assert candidate_addresses(offer_sdp) == {janus.client_address}

    async with JanusEchoSession() as session:
        await session.open(janus.base_url, ssl=None, timeout=REQUEST_TIMEOUT_S)
        answer_sdp = await session.negotiate(offer_sdp, timeout=CONNECT_TIMEOUT_S)
        # Janus may only offer its namespace address, never this machine's real ones.
        assert candidate_addresses(answer_sdp) == {janus.host}
        await asyncio.wait_for(
            pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer")),
            CONNECT_TIMEOUT_S,
        )

        async def connected() -> bool:
            return pc.connectionState == "connected" and pc.iceConnectionState == "completed"

        await wait_for_condition(connected, CONNECT_TIMEOUT_S, "ICE completed and DTLS connected")

        async def audio_echoed() -> bool:
            return await inbound_packets(pc, "audio") > 0

        await wait_for_condition(audio_echoed, MEDIA_TIMEOUT_S, "echoed audio RTP")
        assert sorted(received_kinds) == ["audio", "video"]
        assert pc.connectionState == "connected"
        assert session.keepalive_failure is None


async def test_open_without_server_is_connection_refused() -> None:
    port = free_port()  # nothing listens there
    session = JanusEchoSession()
    with pytest.raises(JanusError) as failure:
        await session.open(f"http://{LOOPBACK}:{port}/janus", ssl=None, timeout=REQUEST_TIMEOUT_S)
    assert failure.value.failure == "connection_refused"
    await session.close()


async def test_unknown_plugin_is_janus_error(janus: JanusServer) -> None:
    session = JanusEchoSession(plugin="janus.plugin.does-not-exist")
    with pytest.raises(JanusError) as failure:
        await session.open(janus.base_url, ssl=None, timeout=REQUEST_TIMEOUT_S)
    assert failure.value.failure == "janus_error:460"  # JANUS_ERROR_PLUGIN_NOT_FOUND
    assert session.session_id is None


async def test_wrong_path_is_unexpected_status(janus: JanusServer) -> None:
    session = JanusEchoSession()
    with pytest.raises(JanusError) as failure:
        await session.open(
            f"http://{janus.host}:{janus.port}/not-janus", ssl=None, timeout=REQUEST_TIMEOUT_S
        )
    assert failure.value.failure == "http_unexpected_status_code"


async def test_silent_server_is_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    session = JanusEchoSession()
    try:
        with pytest.raises(JanusError) as failure:
            await session.open(f"http://{LOOPBACK}:{port}/janus", ssl=None, timeout=0.5)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), REQUEST_TIMEOUT_S)
    assert failure.value.failure == "generic_timeout_error"
    assert accepted


async def test_invalid_offer_is_janus_error(janus: JanusServer) -> None:
    async with JanusEchoSession() as session:
        await session.open(janus.base_url, ssl=None, timeout=REQUEST_TIMEOUT_S)
        with pytest.raises(JanusError) as failure:
            await session.negotiate("not an sdp", timeout=REQUEST_TIMEOUT_S)
    assert failure.value.failure.startswith("janus_error:")


async def test_keepalives_are_sent_and_close_destroys_the_session(janus: JanusServer) -> None:
    session = JanusEchoSession(keepalive_interval=0.1)
    await session.open(janus.base_url, ssl=None, timeout=REQUEST_TIMEOUT_S)
    session_id = session.session_id
    assert session_id is not None

    async def two_keepalives() -> bool:
        return session.keepalives_sent >= 2

    await wait_for_condition(two_keepalives, 10.0, "two keepalives")
    assert session.keepalive_failure is None
    await session.close()
    assert session.session_id is None

    # Janus no longer knows the session: a keepalive for it is refused.
    reply = await asyncio.to_thread(
        post_json, f"{janus.base_url}/{session_id}", {"janus": "keepalive", "transaction": "t"}
    )
    assert reply["janus"] == "error"
    assert reply["error"]["code"] == 458  # JANUS_ERROR_SESSION_NOT_FOUND


async def test_close_is_bounded_when_janus_is_gone(tmp_path: Path) -> None:
    with run_janus(tmp_path) as private_janus:
        session = JanusEchoSession(close_timeout=1.0)
        await session.open(private_janus.base_url, ssl=None, timeout=REQUEST_TIMEOUT_S)
        private_janus.process.stop()
        with pytest.raises(JanusError) as failure:
            await session.negotiate("v=0\r\n", timeout=REQUEST_TIMEOUT_S)
        # A pooled keep-alive connection sees EOF; a fresh one is refused.
        assert failure.value.failure in {"eof_error", "connection_reset", "connection_refused"}
        started = time.monotonic()
        await session.close()  # must not raise
        assert time.monotonic() - started < REQUEST_TIMEOUT_S
