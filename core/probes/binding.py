"""Sockets that leave by one network interface: how the messenger check goes *around* a VPN.

A VPN in TUN mode (WireGuard, Amnezia, Outline, sing-box …) carries the default route, so every
socket the check opens goes through it. Bound to the physical interface with Linux's
``SO_BINDTODEVICE`` (any user may bind a fresh socket since Linux 5.7; CAP_NET_RAW before), a
socket leaves by that interface instead, as the user's apps would without the VPN. Every probe
the check runs takes the interface from ``ProbeConfig.bind_interface`` (None: the default
route) and opens its sockets here; names are resolved around the VPN too (``BoundResolver``,
``BoundAiohttpResolver``), or the answer would come through it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
from aiohttp.abc import AbstractResolver, ResolveResult

from callpath.core.call.resolver import is_address
from callpath.core.model.failures import failure_from_exception

Address = tuple[str, int]
DNS_PORT = 53
DNS_TRIES = 2  # datagrams per server before the next one
MAX_DNS_BYTES = 65535
RCODE_FAILURES = {
    dns.rcode.NXDOMAIN: "dns_nxdomain_error",
    dns.rcode.SERVFAIL: "dns_servfail_error",
    dns.rcode.REFUSED: "dns_refused_error",
}
NO_RESOLVER_AROUND = "dns_no_resolver_around_vpn"


def bind_to_device(sock: socket.socket, interface: str) -> None:
    """``SO_BINDTODEVICE``: OSError (EPERM where the kernel wants CAP_NET_RAW, ENODEV for a missing
    interface, EOPNOTSUPP off Linux)."""
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        raise OSError(errno.EOPNOTSUPP, "SO_BINDTODEVICE is available on Linux only")
    sock.setsockopt(socket.SOL_SOCKET, option, interface.encode() + b"\0")


def bound_socket(family: int, kind: int, interface: str | None, proto: int = 0) -> socket.socket:
    """A non-blocking socket, bound to ``interface`` when one is given."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if interface is not None:
            bind_to_device(sock, interface)
    except BaseException:
        sock.close()
        raise
    return sock


def can_bind(interface: str) -> str | None:
    """None when sockets can be bound to ``interface`` here, else the OS error's failure."""
    try:
        bound_socket(socket.AF_INET, socket.SOCK_DGRAM, interface).close()
    except OSError as error:
        return failure_from_exception(error)
    return None


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _address_of(host: str, port: int, kind: int) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) of ``host``: literals as they are (the check only passes these)."""
    if is_address(host):
        return _family(host), (host, port)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=kind)
    family, _kind, _proto, _name, sockaddr = infos[0]
    return int(family), tuple(sockaddr)


async def connected_socket(host: str, port: int, interface: str | None) -> socket.socket:
    """A TCP connection to ``host:port`` leaving by ``interface`` (None: the default route)."""
    family, sockaddr = await _address_of(host, port, socket.SOCK_STREAM)
    sock = bound_socket(family, socket.SOCK_STREAM, interface)
    try:
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_connection(
    host: str,
    port: int,
    interface: str | None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` whose socket leaves by ``interface`` when one is given."""
    if interface is None:
        if ssl_context is None:
            return await asyncio.open_connection(host, port)
        return await asyncio.open_connection(
            host, port, ssl=ssl_context, server_hostname=server_hostname
        )
    sock = await connected_socket(host, port, interface)
    try:
        if ssl_context is None:
            return await asyncio.open_connection(sock=sock)
        return await asyncio.open_connection(
            sock=sock, ssl=ssl_context, server_hostname=server_hostname
        )
    except BaseException:
        sock.close()
        raise


async def datagram_socket(remote: Address, interface: str | None) -> socket.socket:
    """A UDP socket connected to ``remote`` (ICMP errors come back), leaving by ``interface``."""
    family, sockaddr = await _address_of(remote[0], remote[1], socket.SOCK_DGRAM)
    sock = bound_socket(family, socket.SOCK_DGRAM, interface)
    try:
        sock.connect(sockaddr)  # UDP: no packet is sent, the kernel only picks the route
    except BaseException:
        sock.close()
        raise
    return sock


SocketFactory = Callable[[Any], socket.socket]


