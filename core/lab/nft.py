"""Scenario rules → nftables rulesets for the kernel lab.

Pure text translation, no I/O. The censor sits on the wire between the lab's two namespaces, so
a lost packet is lost silently: the *outbound* table (client → outside) is loaded in the outside
namespace and the *inbound* table (outside → client) in the client's. Each is one
``table inet callpath_lab`` whose ``censor`` chain (hook input, policy accept) looks only at
packets that arrived over the veth. Filtering on the sender's own output hook instead would make
its kernel refuse the send (``EPERM``), which no real censor can do. Each namespace's conntrack
sees both directions of every flow, so flow counters agree on both sides. Scenario rules add
lines in the scenario's order, so the first rule that drops a packet wins, as in the userspace
censor (``core/lab/rules.py``).

Some rules have no nftables equivalent (no netem in the lab's kernels, no SNI or DNS matching);
``translate`` then returns ``Unexpressible`` with the reason instead of an approximate ruleset.
The one exception is a part that no kernel-lab connection can reach (``unapplied_part``: a
freeze's allowlisted names), which is left out and reported.
Where the kernel counts differently from the userspace censor the difference is small and
documented in ``docs/lab-kernel.md`` (conntrack byte counters include IP and transport headers;
a rate limit's bucket holds one second of the rate plus the burst).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from callpath.core.i18n import _
from callpath.core.lab.scenario import RuleSpec

TABLE = "callpath_lab"
CHAIN = "censor"
CLIENT_INTERFACE = "cp-client"  # the client namespace's end of the veth pair
OUTSIDE_INTERFACE = "cp-outside"
STUN_MAGIC_COOKIE = 0x2112A442
QUIC_VERSION_1 = 0x00000001
# A throttled flow's meter entry outlives a pause in the flow by this much.
METER_TIMEOUT_S = 60
# numgen draws from 0..LOSS_SCALE-1, so loss percentages keep two decimals.
LOSS_SCALE = 10000

Transport = Literal["udp", "tcp"]


@dataclass(frozen=True)
class Endpoint:
    """A lab service as the client sees it."""

    host: str  # IPv4 address
    port: int | None = None  # None: every port of the host
    transport: Transport | None = None  # None: UDP and TCP

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.host)  # raises ValueError on anything else


@dataclass(frozen=True)
class Unexpressible:
    """A scenario rule nftables cannot reproduce, and why."""

    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"


@dataclass(frozen=True)
class Rulesets:
    """``nft -f`` texts: ``outbound`` for the outside namespace, ``inbound`` for the client's."""

    outbound: str
    inbound: str


@dataclass
class _Chain:
    sets: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


@dataclass
class _Ruleset:
    outbound: _Chain = field(default_factory=_Chain)  # client → outside
    inbound: _Chain = field(default_factory=_Chain)  # outside → client

    def directions(self) -> tuple[tuple[bool, _Chain], tuple[bool, _Chain]]:
        """(is outbound, chain) for both directions."""
        return (True, self.outbound), (False, self.inbound)

    def both(self, rule: str) -> None:
        self.outbound.rules.append(rule)
        self.inbound.rules.append(rule)


def unexpressible_reason(spec: RuleSpec) -> str | None:
    """Why ``spec`` cannot be a kernel rule, or None when it can."""
    if spec.kind == "delay":
        return _("added delay and jitter need netem, which the lab's kernel does not have")
    if spec.kind == "block_tls_sni":
        return _("nftables cannot read the server name inside a TLS handshake")
    if spec.kind == "drop_unrecognised_udp":
        return _(
            "recognising STUN, DTLS and QUIC handshakes by their bytes is not written for "
            "nftables yet"
        )
    if spec.kind == "allow_only":
        return _("the kernel lab has no stand-ins for the messenger check's reference services yet")
    if spec.kind in ("dns_nxdomain", "dns_bogus", "unknown_names"):
        return _("the kernel lab names its servers by address, so no DNS lookup can be tampered")
    if spec.kind == "expire_idle_binding":
        return _(
            "conntrack times a flow out when it is idle both ways; a binding that expires on "
            "one-way silence is not written for nftables"
        )
    if spec.kind == "cut_udp_flow" and "max_seconds" in spec.params:
        return _("nftables cannot match the age of a flow (max_seconds)")
    if spec.kind == "drop_quic" and spec.params.get("names"):
        return _("nftables cannot read the server name inside an encrypted QUIC Initial")
    return None


def unapplied_part(spec: RuleSpec) -> str | None:
    """What of ``spec`` the kernel lab leaves out because nftables cannot express it, when
    leaving it out cannot change a kernel run's outcome; None when the rule is whole.

    A freeze's ``except_names`` spares connections whose ClientHello names an allowlisted
    server. No connection in the kernel lab names one (``--relay-sni`` is userspace only, the
    TLS probe's neutral name is not on any allowlist), so the freeze runs without it."""
    if spec.kind == "freeze_tcp" and spec.params.get("except_names"):
        return _(
            "nftables cannot read the server name inside a TLS handshake, so it cannot spare "
            "the allowlisted names from the freeze (except_names); no connection here names one"
        )
    return None


