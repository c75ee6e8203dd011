"""The answering side of a test call: sends every received RTP packet straight back.

Used by ``callpath echo-server``, by the relay-loopback target and by the lab. Like a media
server's echo it forwards packets rather than frames (``callpath.core.call.rtp_forwarding``):
nothing is
decoded, reassembled or re-packetised, which is what lets one process carry many calls. It
never sends more than it receives: echoed video pauses while the bytes it sent exceed the bytes
it received by a margin (an echo peer must not be usable as a traffic amplifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callpath.core.call.library_adapter import (
    EchoedStream,
    PreparedRelay,
    StunBudget,
    echo_rtp,
    host_addresses,
    ice_connected,
    limit_stun_sending,
    transport_totals,
    use_prepared_turn,
)

logger = logging.getLogger(__name__)

# Echoed bytes may exceed received bytes by this factor plus a fixed allowance: RTCP and
# retransmissions make the two directions differ a little.
AMPLIFICATION_FACTOR = 1.25
AMPLIFICATION_ALLOWANCE_BYTES = 64_000


class _SilentTrack(MediaStreamTrack):
    """The echo's outgoing track: its packets are forwarded, so it never produces a frame
    (the sender waits on it, costing nothing, until the call ends)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


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
        max_ice_checks: int | None = None,
    ) -> None:
        self._configuration = configuration
        self._ice_addresses = ice_addresses
        self._prepared_turn = prepared_turn
        self._on_closed = on_closed
        self._max_ice_checks = max_ice_checks
        # Set by ``answer`` when ``max_ice_checks`` is given: STUN sent within the offer's size
        # plus what the caller sent (an echo server must not be a reflector).
        self.stun_budget: StunBudget | None = None
        self._budget = _ByteBudget()
        self._pc: RTCPeerConnection | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        # Event-loop time when bytes from the caller last arrived (checked once a second).
        self.last_received_at: float | None = None
        self.echoed: list[EchoedStream] = []  # one per received track, for inspection

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer and return the answer SDP (ICE candidates included)."""
        with host_addresses(self._ice_addresses), use_prepared_turn(self._prepared_turn):
            pc = RTCPeerConnection(self._configuration)
            self._pc = pc

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                receiver = next(
                    t.receiver for t in pc.getTransceivers() if t.receiver.track is track
                )
                sender = pc.addTrack(_SilentTrack(track.kind))
                budget = self._budget
                # Only video pauses for the byte budget: voice is small and must keep flowing.
                video = track.kind == "video"
                stream = echo_rtp(receiver, sender, lambda: not (video and budget.exceeded))
                self.echoed.append(stream)

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState in ("failed", "closed"):
                    await self.close()

            @pc.on("iceconnectionstatechange")
            def on_ice_state() -> None:
                if self.stun_budget is not None and ice_connected(pc):
                    self.stun_budget.connected = True

            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            if self._max_ice_checks is not None:
                self.stun_budget = StunBudget(
                    max_requests=self._max_ice_checks, initial_bytes=len(offer_sdp.encode())
                )
                limit_stun_sending(pc, self.stun_budget)
            self._watch = asyncio.create_task(self._watch_budget(pc))
            return str(pc.localDescription.sdp)

    @property
    def ice_connected(self) -> bool:
        return self._pc is not None and ice_connected(self._pc)

    async def _watch_budget(self, pc: RTCPeerConnection) -> None:
        loop = asyncio.get_running_loop()
        self.last_received_at = loop.time()
        while True:
            await asyncio.sleep(1.0)
            received_before = self.bytes_received
            self.bytes_sent, self.bytes_received = transport_totals(pc)
            if self.bytes_received > received_before:
                self.last_received_at = loop.time()
            self._budget.update(self.bytes_sent, self.bytes_received)

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
