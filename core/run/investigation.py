"""A run with its investigation: probes beside the test calls, then the diagnosis.

``run_investigated`` runs the engine and a ``ProbePlan``'s probes at the same time, decides
whether the control server was available, calls ``callpath.core.diagnosis.rules.diagnose``, emits
``DiagnosisFinished`` and then the run's one ``RunFinished`` (with probes and findings), and
returns that ``RunResult``. Every run goes through it (``callpath.core.run.source.run_source``:
``callpath run``, ``callpath lab``, the app and its demo), so every run ends with findings.

**Control availability.** The control comparison only means something when the control server
itself was reachable. ``control_available`` is true exactly when the plan names a control server
with a TCP bulk endpoint and, during this run, that endpoint *answered over TCP*: the
availability check (TCP connect, ``GET 1``, one byte back, within ``check_timeout_s``) or the
TCP bulk probe received at least one byte. A server whose TCP endpoint never answered proves
nothing by its silence on UDP or QUIC, so its probes are then ignored by the diagnosis.

Probes are light (one RTP-like flow of a low-bitrate voice stream, a few STUN datagrams, one
64 KB pull, a few handshakes) and at most ``max_concurrent`` run at once, so the calls they run
beside keep their quality (see ``tests/test_investigation.py``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from callpath.core.call.resolver import Resolver
from callpath.core.call.targets import HttpEchoTarget
from callpath.core.diagnosis.rules import diagnose
from callpath.core.model.events import DiagnosisFinished, EventSink, RunFinished
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.findings import Finding
from callpath.core.model.json_input import load_bounded_json
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.model.results import PathId, RunResult
from callpath.core.model.route import RouteSituation
from callpath.core.present.headline import headline
from callpath.core.probes import ProbeConfig, ProbeTimer, host_port, milliseconds
from callpath.core.probes.dns import probe_dns
from callpath.core.probes.quic import probe_quic
from callpath.core.probes.stun import probe_stun
from callpath.core.probes.tcp import probe_tcp_bulk
from callpath.core.probes.tls import probe_tls
from callpath.core.probes.udp_flow import probe_udp_flow
from callpath.core.run.plan import RunPlan

Address = tuple[str, int]
# A probe's coroutine, given the run's origin (a ``time.monotonic()``) for its timestamps.
ProbeRunner = Callable[[float], Awaitable[ProbeResult]]

# Light enough to run beside the test calls (docs/diagnosis.md): the flow is a low-bitrate
# voice stream (25 packets/s of 100–140 bytes, about 24 kbit/s), below throttles down to
# ~32 kbit/s, then a 200 packets/s burst and the rate steps: about 7 s on a clean network (no
# wait for late echoes when every packet came back), up to 11 s where packets are lost.
INVESTIGATION_PROBE_CONFIG = ProbeConfig(
    flow_rate_pps=25,
    flow_duration_s=4.0,
    flow_packet_min_bytes=100,
    flow_packet_max_bytes=140,
    flow_burst_rate_pps=200,
    flow_burst_s=1.5,
)
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class PlannedProbe:
    """One probe to run: what it is (for a result even if it crashes) and how to run it."""

    kind: ProbeKind
    target: str
    run: ProbeRunner
    control: bool = False


@dataclass(frozen=True)
class ControlEndpoints:
    """Where the cooperative control server listens (as the client reaches it)."""

    udp: Address | None = None
    tcp_bulk: Address | None = None
    quic: Address | None = None


@dataclass(frozen=True)
class ProbePlan:
    probes: tuple[PlannedProbe, ...] = ()
    control: ControlEndpoints | None = None  # None: no control server configured
    max_concurrent: int = 4  # probes running at once
    check_timeout_s: float = 4.0  # the control server's TCP availability check
    grace_s: float = 15.0  # how long probes may outlast the calls before they are stopped
    # The signalling server (echo or Janus) as host:port: after the run it is checked again,
    # like the control server, so a far end that died is named as such (``far_end_alive``).
    signalling: Address | None = None
    far_end_timeout_s: float = 3.0

    @property
    def control_configured(self) -> bool:
        return self.control is not None and self.control.tcp_bulk is not None


# --- building blocks for plans ---------------------------------------------------------------


def control_probes(
    endpoints: ControlEndpoints,
    config: ProbeConfig = INVESTIGATION_PROBE_CONFIG,
    *,
    quic_server_name: str | None = None,
) -> list[PlannedProbe]:
    """STUN vs random vs decoy, the RTP-like flow, the 64 KB pull and (with a name to test)
    QUIC target name vs neutral name, each against its control endpoint."""
    probes: list[PlannedProbe] = []
    udp, bulk, quic = endpoints.udp, endpoints.tcp_bulk, endpoints.quic
    if udp is not None:
        probes.append(
            PlannedProbe(
                ProbeKind.STUN,
                host_port(*udp),
                lambda origin: probe_stun(udp, config, origin=origin),
                control=True,
            )
        )
        probes.append(
            PlannedProbe(
                ProbeKind.UDP_FLOW,
                host_port(*udp),
                lambda origin: probe_udp_flow(udp, config, origin=origin),
                control=True,
            )
        )
    if bulk is not None:
        probes.append(
            PlannedProbe(
                ProbeKind.TCP_BULK,
                host_port(*bulk),
                lambda origin: probe_tcp_bulk(bulk, config, origin=origin),
                control=True,
            )
        )
    if quic is not None and quic_server_name:
        name = quic_server_name
        probes.append(
            PlannedProbe(
                ProbeKind.QUIC_HANDSHAKE,
                host_port(*quic),
                lambda origin: probe_quic(quic, name, config, origin=origin),
                control=True,
            )
        )
    return probes


def tls_probe(
    address: Address,
    server_name: str,
    config: ProbeConfig = INVESTIGATION_PROBE_CONFIG,
    *,
    verify_context: ssl.SSLContext | None = None,
) -> PlannedProbe:
    """TLS with the relay's real name vs a neutral name, to the relay's own TLS listener."""
    return PlannedProbe(
        ProbeKind.TLS_HANDSHAKE,
        host_port(*address),
        lambda origin: probe_tls(
            address, server_name, config, verify_context=verify_context, origin=origin
        ),
    )


def dns_probe(
    name: str,
    doh_url: str,
    config: ProbeConfig = INVESTIGATION_PROBE_CONFIG,
    *,
    system_resolver: Resolver | None = None,
    tcp_resolver: Resolver | None = None,
    doh_ssl_context: ssl.SSLContext | None = None,
) -> PlannedProbe:
    """The system resolver (and, given ``tcp_resolver``, the same resolver over TCP) vs DNS
    over HTTPS at ``doh_url`` for ``name``."""
    probe_config = replace(config, doh_url=doh_url)

    async def run(origin: float) -> ProbeResult:
        connector = aiohttp.TCPConnector(ssl=doh_ssl_context if doh_ssl_context else True)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=config.dns_timeout_s)
        ) as session:
            return await probe_dns(
                name,
                probe_config,
                system_resolver=system_resolver,
                tcp_resolver=tcp_resolver,
                session=session,
                origin=origin,
            )

    return PlannedProbe(ProbeKind.DNS, name, run)


async def check_control(
    address: Address, timeout: float, *, origin: float = 0.0, check: str = "control_available"
) -> ProbeResult:
    """The availability check: TCP connect to the bulk endpoint, ``GET 1``, one byte back."""
    timer = ProbeTimer(origin)
    evidence: dict[str, Any] = {"check": check, "answered": False}
    failure: str | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(*address)
            evidence["tcp_connect_ms"] = milliseconds(timer.elapsed())
            try:
                writer.write(b"GET 1\n")
                await writer.drain()
                data = await reader.read(1)
            finally:
                writer.transport.abort()
        evidence["answered"] = len(data) == 1
        if not data:
            failure = "eof_error"
    except (OSError, TimeoutError) as error:
        failure = failure_from_exception(error)
    return timer.result(ProbeKind.TCP_CONNECT, host_port(*address), failure, evidence, control=True)


async def check_signalling(address: Address, timeout: float, *, origin: float = 0.0) -> ProbeResult:
    """After the run: does the signalling server still accept a TCP connection?"""
    timer = ProbeTimer(origin)
    evidence: dict[str, Any] = {"check": FAR_END_CHECK, "role": "signalling", "answered": False}
    failure: str | None = None
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(*address)
            writer.transport.abort()
        evidence["answered"] = True
        evidence["tcp_connect_ms"] = milliseconds(timer.elapsed())
    except (OSError, TimeoutError) as error:
        failure = failure_from_exception(error)
    return timer.result(ProbeKind.TCP_CONNECT, host_port(*address), failure, evidence)


FAR_END_CHECK = "far_end_alive"


async def check_far_end(plan: ProbePlan, origin: float) -> list[ProbeResult]:
    """The far end's liveness after the calls: the control server's TCP endpoint and the
    signalling server, checked at the same time (``far_end_alive`` probes)."""
    checks: list[Awaitable[ProbeResult]] = []
    timeout = plan.far_end_timeout_s
    if plan.control is not None and plan.control.tcp_bulk is not None:
        checks.append(
            check_control(plan.control.tcp_bulk, timeout, origin=origin, check=FAR_END_CHECK)
        )
    if plan.signalling is not None:
        checks.append(check_signalling(plan.signalling, timeout, origin=origin))
    return list(await asyncio.gather(*checks)) if checks else []


def control_answered(probes: Iterable[ProbeResult], endpoints: ControlEndpoints | None) -> bool:
    """``control_available`` (module docstring): the control TCP endpoint answered."""
    if endpoints is None or endpoints.tcp_bulk is None:
        return False
    target = host_port(*endpoints.tcp_bulk)
    for probe in probes:
        if not probe.control or probe.target != target:
            continue
        if probe.probe == ProbeKind.TCP_CONNECT and probe.evidence.get("answered") is True:
            return True
        received = probe.evidence.get("bytes_received")
        if probe.probe == ProbeKind.TCP_BULK and isinstance(received, int) and received > 0:
            return True
    return False


# --- running ---------------------------------------------------------------------------------


async def _bounded(planned: PlannedProbe, slots: asyncio.Semaphore, origin: float) -> ProbeResult:
    """Run one probe in a slot; a crash becomes a failed result instead of an exception."""
    async with slots:
        started = time.monotonic()
        try:
            return await planned.run(origin)
        except Exception as error:  # a probe must never take the run down with it
            return ProbeResult(
                probe=planned.kind.value,
                target=planned.target,
                started_at=round(started - origin, 3),
                duration=round(time.monotonic() - started, 3),
                failure=f"unknown_failure: {type(error).__name__}",
                control=planned.control,
            )


def _finished(tasks: Iterable[asyncio.Task[ProbeResult]]) -> list[ProbeResult]:
    return [t.result() for t in tasks if t.done() and not t.cancelled() and t.exception() is None]


async def _stop(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)


async def run_investigated(
    engine_run: Awaitable[RunResult],
    plan: ProbePlan | Awaitable[ProbePlan],
    sink: EventSink,
    *,
    route: RouteSituation | None = None,
) -> RunResult:
    """The engine's run with the plan's probes beside it, diagnosed.

    ``plan`` may be an awaitable (finding the control server takes a round trip); the calls
    start meanwhile. Cancelled (Ctrl-C, the GUI's stop): the engine returns its partial result,
    unfinished probes are cancelled, and what did finish is still diagnosed and returned."""
    origin = time.monotonic()
    engine = asyncio.ensure_future(engine_run)
    tasks: list[asyncio.Task[ProbeResult]] = []
    chosen = ProbePlan()
    stopped = False
    try:
        chosen = plan if isinstance(plan, ProbePlan) else await plan
        tasks = _start_probes(chosen, origin)
        # Cancelling this task cancels the engine, which catches it and returns its partial
        # result; ``cancelling()`` then tells that the run was stopped.
        run = await engine
        current = asyncio.current_task()
        stopped = run.cancelled or (current is not None and current.cancelling() > 0)
        if not stopped and tasks:
            await asyncio.wait(tasks, timeout=chosen.grace_s)
    except asyncio.CancelledError:
        # Stopped while finding the control server or while the probes finished.
        stopped = True
        if not engine.done():
            engine.cancel()
            await asyncio.wait([engine], timeout=30.0)  # the engine bounds its own teardown
        if not engine.done() or engine.cancelled() or engine.exception() is not None:
            await _stop([*tasks, engine])
            raise
        run = engine.result()
    except BaseException:
        await _stop([*tasks, engine])  # the engine failed: leave nothing running behind
        raise
    await _stop(tasks)
    probes = tuple(_finished(tasks))
    if not stopped and any(path.failure is not None for path in run.paths):
        # Before naming how a call died: is the far end still there?
        probes += tuple(await check_far_end(chosen, origin))
    findings = _diagnose(run, probes, chosen, partial=stopped)
    sink(DiagnosisFinished(findings))
    run = replace(run, probes=probes, findings=findings, route=route)
    run = replace(run, verdict=replace(run.verdict, headline=headline(run)))
    sink(RunFinished(run))
    return run


def _start_probes(plan: ProbePlan, origin: float) -> list[asyncio.Task[ProbeResult]]:
    slots = asyncio.Semaphore(max(1, plan.max_concurrent))
    planned = list(plan.probes)
    if plan.control_configured:
        assert plan.control is not None and plan.control.tcp_bulk is not None
        bulk = plan.control.tcp_bulk
        timeout = plan.check_timeout_s
        check = PlannedProbe(
            ProbeKind.TCP_CONNECT,
            host_port(*bulk),
            lambda at: check_control(bulk, timeout, origin=at),
            control=True,
        )
        # The check goes first: it is short, and decides whether control probes count at all.
        planned.insert(0, check)
    return [asyncio.ensure_future(_bounded(probe, slots, origin)) for probe in planned]


def _diagnose(
    run: RunResult, probes: tuple[ProbeResult, ...], plan: ProbePlan, *, partial: bool
) -> tuple[Finding, ...]:
    # Paths stopped by the user failed for no network reason: leave them out of the diagnosis.
    paths = [p for p in run.paths if p.failure != INTERRUPTED] if partial else list(run.paths)
    return diagnose(paths, probes, control_available=control_answered(probes, plan.control))


# --- callpath run: what a profile and its echo target allow ----------------------------------


async def discover_control(
    echo_url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 3.0,
) -> ControlEndpoints | None:
    """The control ports an echo server advertises at ``GET /control`` (None: none, or the
    echo server did not answer in time). The control server runs on the echo server's host."""
    host = urlsplit(echo_url).hostname
    if host is None:
        return None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context or True),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as session,
            session.get(echo_url.rstrip("/") + "/control", headers=headers) as reply,
        ):
            if reply.status != 200:
                return None
            text = await reply.content.read(64 * 1024)
        body = load_bounded_json(text.decode(), max_depth=8)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    if not isinstance(body, dict):
        return None

    def endpoint(key: str) -> Address | None:
        port = body.get(key)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            return None
        return None if host is None else (host, port)

    endpoints = ControlEndpoints(
        udp=endpoint("udp_port"), tcp_bulk=endpoint("tcp_bulk_port"), quic=endpoint("quic_port")
    )
    return endpoints if endpoints != ControlEndpoints() else None