def aiohttp_socket_factory(interface: str) -> SocketFactory:
    """For ``aiohttp.TCPConnector(socket_factory=…)``: its sockets leave by ``interface``."""

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
        return bound_socket(family, kind, interface, proto)

    return make


# --- names around the VPN --------------------------------------------------------------------


class LookupFailed(OSError):
    """A lookup failed; ``failure`` names how (OONI style)."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


class BoundResolver:
    """A stub resolver asking ``servers`` over UDP from sockets bound to ``interface``.

    The system resolver cannot be bound to an interface: its answers would come through the
    VPN. This one asks the DNS servers of the network outside (the router's, the ISP's) itself,
    as the operating system would without the VPN."""

    def __init__(
        self, servers: Sequence[Address], interface: str | None, timeout: float = 2.0
    ) -> None:
        self.servers = tuple(servers)
        self.interface = interface
        self.timeout = timeout

    async def resolve(self, host: str) -> list[str]:
        if is_address(host):
            return [host]
        if not self.servers:
            raise LookupFailed(NO_RESOLVER_AROUND)
        failure = "dns_no_answer"
        for server in self.servers:
            try:
                return await self._ask(host, server)
            except LookupFailed as error:
                if error.failure in ("dns_nxdomain_error", "dns_no_answer"):
                    raise  # an answer, not a dead server
                failure = error.failure
        raise LookupFailed(failure)

    async def _ask(self, host: str, server: Address) -> list[str]:
        query = dns.message.make_query(host, dns.rdatatype.A)
        wire = query.to_wire()
        loop = asyncio.get_running_loop()
        try:
            sock = await datagram_socket(server, self.interface)
        except OSError as error:
            raise LookupFailed(failure_from_exception(error)) from None
        try:
            for _attempt in range(DNS_TRIES):
                await loop.sock_sendall(sock, wire)
                try:
                    async with asyncio.timeout(self.timeout / DNS_TRIES):
                        while True:
                            data = await loop.sock_recv(sock, MAX_DNS_BYTES)
                            try:
                                response = dns.message.from_wire(data)
                            except dns.exception.DNSException:
                                continue
                            if query.is_response(response):
                                return _addresses(response)
                except TimeoutError:
                    continue
        except LookupFailed:
            raise
        except ConnectionRefusedError:
            raise LookupFailed("connection_refused") from None
        except OSError as error:
            raise LookupFailed(failure_from_exception(error)) from None
        finally:
            sock.close()
        raise LookupFailed("generic_timeout_error")


def a_records(response: dns.message.Message) -> list[str]:
    """The IPv4 addresses a DNS answer gives (its A records), in order."""
    return [
        rdata.to_text()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.A
        for rdata in rrset
    ]


def _addresses(response: dns.message.Message) -> list[str]:
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise LookupFailed(RCODE_FAILURES.get(rcode, "dns_server_misbehaving"))
    found = a_records(response)
    if not found:
        raise LookupFailed("dns_no_answer")
    return found


class BoundAiohttpResolver(AbstractResolver):
    """aiohttp's resolver over a ``BoundResolver``: the DoH server's own name, looked up
    around the VPN too."""

    def __init__(self, resolver: Any) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._resolver.resolve(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=_family(address),
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def nameservers_outside(
    interface: str,
    resolv_conf: Path = Path("/etc/resolv.conf"),
    link_servers: Callable[[str], Sequence[str]] | None = None,
) -> list[Address]:
    """The DNS servers to ask around the VPN: resolv.conf's, except loopback stubs (which
    cannot be reached from a socket bound to another interface), else the interface's own
    (systemd-resolved's per-link servers, ``link_servers``)."""
    found: list[str] = []
    try:
        text = resolv_conf.read_text("utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.append(parts[1])
    outside = [a for a in found if _reachable_outside(a)]
    if not outside and link_servers is not None:
        outside = [a for a in link_servers(interface) if _reachable_outside(a)]
    return [(address, DNS_PORT) for address in dict.fromkeys(outside)]


def _reachable_outside(address: str) -> bool:
    """Not a loopback stub, and no link-local address (which would need its scope)."""
    if "%" in address or not is_address(address):
        return False
    parsed = ipaddress.ip_address(address)
    return not (parsed.is_loopback or parsed.is_link_local)
