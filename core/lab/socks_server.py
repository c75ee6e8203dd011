"""The lab's stand-in for the user's circumvention tool: a SOCKS5 proxy with CONNECT and UDP.

It listens on the user's machine (like ss-local or sing-box) and its traffic leaves from the
tunnel's exit address, which the censor does not inspect: that models a tunnel that gets
through. Only lab hosts are reachable through it. The SOCKS5 wire format is shared with the
client in ``callpath.core.paths.socks5``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from callpath.core.paths.socks5 import (
    ADDRESS_DOMAIN,
    ADDRESS_IPV4,
    ADDRESS_IPV6,
    METHOD_NO_AUTH,
    SOCKS_VERSION,
    address_length,
    decode_address,
    decode_udp_datagram,
    encode_address,
    encode_udp_datagram,
)

COMMAND_CONNECT = 0x01
COMMAND_UDP_ASSOCIATE = 0x03
REPLY_SUCCEEDED = 0x00
REPLY_NOT_ALLOWED = 0x02
REPLY_HOST_UNREACHABLE = 0x04
REPLY_COMMAND_NOT_SUPPORTED = 0x07
COPY_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class LabSocksConfig:
    listen_host: str  # the user's machine
    exit_host: str  # where the tunnel's traffic leaves from, outside the censor
    allowed: Callable[[str], bool]  # destinations it may reach (lab hosts only)
    max_connections: int = 64
    handshake_timeout_s: float = 5.0
    udp: bool = True  # False: refuses UDP ASSOCIATE, like a TCP-only tunnel


class _UdpRelay(asyncio.DatagramProtocol):
    """One association: the client side on the listen host, the outside on the exit host."""

    def __init__(self, server: LabSocksServer) -> None:
        self._server = server
        self.client_side: asyncio.DatagramTransport | None = None
        self.outside: asyncio.DatagramTransport | None = None
        self.client: tuple[str, int] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        decoded = decode_udp_datagram(data)
        if decoded is None or self.outside is None:
            return
        payload, destination = decoded
        if not self._server.config.allowed(destination[0]):
            return
        self.client = source
        self.outside.sendto(payload, destination)

    def from_outside(self, data: bytes, source: tuple[str, int]) -> None:
        if self.client_side is not None and self.client is not None:
            self.client_side.sendto(encode_udp_datagram(data, source), self.client)

    def close(self) -> None:
        for transport in (self.client_side, self.outside):
            if transport is not None:
                transport.close()


class _Outside(asyncio.DatagramProtocol):
    def __init__(self, relay: _UdpRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._relay.from_outside(data, (str(addr[0]), int(addr[1])))


class LabSocksServer:
    def __init__(self, config: LabSocksConfig) -> None:
        self.config = config
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.config.listen_host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def url(self) -> str:
        return f"socks5://{self.config.listen_host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._tasks) >= self.config.max_connections:
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.config.handshake_timeout_s):
            version, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            if version != SOCKS_VERSION or METHOD_NO_AUTH not in methods:
                writer.write(bytes([SOCKS_VERSION, 0xFF]))
                return
            writer.write(bytes([SOCKS_VERSION, METHOD_NO_AUTH]))
            head = await reader.readexactly(4)
            first = await reader.readexactly(1)
            if head[3] not in (ADDRESS_IPV4, ADDRESS_IPV6, ADDRESS_DOMAIN):
                raise ValueError("bad address type")
            rest = await reader.readexactly(address_length(head[3], first[0]) - 1)
            destination, _ = decode_address(head[3:4] + first + rest, 0)
        if head[1] == COMMAND_CONNECT:
            await self._connect(reader, writer, destination)
        elif head[1] == COMMAND_UDP_ASSOCIATE and self.config.udp:
            await self._associate(reader, writer)
        else:
            writer.write(_reply(REPLY_COMMAND_NOT_SUPPORTED, ("0.0.0.0", 0)))

    async def _connect(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        destination: tuple[str, int],
    ) -> None:
        if not _is_ip(destination[0]) or not self.config.allowed(destination[0]):
            writer.write(_reply(REPLY_NOT_ALLOWED, ("0.0.0.0", 0)))
            return
        try:
            async with asyncio.timeout(self.config.handshake_timeout_s):
                up_reader, up_writer = await asyncio.open_connection(
                    destination[0], destination[1], local_addr=(self.config.exit_host, 0)
                )
        except (OSError, TimeoutError):
            writer.write(_reply(REPLY_HOST_UNREACHABLE, ("0.0.0.0", 0)))
            return
        bound = up_writer.get_extra_info("sockname")
        writer.write(_reply(REPLY_SUCCEEDED, (str(bound[0]), int(bound[1]))))
        await writer.drain()
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            up_writer.close()

    async def _associate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        relay = _UdpRelay(self)
        client_side, _ = await loop.create_datagram_endpoint(
            lambda: relay, local_addr=(self.config.listen_host, 0)
        )
        relay.client_side = client_side
        outside, _ = await loop.create_datagram_endpoint(
            lambda: _Outside(relay), local_addr=(self.config.exit_host, 0)
        )
        relay.outside = outside
        bound = client_side.get_extra_info("sockname")
        try:
            writer.write(_reply(REPLY_SUCCEEDED, (str(bound[0]), int(bound[1]))))
            await writer.drain()
            # The association lives as long as its control connection (RFC 1928 §7).
            while await reader.read(COPY_CHUNK_BYTES):
                pass
        finally:
            relay.close()


def _reply(code: int, bound: tuple[str, int]) -> bytes:
    return bytes([SOCKS_VERSION, code, 0x00]) + encode_address(bound)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(COPY_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
