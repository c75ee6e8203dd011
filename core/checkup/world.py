"""Where the check's probes go: the real network, or a lab that maps every catalogue endpoint
onto a stand-in (``callpath.core.lab.standins``) so that no test reaches a real messenger."""

from __future__ import annotations

import ssl
from typing import Protocol

from callpath.core.call.resolver import Resolver, SystemResolver
from callpath.core.discovery.proxies import FoundProxy
from callpath.core.discovery.tunnels import detect
from callpath.core.model.route import RouteSituation
from callpath.core.probes.binding import BoundResolver, nameservers_outside


def link_nameservers(interface: str) -> list[str]:
    """systemd-resolved's DNS servers of one interface (``resolvectl dns IFACE``), for when
    resolv.conf names only its loopback stub."""
    from callpath.core.discovery.system_settings import run_quietly

    output = run_quietly(["resolvectl", "dns", interface]) or ""
    found: list[str] = []
    for line in output.splitlines():
        _label, _colon, servers = line.partition(":")
        if servers and line.lstrip().startswith("Link"):
            found += [s.split("%")[0].split("#")[0] for s in servers.split()]
    return found


class CheckWorld(Protocol):
    """The network the check runs on."""

    @property
    def resolver(self) -> Resolver:
        """The system resolver (what the user's apps see)."""
        ...

    def around_resolver(self, interface: str, timeout: float) -> Resolver:
        """The resolver of the network outside a VPN, asked from sockets bound to
        ``interface`` (the check's side around the VPN)."""
        ...

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """CAs for the messengers' TLS endpoints (None: the system's)."""
        ...

    @property
    def doh_url(self) -> str: ...

    @property
    def doh_ssl_context(self) -> ssl.SSLContext | None: ...

    @property
    def tcp_echo(self) -> bool:
        """TCP endpoints echo: a TCP check waits for its bytes back (the lab's stand-ins, where
        the userspace censor acts after the connection is made)."""
        ...

    def plausible(self, address: str) -> bool:
        """Whether a resolver's answer can be a service's real address (not a bogon)."""
        ...

    def direct(self, address: str, port: int, proto: str) -> tuple[str, int]:
        """Where a check of ``address:port`` with ``proto`` (tcp|tls|stun) goes directly."""
        ...

    def via_proxy(self, address: str, port: int, proto: str) -> tuple[str, int]:
        """The destination to ask a proxy for, for ``address:port``."""
        ...

    async def find_proxies(self) -> list[FoundProxy]:
        """The local proxies to check through."""
        ...

    def route(self) -> RouteSituation | None:
        """What the check's connections go through (a VPN?); None where that does not apply."""
        ...


class RealWorld:
    """The real network: addresses are what they are, proxies are discovered on this machine."""

    def __init__(
        self, doh_url: str, extra_proxies: tuple[FoundProxy, ...] = (), *, discover: bool = True
    ) -> None:
        self._doh_url = doh_url
        self._extra = extra_proxies
        self._discover = discover
        self._resolver = SystemResolver()

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    def around_resolver(self, interface: str, timeout: float) -> Resolver:
        servers = nameservers_outside(interface, link_servers=link_nameservers)
        return BoundResolver(servers, interface, timeout)

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return None

    @property
    def doh_url(self) -> str:
        return self._doh_url

    @property
    def doh_ssl_context(self) -> ssl.SSLContext | None:
        return None

    @property
    def tcp_echo(self) -> bool:
        return False

    def plausible(self, address: str) -> bool:
        from callpath.core.probes.dns import is_bogon

        return not is_bogon(address)

    def direct(self, address: str, port: int, proto: str) -> tuple[str, int]:
        return address, port

    def via_proxy(self, address: str, port: int, proto: str) -> tuple[str, int]:
        return address, port

    def route(self) -> RouteSituation | None:
        return detect()

    async def find_proxies(self) -> list[FoundProxy]:
        from callpath.core.discovery.proxies import discover_local_proxies

        found = list(self._extra)
        if not self._discover:
            return found
        seen = {(p.url.host, p.url.port, p.kind) for p in found}
        for proxy in await discover_local_proxies():
            if (proxy.url.host, proxy.url.port, proxy.kind) not in seen:
                found.append(proxy)
        return found
