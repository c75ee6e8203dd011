"""What the echo server accepts from the network before any of it reaches aiortc (issue 21).

- ``ConnectionGuard`` wraps every accepted HTTP connection: at most ``max_connections`` open
  at once, and a connection that has not finished sending a request's headers within
  ``header_timeout_s`` (a client dribbling headers a byte a second) or sits idle between
  requests longer than that is closed.
- ``json_depth`` refuses deeply nested JSON before ``json.loads`` recurses into it.
- ``screen_offer`` checks an SDP offer's candidates: how many, and whether their addresses
  are in loopback, private or reserved ranges (removed unless the operator allows them, as
  coturn's ``denied-peer-ip`` does), so the server never becomes a reflector towards the
  operator's own network.

Pure logic takes ``now``; the guard's clock is the event loop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from callpath.core.model.config import EchoServerLimits
from callpath.core.model.json_input import json_depth_exceeds

__all__ = ["ConnectionGuard", "ScreenedOffer", "json_depth_exceeds", "screen_offer"]


def _candidate_address(line: str) -> str | None:
    # a=candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ TYPE ...
    parts = line.split()
    return parts[4] if len(parts) >= 8 else None


def _refused_range(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return bool(
        address.is_loopback
        or address.is_private
        or address.is_reserved
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None)
    )


@dataclass(frozen=True)
class ScreenedOffer:
    """An offer after ``screen_offer``: the SDP to apply, or why it is refused."""

    sdp: str
    problem: str | None = None
    dropped_candidates: int = 0


def screen_offer(sdp: str, limits: EchoServerLimits) -> ScreenedOffer:
    """Check an offer's candidates: at most ``max_candidates_per_offer``; candidates in loopback,
    private or reserved ranges, and candidates naming a host instead of an address, are removed
    (the server never sends checks there) unless the operator allows private ones. An offer
    whose candidates were all removed is still answered: phones' browsers hide their addresses
    behind mDNS names, and the server learns the caller's address from the checks the caller
    sends (a peer-reflexive candidate), which is a reply, not a reflection. A call that never
    connects is closed after ``ice_timeout_s``."""
    lines = sdp.splitlines()
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    if len(candidates) > limits.max_candidates_per_offer:
        return ScreenedOffer(
            sdp,
            f"the offer has {len(candidates)} candidates; at most "
            f"{limits.max_candidates_per_offer} are accepted",
        )
    kept: list[str] = []
    dropped = 0
    for line in lines:
        if line.startswith("a=candidate:") and not _candidate_allowed(line, limits):
            dropped += 1
            continue
        kept.append(line)
    return ScreenedOffer("\r\n".join(kept) + "\r\n", None, dropped)


def _candidate_allowed(line: str, limits: EchoServerLimits) -> bool:
    address_text = _candidate_address(line)
    if address_text is None:
        return False
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        return False  # a name or an mDNS .local: never resolved
    return limits.allow_private_candidates or not _refused_range(address)


class _Connection:
    def __init__(self, transport: asyncio.BaseTransport, deadline: float) -> None:
        self.transport = transport
        self.deadline = deadline
        self.busy = 0


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's request handler; tells the guard about the connection."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.BaseTransport | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._guard.opened(transport):
            self._refused = True
            _abort(transport)
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._transport is not None:
            self._guard.closed(self._transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self._refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self._inner.resume_writing()


def _abort(transport: asyncio.BaseTransport) -> None:
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


class ConnectionGuard:
    """Connection count and header/idle deadlines for one HTTP server."""

    def __init__(self, limits: EchoServerLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._connections: dict[int, _Connection] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.refused = 0
        self.timed_out = 0

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def protocol_factory(self, inner_factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(inner_factory(), self)

    def opened(self, transport: asyncio.BaseTransport) -> bool:
        if len(self._connections) >= self.limits.max_connections:
            self.refused += 1
            return False
        deadline = self._clock() + self.limits.header_timeout_s
        self._connections[id(transport)] = _Connection(transport, deadline)
        return True

    def closed(self, transport: asyncio.BaseTransport) -> None:
        self._connections.pop(id(transport), None)

    @contextlib.contextmanager
    def request(self, transport: asyncio.BaseTransport | None) -> Iterator[None]:
        """Around a request's handling: the headers arrived; the deadline waits until it ends."""
        connection = None if transport is None else self._connections.get(id(transport))
        if connection is not None:
            connection.busy += 1
        try:
            yield
        finally:
            if connection is not None:
                connection.busy -= 1
                connection.deadline = self._clock() + self.limits.header_timeout_s

    def sweep(self, now: float) -> int:
        """Close connections past their deadline that are not handling a request; how many."""
        late = [c for c in self._connections.values() if not c.busy and now > c.deadline]
        for connection in late:
            self.timed_out += 1
            self._connections.pop(id(connection.transport), None)
            _abort(connection.transport)
        return len(late)

    def start(self) -> None:
        async def sweeping() -> None:
            interval = max(0.05, min(1.0, self.limits.header_timeout_s / 4))
            while True:
                await asyncio.sleep(interval)
                self.sweep(self._clock())

        self._sweeper = asyncio.create_task(sweeping())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
