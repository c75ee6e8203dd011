"""The answering side of a test call: sends every received track straight back.

Used by ``callpath echo-server``, by the relay-loopback target and by the lab. It never sends
more than it receives: echoed video pauses while the bytes it sent exceed the bytes it received
by a margin (an echo peer must not be usable as a traffic amplifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from core.aiortc_adapter import (
    PreparedRelay,
    forward_keyframe_requests,
    host_addresses,
    tap_encoded_frames,
    use_prepared_turn,
)

logger = logging.getLogger(__name__)

# Echoed bytes may exceed received bytes by this factor plus a fixed allowance: re-encoding
# never reproduces the exact size, and RTCP makes the two sides differ a little.
AMPLIFICATION_FACTOR = 1.25
AMPLIFICATION_ALLOWANCE_BYTES = 64_000
CLOCK_RATES = {"audio": 48000, "video": 90000}
MAX_QUEUED_FRAMES = 64


class _EchoTrack(MediaStreamTrack):
    def __init__(self, source: MediaStreamTrack, budget: _ByteBudget) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._budget = budget

    async def recv(self) -> av.frame.Frame | av.packet.Packet[Any]:
        while True:
            frame = await self._source.recv()
            if self.kind == "audio" or not self._budget.exceeded:
                return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


class _EncodedEchoTrack(MediaStreamTrack):
    """Sends back the encoded frames the receiver reassembled, without decoding them."""

    def __init__(self, kind: str, clock_rate: int, budget: _ByteBudget) -> None:
        super().__init__()
        self.kind = kind
        self._time_base = fractions.Fraction(1, clock_rate)
        self._budget = budget
        self._frames: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue(
            maxsize=MAX_QUEUED_FRAMES
        )

    def deliver(self, data: bytes, timestamp: int) -> None:
        if self.kind == "video" and self._budget.exceeded:
            return
        if self._frames.full():  # the sender fell behind: drop rather than buffer without bound
            self._frames.get_nowait()
        self._frames.put_nowait((data, timestamp))

    async def recv(self) -> av.packet.Packet[Any]:
        item = await self._frames.get()
        if item is None or self.readyState != "live":
            raise MediaStreamError
        data, timestamp = item
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = self._time_base
        return packet

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._frames.put_nowait(None)


class _ByteBudget:
    def __init__(self) -> None:
        self.exceeded = False

    def update(self, sent: int, received: int) -> None:
        self.exceeded = sent > received * AMPLIFICATION_FACTOR + AMPLIFICATION_ALLOWANCE_BYTES


class EchoCall:
    """One echoed call. Create with the ICE configuration, then ``answer`` an offer."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        *,
        ice_addresses: tuple[str, ...] | None = None,
        prepared_turn: PreparedRelay | None = None,
        on_closed: Callable[[EchoCall], None] | None = None,
        passthrough: bool = True,
    ) -> None:
        self._configuration = configuration
        self._ice_addresses = ice_addresses
        self._prepared_turn = prepared_turn
        self._on_closed = on_closed
        # Forward encoded frames (cheap, like a media server) rather than decode and re-encode.
        self._passthrough = passthrough
        self._budget = _ByteBudget()
        self._pc: RTCPeerConnection | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self.bytes_sent = 0
        self.bytes_received = 0

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer and return the answer SDP (ICE candidates included)."""
        with host_addresses(self._ice_addresses), use_prepared_turn(self._prepared_turn):
            pc = RTCPeerConnection(self._configuration)
            self._pc = pc

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                if not self._passthrough:
                    pc.addTrack(_EchoTrack(track, self._budget))
                    return
                receiver = next(
                    t.receiver for t in pc.getTransceivers() if t.receiver.track is track
                )
                clock_rate = CLOCK_RATES.get(track.kind, 90000)
                echo = _EncodedEchoTrack(track.kind, clock_rate, self._budget)
                tap_encoded_frames(receiver, echo.deliver)
                sender = pc.addTrack(echo)
                forward_keyframe_requests(sender, receiver)

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState in ("failed", "closed"):
                    await self.close()

            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            self._watch = asyncio.create_task(self._watch_budget(pc))
            return str(pc.localDescription.sdp)

    async def _watch_budget(self, pc: RTCPeerConnection) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                report = await asyncio.wait_for(pc.getStats(), timeout=2.0)
            except (TimeoutError, MediaStreamError):
                continue
            sent = received = 0
            stat: Any
            for stat in report.values():
                # Transport totals count everything on the wire (RTP, RTCP, STUN, DTLS).
                if stat.type == "transport":
                    sent += int(stat.bytesSent)
                    received += int(stat.bytesReceived)
            self.bytes_sent, self.bytes_received = sent, received
            self._budget.update(sent, received)

    async def close(self, timeout: float = 3.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._pc is not None:
            # A frozen TCP relay can make close() hang for a long time; never wait unbounded.
            try:
                await asyncio.wait_for(self._pc.close(), timeout=timeout)
            except TimeoutError:
                logger.warning("echo call did not close within %.1f s", timeout)
        if self._prepared_turn is not None:
            self._prepared_turn.close()
        if self._on_closed is not None:
            self._on_closed(self)