def relay_tls_probes(
    turns_servers: Iterable[tuple[str, int]],
    verify_context: ssl.SSLContext | None,
    config: ProbeConfig = INVESTIGATION_PROBE_CONFIG,
) -> list[PlannedProbe]:
    """Real name vs neutral name to each ``turns:`` relay (host as written in the profile)."""
    seen: set[tuple[str, int]] = set()
    probes = []
    for host, port in turns_servers:
        if (host, port) in seen:
            continue
        seen.add((host, port))
        probes.append(tls_probe((host, port), host, config, verify_context=verify_context))
    return probes


async def echo_probe_plan(
    echo_url: str | None,
    turns_servers: Iterable[tuple[str, int]],
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    quic_server_name: str | None = None,
    control: ControlEndpoints | None = None,
) -> ProbePlan:
    """``callpath run``'s plan: control probes against the ``control`` endpoints (the
    profile's ``control:`` section) or, without them, against the control server the echo
    target advertises; TLS probes for the ``turns:`` relays. No public DNS over HTTPS is
    contacted."""
    probes = relay_tls_probes(turns_servers, ssl_context)
    if control is None and echo_url is not None:
        control = await discover_control(echo_url, token=token, ssl_context=ssl_context)
    if control is not None:
        probes = control_probes(control, quic_server_name=quic_server_name) + probes
    return ProbePlan(tuple(probes), control=control, signalling=_url_address(echo_url))


def _url_address(url: str | None) -> Address | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def profile_probe_plan(plan: RunPlan) -> Awaitable[ProbePlan]:
    """The probes a profile run makes (``echo_probe_plan`` with the plan's relays, MASQUE
    name and control server)."""
    target = plan.target
    echo = target if isinstance(target, HttpEchoTarget) else None
    relays = [
        (p.host, p.port) for p in plan.plans if p.path_id == PathId.TURN_TLS and p.host and p.port
    ]
    masque = next((p for p in plan.plans if p.masque is not None), None)
    quic_name = None
    if masque is not None:
        quic_name = (masque.masque.server_name if masque.masque else None) or masque.host
    control = None
    if plan.control is not None:
        named = plan.control

        def address(port: int | None) -> Address | None:
            return None if port is None else (named.host, port)

        control = ControlEndpoints(
            udp=address(named.udp_port),
            tcp_bulk=address(named.tcp_bulk_port),
            quic=address(named.quic_port),
        )
    return echo_probe_plan(
        None if echo is None else echo.url,
        relays,
        token=None if echo is None else echo.token,
        ssl_context=plan.options.ssl_context,
        quic_server_name=quic_name,
        control=control,
    )
