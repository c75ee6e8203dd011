"""``callpath check`` against the lab: the stand-ins behind the censor, the lab's DNS and DoH,
and the scenario's local proxies (stand-ins for the user's tools, tunnels leaving outside)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from callpath.core.call.resolver import Resolver
from callpath.core.checkup.engine import CheckConfig, Progress, run_check
from callpath.core.checkup.results import CheckResult
from callpath.core.discovery.proxies import FoundProxy
from callpath.core.lab.network import (
    CLIENT_HOST,
    DOH_PATH,
    OUTSIDE_HOSTS,
    TUNNEL_EXIT_HOST,
    LabNetwork,
    LabResolver,
)
from callpath.core.lab.scenario import Scenario
from callpath.core.lab.socks_server import LabSocksConfig, LabSocksServer
from callpath.core.lab.standins import LabHttpProxy, is_standin
from callpath.core.messengers.catalog import load_catalog
from callpath.core.messengers.recipes import load_recipes
from callpath.core.messengers.references import load_references
from callpath.core.model.proxy_url import ProxyUrl, parse_proxy_url

SOURCE_LAB = "lab"


class LabCheckWorld:
    """A CheckWorld on a running LabNetwork; use as an async context manager (it starts the
    scenario's extra proxy stand-ins)."""

    def __init__(
        self,
        lab: LabNetwork,
        proxies: Sequence[str] = ("socks5",),
        extra_proxies: Sequence[FoundProxy] = (),
    ) -> None:
        self._lab = lab
        self._kinds = tuple(proxies)
        self._extra = tuple(extra_proxies)
        self._socks_tcp: LabSocksServer | None = None
        self._http: LabHttpProxy | None = None
        assert lab.isp_dns is not None and lab.doh_exposed is not None
        self._resolver = LabResolver(lab.isp_dns.address)
        host, port = lab.doh_exposed
        self._doh_url = f"https://{host}:{port}{DOH_PATH}"

    async def __aenter__(self) -> LabCheckWorld:
        if "socks5-tcp" in self._kinds:
            self._socks_tcp = LabSocksServer(
                LabSocksConfig(
                    listen_host=CLIENT_HOST,
                    exit_host=TUNNEL_EXIT_HOST,
                    allowed=lambda host: host in OUTSIDE_HOSTS or is_standin(host),
                    udp=False,
                )
            )
            await self._socks_tcp.start()
        if "http" in self._kinds:
            self._http = LabHttpProxy(CLIENT_HOST, TUNNEL_EXIT_HOST)
            await self._http.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._socks_tcp is not None:
            await self._socks_tcp.close()
        if self._http is not None:
            await self._http.close()

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    def around_resolver(self, interface: str, timeout: float) -> Resolver:
        """Never asked: the lab is on loopback, with no VPN to go around."""
        return self._resolver

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self._lab.standins.client_context

    @property
    def doh_url(self) -> str:
        return self._doh_url

    @property
    def doh_ssl_context(self) -> ssl.SSLContext | None:
        return self._lab.client_context

    @property
    def tcp_echo(self) -> bool:
        return True

    def plausible(self, address: str) -> bool:
        """The stand-ins' loopback addresses are the lab's "real" ones; others are bogons."""
        return is_standin(address) or address in OUTSIDE_HOSTS

    def direct(self, address: str, port: int, proto: str) -> tuple[str, int]:
        return self._lab.standins.direct(address, port, proto)

    def via_proxy(self, address: str, port: int, proto: str) -> tuple[str, int]:
        return self._lab.standins.via_tunnel(address, port, proto)

    def proxy_urls(self) -> list[ProxyUrl]:
        urls: list[ProxyUrl] = []
        for kind in self._kinds:
            if kind == "socks5":
                urls.append(parse_proxy_url(self._lab.socks.url))
            elif kind == "socks5-tcp" and self._socks_tcp is not None:
                urls.append(parse_proxy_url(self._socks_tcp.url))
            elif kind == "http" and self._http is not None:
                urls.append(ProxyUrl("http", CLIENT_HOST, self._http.port))
        return urls

    def route(self) -> None:
        """The lab is on loopback: no VPN is in the way."""
        return None

    async def find_proxies(self) -> list[FoundProxy]:
        found = [
            FoundProxy(
                url=url,
                kind=url.kind,
                source=SOURCE_LAB,
                supports_udp=None,
                auth_required=False,
            )
            for url in self.proxy_urls()
        ]
        return found + list(self._extra)


async def run_lab_check(
    scenario: Scenario,
    progress: Progress | None = None,
    *,
    extra_proxies: Sequence[FoundProxy] = (),
    config: CheckConfig | None = None,
) -> CheckResult:
    """``callpath check`` on ``scenario``'s lab: start the lab, check, stop it."""
    async with (
        LabNetwork(scenario) as lab,
        LabCheckWorld(lab, scenario.check_proxies, extra_proxies) as world,
    ):
        return await run_check(
            world,
            load_catalog(),
            load_references(),
            load_recipes(),
            config=config,
            progress=progress,
            scenario=scenario.id,
        )
