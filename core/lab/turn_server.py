"""Userspace TURN relay for the lab: UDP, TCP and TLS listeners around `TurnAllocations`.

Also answers plain STUN Binding requests, so one listener serves `stun:` and `turn:`. Runs
in-process without root; relay sockets are UDP sockets bound on `relay_host`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import cast

from aioice import stun

from callpath.core.lab.turn_allocations import (
    CHANNEL_NUMBER_MAX,
    CHANNEL_NUMBER_MIN,
    Action,
    Address,
    ClientKey,
    ClientTransport,
    CloseRelay,
    SendToClient,
    SendToPeer,
    TurnAllocations,
    TurnConfig,
    TurnStats,
)

logger = logging.getLogger(__name__)

_CHANNEL_DATA_HEADER_LENGTH = 4
_MAGIC_COOKIE = struct.pack("!I", stun.COOKIE)
_STUN_TYPE_MASK = 0xC000  # the two most significant bits of a STUN message type are zero


@dataclass(frozen=True)
class LabTurnServerLimits:
    """I/O limits of the server; protocol limits live in `TurnConfig`."""

    expiry_interval_s: float = 1.0
    max_stream_connections: int = 256
    max_stream_write_buffer: int = 1024 * 1024  # beyond this a slow reader loses frames
    max_relay_backlog: int = 64  # datagrams queued while a relay socket is being wired up
    tls_handshake_timeout_s: float = 5.0
    close_timeout_s: float = 2.0


def _now() -> float:
    return time.monotonic()


class _Relay:
    """One relay UDP socket, usable before its asyncio transport exists."""

    def __init__(self, address: Address, max_backlog: int) -> None:
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self.backlog: list[tuple[bytes, Address]] = []
        self.max_backlog = max_backlog
        self.wiring: asyncio.Task[None] | None = None
        self.sock: socket.socket | None = None

    def send(self, data: bytes, peer: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, peer)
        elif len(self.backlog) < self.max_backlog:
            self.backlog.append((data, peer))

    def close(self) -> None:
        if self.wiring is not None and not self.wiring.done():
            self.wiring.cancel()
        if self.transport is not None:
            self.transport.close()
        elif self.sock is not None:
            self.sock.close()
        self.backlog.clear()


class _RelayProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: LabTurnServer, relay: Address) -> None:
        self._server = server
        self._relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._server._from_peer(self._relay, (str(addr[0]), int(addr[1])), data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from peers (port unreachable) are routine for a relay.
        logger.debug("relay %s: %s", self._relay, exc)


class _ClientDatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: LabTurnServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        client = ClientKey(ClientTransport.UDP, (str(addr[0]), int(addr[1])))
        self._server._from_client(client, data)

    def error_received(self, exc: Exception) -> None:
        logger.debug("udp listener: %s", exc)


class _ClientStreamProtocol(asyncio.Protocol):
    """Splits a TCP or TLS byte stream into STUN messages and ChannelData frames."""

    def __init__(self, server: LabTurnServer, transport_kind: ClientTransport) -> None:
        self._server = server
        self._kind = transport_kind
        self._buffer = bytearray()
        self._client: ClientKey | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client = ClientKey(self._kind, (str(peer[0]), int(peer[1])))
        if not self._server._stream_opened(self._client, self._transport):
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        assert self._client is not None and self._transport is not None
        self._buffer += data
        while len(self._buffer) >= _CHANNEL_DATA_HEADER_LENGTH:
            kind, length = struct.unpack("!HH", self._buffer[:4])
            if CHANNEL_NUMBER_MIN <= kind <= CHANNEL_NUMBER_MAX and self._server._allocated(
                self._client
            ):
                # ChannelData is padded to 4 bytes on streams (RFC 8656 §12.5).
                size = _CHANNEL_DATA_HEADER_LENGTH + length + stun.padding_length(length)
            elif kind & _STUN_TYPE_MASK == 0 and self._cookie_fits():
                size = stun.HEADER_LENGTH + length
            else:
                # Neither STUN nor ChannelData (which needs an allocation; "GET " would pass as
                # one): the stream cannot be resynchronised.
                self._transport.abort()
                return
            if len(self._buffer) < size:
                return
            frame = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._server._from_client(self._client, frame)

    def _cookie_fits(self) -> bool:
        """False once the buffer shows a wrong magic cookie (a TLS ClientHello, say)."""
        cookie = bytes(self._buffer[4:8])
        return cookie == _MAGIC_COOKIE[: len(cookie)]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is not None:
            self._server._stream_closed(self._client)


class LabTurnServer:
    """TURN/STUN server on loopback (or any host) for lab scenarios and tests."""

    def __init__(self, config: TurnConfig, limits: LabTurnServerLimits | None = None) -> None:
        self._config = config
        self._limits = limits or LabTurnServerLimits()
        self._core = TurnAllocations(config, self._open_relay)
        self._relay_host = "127.0.0.1"
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._streams: dict[ClientKey, asyncio.Transport] = {}
        self._relays: dict[Address, _Relay] = {}
        self._expiry: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(
        self,
        host: str = "127.0.0.1",
        udp_port: int | None = 0,
        tcp_port: int | None = 0,
        tls_port: int | None = 0,
        tls_context: ssl.SSLContext | None = None,
        relay_host: str = "127.0.0.1",
    ) -> None:
        """Binds the listeners; a port of None skips that listener, TLS needs `tls_context`."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._relay_host = relay_host
        try:
            if udp_port is not None:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _ClientDatagramProtocol(self), local_addr=(host, udp_port)
                )
                self._udp = transport
            if tcp_port is not None:
                self._tcp = await loop.create_server(
                    lambda: _ClientStreamProtocol(self, ClientTransport.TCP), host, tcp_port
                )
            if tls_port is not None and tls_context is not None:
                self._tls = await loop.create_server(
                    lambda: _ClientStreamProtocol(self, ClientTransport.TLS),
                    host,
                    tls_port,
                    ssl=tls_context,
                    ssl_handshake_timeout=self._limits.tls_handshake_timeout_s,
                )
        except BaseException:
            await self.close()
            raise
        self._expiry = asyncio.create_task(self._expire_periodically())

    @property
    def udp_port(self) -> int | None:
        if self._udp is None:
            return None
        return int(self._udp.get_extra_info("sockname")[1])

    @property
    def tcp_port(self) -> int | None:
        return _server_port(self._tcp)

    @property
    def tls_port(self) -> int | None:
        return _server_port(self._tls)

    @property
    def stats(self) -> TurnStats:
        return self._core.stats

    async def close(self) -> None:
        """Closes every listener, connection and relay socket; bounded by `close_timeout_s`."""
        tasks: list[asyncio.Task[None]] = []
        if self._expiry is not None:
            self._expiry.cancel()
            tasks.append(self._expiry)
            self._expiry = None
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
        for transport in list(self._streams.values()):
            transport.abort()
        self._streams.clear()
        tasks.extend(r.wiring for r in self._relays.values() if r.wiring is not None)
        self._apply(self._core.close_all())
        for relay in list(self._relays.values()):
            relay.close()
        self._relays.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if tasks:
            await asyncio.wait(tasks, timeout=self._limits.close_timeout_s)
        for server in (self._tcp, self._tls):
            if server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), self._limits.close_timeout_s)
        self._tcp = None
        self._tls = None

    # -- called by the protocols --------------------------------------------------------------

    def _from_client(self, client: ClientKey, data: bytes) -> None:
        self._apply(self._core.handle_client_message(_now(), client, data))

    def _from_peer(self, relay: Address, peer: Address, data: bytes) -> None:
        self._apply(self._core.handle_peer_datagram(_now(), relay, peer, data))

    def _allocated(self, client: ClientKey) -> bool:
        return self._core.relay_of(client) is not None

    def _stream_opened(self, client: ClientKey, transport: asyncio.Transport) -> bool:
        if len(self._streams) >= self._limits.max_stream_connections:
            return False
        self._streams[client] = transport
        return True

    def _stream_closed(self, client: ClientKey) -> None:
        if self._streams.pop(client, None) is not None:
            self._apply(self._core.client_disconnected(_now(), client))

    # -- internals ----------------------------------------------------------------------------

    def _open_relay(self, client: ClientKey) -> Address | None:
        loop = self._loop
        if loop is None:
            return None
        family = socket.AF_INET6 if ":" in self._relay_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self._relay_host, 0))
        except OSError as exc:
            sock.close()
            logger.warning("cannot bind a relay socket: %s", exc)
            return None
        bound = sock.getsockname()
        address: Address = (str(bound[0]), int(bound[1]))
        relay = _Relay(address, self._limits.max_relay_backlog)
        relay.sock = sock
        relay.wiring = loop.create_task(self._wire_relay(relay, sock))
        self._relays[address] = relay
        return address

    async def _wire_relay(self, relay: _Relay, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _RelayProtocol(self, relay.address), sock=sock
            )
        except OSError as exc:
            logger.warning("relay socket %s failed: %s", relay.address, exc)
            sock.close()
            return
        if self._relays.get(relay.address) is not relay:
            transport.close()  # deleted while being wired up
            return
        relay.transport = transport
        for data, peer in relay.backlog:
            transport.sendto(data, peer)
        relay.backlog.clear()

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendToClient):
                self._send_to_client(action.client, action.data)
            elif isinstance(action, SendToPeer):
                relay = self._relays.get(action.relay)
                if relay is not None:
                    relay.send(action.data, action.peer)
            elif isinstance(action, CloseRelay):
                closing = self._relays.pop(action.relay, None)
                if closing is not None:
                    closing.close()

    def _send_to_client(self, client: ClientKey, data: bytes) -> None:
        if client.transport is ClientTransport.UDP:
            if self._udp is not None:
                self._udp.sendto(data, client.address)
            return
        stream = self._streams.get(client)
        if stream is None or stream.is_closing():
            return
        if stream.get_write_buffer_size() > self._limits.max_stream_write_buffer:
            return  # relayed media is loss-tolerant; memory is not
        stream.write(data)

    async def _expire_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._limits.expiry_interval_s)
            self._apply(self._core.expire(_now()))


def _server_port(server: asyncio.Server | None) -> int | None:
    if server is None or not server.sockets:
        return None
    return int(server.sockets[0].getsockname()[1])