def translate(
    specs: Sequence[RuleSpec],
    services: Mapping[str, Endpoint],
    *,
    exempt: Iterable[Endpoint] = (),
    client_interface: str = CLIENT_INTERFACE,
    outside_interface: str = OUTSIDE_INTERFACE,
) -> Rulesets | Unexpressible:
    """The two tables for ``specs``; loading one with ``nft -f`` replaces any earlier one.

    ``services`` maps the scenario's service names (``turn-udp``, ``turn-tcp``, ``turn-tls``,
    ``echo``) to endpoints. Traffic to and from the ``exempt`` TCP endpoints (the echo peer's
    signalling, which the userspace lab keeps outside the censor) is never touched, nor is
    anything that does not cross the veth (loopback, coturn talking to Janus).
    """
    for spec in specs:
        reason = unexpressible_reason(spec)
        if reason is not None:
            return Unexpressible(spec.kind, reason)
    ruleset = _Ruleset()
    ruleset.outbound.rules.append(f'iifname != "{outside_interface}" accept')
    ruleset.inbound.rules.append(f'iifname != "{client_interface}" accept')
    exempt = tuple(exempt)
    for outbound, chain in ruleset.directions():
        chain.rules += [f"{_match(e, 'tcp', outbound=outbound)} accept" for e in exempt]
    for index, spec in enumerate(specs):
        _add_rule(ruleset, index, spec, services)
    return Rulesets(outbound=_render(ruleset.outbound), inbound=_render(ruleset.inbound))


