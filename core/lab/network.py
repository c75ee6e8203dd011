"""The userspace lab: a censored network on 127.0.0.0/8, in this process, without root.

Layout (every address is loopback, nothing leaves the machine):

- ``127.0.0.1`` the user's machine (the engine's ICE host candidates);
- ``127.0.0.2`` a TURN relay (UDP, TCP and TLS listeners) outside the censor;
- ``127.0.0.3`` the censor's middlebox: the client's only view of the outside. TURN listeners,
  the echo peer's candidates and (in the other direction) the client's candidates are exposed
  through its forwarders, so ICE checks from either side cross it;
- ``127.0.0.4`` the echo peer;
- ``127.0.0.5`` a clean DNS resolver outside; ``127.0.0.6`` the "ISP resolver" the client asks,
  which applies the scenario's DNS tampering and forwards everything else;
- ``127.0.0.7`` the MASQUE proxy;
- ``127.0.0.8`` the control server (UDP echo + STUN, TCP bulk, QUIC) and ``127.0.0.10`` a DNS over
  HTTPS endpoint answering from the clean resolver; the client reaches both through the
  middlebox, like everything else outside. ``probe_plan()`` aims the probes at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
from aiohttp import web
from aiortc import RTCBundlePolicy, RTCConfiguration

from callpath.core.call.engine import EngineOptions
from callpath.core.call.resolver import is_address
from callpath.core.call.stages import StageFailure
from callpath.core.call.targets import EchoSession, LocalEchoSession
from callpath.core.lab.certificates import write_lab_certificates
from callpath.core.lab.dns_server import (
    BogusAnswerFor,
    DnsLookupError,
    DnsResponder,
    DnsRule,
    NxdomainFor,
    resolve_a,
)
from callpath.core.lab.middlebox import Middlebox
from callpath.core.lab.rules import (
    AllowOnlyTargets,
    BlockMode,
    BlockTcpConnect,
    BlockTlsSni,
    Censor,
    CutUdpFlow,
    Delay,
    DropQuic,
    DropStun,
    DropUdp,
    DropUdpTo,
    DropUnrecognisedUdp,
    ExpireIdleBinding,
    FreezeTcp,
    RandomLoss,
    Rule,
    Throttle,
    Transport,
)
from callpath.core.lab.scenario import RuleSpec, Scenario
from callpath.core.lab.socks_server import LabSocksConfig, LabSocksServer
from callpath.core.lab.standins import Standins, is_standin
from callpath.core.lab.turn_allocations import TurnConfig
from callpath.core.lab.turn_server import LabTurnServer
from callpath.core.messengers.catalog import load_catalog
from callpath.core.messengers.references import load_references
from callpath.core.model.proxy_url import parse_proxy_url
from callpath.core.paths.base import MasquePlan, PathPlan, ProxyPlan
from callpath.core.run.investigation import (
    ControlEndpoints,
    ProbePlan,
    control_probes,
    dns_probe,
    tls_probe,
)
from callpath.core.servers.control_server import ControlServer
from callpath.core.servers.masque_endpoint import (
    AllowedTargets,
    MasqueEndpoint,
    MasqueEndpointConfig,
)

CLIENT_HOST = "127.0.0.1"
TURN_HOST = "127.0.0.2"
MIDDLEBOX_HOST = "127.0.0.3"
ECHO_HOST = "127.0.0.4"
CLEAN_DNS_HOST = "127.0.0.5"
ISP_DNS_HOST = "127.0.0.6"
MASQUE_HOST = "127.0.0.7"
# Where the user's circumvention tool (the lab's SOCKS5 stand-in) leaves the censored network:
# its tunnel is encrypted and gets through, so the censor never sees this address.
TUNNEL_EXIT_HOST = "127.0.0.9"
CONTROL_HOST = "127.0.0.8"
DOH_HOST = "127.0.0.10"  # 127.0.0.9 is the DNS tampering's bogus answer
DOH_PATH = "/dns-query"
TURN_NAME = "turn.callpath.lab"
MASQUE_NAME = "masque.callpath.lab"
# The first CONNECT-UDP request needs some allowed target; ICE opens the real ones on demand.
MASQUE_FIRST_TARGET = (ECHO_HOST, 1024)
TURN_USER = "lab"
OUTSIDE_HOSTS = frozenset({TURN_HOST, MIDDLEBOX_HOST, ECHO_HOST, MASQUE_HOST, TUNNEL_EXIT_HOST})
_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+) (\d+)( typ .*)$")


@dataclass(frozen=True)
class Service:
    host: str
    port: int | None  # None: every port of the host (the echo peer's media)


class LabResolver:
    """The engine's resolver in the lab: asks the ISP resolver, like a real client would."""

    def __init__(self, server: tuple[str, int], timeout: float = 2.0, *, tcp: bool = False) -> None:
        self._server = server
        self._timeout = timeout
        self._tcp = tcp

    async def resolve(self, host: str) -> list[str]:
        if is_address(host):
            return [host]
        try:
            return await resolve_a(host, self._server, self._timeout, tcp=self._tcp)
        except DnsLookupError as error:
            raise StageFailure(error.failure, {"resolver": "lab"}) from None


