"""The messenger check: network state, DNS beside DoH, UDP at all, each local proxy's UDP line,
then every messenger's messages and calls directly and through each proxy, judged and given
the fitting recipes.

Phases (each bounded by ``CheckConfig``; probes inside a phase run at once):

1. references: the domestic reference endpoints and public STUN directly, every name of the
   catalogue and references through the system resolver and DNS over HTTPS, and one SOCKS5
   UDP ASSOCIATE round trip to a public STUN server per proxy (*carries UDP: yes/no*);
2. messengers: every endpoint of every messenger on every route. UDP probes, whose censors
   are known to be inconsistent, run ``udp_repeats`` times, plus one more when they disagree.

Behind a VPN in TUN mode (``CheckWorld.route``) that can be gone around (Linux, a physical interface
sockets may be bound to), both phases also run around it at the same time: every socket of that
side, DNS included, is bound to the physical interface (``ProbeConfig.bind_interface``), and
its results are the ``around-vpn`` route. Otherwise the VPN side alone, and the route says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from callpath.core.call.resolver import is_address
from callpath.core.call.stages import StageFailure
from callpath.core.checkup.results import (
    AroundSide,
    CheckedProxy,
    CheckProgress,
    CheckResult,
    MessengerOutcome,
    NameLookup,
    ReferenceResult,
)
from callpath.core.checkup.texts import messenger_line, network_line, proxy_line
from callpath.core.checkup.world import CheckWorld
from callpath.core.discovery.proxies import FoundProxy
from callpath.core.i18n import _
from callpath.core.messengers.catalog import Endpoint, MessengerEntry
from callpath.core.messengers.judge import (
    AROUND_VPN,
    DIRECT,
    NOT_CARRIED,
    CheckedEndpoint,
    Reachability,
    judge_messenger,
)
from callpath.core.messengers.network_state import (
    NetworkObservations,
    NetworkState,
    network_state,
    udp_state,
)
from callpath.core.messengers.recipes import MessengerFacts, Recipe, select_recipes
from callpath.core.messengers.references import References
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.route import RouteSituation
from callpath.core.paths.proxy_stream import proxy_stream_opener
from callpath.core.paths.socks5 import open_socks5_udp
from callpath.core.probes import ProbeConfig
from callpath.core.probes.binding import can_bind, open_connection
from callpath.core.probes.dns import doh_connector, probe_dns
from callpath.core.probes.stun import probe_stun_binding
from callpath.core.probes.tcp import probe_tcp_connect

CHECK_VERSION = 2  # 2: the around-vpn route and the around_vpn section
ECHO_PROBE = b"callpath check\n"


@dataclass(frozen=True)
class CheckConfig:
    connect_timeout_s: float = 3.0
    tls_timeout_s: float = 4.0
    stun_attempts: int = 3  # datagrams per attempt; one answer is enough
    stun_wait_s: float = 1.0
    udp_repeats: int = 2  # attempts per UDP endpoint (inconsistent censors)
    max_repeats: int = 3  # one more when the first ones disagree
    tcp_repeats: int = 1
    dns_timeout_s: float = 2.5
    proxy_timeout_s: float = 4.0
    country: str = "ru"
    concurrency: int = 64

    def probe_config(self, doh_url: str, bind_interface: str | None = None) -> ProbeConfig:
        return ProbeConfig(
            connect_timeout_s=self.connect_timeout_s,
            tls_timeout_s=self.tls_timeout_s,
            stun_attempts=self.stun_attempts,
            stun_wait_s=self.stun_wait_s,
            dns_timeout_s=self.dns_timeout_s,
            doh_url=doh_url,
            bind_interface=bind_interface,
        )


Progress = Callable[[CheckProgress], None]


def proxy_id(proxy: FoundProxy) -> str:
    return f"{proxy.kind}-{proxy.url.host}-{proxy.url.port}"


def _proxy_url(proxy: FoundProxy) -> str:
    url = proxy.url
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}:{url.port}"


class _Run:
    """One side of the check: the default route (``interface`` None: through the VPN, if
    there is one), or every socket bound to the physical ``interface`` (around the VPN)."""

    def __init__(
        self,
        world: CheckWorld,
        config: CheckConfig,
        progress: Progress,
        *,
        interface: str | None = None,
    ) -> None:
        self.world = world
        self.config = config
        self.interface = interface
        self.probe_config = config.probe_config(world.doh_url, interface)
        self.resolver = (
            world.resolver
            if interface is None
            else world.around_resolver(interface, config.dns_timeout_s)
        )
        self.progress = progress
        self.lookups: dict[str, NameLookup] = {}
        self.limit = asyncio.Semaphore(config.concurrency)

    # --- names ------------------------------------------------------------------------------

    async def look_up(self, names: Sequence[tuple[str, str]]) -> None:
        connector = doh_connector(self.probe_config, self.resolver, self.world.doh_ssl_context)
        timeout = aiohttp.ClientTimeout(total=self.config.dns_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            results = await asyncio.gather(
                *(
                    probe_dns(
                        name,
                        self.probe_config,
                        system_resolver=self.resolver,
                        session=session,
                    )
                    for name, _role in names
                )
            )
        for (name, role), probe in zip(names, results, strict=True):
            evidence = probe.evidence
            failure = probe.failure
            system = evidence.get("system_addresses") or ()
            if failure == "dns_bogon_error" and all(self.world.plausible(a) for a in system):
                failure = None  # the world's own addresses (the lab's stand-ins)
            self.lookups[name] = NameLookup(
                name=name,
                role=role,
                system=tuple(evidence.get("system_addresses") or ()),
                system_failure=evidence.get("system_failure"),
                doh=tuple(evidence.get("doh_addresses") or ()),
                doh_failure=evidence.get("doh_failure"),
                failure=failure,
            )

    def address_for(self, host: str, through: str) -> tuple[str | None, str | None]:
        """(address, failure) of ``host`` for a route: the system's answer directly, the DoH
        answer (then the system's) through a proxy, which resolves names outside."""
        if is_address(host):
            return host, None
        lookup = self.lookups.get(host)
        if lookup is None:
            return None, "dns_no_answer"
        if through in (DIRECT, AROUND_VPN):
            if lookup.failure is not None or not lookup.system:
                return None, lookup.failure or lookup.system_failure or "dns_no_answer"
            return lookup.system[0], None
        for answer in (lookup.doh, lookup.system):
            if answer:
                return answer[0], None
        return None, lookup.doh_failure or "dns_no_answer"

    # --- single attempts -------------------------------------------------------------------

    async def direct_attempt(self, endpoint: Endpoint, address: str) -> str | None:
        config = self.probe_config
        target = self.world.direct(address, endpoint.port, endpoint.proto)
        if endpoint.proto == "stun":
            return (await probe_stun_binding(target, config)).failure
        if endpoint.proto == "tls":
            return await self._tls(endpoint.host, self.world.tls_context, address=target)
        if self.world.tcp_echo:
            return await self._tcp_echo(target)
        return (await probe_tcp_connect(target, config)).failure

    async def _tcp_echo(self, target: tuple[str, int]) -> str | None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                reader, writer = await open_connection(*target, self.interface)
                writer.write(ECHO_PROBE)
                await reader.readexactly(len(ECHO_PROBE))
        except asyncio.IncompleteReadError:
            return "connection_reset"
        except (OSError, TimeoutError) as error:
            return failure_from_exception(error)
        finally:
            if writer is not None:
                writer.close()
        return None

    async def proxy_attempt(
        self, endpoint: Endpoint, address: str, proxy: FoundProxy, carries_udp: bool | None
    ) -> str | None:
        timeout = self.config.proxy_timeout_s
        if endpoint.proto == "stun":
            if proxy.kind != "socks5" or carries_udp is False:
                return NOT_CARRIED
            target = self.world.via_proxy(address, endpoint.port, endpoint.proto)
            try:
                tunnel = await open_socks5_udp(proxy.url, None, timeout, stun_server=target)
            except StageFailure as failure:
                return failure.failure
            tunnel.close()
            return None
        target = self.world.via_proxy(address, endpoint.port, endpoint.proto)
        opener = proxy_stream_opener(proxy.url, None)
        try:
            async with asyncio.timeout(timeout):
                sock = await opener(target, timeout)
        except StageFailure as failure:
            return failure.failure
        except TimeoutError:
            return "generic_timeout_error"
        if endpoint.proto == "tls":
            return await self._tls(endpoint.host, self.world.tls_context, sock=sock)
        if self.world.tcp_echo:
            return await self._echo_on(sock)
        sock.close()
        return None

    async def _echo_on(self, sock: Any) -> str | None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                reader, writer = await asyncio.open_connection(sock=sock)
                writer.write(ECHO_PROBE)
                await reader.readexactly(len(ECHO_PROBE))
        except asyncio.IncompleteReadError:
            return "connection_reset"
        except (OSError, TimeoutError) as error:
            return failure_from_exception(error)
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()
        return None

    async def _tls(
        self,
        server_name: str,
        context: ssl.SSLContext | None,
        *,
        address: tuple[str, int] | None = None,
        sock: Any = None,
    ) -> str | None:
        ctx = context if context is not None else ssl.create_default_context()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.config.connect_timeout_s + self.config.tls_timeout_s):
                if sock is not None:
                    _, writer = await asyncio.open_connection(
                        sock=sock, ssl=ctx, server_hostname=server_name
                    )
                else:
                    assert address is not None
                    _, writer = await open_connection(
                        *address, self.interface, ssl_context=ctx, server_hostname=server_name
                    )
        except (OSError, TimeoutError, ssl.SSLError) as error:
            if sock is not None:
                sock.close()
            return failure_from_exception(error)
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
        return None

    # --- repeated attempts -----------------------------------------------------------------

    async def endpoint(
        self,
        entry: MessengerEntry,
        role: str,
        endpoint: Endpoint,
        through: str,
        proxy: FoundProxy | None,
        carries_udp: bool | None,
    ) -> CheckedEndpoint:
        address, failure = self.address_for(endpoint.host, through)
        failures: list[str | None] = []
        if address is None:
            failures.append(failure or "dns_no_answer")
        else:
            udp = endpoint.proto == "stun"
            repeats = self.config.udp_repeats if udp else self.config.tcp_repeats
            for index in range(self.config.max_repeats):
                if index >= repeats and (len(set(f is None for f in failures)) < 2 or not udp):
                    break
                async with self.limit:
                    try:
                        if proxy is None:
                            result = await self.direct_attempt(endpoint, address)
                        else:
                            result = await self.proxy_attempt(endpoint, address, proxy, carries_udp)
                    except (OSError, ValueError, EOFError, TimeoutError) as error:
                        # Never a crash for one endpoint: its failure is evidence too.
                        result = failure_from_exception(error)
                failures.append(result)
                if result == NOT_CARRIED:
                    break
        return CheckedEndpoint(
            role=role,
            host=endpoint.host,
            port=endpoint.port,
            proto=endpoint.proto,
            certainty=entry.certainty_of(endpoint),
            through=through,
            failures=tuple(failures),
        )

    async def reference(self, kind: str, endpoint: Endpoint) -> ReferenceResult:
        """A reference endpoint directly; its name through the system resolver alone, so that
        it runs beside the (slower, maybe blocked) DoH lookups."""
        address: str | None = endpoint.host
        failure: str | None = None
        if not is_address(endpoint.host):
            address = None
            try:
                async with asyncio.timeout(self.config.dns_timeout_s):
                    answers = await self.resolver.resolve(endpoint.host)
                plausible = [a for a in answers if self.world.plausible(a)]
                if plausible:
                    address = plausible[0]
                else:
                    failure = "dns_bogon_error" if answers else "dns_no_answer"
            except Exception as error:  # the lab's resolver raises its own kind, with .failure
                failure = getattr(error, "failure", None) or failure_from_exception(error)
        if address is not None:
            async with self.limit:
                failure = await self.direct_attempt(endpoint, address)
        return ReferenceResult(kind, endpoint.host, endpoint.port, endpoint.proto, failure)

    async def carries_udp(
        self, proxy: FoundProxy, stun: Sequence[Endpoint]
    ) -> tuple[bool | None, str | None]:
        if not proxy.responded:
            # Not contacted by discovery (a proxy named in the environment, not on this
            # machine), or not answering: the check does not contact it either.
            return None, "proxy_not_contacted" if proxy.responded is None else "proxy_no_answer"
        if proxy.kind != "socks5":
            return False, "http_connect_has_no_udp"
        if proxy.auth_required:
            return None, "socks_auth_required"
        failure: str | None = "no_stun_reference"
        for endpoint in stun:
            address, lookup_failure = self.address_for(endpoint.host, proxy_id(proxy))
            if address is None:
                failure = lookup_failure
                continue
            target = self.world.via_proxy(address, endpoint.port, endpoint.proto)
            try:
                tunnel = await open_socks5_udp(
                    proxy.url, None, self.config.proxy_timeout_s, stun_server=target
                )
            except StageFailure as error:
                failure = error.failure
                if failure.startswith("socks_"):
                    return False, failure  # the proxy refused UDP ASSOCIATE itself
                continue
            tunnel.close()
            return True, None
        return (False if failure == "stun_no_response" else None), failure