def _render(chain: _Chain) -> str:
    lines = [
        # Declaring then deleting the table makes the load replace any earlier ruleset
        # atomically, whether or not one exists.
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        *(f"  {declaration}" for declaration in chain.sets),
        f"  chain {CHAIN} {{",
        "    type filter hook input priority filter; policy accept;",
        *(f"    {rule}" for rule in chain.rules),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _match(endpoint: Endpoint, transport: Transport, *, outbound: bool) -> str:
    """Match packets to (outbound) or from (inbound) ``endpoint`` over ``transport``."""
    address = f"ip daddr {endpoint.host}" if outbound else f"ip saddr {endpoint.host}"
    if endpoint.port is None:
        return f"{address} meta l4proto {transport}"
    port = "dport" if outbound else "sport"
    return f"{address} {transport} {port} {endpoint.port}"


def _service_matches(
    spec: RuleSpec, services: Mapping[str, Endpoint], transport: Transport, *, outbound: bool
) -> list[str]:
    """One match per named service that carries ``transport`` (a UDP rule ignores TCP ports).

    A service missing from ``services`` has no server in this lab, so no traffic to match.
    """
    matches = []
    for name in spec.params.get("services", ()):
        endpoint = services.get(name)
        if endpoint is not None and endpoint.transport in (None, transport):
            matches.append(_match(endpoint, transport, outbound=outbound))
    return matches


def _add_rule(
    ruleset: _Ruleset, index: int, spec: RuleSpec, services: Mapping[str, Endpoint]
) -> None:
    p = spec.params
    if spec.kind == "drop_udp":
        ruleset.both("meta l4proto udp drop")
    elif spec.kind == "drop_udp_to":
        for outbound, chain in ruleset.directions():
            matches = _service_matches(spec, services, "udp", outbound=outbound)
            chain.rules += [f"{m} drop" for m in matches]
    elif spec.kind == "drop_stun":
        # The UDP header is 8 bytes: the STUN type's two leading zero bits sit at bit 64 of the
        # transport header, the magic cookie at bit 96; a STUN header is 20 bytes.
        ruleset.both(f"udp length >= 28 @th,64,2 0 @th,96,32 {STUN_MAGIC_COOKIE:#010x} drop")
    elif spec.kind == "cut_udp_flow":
        _add_cut(ruleset, index, spec)
    elif spec.kind == "throttle":
        _add_throttle(ruleset, index, spec)
    elif spec.kind == "random_loss":
        threshold = round(float(p["percent"]) * LOSS_SCALE / 100)
        if threshold >= LOSS_SCALE:  # numgen's values stop at LOSS_SCALE - 1
            ruleset.both("meta l4proto udp drop")
        elif threshold > 0:
            ruleset.both(f"meta l4proto udp numgen random mod {LOSS_SCALE} < {threshold} drop")
    elif spec.kind == "freeze_tcp":
        # Server → client bytes are the conntrack entry's reply direction (the client opened
        # the connection); dropping them silently keeps the connection open, with no RST.
        if "services" in p:
            matches = _service_matches(spec, services, "tcp", outbound=False)
        else:
            matches = ["meta l4proto tcp"]
        if "after_bytes_max" not in p:
            after = int(p.get("after_bytes", 16 * 1024))
            ruleset.inbound.rules += [f"{m} ct reply bytes > {after} drop" for m in matches]
        else:
            ruleset.inbound.rules += _freeze_range(
                matches, int(p["after_bytes_min"]), int(p["after_bytes_max"])
            )
    elif spec.kind == "drop_quic":
        ruleset.both(f"meta l4proto udp @th,64,1 1 @th,72,32 {QUIC_VERSION_1:#010x} drop")
    elif spec.kind == "block_tcp_connect":
        # On the far side of the wire: a reset comes back over the veth, as a censor's forged
        # RST does; a dropped SYN leaves the client waiting.
        action = "reject with tcp reset" if p.get("mode", "drop") == "reset" else "drop"
        matches = _service_matches(spec, services, "tcp", outbound=True)
        ruleset.outbound.rules += [f"{m} {action}" for m in matches]
    else:  # unexpressible kinds were refused before; the parser lets only known kinds through
        raise ValueError(f"no nftables translation for rule kind {spec.kind}")


# A freeze range is cut into this many evenly spaced points; each connection draws one.
FREEZE_POINTS = 8
FREEZE_MARK_BASE = 0x00C0FFEE & ~0xFF  # conntrack marks FREEZE_MARK_BASE + 1 … + FREEZE_POINTS


def _freeze_range(matches: list[str], low: int, high: int) -> list[str]:
    """Each connection freezes at its own point in [low, high]: on its first packet seen from
    the far side, ``numgen random`` picks one of FREEZE_POINTS limits into the conntrack mark;
    the mark's rule then drops reply bytes beyond that limit. The kernel's draw is random, not
    the userspace censor's seeded sequence: the same range, not the same cuts."""
    count = FREEZE_POINTS if high > low else 1
    step = (high - low) / max(1, count - 1)
    rules = []
    for match in matches:
        rules.append(
            f"{match} ct mark 0 ct mark set numgen random mod {count} offset {FREEZE_MARK_BASE + 1}"
        )
        for index in range(count):
            limit = round(low + step * index)
            rules.append(
                f"{match} ct mark {FREEZE_MARK_BASE + 1 + index} ct reply bytes > {limit} drop"
            )
    return rules


def _add_cut(ruleset: _Ruleset, index: int, spec: RuleSpec) -> None:
    """A UDP flow dies after N packets or bytes, both directions counted (conntrack's totals
    include the packet being decided, so ``> N`` lets the N-th packet through, like the
    userspace censor)."""
    p = spec.params
    limits = []
    if "max_packets" in p:
        limits.append(f"ct packets > {int(p['max_packets'])}")
    if "max_bytes" in p:
        limits.append(f"ct bytes > {int(p['max_bytes'])}")
    residual_s = float(p.get("residual_block_s", 0.0))
    residual_set = f"residual_{index}"
    for outbound, chain in ruleset.directions():
        outside = "ip daddr" if outbound else "ip saddr"
        if residual_s > 0:
            chain.sets.append(f"set {residual_set} {{ type ipv4_addr; flags dynamic, timeout; }}")
        for limit in limits:
            remember = ""
            if residual_s > 0:
                # ``add`` (not ``update``) keeps the time of the first cut, as the userspace
                # censor does; the set entry expires when the residual block ends.
                remember = f"add @{residual_set} {{ {outside} timeout {_seconds(residual_s)} }} "
            chain.rules.append(f"meta l4proto udp {limit} {remember}drop")
        if residual_s > 0:
            chain.rules.append(f"meta l4proto udp ct state new {outside} @{residual_set} drop")


def _add_throttle(ruleset: _Ruleset, index: int, spec: RuleSpec) -> None:
    """A token bucket per flow and direction (a meter keyed by the 5-tuple), or one for all flows
    (``shared``); excess is lost.
    TCP recovers lost segments by resending, so a throttled TCP stream is slowed, not cut."""
    p = spec.params
    rate = max(1, round(float(p["rate_kbps"]) * 1000 / 8))
    burst = int(p.get("burst_bytes", rate // 4)) or 1
    transports = sorted(p.get("transports", ("udp", "tcp")))
    protocols = transports[0] if len(transports) == 1 else f"{{ {', '.join(transports)} }}"
    meter = f"throttle_{index}"
    if p.get("shared"):
        # One bucket per direction for every flow together: a link's rate cap.
        ruleset.both(
            f"meta l4proto {protocols} limit rate over {rate} bytes/second burst {burst} bytes drop"
        )
        return
    for _outbound, chain in ruleset.directions():
        chain.sets.append(
            f"set {meter} {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; "
            f"flags dynamic, timeout; timeout {METER_TIMEOUT_S}s; }}"
        )
        chain.rules.append(
            f"meta l4proto {protocols} update @{meter} "
            f"{{ ip saddr . th sport . ip daddr . th dport "
            f"limit rate over {rate} bytes/second burst {burst} bytes }} drop"
        )


def _seconds(value: float) -> str:
    return f"{max(1, round(value))}s"