@dataclass(frozen=True)
class _LabCertificates:
    server: ssl.SSLContext
    client: ssl.SSLContext
    ca_pem: bytes
    cert_file: Path
    key_file: Path


def _lab_certificates(directory: Path) -> _LabCertificates:
    """One certificate for the lab's TLS and QUIC servers, and contexts that use it."""
    files = write_lab_certificates(
        directory, (TURN_NAME, MASQUE_NAME), (MIDDLEBOX_HOST,), "CallPath lab CA"
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.certificate, files.key)
    client = ssl.create_default_context(cadata=files.ca_pem.decode())
    return _LabCertificates(server, client, files.ca_pem, files.certificate, files.key)


class LabNetwork:
    """Starts the lab's servers and censor for one scenario; use as an async context manager."""

    def __init__(self, scenario: Scenario, relay_sni: Sequence[str] = ()) -> None:
        self.scenario = scenario
        # Other server names the TLS relay is tried under (a profile's sni_alternatives).
        self.relay_sni = tuple(relay_sni)
        self.censor = Censor()
        self.middlebox = Middlebox(
            self.censor, host=MIDDLEBOX_HOST, client_hosts=frozenset({CLIENT_HOST})
        )
        self._password = secrets.token_urlsafe(12)
        self.turn = LabTurnServer(
            TurnConfig(users={TURN_USER: self._password}, allowed_peer=_outside_peer)
        )
        self.masque = MasqueEndpoint(
            MasqueEndpointConfig(
                allowed_targets=AllowedTargets.parse(
                    [f"{MIDDLEBOX_HOST}:1024-65535", f"{ECHO_HOST}:1024-65535"]
                ),
                tokens=(self._password,),
                relay_host=MASQUE_HOST,
            )
        )
        self.socks = LabSocksServer(
            LabSocksConfig(
                listen_host=CLIENT_HOST,
                exit_host=TUNNEL_EXIT_HOST,
                allowed=lambda host: host in OUTSIDE_HOSTS or is_standin(host),
            )
        )
        # Stand-ins for the messengers' endpoints and the check's references (``callpath check``).
        self.standins = Standins(load_catalog(), load_references())
        self.clean_dns = DnsResponder({TURN_NAME: [MIDDLEBOX_HOST], MASQUE_NAME: [MIDDLEBOX_HOST]})
        self.isp_dns: DnsResponder | None = None
        self.services: dict[str, Service] = {}
        self.exposed: dict[str, tuple[str, int]] = {}
        self._forwarders: dict[tuple[str, int], tuple[str, int]] = {}
        self._certificates: _LabCertificates | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._sessions: list[LocalEchoSession] = []
        self.control = ControlServer()
        self._doh: web.AppRunner | None = None
        self.control_exposed = ControlEndpoints()
        self.doh_exposed: tuple[str, int] | None = None

    async def __aenter__(self) -> LabNetwork:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._tempdir = tempfile.TemporaryDirectory(prefix="callpath-lab-")
        certificates = _lab_certificates(Path(self._tempdir.name))
        self._certificates = certificates
        await self.turn.start(host=TURN_HOST, tls_context=certificates.server, relay_host=TURN_HOST)
        await self.socks.start()
        _, masque_port = await self.masque.start(
            MASQUE_HOST, 0, certificates.cert_file, certificates.key_file
        )
        assert self.turn.udp_port and self.turn.tcp_port and self.turn.tls_port
        self.services = {
            "turn-udp": Service(TURN_HOST, self.turn.udp_port),
            "turn-tcp": Service(TURN_HOST, self.turn.tcp_port),
            "turn-tls": Service(TURN_HOST, self.turn.tls_port),
            "echo": Service(ECHO_HOST, None),
            "masque": Service(MASQUE_HOST, masque_port),
        }
        self.exposed = {
            "turn-udp": await self.middlebox.expose_udp((TURN_HOST, self.turn.udp_port)),
            "turn-tcp": await self.middlebox.expose_tcp((TURN_HOST, self.turn.tcp_port)),
            "turn-tls": await self.middlebox.expose_tcp((TURN_HOST, self.turn.tls_port)),
            "masque": await self.middlebox.expose_udp((MASQUE_HOST, masque_port)),
        }
        clean = await self.clean_dns.start(CLEAN_DNS_HOST, 0)
        self.isp_dns = DnsResponder(upstream=clean)
        await self.isp_dns.start(ISP_DNS_HOST, 0)
        await self._start_investigation_servers(certificates, clean)
        await self._start_standins(Path(self._tempdir.name) / "standins")
        self.apply_rules(self.scenario.rules)

    async def _start_standins(self, directory: Path) -> None:
        directory.mkdir()
        await self.standins.start(self.middlebox, directory)
        self.clean_dns.add_records(self.standins.names)
        for name, addresses in self.standins.services.items():
            # Lab addresses of one service share a /24 (or are one address): one network.
            network = addresses[0] if len(addresses) == 1 else f"{addresses[0]}/24"
            self.services[name] = Service(network, None)

    async def _start_investigation_servers(
        self, certificates: _LabCertificates, clean_dns: tuple[str, int]
    ) -> None:
        """The control server and the DoH endpoint, outside, reached through the middlebox."""
        await self.control.start(CONTROL_HOST)
        control = self.control
        assert control.udp_address and control.tcp_bulk_address and control.quic_address
        # Plain TCP to the control server, so a scenario can block it (an allowlist would).
        self.services["control"] = Service(CONTROL_HOST, control.tcp_bulk_address[1])
        self.control_exposed = ControlEndpoints(
            udp=await self.middlebox.expose_udp(control.udp_address),
            tcp_bulk=await self.middlebox.expose_tcp(control.tcp_bulk_address),
            quic=await self.middlebox.expose_udp(control.quic_address),
        )
        app = web.Application(client_max_size=4096)
        app.router.add_post(DOH_PATH, functools.partial(_doh_answer, clean_dns))
        self._doh = web.AppRunner(app, access_log=None)
        await self._doh.setup()
        site = web.TCPSite(self._doh, DOH_HOST, 0, ssl_context=certificates.server)
        await site.start()
        doh_port = int(self._doh.addresses[0][1])
        self.doh_exposed = await self.middlebox.expose_tcp((DOH_HOST, doh_port))

    @property
    def client_context(self) -> ssl.SSLContext | None:
        """Trusts the lab's own CA (its TLS and QUIC servers, the DoH endpoint)."""
        return None if self._certificates is None else self._certificates.client

    def probe_plan(self) -> ProbePlan:
        """Probes that tell the lab's mechanisms apart, all crossing the censor.

        Control server: STUN vs random vs decoy, the RTP-like flow (cut-off, throttling, loss),
        the 64 KB pull (freeze) and QUIC with the MASQUE proxy's name vs a neutral one. The
        relay's TLS listener: its real name vs a neutral one. The relay's name: the ISP resolver
        vs DNS over HTTPS (answered from the clean resolver)."""
        assert self.isp_dns is not None and self._certificates is not None
        assert self.doh_exposed is not None
        client_context = self._certificates.client
        probes = control_probes(self.control_exposed, quic_server_name=MASQUE_NAME)
        if "turn-tls" in self.exposed:
            probes.append(
                tls_probe(self.exposed["turn-tls"], TURN_NAME, verify_context=client_context)
            )
        doh_host, doh_port = self.doh_exposed
        probes.append(
            dns_probe(
                TURN_NAME,
                f"https://{doh_host}:{doh_port}{DOH_PATH}",
                system_resolver=LabResolver(self.isp_dns.address),
                tcp_resolver=LabResolver(self.isp_dns.address, tcp=True),
                doh_ssl_context=client_context,
            )
        )
        return ProbePlan(tuple(probes), control=self.control_exposed)

    def apply_rules(self, specs: Sequence[RuleSpec]) -> None:
        """Install a scenario's rules; may be called again while the lab runs (workshops)."""
        packet_rules, dns_rules = build_rules(specs, self.services)
        self.censor.set_rules(packet_rules)
        assert self.isp_dns is not None
        self.isp_dns.set_tampering(dns_rules)
        # Names that exist nowhere: the clean resolver (and DoH, which asks it) says so too.
        self.clean_dns.set_tampering(unknown_names(specs))

    def plans(self) -> list[PathPlan]:
        plans = []
        for path_id in self.scenario.paths:
            if path_id == "direct":
                plans.append(PathPlan("direct"))
                continue
            if path_id in ("socks5-udp", "socks5-turn"):
                plans.append(self._proxy_plan(path_id))
                continue
            _, port = self.exposed[path_id]
            if path_id == "masque":
                assert self._certificates is not None
                masque = MasquePlan(
                    server_name=MASQUE_NAME,
                    token=self._password,
                    cadata=self._certificates.ca_pem,
                    first_target=MASQUE_FIRST_TARGET,
                )
                uri = f"https://{MASQUE_NAME}:{port}"
                plans.append(PathPlan(path_id, uri, MASQUE_NAME, port, masque=masque))
                continue
            uri = (
                f"turns:{TURN_NAME}:{port}?transport=tcp"
                if path_id == "turn-tls"
                else f"turn:{TURN_NAME}:{port}?transport={path_id.removeprefix('turn-')}"
            )
            alternatives = self.relay_sni if path_id == "turn-tls" else ()
            plans.append(
                PathPlan(
                    path_id,
                    uri,
                    TURN_NAME,
                    port,
                    TURN_USER,
                    self._password,
                    sni_alternatives=alternatives,
                )
            )
        return plans

    def _proxy_plan(self, path_id: str) -> PathPlan:
        """A path through the user's circumvention tool (the lab's SOCKS5 stand-in)."""
        assert self.turn.udp_port is not None
        proxy = ProxyPlan(
            url=parse_proxy_url(self.socks.url),
            stun=(TURN_HOST, self.turn.udp_port),  # learn the tunnel's exit address
        )
        if path_id == "socks5-udp":
            return PathPlan(path_id, proxy=proxy)
        _, port = self.exposed["turn-tls"]
        uri = f"turns:{TURN_NAME}:{port}?transport=tcp"
        return PathPlan(
            path_id,
            uri,
            TURN_NAME,
            port,
            TURN_USER,
            self._password,
            proxy=proxy,
            turn_transport="tls",
            sni_alternatives=self.relay_sni,
        )

    def options(self, base: EngineOptions | None = None) -> EngineOptions:
        assert self.isp_dns is not None
        return replace(
            base or EngineOptions(),
            host_addresses=(CLIENT_HOST,),
            resolver=LabResolver(self.isp_dns.address),
            ssl_context=None if self._certificates is None else self._certificates.client,
            profile_name=self.scenario.text("title"),
            scenario=self.scenario.id,
        )

    def target(self) -> LabEchoTarget:
        return LabEchoTarget(self)

    async def expose(self, address: tuple[str, int]) -> tuple[str, int]:
        """The middlebox forwarder for ``address`` (one per address, made on first use)."""
        if address not in self._forwarders:
            self._forwarders[address] = await self.middlebox.expose_udp(address)
        return self._forwarders[address]

    async def rewrite_candidates(self, sdp: str, host: str) -> str:
        """Replace the candidates on ``host`` in ``sdp`` with their middlebox forwarders."""
        lines = []
        for line in sdp.splitlines():
            match = _CANDIDATE.match(line)
            if match and match.group(2) == host and " udp " in line.lower():
                forward_host, forward_port = await self.expose((host, int(match.group(3))))
                line = f"{match.group(1)}{forward_host} {forward_port}{match.group(4)}"
            lines.append(line)
        return "\r\n".join(lines) + "\r\n"

    async def close(self) -> None:
        for session in self._sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), timeout=3)
        await self.middlebox.close()
        await self.control.close()
        if self._doh is not None:
            await self._doh.cleanup()
            self._doh = None
        await self.masque.close()
        await self.standins.close()
        await self.socks.close()
        await self.turn.close()
        await self.clean_dns.close()
        if self.isp_dns is not None:
            await self.isp_dns.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