async def run_check(
    world: CheckWorld,
    catalog: Sequence[MessengerEntry],
    references: References,
    recipes: Sequence[Recipe],
    *,
    config: CheckConfig | None = None,
    progress: Progress | None = None,
    scenario: str | None = None,
) -> CheckResult:
    """One check of ``world``: see the module docstring."""
    config = config or CheckConfig()
    tell = progress or (lambda _event: None)
    route, around_interface = around_vpn(world.route())
    run = _Run(world, config, tell)
    around = (
        None if around_interface is None else _Run(world, config, tell, interface=around_interface)
    )
    started = datetime.now(UTC)
    clock = time.monotonic()
    domestic = references.domestic_for(config.country)
    names: list[tuple[str, str]] = []
    for entry in catalog:
        names += [(name, entry.id) for name in entry.host_names]
    for endpoint in (*domestic, *references.public_stun):
        if not is_address(endpoint.host):
            names.append((endpoint.host, "reference"))
    names = list(dict.fromkeys(names))
    tell(CheckProgress("network", _("Checking the network: DNS, UDP and local proxies…")))
    if around is not None and route is not None and route.vpn is not None:
        tell(
            CheckProgress(
                "network",
                _(
                    "Measuring both sides at once: through your VPN ({vpn}) and around it "
                    "({interface})."
                ).format(vpn=route.vpn.name, interface=around_interface),
            )
        )

    async def first_phase(side: _Run | None) -> list[ReferenceResult]:
        if side is None:
            return []
        _nothing, results = await asyncio.gather(
            side.look_up(names),
            asyncio.gather(
                *(side.reference("domestic", e) for e in domestic),
                *(side.reference("public_stun", e) for e in references.public_stun),
            ),
        )
        return list(results)

    found, reference_results, around_references = await asyncio.gather(
        world.find_proxies(), first_phase(run), first_phase(around)
    )
    early, udp = _observed(run, reference_results)
    tell(CheckProgress("network", network_line(network_state(early), udp)))
    around_early, around_udp = _observed(around, around_references)
    if around is not None:
        line = network_line(network_state(around_early), around_udp)
        tell(CheckProgress("network", _("Around your VPN: {line}").format(line=line)))
    udp_lines = await asyncio.gather(*(run.carries_udp(p, references.public_stun) for p in found))
    proxies = tuple(
        CheckedProxy(
            id=proxy_id(p),
            url=_proxy_url(p),
            kind=p.kind,
            source=p.source,
            carries_udp=carries,
            failure=failure,
            usable=bool(p.responded) and not p.auth_required,
        )
        for p, (carries, failure) in zip(found, udp_lines, strict=True)
    )
    for proxy in proxies:
        tell(CheckProgress("proxy", proxy_line(proxy)))
    usable = [(p, c) for p, c in zip(found, proxies, strict=True) if c.usable]

    async def one(entry: MessengerEntry) -> dict[str, list[CheckedEndpoint]]:
        routes: dict[str, list[CheckedEndpoint]] = {}
        jobs = []
        sides: list[tuple[_Run, str, FoundProxy | None, bool | None]] = [(run, DIRECT, None, None)]
        if around is not None:
            sides.append((around, AROUND_VPN, None, None))
        sides += [(run, c.id, p, c.carries_udp) for p, c in usable]
        for side, through, proxy, carries in sides:
            routes[through] = []
            for role, endpoints in (("signalling", entry.signalling), ("relay", entry.relays)):
                jobs += [
                    (through, side.endpoint(entry, role, e, through, proxy, carries))
                    for e in endpoints
                ]
        checked = await asyncio.gather(*(job for _through, job in jobs))
        for (through, _job), result in zip(jobs, checked, strict=True):
            routes[through].append(result)
        return routes

    early_state = network_state(early)
    around_early_state = network_state(around_early)
    total = len(catalog)

    async def one_told(entry: MessengerEntry) -> dict[str, list[CheckedEndpoint]]:
        """One messenger, told as soon as its routes are done (judged with the network state
        known so far; the final judgement below uses every messenger's results)."""
        routes = await one(entry)
        first = judge_messenger(routes, early_state.value, around_early_state.value)
        done = sum(1 for task in told if task.done()) + 1
        for judgement in first:
            outcome = MessengerOutcome(
                entry.id, entry.name, judgement.through, judgement.messages, judgement.calls, ()
            )
            tell(CheckProgress("messenger", messenger_line(outcome, proxies, route), done, total))
        return routes

    told = [asyncio.ensure_future(one_told(entry)) for entry in catalog]
    per_messenger = await asyncio.gather(*told)
    state = _final_state(early, per_messenger, DIRECT)
    around_state = _final_state(around_early, per_messenger, AROUND_VPN)
    outcomes: list[MessengerOutcome] = []
    no_udp = tuple(p.url for p in proxies if p.carries_udp is False)
    urls = {p.id: p.url for p in proxies}
    for entry, routes in zip(catalog, per_messenger, strict=True):
        judged = judge_messenger(routes, state.value, around_state.value)
        direct = judged[0]
        facts = MessengerFacts(
            messenger=entry.id,
            calls=direct.calls.value.value,
            messages=direct.messages.value.value,
            network=state.value,
            dns_tampering=any(run.lookups[n].tampered for n in entry.host_names),
            calls_work_through=tuple(
                urls[j.through]
                for j in judged[1:]
                if j.through in urls
                and j.calls.value in (Reachability.WORKS, Reachability.TCP_ONLY)
            ),
            proxies_without_udp=no_udp,
            service_down="service_may_be_down" in (direct.calls.reason, direct.messages.reason),
        )
        fixes = tuple(select_recipes(recipes, facts, entry.name))
        for judgement in judged:
            outcome = MessengerOutcome(
                id=entry.id,
                name=entry.name,
                through=judgement.through,
                messages=judgement.messages,
                calls=judgement.calls,
                endpoints=tuple(routes[judgement.through]),
                fixes=fixes if judgement.through == DIRECT else (),
            )
            outcomes.append(outcome)
    if state != early_state:
        tell(CheckProgress("network", network_line(state, udp)))
    tell(
        CheckProgress(
            "done", _("Done in {seconds:.1f} s.").format(seconds=time.monotonic() - clock)
        )
    )
    return CheckResult(
        started_at=started,
        finished_at=datetime.now(UTC),
        network=state,
        udp=udp,
        country=config.country,
        references=tuple(reference_results),
        dns=tuple(run.lookups.values()),
        proxies=proxies,
        messengers=tuple(outcomes),
        scenario=scenario,
        route=route,
        around=None
        if around is None
        else AroundSide(
            interface=around.interface or "",
            network=around_state,
            udp=around_udp,
            references=tuple(around_references),
            dns=tuple(around.lookups.values()),
        ),
    )


