"""Messenger reachability: can this network reach a messenger's signalling and call relays?

Signalling endpoints get a TCP connect (or a TLS handshake) each; relay endpoints a STUN
Binding over UDP, or a TCP/TLS check for their fallbacks. The verdict is deliberately hedged
("likely"): reaching an endpoint is not placing a call, and endpoint lists are partly guesses
(``MessengerEntry.certainty``).
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from dataclasses import dataclass

from callpath.core.call.resolver import Resolver, is_address
from callpath.core.i18n import N_, _
from callpath.core.messengers.catalog import Endpoint, MessengerEntry, RelayProto, SignallingProto
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer
from callpath.core.probes.stun import probe_stun_binding
from callpath.core.probes.tcp import probe_tcp_connect
from callpath.core.probes.tls import probe_tls


class Reachability(enum.StrEnum):
    WORKS = "works"  # at least one endpoint answered
    TCP_ONLY = "tcp_only"  # calls: only a TCP/TLS relay fallback answered
    BLOCKED = "blocked"  # every endpoint tried failed
    UNKNOWN = "unknown"  # nothing to try


@dataclass(frozen=True)
class EndpointResult:
    role: str  # signalling | relay
    endpoint: Endpoint
    probe: ProbeResult

    @property
    def reachable(self) -> bool:
        return self.probe.failure is None


@dataclass(frozen=True)
class MessengerResult:
    messenger: str  # entry id
    name: str
    certainty: str
    messages: Reachability
    calls: Reachability
    summary: str  # translated, e.g. "messages likely work, calls likely blocked"
    endpoints: tuple[EndpointResult, ...]


_MESSAGES = {
    Reachability.WORKS: N_("messages likely work"),
    Reachability.BLOCKED: N_("messages likely blocked"),
    Reachability.UNKNOWN: N_("messages not checked"),
    Reachability.TCP_ONLY: N_("messages likely work"),
}
_CALLS = {
    Reachability.WORKS: N_("calls likely work"),
    Reachability.TCP_ONLY: N_("calls likely work only over the slower TCP fallback"),
    Reachability.BLOCKED: N_("calls likely blocked"),
    Reachability.UNKNOWN: N_("calls not checked (no relay address is known)"),
}


def summarize(messages: Reachability, calls: Reachability) -> str:
    return _("{messages}, {calls}").format(messages=_(_MESSAGES[messages]), calls=_(_CALLS[calls]))


def judge(results: tuple[EndpointResult, ...]) -> tuple[Reachability, Reachability]:
    """(messages, calls) from the endpoint results. Pure."""
    signalling = [r for r in results if r.role == "signalling"]
    relays = [r for r in results if r.role == "relay"]
    if not signalling:
        messages = Reachability.UNKNOWN
    elif any(r.reachable for r in signalling):
        messages = Reachability.WORKS
    else:
        messages = Reachability.BLOCKED
    udp = [r for r in relays if r.endpoint.proto == RelayProto.STUN]
    tcp = [r for r in relays if r.endpoint.proto != RelayProto.STUN]
    if not relays:
        calls = Reachability.UNKNOWN
    elif any(r.reachable for r in udp):
        calls = Reachability.WORKS
    elif any(r.reachable for r in tcp):
        calls = Reachability.TCP_ONLY if udp else Reachability.WORKS
    else:
        calls = Reachability.BLOCKED
    return messages, calls


async def _resolve(
    resolver: Resolver, endpoint: Endpoint, config: ProbeConfig, origin: float
) -> str | ProbeResult:
    """The first address of the endpoint, or the failed lookup as a DNS probe result."""
    if is_address(endpoint.host):
        return endpoint.host
    timer = ProbeTimer(origin)
    failure = "dns_no_answer"
    try:
        async with asyncio.timeout(config.dns_timeout_s):
            addresses = await resolver.resolve(endpoint.host)
        if addresses:
            return addresses[0]
    except (OSError, TimeoutError) as error:
        failure = failure_from_exception(error)
    return timer.result(ProbeKind.DNS, endpoint.host, failure, {"name": endpoint.host})


async def _check(
    role: str,
    endpoint: Endpoint,
    resolver: Resolver,
    config: ProbeConfig,
    tls_context: ssl.SSLContext | None,
    origin: float,
) -> EndpointResult:
    resolved = await _resolve(resolver, endpoint, config, origin)
    if isinstance(resolved, ProbeResult):
        return EndpointResult(role, endpoint, resolved)
    address = (resolved, endpoint.port)
    if endpoint.proto == RelayProto.STUN:
        probe = await probe_stun_binding(address, config, origin=origin)
    elif endpoint.proto == SignallingProto.TLS:
        probe = await probe_tls(
            address, endpoint.host, config, verify_context=tls_context, origin=origin
        )
    else:
        probe = await probe_tcp_connect(address, config, origin=origin)
    return EndpointResult(role, endpoint, probe)


async def probe_messenger(
    entry: MessengerEntry,
    *,
    resolver: Resolver,
    config: ProbeConfig,
    tls_context: ssl.SSLContext | None = None,
    origin: float = 0.0,
) -> MessengerResult:
    """Check every endpoint of ``entry`` at once; each check is bounded by ``config``."""
    checks = [
        _check("signalling", e, resolver, config, tls_context, origin) for e in entry.signalling
    ]
    checks += [_check("relay", e, resolver, config, tls_context, origin) for e in entry.relays]
    results = tuple(await asyncio.gather(*checks))
    messages, calls = judge(results)
    return MessengerResult(
        messenger=entry.id,
        name=entry.name,
        certainty=entry.certainty.value,
        messages=messages,
        calls=calls,
        summary=summarize(messages, calls),
        endpoints=results,
    )