async def _doh_answer(clean_dns: tuple[str, int], request: web.Request) -> web.Response:
    """RFC 8484 POST: the wire query goes to the clean resolver, its answer comes back."""
    if request.content_type != "application/dns-message":
        return web.Response(status=415)
    try:
        query = dns.message.from_wire(await request.read())
        host, port = clean_dns
        response = await dns.asyncquery.udp(query, host, timeout=2.0, port=port)
    except (dns.exception.DNSException, OSError):
        return web.Response(status=502)
    return web.Response(body=response.to_wire(), content_type="application/dns-message")


def _outside_peer(address: tuple[str, int]) -> bool:
    """The lab relay only relays to the lab's own outside hosts: never an open relay."""
    return address[0] in OUTSIDE_HOSTS


class LabEchoTarget:
    kind = "lab"

    def __init__(self, lab: LabNetwork) -> None:
        self._lab = lab

    def open_session(self, path_id: str) -> EchoSession:
        return _LabEchoSession(self._lab)


class _LabEchoSession:
    def __init__(self, lab: LabNetwork) -> None:
        self._lab = lab
        self._echo = LocalEchoSession(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
            ice_addresses=(ECHO_HOST,),
        )

    async def exchange(self, offer_sdp: str) -> str:
        offer = await self._lab.rewrite_candidates(offer_sdp, CLIENT_HOST)
        answer = await self._echo.exchange(offer)
        return await self._lab.rewrite_candidates(answer, ECHO_HOST)

    async def close(self) -> None:
        await self._echo.close()


