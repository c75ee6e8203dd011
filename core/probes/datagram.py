"""One UDP flow (one local port, one server): the socket wrapper the UDP probes share."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from callpath.core.probes.binding import datagram_socket

Address = tuple[str, int]


class DatagramFlow(asyncio.DatagramProtocol):
    """Datagrams from the server, with their arrival time (monotonic), in a queue."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.refused = False  # an ICMP port unreachable came back

    @classmethod
    async def open(cls, server: Address, interface: str | None = None) -> DatagramFlow:
        """A flow to ``server``; its socket leaves by ``interface`` when one is given."""
        loop = asyncio.get_running_loop()
        flow = cls()
        if interface is None:
            await loop.create_datagram_endpoint(lambda: flow, remote_addr=server)
            return flow
        sock = await datagram_socket(server, interface)
        try:
            await loop.create_datagram_endpoint(lambda: flow, sock=sock)
        except BaseException:
            sock.close()
            raise
        return flow

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport here

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((time.monotonic(), data))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)

    async def next(self, deadline: float) -> tuple[float, bytes] | None:
        """The next datagram, or None once ``deadline`` (monotonic) has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            try:
                return self.received.get_nowait()
            except asyncio.QueueEmpty:
                return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                return await self.received.get()
        return None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
