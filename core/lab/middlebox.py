"""The lab's censor middlebox: a userspace NAT of UDP and TCP forwarders that applies a ``Censor``.

The client (``client_hosts``, 127.0.0.1 by default) sees the lab's outside only through the
forwarders this box opens on its own address (127.0.0.3 by default). ``expose_udp(target)``
and ``expose_tcp(target)`` return the address the other side should use instead of
``target``. Flows with a client host on the far side of the box, in either role (the client
sending to an exposed outside server, or an outside peer sending to an exposed client
candidate), go through the censor; flows between lab servers pass untouched.

UDP: each source gets its own upstream socket on the box's address (a symmetric NAT mapping:
replies are accepted from the target only and go back to that source from the forwarder's
address). Mappings expire after ``udp_idle_s`` without traffic either way.

TCP: each accepted connection gets its own upstream connection; both directions are pumped
through bounded queues, so a slow reader slows the writer down (backpressure), a FIN is passed
on as a half-close, and every socket is closed by ``close()``. Decisions map as follows:
DROP blackholes the connection (both directions stop, nothing is closed), FREEZE stops one
direction, RESET aborts both ends with an RST. The box only sees a connection once the kernel
has accepted it, so a blocked *connect* can only look like a silent or reset connection, not
like an unanswered SYN.

Only IPv4 loopback is supported; all of this runs in one asyncio loop, without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import socket
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from callpath.core.lab.rules import (
    Action,
    Address,
    Censor,
    FlowDirection,
    FlowKey,
    Packet,
    Transport,
)

DEFAULT_HOST = "127.0.0.3"
DEFAULT_CLIENT_HOSTS = frozenset({"127.0.0.1"})


@dataclass(frozen=True)
class MiddleboxLimits:
    udp_idle_s: float = 60.0  # NAT mapping lifetime without traffic
    udp_max_mappings: int = 512  # per forwarder; datagrams from further sources are dropped
    udp_queue_bytes: int = 4 * 1024 * 1024  # delayed datagrams held per mapping and direction
    # Kernel receive buffer asked for each UDP socket of the box (capped by net.core.rmem_max):
    # the censor is one event loop shared with the calls it carries, and a burst arriving while
    # the loop is busy must wait in the socket, as it would in a router's queue, not be dropped.
    udp_receive_buffer_bytes: int = 4 * 1024 * 1024
    tcp_chunk_bytes: int = 16 * 1024
    tcp_queue_chunks: int = 16  # per direction: what is read ahead of the slower side
    tcp_max_connections: int = 256  # per forwarder; further connections are reset
    tcp_connect_timeout_s: float = 4.0
    sweep_interval_s: float = 1.0
    close_timeout_s: float = 2.0


def _enlarge_receive_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


@dataclass(frozen=True)
class _Orientation:
    """Who is the client on a forwarder's flow, and which way the source's data goes."""

    client: Address
    outside: Address
    from_source: FlowDirection

    @property
    def towards_source(self) -> FlowDirection:
        if self.from_source is FlowDirection.OUTBOUND:
            return FlowDirection.INBOUND
        return FlowDirection.OUTBOUND

    def flow(self, transport: Transport) -> FlowKey:
        return FlowKey(transport, self.client, self.outside)


def _address(raw: tuple[Any, ...]) -> Address:
    return (str(raw[0]), int(raw[1]))


def _abort_with_rst(transport: asyncio.BaseTransport | None) -> None:
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class Middlebox:
    def __init__(
        self,
        censor: Censor | None = None,
        *,
        host: str = DEFAULT_HOST,
        client_hosts: frozenset[str] = DEFAULT_CLIENT_HOSTS,
        limits: MiddleboxLimits | None = None,
    ) -> None:
        self.censor = censor if censor is not None else Censor()
        self.host = host
        self.client_hosts = client_hosts
        self.limits = limits if limits is not None else MiddleboxLimits()
        self._udp: list[_UdpForwarder] = []
        self._tcp: list[_TcpForwarder] = []
        self._tasks: set[asyncio.Task[Any]] = set()  # ours, cancelled on close
        self._accepting: set[asyncio.Task[Any]] = set()  # asyncio's, one per TCP connection
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> Middlebox:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def exposed(self) -> dict[Address, tuple[Transport, Address]]:
        """Forwarder address -> (transport, target) for every forwarder opened."""
        table: dict[Address, tuple[Transport, Address]] = {}
        for udp in self._udp:
            table[udp.address] = (Transport.UDP, udp.target)
        for tcp in self._tcp:
            table[tcp.address] = (Transport.TCP, tcp.target)
        return table

    async def expose_udp(self, target: Address) -> Address:
        """Opens a UDP forwarder to ``target``; returns its address on the box."""
        self._check_open()
        loop = asyncio.get_running_loop()
        forwarder = _UdpForwarder(self, _address(target))
        await loop.create_datagram_endpoint(lambda: forwarder, local_addr=(self.host, 0))
        self._udp.append(forwarder)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        return forwarder.address

    async def expose_tcp(self, target: Address) -> Address:
        """Opens a TCP forwarder to ``target``; returns its address on the box."""
        self._check_open()
        forwarder = _TcpForwarder(self, _address(target))
        server = await asyncio.start_server(
            forwarder.accept, self.host, 0, limit=self.limits.tcp_chunk_bytes
        )
        forwarder.server = server
        self._tcp.append(forwarder)
        return forwarder.address

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for udp in self._udp:
            udp.close()
        for tcp in self._tcp:
            tcp.close()  # aborts every connection; their tasks then end by themselves
        helpers = [task for task in self._tasks if not task.done()]
        if self._sweeper is not None:
            helpers.append(self._sweeper)
        for task in helpers:
            task.cancel()
        pending = helpers + [task for task in self._accepting if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.limits.close_timeout_s)
            for task in late:
                task.cancel()
        for tcp in self._tcp:
            if tcp.server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tcp.server.wait_closed(), self.limits.close_timeout_s)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the middlebox is closed")

    def _orient(self, source: Address, target: Address) -> _Orientation | None:
        if source[0] in self.client_hosts:
            return _Orientation(source, target, FlowDirection.OUTBOUND)
        if target[0] in self.client_hosts:
            return _Orientation(target, source, FlowDirection.INBOUND)
        return None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._track(asyncio.get_running_loop().create_task(coroutine))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.limits.sweep_interval_s)
            for udp in self._udp:
                udp.expire(loop.time() - self.limits.udp_idle_s)


# --- UDP -------------------------------------------------------------------------------------


class _DelayLine:
    """Datagrams waiting for their departure time, sent in (time, arrival) order."""

    def __init__(self, send: Callable[[bytes], None], max_bytes: int) -> None:
        self._send = send
        self._max_bytes = max_bytes
        self._queue: list[tuple[float, int, bytes]] = []
        self._sequence = itertools.count()
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def push(self, departure: float, data: bytes) -> bool:
        if self._bytes + len(data) > self._max_bytes:
            return False  # queue overflow: the datagram is lost, as in a full router queue
        heapq.heappush(self._queue, (departure, next(self._sequence), data))
        self._bytes += len(data)
        self._arm()
        return True

    def _arm(self) -> None:
        if not self._queue:
            return
        head = self._queue[0][0]
        if self._timer is not None and self._timer.when() <= head:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(head, self._release)

    def _release(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._queue and self._queue[0][0] <= now:
            _, _, data = heapq.heappop(self._queue)
            self._bytes -= len(data)
            self._send(data)
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._bytes = 0


class _UdpForwarder(asyncio.DatagramProtocol):
    def __init__(self, box: Middlebox, target: Address) -> None:
        self.box = box
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("", 0)
        self.mappings: dict[Address, _UdpMapping] = {}
        self.overflow_drops = 0  # datagrams dropped because of the mapping limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector datagram transports do not subclass DatagramTransport in 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.address = _address(transport.get_extra_info("sockname"))
        _enlarge_receive_buffer(transport, self.box.limits.udp_receive_buffer_bytes)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = _address(addr)
        mapping = self.mappings.get(source)
        if mapping is None:
            if len(self.mappings) >= self.box.limits.udp_max_mappings:
                self.overflow_drops += 1
                return
            mapping = self.mappings[source] = _UdpMapping(self, source)
            self.box._spawn(mapping.open())
        mapping.forward_from_source(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from a previous send; UDP has nobody to tell

    def send_to(self, data: bytes, destination: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, destination)

    def expire(self, idle_before: float) -> None:
        for source, mapping in list(self.mappings.items()):
            if mapping.last_active < idle_before:
                mapping.close()
                del self.mappings[source]

    def close(self) -> None:
        for mapping in self.mappings.values():
            mapping.close()
        self.mappings.clear()
        if self.transport is not None:
            self.transport.close()


class _UdpMapping(asyncio.DatagramProtocol):
    """One NAT mapping: a source of the forwarder and its own upstream socket to the target."""

    _PENDING_LIMIT = 64  # datagrams held while the upstream socket opens

    def __init__(self, forwarder: _UdpForwarder, source: Address) -> None:
        self.forwarder = forwarder
        self.source = source
        box = forwarder.box
        self.orientation = box._orient(source, forwarder.target)
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.closed = False
        loop = asyncio.get_running_loop()
        self.last_active = loop.time()
        queue_bytes = box.limits.udp_queue_bytes
        self._lines = {
            "upstream": _DelayLine(self._send_upstream, queue_bytes),
            "source": _DelayLine(self._send_to_source, queue_bytes),
        }

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        box = self.forwarder.box
        try:
            await loop.create_datagram_endpoint(
                lambda: self, local_addr=(box.host, 0), remote_addr=self.forwarder.target
            )
        except OSError:
            self.close()
            return
        if self.closed and self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector datagram transports do not subclass DatagramTransport in 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)
        _enlarge_receive_buffer(transport, self.forwarder.box.limits.udp_receive_buffer_bytes)
        pending, self.pending = self.pending, []
        for data in pending:
            self._send_upstream(data)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._forward(data, to_source=True)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ECONNREFUSED from an ICMP port unreachable: the datagram is simply lost

    def forward_from_source(self, data: bytes) -> None:
        self._forward(data, to_source=False)

    def _forward(self, data: bytes, *, to_source: bool) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.last_active = now
        line = self._lines["source" if to_source else "upstream"]
        send = self._send_to_source if to_source else self._send_upstream
        orientation = self.orientation
        if orientation is None:
            send(data)
            return
        direction = orientation.towards_source if to_source else orientation.from_source
        packet = Packet(
            now=now,
            transport=Transport.UDP,
            direction=direction,
            client=orientation.client,
            target=orientation.outside,
            payload=data,
        )
        decision = self.forwarder.box.censor.evaluate(packet)
        if decision.action is Action.PASS:
            send(data)
        elif decision.action is Action.DELAY:
            line.push(now + decision.delay_s, data)
        # DROP (and RESET/FREEZE, meaningless for UDP): the datagram is lost.

    def _send_upstream(self, data: bytes) -> None:
        if self.transport is None:
            if len(self.pending) < self._PENDING_LIMIT and not self.closed:
                self.pending.append(data)
            return
        if not self.transport.is_closing():
            self.transport.sendto(data)

    def _send_to_source(self, data: bytes) -> None:
        self.forwarder.send_to(data, self.source)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for line in self._lines.values():
            line.close()
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()
        if self.orientation is not None:
            self.forwarder.box.censor.forget(self.orientation.flow(Transport.UDP))


# --- TCP -------------------------------------------------------------------------------------


class _TcpForwarder:
    def __init__(self, box: Middlebox, target: Address) -> None:
        self.box = box
        self.target = target
        self.server: asyncio.Server | None = None
        self.connections: set[_TcpConnection] = set()

    @property
    def address(self) -> Address:
        assert self.server is not None
        return _address(self.server.sockets[0].getsockname())

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.box.limits.tcp_max_connections:
            _abort_with_rst(writer.transport)
            return
        connection = _TcpConnection(self, reader, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self.box._accepting.add(task)
            task.add_done_callback(self.box._accepting.discard)
        try:
            await connection.run()
        except asyncio.CancelledError:
            # Python 3.11's stream server logs an error for a cancelled callback task, so this
            # task ends normally; only close() cancels it, after the connection had its chance.
            connection.abort()
        finally:
            self.connections.discard(connection)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.abort()


_EOF = None


class _Finished(Exception):
    """Ends a relay without an RST: the client left a connection that could not serve it."""


class _TcpConnection:
    def __init__(
        self,
        forwarder: _TcpForwarder,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.forwarder = forwarder
        self.box = forwarder.box
        self.source_reader = reader
        self.source_writer = writer
        self.source = _address(writer.get_extra_info("peername"))
        self.orientation = self.box._orient(self.source, forwarder.target)
        self.upstream_reader: asyncio.StreamReader | None = None
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.blackholed = False
        self.frozen: set[FlowDirection] = set()
        self.aborted = False
        self._pumps: list[asyncio.Future[None]] = []

    async def run(self) -> None:
        try:
            if await self._admit():
                await self._relay()
        except (ConnectionError, OSError):
            self.abort()
        except _Finished:
            pass
        finally:
            self._close()
            if self.orientation is not None:
                self.box.censor.forget(self.orientation.flow(Transport.TCP))

    async def _admit(self) -> bool:
        """The connection attempt: censored, then connected upstream. False when it ends here."""
        limits = self.box.limits
        orientation = self.orientation
        if orientation is not None:
            loop = asyncio.get_running_loop()
            decision = self.box.censor.evaluate(
                Packet(
                    now=loop.time(),
                    transport=Transport.TCP,
                    direction=orientation.from_source,
                    client=orientation.client,
                    target=orientation.outside,
                    opening=True,
                )
            )
            if decision.action is Action.RESET:
                self.abort()
                return False
            if decision.action in (Action.DROP, Action.FREEZE):
                await self._swallow_source()
                return False
            if decision.action is Action.DELAY:
                await asyncio.sleep(decision.delay_s)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.forwarder.target[0],
                    self.forwarder.target[1],
                    local_addr=(self.box.host, 0),
                    limit=limits.tcp_chunk_bytes,
                ),
                limits.tcp_connect_timeout_s,
            )
        except (OSError, TimeoutError):
            # The client is already connected to us; an RST is the closest to "refused".
            self.abort()
            return False
        self.upstream_reader = reader
        self.upstream_writer = writer
        return True

    async def _swallow_source(self) -> None:
        """A blocked connection attempt: say nothing, pass nothing on, until the client leaves."""
        while await self.source_reader.read(self.box.limits.tcp_chunk_bytes):
            pass

    async def _relay(self) -> None:
        assert self.upstream_reader is not None and self.upstream_writer is not None
        orientation = self.orientation
        if orientation is None:
            from_source, towards_source = FlowDirection.OUTBOUND, FlowDirection.INBOUND
        else:
            from_source, towards_source = orientation.from_source, orientation.towards_source
        source_is_client = from_source is FlowDirection.OUTBOUND
        self._pumps = [
            asyncio.ensure_future(
                self._pump(from_source, self.source_reader, self.upstream_writer, source_is_client)
            ),
            asyncio.ensure_future(
                self._pump(
                    towards_source, self.upstream_reader, self.source_writer, not source_is_client
                )
            ),
        ]
        # A pump that reaches EOF leaves the other running (half-close); an error ends both.
        _, running = await asyncio.wait(self._pumps, return_when=asyncio.FIRST_EXCEPTION)
        for pump in running:
            pump.cancel()
        outcomes = await asyncio.gather(*self._pumps, return_exceptions=True)
        if any(isinstance(outcome, ConnectionError | OSError) for outcome in outcomes):
            self.abort()

    def _dead(self, direction: FlowDirection) -> bool:
        return self.blackholed or direction in self.frozen

    async def _pump(
        self,
        direction: FlowDirection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        reads_client: bool,
    ) -> None:
        """Reads one side, asks the censor, queues for the other side's writer."""
        loop = asyncio.get_running_loop()
        limits = self.box.limits
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(limits.tcp_queue_chunks)
        drain = asyncio.ensure_future(self._drain(queue, writer))
        try:
            while True:
                data = await reader.read(limits.tcp_chunk_bytes)
                if self.aborted:
                    return
                if not data:
                    if reads_client and (self.blackholed or self.frozen):
                        raise _Finished  # nothing can reach the client, which is leaving
                    if not self._dead(direction):
                        await queue.put(_EOF)
                        await drain
                    return
                if self._dead(direction):
                    continue  # the censor lets nothing more through this way
                departure = loop.time()
                if self.orientation is not None:
                    departure, data = self._censor(direction, data, departure)
                    if not data:
                        continue
                await queue.put((departure, data))
        finally:
            if not drain.done():
                drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

    def _censor(self, direction: FlowDirection, data: bytes, now: float) -> tuple[float, bytes]:
        """Returns the departure time and the bytes to forward (empty when none)."""
        assert self.orientation is not None
        decision = self.box.censor.evaluate(
            Packet(
                now=now,
                transport=Transport.TCP,
                direction=direction,
                client=self.orientation.client,
                target=self.orientation.outside,
                payload=data,
            )
        )
        action = decision.action
        if action is Action.PASS:
            return now, data
        if action is Action.DELAY:
            return now + decision.delay_s, data
        if action is Action.FREEZE:
            self.frozen.add(direction)
            return now + decision.delay_s, data[: decision.keep_bytes]
        if action is Action.RESET:
            self.abort()
        else:
            self.blackholed = True
        return now, b""

    async def _drain(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await queue.get()
                if writer.transport.is_closing():
                    return
                if item is _EOF:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                departure, data = item
                wait = departure - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self.abort()

    def abort(self) -> None:
        """RST to both ends (a censor's injected reset, a peer's reset, or shutdown)."""
        if self.aborted:
            return
        self.aborted = True
        _abort_with_rst(self.source_writer.transport)
        if self.upstream_writer is not None:
            _abort_with_rst(self.upstream_writer.transport)
        current = asyncio.current_task()
        for pump in self._pumps:
            if pump is not current:
                pump.cancel()

    def _close(self) -> None:
        self.source_writer.close()
        if self.upstream_writer is not None:
            self.upstream_writer.close()
