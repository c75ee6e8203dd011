"""The messenger check's judge: probe results -> works|tcp_only|blocked|intermittent|unknown.

Pure logic, no I/O. ``CheckedEndpoint`` holds the repeated attempts at one catalogue endpoint on
one route (``direct`` or a local proxy's id). ``judge_route`` decides the messages and calls of
one messenger on one route from its endpoints alone; ``judge_messenger`` then looks across every
route, so that

- a failure that another route gets past is ``blocked`` (the network blocks it, the service is up);
- a failure on every route that tried (direct and every proxy that could carry it) is
  ``unknown`` — the service may be down (OONI's false "WhatsApp blocked" of January 2026);
- endpoints the catalogue only guesses (``certainty: weak``) cannot prove a block on their own:
  without another route that answers, their failure is ``unknown``;
- repeats that disagree are ``intermittent``, never averaged away.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from callpath.core.i18n import N_

DIRECT = "direct"
# The default route's twin bound to the physical interface: around the VPN that carries the
# default route (then ``direct`` is through the VPN).
AROUND_VPN = "around-vpn"
NOT_CARRIED = "proxy_no_udp"  # the failure of a UDP endpoint on a route that carries no UDP


class Reachability(enum.StrEnum):
    WORKS = "works"
    TCP_ONLY = "tcp_only"  # calls: only a TCP/TLS fallback answered
    BLOCKED = "blocked"
    INTERMITTENT = "intermittent"  # repeats disagreed
    UNKNOWN = "unknown"


class EndpointStatus(enum.StrEnum):
    ANSWERED = "answered"  # every attempt answered
    FAILED = "failed"  # no attempt answered
    INTERMITTENT = "intermittent"  # some did, some did not
    NOT_CARRIED = "not_carried"  # the route cannot carry it (UDP through an HTTP proxy)


@dataclass(frozen=True)
class CheckedEndpoint:
    role: str  # signalling | relay
    host: str
    port: int
    proto: str  # tcp | tls | stun
    certainty: str  # strong | medium | weak
    through: str  # direct or a proxy id
    failures: tuple[str | None, ...]  # one per attempt; None = answered

    @property
    def status(self) -> EndpointStatus:
        if self.failures and all(f == NOT_CARRIED for f in self.failures):
            return EndpointStatus.NOT_CARRIED
        answered = [f is None for f in self.failures]
        if answered and all(answered):
            return EndpointStatus.ANSWERED
        if any(answered):
            return EndpointStatus.INTERMITTENT
        return EndpointStatus.FAILED

    @property
    def udp(self) -> bool:
        return self.proto == "stun"

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.role, self.host, self.port, self.proto)


@dataclass(frozen=True)
class Judgement:
    value: Reachability
    reason: str = ""  # a reason code (REASONS), empty when the value speaks for itself


# Reason codes and their plain-language texts (translated where shown).
REASONS: Mapping[str, str] = {
    "no_endpoint": N_("no endpoint of this kind is known for this messenger"),
    "not_carried": N_("this proxy cannot carry it (no UDP)"),
    "service_may_be_down": N_("fails directly and through every proxy: the service may be down"),
    "weak_guess": N_("only a guessed address was tried and nothing else answered to compare"),
    "offline": N_("this device has no connectivity at all"),
    "allowlist": N_("the network only lets allowlisted networks through"),
    "repeats_disagree": N_("repeated attempts disagreed"),
    "tcp_fallback_only": N_("only the TCP/TLS fallback answered; UDP did not"),
    "blocked_here": N_("fails on this route while another route gets through"),
}


@dataclass(frozen=True)
class RouteJudgement:
    through: str
    messages: Judgement
    calls: Judgement


def _category(endpoints: Sequence[CheckedEndpoint]) -> tuple[str, bool]:
    """(raw outcome, all failures weak) of one group: answered|intermittent|failed|none."""
    statuses = [e.status for e in endpoints if e.status is not EndpointStatus.NOT_CARRIED]
    if not statuses:
        return "none", False
    if EndpointStatus.ANSWERED in statuses:
        return "answered", False
    if EndpointStatus.INTERMITTENT in statuses:
        return "intermittent", False
    failed = [e for e in endpoints if e.status is EndpointStatus.FAILED]
    return "failed", all(e.certainty == "weak" for e in failed)


def raw_messages(endpoints: Sequence[CheckedEndpoint]) -> tuple[str, bool, bool]:
    """(outcome, weak, not carried) of the signalling endpoints of one route."""
    signalling = [e for e in endpoints if e.role == "signalling"]
    outcome, weak = _category(signalling)
    carried = bool(signalling) and all(e.status is EndpointStatus.NOT_CARRIED for e in signalling)
    return outcome, weak, carried


def raw_calls(endpoints: Sequence[CheckedEndpoint]) -> tuple[str, bool, bool]:
    """(outcome, weak, not carried) of the call endpoints: answered_udp | answered_tcp | …"""
    relays = [e for e in endpoints if e.role == "relay"]
    udp = [e for e in relays if e.udp]
    tcp = [e for e in relays if not e.udp]
    udp_outcome, udp_weak = _category(udp)
    tcp_outcome, tcp_weak = _category(tcp)
    not_carried = bool(udp) and all(e.status is EndpointStatus.NOT_CARRIED for e in udp)
    if udp_outcome == "answered":
        return "answered_udp", False, False
    if tcp_outcome == "answered":
        return ("answered_tcp" if udp else "answered_udp"), False, not_carried
    if "intermittent" in (udp_outcome, tcp_outcome):
        return "intermittent", False, False
    if udp_outcome == "none" and tcp_outcome == "none":
        return "none", False, not_carried
    weak = (udp_outcome != "failed" or udp_weak) and (tcp_outcome != "failed" or tcp_weak)
    return "failed", weak, not_carried


def _decide(
    outcome: str,
    weak: bool,
    not_carried: bool,
    others: Sequence[str],
    tried_elsewhere: int,
) -> Judgement:
    """One route's outcome with the other routes' outcomes beside it."""
    if outcome in ("answered", "answered_udp"):
        return Judgement(Reachability.WORKS)
    if outcome == "answered_tcp":
        return Judgement(Reachability.TCP_ONLY, "tcp_fallback_only")
    if outcome == "intermittent":
        return Judgement(Reachability.INTERMITTENT, "repeats_disagree")
    if outcome == "none":
        return Judgement(Reachability.UNKNOWN, "not_carried" if not_carried else "no_endpoint")
    # failed
    if any(o.startswith("answered") for o in others):
        return Judgement(Reachability.BLOCKED, "blocked_here")
    if tried_elsewhere and all(o == "failed" for o in others if o != "none"):
        return Judgement(Reachability.UNKNOWN, "service_may_be_down")
    if weak:
        return Judgement(Reachability.UNKNOWN, "weak_guess")
    return Judgement(Reachability.BLOCKED)


def judge_messenger(
    routes: Mapping[str, Sequence[CheckedEndpoint]],
    network: str = "online",
    around_network: str | None = None,
) -> tuple[RouteJudgement, ...]:
    """Messages and calls on every route (``direct`` first, then the proxies in order).

    ``network`` is the state seen on the default route; ``around_network`` the one seen around
    the VPN, for the ``around-vpn`` route (a network offline or in allowlist mode there)."""
    states = {DIRECT: network, AROUND_VPN: around_network or network}
    raw = {
        through: (raw_messages(endpoints), raw_calls(endpoints))
        for through, endpoints in routes.items()
    }
    judged: list[RouteJudgement] = []
    for through in routes:
        results: list[Judgement] = []
        for index in (0, 1):
            outcome, weak, not_carried = raw[through][index]
            others = [raw[o][index][0] for o in routes if o != through]
            tried = sum(1 for o in others if o != "none")
            state = states.get(through)
            if state == "offline":
                results.append(Judgement(Reachability.UNKNOWN, "offline"))
                continue
            judgement = _decide(outcome, weak, not_carried, others, tried)
            if state == "allowlist" and judgement.value in (
                Reachability.BLOCKED,
                Reachability.UNKNOWN,
            ):
                judgement = Judgement(Reachability.BLOCKED, "allowlist")
            results.append(judgement)
        judged.append(RouteJudgement(through, results[0], results[1]))
    return tuple(judged)