def _service_rules(spec: RuleSpec, services: dict[str, Service], make: Any) -> list[Rule]:
    rules = []
    for name in spec.params.get("services", ()):
        service = services[name]
        ports = frozenset() if service.port is None else frozenset({service.port})
        rules.append(make(addresses=frozenset({service.host}), ports=ports))
    return rules


def unknown_names(specs: Sequence[RuleSpec]) -> list[DnsRule]:
    """``unknown_names`` rules: NXDOMAIN from every resolver, the ISP's and the clean one."""
    return [
        NxdomainFor(names=frozenset(spec.params["names"]))
        for spec in specs
        if spec.kind == "unknown_names"
    ]


def build_rules(
    specs: Sequence[RuleSpec], services: dict[str, Service]
) -> tuple[list[Rule], list[DnsRule]]:
    """Scenario rule specs → the middlebox's packet rules and the ISP resolver's DNS rules."""
    packet: list[Rule] = []
    dns: list[DnsRule] = []
    for spec in specs:
        p = spec.params
        if spec.kind == "drop_udp":
            packet.append(DropUdp())
        elif spec.kind == "drop_udp_to":
            packet += _service_rules(spec, services, DropUdpTo)
        elif spec.kind == "drop_stun":
            packet.append(DropStun())
        elif spec.kind == "cut_udp_flow":
            packet.append(
                CutUdpFlow(
                    max_packets=p.get("max_packets"),
                    max_bytes=p.get("max_bytes"),
                    max_seconds=p.get("max_seconds"),
                    residual_block_s=float(p.get("residual_block_s", 0.0)),
                )
            )
        elif spec.kind == "expire_idle_binding":
            packet.append(ExpireIdleBinding(idle_s=float(p["idle_s"])))
        elif spec.kind == "throttle":
            rate = float(p["rate_kbps"]) * 1000 / 8
            transports = frozenset(Transport(t) for t in p.get("transports", ("udp", "tcp")))
            packet.append(
                Throttle(
                    rate_bytes_per_s=rate,
                    burst_bytes=int(p.get("burst_bytes", rate / 4)),
                    transports=transports,
                    shared=bool(p.get("shared", False)),
                )
            )
        elif spec.kind == "random_loss":
            packet.append(RandomLoss(probability=float(p["percent"]) / 100, seed=p.get("seed", 0)))
        elif spec.kind == "delay":
            packet.append(
                Delay.round_trip(
                    float(p["rtt_ms"]) / 1000,
                    jitter_s=float(p.get("jitter_ms", 0)) / 1000,
                    seed=p.get("seed", 0),
                )
            )
        elif spec.kind == "block_tls_sni":
            packet.append(
                BlockTlsSni(
                    server_names=frozenset(p["names"]), mode=BlockMode(p.get("mode", "reset"))
                )
            )
        elif spec.kind == "freeze_tcp":
            freeze = functools.partial(
                FreezeTcp,
                after_bytes=int(p.get("after_bytes_min", p.get("after_bytes", 16 * 1024))),
                after_bytes_max=p.get("after_bytes_max"),
                seed=int(p.get("seed", 0)),
                except_names=frozenset(p.get("except_names", ())),
            )
            if "services" in p:
                packet += _service_rules(spec, services, freeze)
            else:
                packet.append(freeze())
        elif spec.kind == "drop_quic":
            packet.append(DropQuic(server_names=frozenset(p.get("names", ()))))
        elif spec.kind == "block_tcp_connect":
            mode = BlockMode(p.get("mode", "drop"))
            packet += _service_rules(spec, services, functools.partial(BlockTcpConnect, mode=mode))
        elif spec.kind == "drop_unrecognised_udp":
            packet.append(DropUnrecognisedUdp())
        elif spec.kind == "allow_only":
            targets = frozenset((services[n].host, services[n].port) for n in p["services"])
            packet.append(AllowOnlyTargets(targets=targets))
        elif spec.kind == "dns_nxdomain":
            transports = frozenset(p.get("transports", ("udp", "tcp")))
            dns.append(NxdomainFor(names=frozenset(p["names"]), transports=transports))
        elif spec.kind == "dns_bogus":
            transports = frozenset(p.get("transports", ("udp", "tcp")))
            dns.append(BogusAnswerFor(names=frozenset(p["names"]), transports=transports))
        elif spec.kind == "unknown_names":
            pass  # not a censor's rule: the names exist nowhere (see ``unknown_names``)
        else:  # the scenario parser only lets known kinds through
            raise ValueError(f"unknown rule kind {spec.kind}")
    return packet, dns