def around_vpn(route: RouteSituation | None) -> tuple[RouteSituation | None, str | None]:
    """(the route as measured, the interface to go around its VPN by, or None).

    Discovery says whether going around is allowed (Linux, a physical interface sockets may
    be bound to); one bound socket says whether it really works here (a sandbox may still
    say no): if not, the VPN side alone, ``around_bind_failed``."""
    if route is None or route.vpn is None or not route.can_go_around:
        return route, None
    interface = route.physical_interface
    if interface is None or can_bind(interface) is not None:
        return replace(route, can_go_around=False, around_refused="around_bind_failed"), None
    return route, interface


def _observed(
    side: _Run | None, results: Sequence[ReferenceResult]
) -> tuple[NetworkObservations, str]:
    """What the first phase saw on one side: observations for the network state, and UDP."""
    lookups = [] if side is None else list(side.lookups.values())
    doh_answered = sum(1 for lookup in lookups if lookup.doh)
    stun_results = [r for r in results if r.kind == "public_stun"]
    domestic_results = [r for r in results if r.kind == "domestic"]
    observations = NetworkObservations(
        domestic_answered=sum(1 for r in domestic_results if r.failure is None),
        domestic_tried=len(domestic_results),
        foreign_answered=doh_answered + sum(1 for r in stun_results if r.failure is None),
        foreign_tried=len(lookups) + len(stun_results),
    )
    udp = udp_state(sum(1 for r in stun_results if r.failure is None), len(stun_results))
    return observations, udp


def _final_state(
    early: NetworkObservations,
    per_messenger: Sequence[dict[str, list[CheckedEndpoint]]],
    through: str,
) -> NetworkState:
    """The network state of one side with every messenger endpoint of that side counted."""
    endpoints = [e for routes in per_messenger for e in routes.get(through, ())]
    answered = sum(1 for e in endpoints if any(f is None for f in e.failures))
    return network_state(
        replace(
            early,
            foreign_answered=early.foreign_answered + answered,
            foreign_tried=early.foreign_tried + len(endpoints),
        )
    )
