"""What the lab's censor does to each packet: composable rules and the ``Censor`` that runs them.

Pure logic: no I/O, no clock. The middlebox hands every client-side packet to
``Censor.evaluate`` with the time it saw it and applies the returned ``Decision``.

Rules are frozen dataclasses (their configuration: comparable, printable, safe to hand to a
front end). Rules that need memory (token buckets, RNGs, reassembly buffers, residual blocks)
build it in ``evaluator()``; the censor keeps one evaluator per rule, so replacing the rule list
at run time (workshop mode) keeps the memory of every rule that stays in the list.

Evaluation order: rules run in list order. A PASS lets the next rule look; delays add up; the
first DROP, RESET or FREEZE ends the evaluation (later rules do not see the packet, so for
instance a token bucket placed after a loss rule is not charged for lost packets). Put ``Delay``
last: it remembers each packet's departure to keep order, even one a later rule drops.

TCP is forwarded as a byte stream by the middlebox, so TCP "packets" are the chunks it reads.
Dropping one chunk of a stream cannot be emulated in userspace; a DROP on TCP therefore
blackholes the connection (nothing more is forwarded either way, and nothing is closed), which
is what a censor dropping every later segment of the connection looks like to both ends.
"""

from __future__ import annotations

import abc
import enum
import ipaddress
import math
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

from callpath.core.lab.tls_sni import (
    MAX_CLIENT_HELLO_LENGTH,
    CryptoChunk,
    ScanStatus,
    assemble_crypto_stream,
    is_quic_v1_long_header,
    name_matches,
    normalise_name,
    read_quic_initial,
    scan_handshake_message,
    scan_tls_stream,
)

Address = tuple[str, int]

STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
STUN_HEADER_LENGTH = 20


class Transport(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"


class FlowDirection(enum.StrEnum):
    OUTBOUND = "outbound"  # client -> outside
    INBOUND = "inbound"  # outside -> client


BOTH_DIRECTIONS = frozenset(FlowDirection)
UDP_ONLY = frozenset({Transport.UDP})
UDP_AND_TCP = frozenset(Transport)


class Action(enum.StrEnum):
    PASS = "pass"
    DROP = "drop"  # UDP: this datagram is lost; TCP: the connection is blackholed
    DELAY = "delay"  # forward after ``delay_s``
    RESET = "reset"  # TCP: abort both ends with RST
    FREEZE = "freeze"  # TCP: stop forwarding this direction, keep the connection open


class BlockMode(enum.StrEnum):
    RESET = "reset"
    DROP = "drop"


class JitterDistribution(enum.StrEnum):
    UNIFORM = "uniform"  # base + U(-jitter, +jitter)
    NORMAL = "normal"  # base + N(0, jitter)


@dataclass(frozen=True)
class FlowKey:
    """One flow as the censor sees it: the client's end and the real outside end."""

    transport: Transport
    client: Address
    target: Address


@dataclass(frozen=True)
class Packet:
    now: float
    transport: Transport
    direction: FlowDirection
    client: Address
    target: Address  # the real outside address behind the forwarder
    payload: bytes = b""  # the datagram for UDP, the chunk read for TCP
    opening: bool = False  # TCP: the connection attempt itself (no payload)

    @property
    def flow(self) -> FlowKey:
        return FlowKey(self.transport, self.client, self.target)

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(frozen=True)
class DirectionCounters:
    packets: int = 0
    bytes: int = 0

    def plus(self, size: int) -> DirectionCounters:
        return DirectionCounters(self.packets + 1, self.bytes + size)


@dataclass(frozen=True)
class FlowState:
    """What the censor has seen of a flow before the packet being decided (all packets offered,
    whatever was decided about them: a real censor counts what crosses its tap)."""

    first_seen: float
    last_seen: float
    outbound: DirectionCounters = DirectionCounters()
    inbound: DirectionCounters = DirectionCounters()

    def counters(self, direction: FlowDirection) -> DirectionCounters:
        return self.outbound if direction is FlowDirection.OUTBOUND else self.inbound

    @property
    def packets(self) -> int:
        return self.outbound.packets + self.inbound.packets

    @property
    def bytes(self) -> int:
        return self.outbound.bytes + self.inbound.bytes

    def seen(self, packet: Packet) -> FlowState:
        if packet.opening:
            return replace(self, last_seen=packet.now)
        if packet.direction is FlowDirection.OUTBOUND:
            return replace(self, last_seen=packet.now, outbound=self.outbound.plus(packet.size))
        return replace(self, last_seen=packet.now, inbound=self.inbound.plus(packet.size))


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    keep_bytes: int = 0  # FREEZE: leading bytes of this chunk still forwarded before the freeze
    rule: str = ""  # label of the rule that decided; empty when no rule acted
    mechanism: str = ""  # the GUIDE §3 blocking mechanism this reproduces, if any


PASS = Decision(Action.PASS)


class RuleEvaluator(abc.ABC):
    """A rule's working memory. One per rule per censor."""

    @abc.abstractmethod
    def decide(self, packet: Packet, flow: FlowState) -> Decision: ...

    def forget(self, flow: FlowKey) -> None:  # noqa: B027 - most rules keep no per-flow memory
        """The flow has ended (mapping expired, connection closed): drop what is kept for it."""


class Rule(Protocol):
    @property
    def label(self) -> str: ...

    def evaluator(self) -> RuleEvaluator: ...


class _AddressMatch:
    """Outside addresses (IPs or CIDR networks) and ports; an empty set matches everything."""

    def __init__(self, addresses: frozenset[str], ports: frozenset[int]) -> None:
        self._networks = tuple(ipaddress.ip_network(a, strict=False) for a in addresses)
        self._ports = ports

    def __call__(self, target: Address) -> bool:
        if self._ports and target[1] not in self._ports:
            return False
        if not self._networks:
            return True
        try:
            host = ipaddress.ip_address(target[0])
        except ValueError:
            return False
        return any(host in network for network in self._networks)


def _check_addresses(addresses: frozenset[str]) -> None:
    for address in addresses:
        ipaddress.ip_network(address, strict=False)  # raises ValueError on a typo


def _check_names(names: frozenset[str]) -> frozenset[str]:
    return frozenset(normalise_name(name) for name in names)


class _StatelessEvaluator(RuleEvaluator):
    def __init__(self, rule: _StatelessRule) -> None:
        self._rule = rule

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        return self._rule.decide(packet, flow)


class _StatelessRule(abc.ABC):
    @abc.abstractmethod
    def decide(self, packet: Packet, flow: FlowState) -> Decision: ...

    def evaluator(self) -> RuleEvaluator:
        return _StatelessEvaluator(self)


# --- 1. all UDP ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropUdp(_StatelessRule):
    """Every UDP datagram is lost (Iran 2022–25, Russian mobile networks late 2025)."""

    directions: frozenset[FlowDirection] = BOTH_DIRECTIONS
    label: str = "drop_udp"
    mechanism: ClassVar[str] = "udp_blocked"

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is Transport.UDP and packet.direction in self.directions:
            return Decision(Action.DROP, rule=self.label, mechanism=self.mechanism)
        return PASS


# --- 2. UDP to some addresses or ports -------------------------------------------------------


@dataclass(frozen=True)
class DropUdpTo:
    """UDP to given outside addresses and/or ports is lost; TCP to them is untouched.

    With both sets given, a datagram must match both; use two rules for "either".
    """

    addresses: frozenset[str] = frozenset()  # IPs or CIDR networks
    ports: frozenset[int] = frozenset()
    label: str = "drop_udp_to"
    mechanism: ClassVar[str] = "udp_ip_blocked"

    def __post_init__(self) -> None:
        if not self.addresses and not self.ports:
            raise ValueError("DropUdpTo needs addresses or ports (use DropUdp to drop all UDP)")
        _check_addresses(self.addresses)

    def evaluator(self) -> RuleEvaluator:
        return _DropUdpToEvaluator(self)


class _DropUdpToEvaluator(RuleEvaluator):
    def __init__(self, rule: DropUdpTo) -> None:
        self._rule = rule
        self._match = _AddressMatch(rule.addresses, rule.ports)

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is Transport.UDP and self._match(packet.target):
            return Decision(Action.DROP, rule=self._rule.label, mechanism=DropUdpTo.mechanism)
        return PASS


# --- 3. STUN by signature --------------------------------------------------------------------


def is_stun(payload: bytes) -> bool:
    """STUN header: two leading zero bits (TURN ChannelData starts 0b01) and the magic cookie."""
    return (
        len(payload) >= STUN_HEADER_LENGTH
        and payload[0] & 0xC0 == 0
        and payload[4:8] == STUN_MAGIC_COOKIE
    )


@dataclass(frozen=True)
class DropStun(_StatelessRule):
    """STUN messages (binding requests, TURN allocations) are lost, whatever the port.

    On TCP (TURN over TCP frames STUN the same way) a STUN chunk blackholes the connection.
    """

    directions: frozenset[FlowDirection] = BOTH_DIRECTIONS
    transports: frozenset[Transport] = UDP_ONLY
    label: str = "drop_stun"
    mechanism: ClassVar[str] = "stun_signature_blocked"

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if (
            packet.transport in self.transports
            and packet.direction in self.directions
            and is_stun(packet.payload)
        ):
            return Decision(Action.DROP, rule=self.label, mechanism=self.mechanism)
        return PASS


def is_recognisable_udp(payload: bytes) -> bool:
    """STUN, a DTLS handshake-phase record (change cipher spec, alert, handshake) or a QUIC
    long-header packet (its handshake): what a censor that drops unrecognisable UDP lets by."""
    if is_stun(payload):
        return True
    if len(payload) >= 13 and payload[0] in (20, 21, 22) and payload[1] == 0xFE:
        return True
    return len(payload) >= 7 and bool(payload[0] & 0x80) and bool(payload[0] & 0x40)


@dataclass(frozen=True)
class DropUnrecognisedUdp(_StatelessRule):
    """UDP whose payload is not recognisable (not STUN, nor a DTLS or QUIC handshake) is lost:
    RTP/SRTP, TURN ChannelData, DTLS application data, QUIC short-header packets. Reported on
    mobile networks in Russia in December 2025 (net4people #546): calls set up, then media dies.
    """

    label: str = "drop_unrecognised_udp"
    mechanism: ClassVar[str] = "voip_signature_blocked"

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is Transport.UDP and not is_recognisable_udp(packet.payload):
            return Decision(Action.DROP, rule=self.label, mechanism=self.mechanism)
        return PASS


# --- 4. UDP flow cut-off, residual block -----------------------------------------------------


@dataclass(frozen=True)
class CutUdpFlow:
    """A UDP flow dies after N packets, N bytes or N seconds (both directions counted).

    The packet that reaches a limit still passes (the censor counts, then acts); every later
    packet of the flow, either way, is lost. With ``residual_block_s``, flows to the same outside
    IP that start within that time of the cut are lost too.
    """

    max_packets: int | None = None
    max_bytes: int | None = None
    max_seconds: float | None = None
    residual_block_s: float = 0.0
    label: str = "cut_udp_flow"
    mechanism: ClassVar[str] = "udp_flow_cutoff"
    residual_mechanism: ClassVar[str] = "residual_block"

    def __post_init__(self) -> None:
        if self.max_packets is None and self.max_bytes is None and self.max_seconds is None:
            raise ValueError("CutUdpFlow needs max_packets, max_bytes or max_seconds")

    def evaluator(self) -> RuleEvaluator:
        return _CutUdpFlowEvaluator(self)


class _CutUdpFlowEvaluator(RuleEvaluator):
    def __init__(self, rule: CutUdpFlow) -> None:
        self._rule = rule
        self._cut: set[FlowKey] = set()
        self._blocked_since: dict[str, float] = {}  # outside IP -> time of the last cut

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is not Transport.UDP:
            return PASS
        rule = self._rule
        host = packet.target[0]
        if self._is_cut(packet.now, flow):
            if packet.flow not in self._cut:
                self._cut.add(packet.flow)
                if rule.residual_block_s > 0:
                    self._blocked_since[host] = packet.now
            return Decision(Action.DROP, rule=rule.label, mechanism=rule.mechanism)
        cut_at = self._blocked_since.get(host)
        if cut_at is not None:
            if packet.now - cut_at >= rule.residual_block_s:
                del self._blocked_since[host]
            elif flow.first_seen >= cut_at:
                return Decision(Action.DROP, rule=rule.label, mechanism=rule.residual_mechanism)
        return PASS

    def _is_cut(self, now: float, flow: FlowState) -> bool:
        rule = self._rule
        return (
            (rule.max_packets is not None and flow.packets >= rule.max_packets)
            or (rule.max_bytes is not None and flow.bytes >= rule.max_bytes)
            or (rule.max_seconds is not None and now - flow.first_seen >= rule.max_seconds)
        )

    def forget(self, flow: FlowKey) -> None:
        self._cut.discard(flow)


@dataclass(frozen=True)
class ExpireIdleBinding:
    """A NAT-like UDP binding kept alive only by the client's own packets.

    When nothing has gone out on a flow for ``idle_s`` (one-way silence: the far end may have
    kept sending), the binding is gone and the flow with it: the far end's packets have nowhere
    to go and the client's next ones would leave from a port the far end does not know, so that
    packet and every later one of the flow, either way, are lost. A call's media and its ICE
    consent checks (every 5 s) keep such a binding alive.
    """

    idle_s: float
    label: str = "expire_idle_binding"
    mechanism: ClassVar[str] = "nat_binding_expired"

    def __post_init__(self) -> None:
        if self.idle_s <= 0:
            raise ValueError("ExpireIdleBinding needs a positive idle_s")

    def evaluator(self) -> RuleEvaluator:
        return _ExpireIdleBindingEvaluator(self)


class _ExpireIdleBindingEvaluator(RuleEvaluator):
    def __init__(self, rule: ExpireIdleBinding) -> None:
        self._rule = rule
        self._last_outbound: dict[FlowKey, float] = {}
        self._expired: set[FlowKey] = set()

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is not Transport.UDP:
            return PASS
        rule = self._rule
        key = packet.flow
        last = self._last_outbound.get(key, flow.first_seen)
        if key in self._expired or packet.now - last >= rule.idle_s:
            self._expired.add(key)
            return Decision(Action.DROP, rule=rule.label, mechanism=rule.mechanism)
        if packet.direction is FlowDirection.OUTBOUND:
            self._last_outbound[key] = packet.now
        return PASS

    def forget(self, flow: FlowKey) -> None:
        self._last_outbound.pop(flow, None)
        self._expired.discard(flow)


# --- 5. throttling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """Token bucket per flow and direction: ``rate_bytes_per_s`` with ``burst_bytes`` of credit.

    UDP beyond the rate is lost; TCP beyond the rate waits (the stream is shaped, not cut).
    ``shared``: one bucket per direction for every flow together (a link's rate cap), not one
    per flow.
    """

    rate_bytes_per_s: float
    burst_bytes: int
    directions: frozenset[FlowDirection] = BOTH_DIRECTIONS
    transports: frozenset[Transport] = UDP_AND_TCP
    label: str = "throttle"
    shared: bool = False

    def __post_init__(self) -> None:
        if self.rate_bytes_per_s <= 0 or self.burst_bytes <= 0:
            raise ValueError("Throttle needs a positive rate and burst")

    def evaluator(self) -> RuleEvaluator:
        return _ThrottleEvaluator(self)


# The key of a shared throttle's buckets: every flow counts against one.
_SHARED_FLOW = FlowKey(Transport.UDP, ("shared", 0), ("shared", 0))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _ThrottleEvaluator(RuleEvaluator):
    def __init__(self, rule: Throttle) -> None:
        self._rule = rule
        self._buckets: dict[tuple[FlowKey, FlowDirection], _Bucket] = {}

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        rule = self._rule
        if (
            packet.opening
            or packet.transport not in rule.transports
            or packet.direction not in rule.directions
        ):
            return PASS
        key = (_SHARED_FLOW if rule.shared else packet.flow, packet.direction)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(rule.burst_bytes), packet.now)
        elapsed = max(0.0, packet.now - bucket.updated)
        refilled = bucket.tokens + elapsed * rule.rate_bytes_per_s
        bucket.tokens = min(float(rule.burst_bytes), refilled)
        bucket.updated = packet.now
        if bucket.tokens >= packet.size:
            bucket.tokens -= packet.size
            return PASS
        if packet.transport is Transport.UDP:
            return Decision(Action.DROP, rule=rule.label, mechanism="udp_throttled")
        # TCP: go into debt; the chunk leaves when the debt is paid back.
        wait = (packet.size - bucket.tokens) / rule.rate_bytes_per_s
        bucket.tokens -= packet.size
        return Decision(Action.DELAY, delay_s=wait, rule=rule.label, mechanism="tcp_throttled")

    def forget(self, flow: FlowKey) -> None:
        for direction in FlowDirection:
            self._buckets.pop((flow, direction), None)


# --- 6. random loss --------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomLoss:
    """Each UDP datagram is lost with ``probability``; ``seed`` makes the losses reproducible."""

    probability: float
    seed: int = 0
    directions: frozenset[FlowDirection] = BOTH_DIRECTIONS
    label: str = "random_loss"
    mechanism: ClassVar[str] = "udp_throttled"  # GUIDE §3: "throttled or made lossy"

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("RandomLoss probability must be within [0, 1]")

    def evaluator(self) -> RuleEvaluator:
        return _RandomLossEvaluator(self)


class _RandomLossEvaluator(RuleEvaluator):
    def __init__(self, rule: RandomLoss) -> None:
        self._rule = rule
        self._random = random.Random(rule.seed)

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        rule = self._rule
        if packet.transport is not Transport.UDP or packet.direction not in rule.directions:
            return PASS
        if self._random.random() < rule.probability:
            return Decision(Action.DROP, rule=rule.label, mechanism=rule.mechanism)
        return PASS


# --- 7. delay and jitter ---------------------------------------------------------------------


@dataclass(frozen=True)
class Delay:
    """Added one-way delay per direction, with per-packet jitter.

    Each packet's delay is ``base ± jitter`` (uniform) or ``base + N(0, jitter)`` (normal),
    never below zero. With ``preserve_order`` (the default, and always for TCP, a stream) a
    packet never leaves before the previous packet of its flow and direction, as in a FIFO
    queue: its delay is then raised to that departure time and the record shows the raised
    value. Without it, jitter larger than the packet spacing reorders datagrams.
    """

    outbound_s: float = 0.0
    inbound_s: float = 0.0
    jitter_s: float = 0.0
    distribution: JitterDistribution = JitterDistribution.UNIFORM
    preserve_order: bool = True
    seed: int = 0
    transports: frozenset[Transport] = UDP_AND_TCP
    label: str = "delay"

    def __post_init__(self) -> None:
        if min(self.outbound_s, self.inbound_s, self.jitter_s) < 0:
            raise ValueError("Delay values must not be negative")

    @classmethod
    def round_trip(
        cls,
        rtt_s: float,
        *,
        jitter_s: float = 0.0,
        outbound_share: float = 0.5,
        distribution: JitterDistribution = JitterDistribution.UNIFORM,
        preserve_order: bool = True,
        seed: int = 0,
        label: str = "delay",
    ) -> Delay:
        """Adds ``rtt_s`` to the round trip, ``outbound_share`` of it on the way out."""
        if not 0.0 <= outbound_share <= 1.0:
            raise ValueError("outbound_share must be within [0, 1]")
        return cls(
            outbound_s=rtt_s * outbound_share,
            inbound_s=rtt_s * (1.0 - outbound_share),
            jitter_s=jitter_s,
            distribution=distribution,
            preserve_order=preserve_order,
            seed=seed,
            label=label,
        )

    def base_s(self, direction: FlowDirection) -> float:
        return self.outbound_s if direction is FlowDirection.OUTBOUND else self.inbound_s

    def evaluator(self) -> RuleEvaluator:
        return _DelayEvaluator(self)


class _DelayEvaluator(RuleEvaluator):
    def __init__(self, rule: Delay) -> None:
        self._rule = rule
        self._random = random.Random(rule.seed)
        self._last_departure: dict[tuple[FlowKey, FlowDirection], float] = {}

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        rule = self._rule
        if packet.transport not in rule.transports:
            return PASS
        delay = rule.base_s(packet.direction) + self._jitter()
        delay = max(0.0, delay)
        if rule.preserve_order or packet.transport is Transport.TCP:
            key = (packet.flow, packet.direction)
            departure = max(packet.now + delay, self._last_departure.get(key, -math.inf))
            self._last_departure[key] = departure
            delay = departure - packet.now
        if delay <= 0.0:
            return PASS
        return Decision(Action.DELAY, delay_s=delay, rule=rule.label)

    def _jitter(self) -> float:
        rule = self._rule
        if rule.jitter_s == 0.0:
            return 0.0
        if rule.distribution is JitterDistribution.NORMAL:
            return self._random.gauss(0.0, rule.jitter_s)
        return self._random.uniform(-rule.jitter_s, rule.jitter_s)

    def forget(self, flow: FlowKey) -> None:
        for direction in FlowDirection:
            self._last_departure.pop((flow, direction), None)


# --- 8. TLS SNI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockTlsSni:
    """TCP connections whose ClientHello names a blocked server are reset or blackholed.

    The ClientHello is reassembled across chunks and TLS records, as a stateful DPI does;
    chunks pass while it is incomplete (the server cannot answer an incomplete hello anyway).
    """

    server_names: frozenset[str]
    mode: BlockMode = BlockMode.RESET
    include_subdomains: bool = True
    label: str = "block_tls_sni"

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_names", _check_names(self.server_names))

    @property
    def mechanism(self) -> str:
        return "tls_sni_reset" if self.mode is BlockMode.RESET else "tls_sni_drop"

    def evaluator(self) -> RuleEvaluator:
        return _BlockTlsSniEvaluator(self)


class _BlockTlsSniEvaluator(RuleEvaluator):
    def __init__(self, rule: BlockTlsSni) -> None:
        self._rule = rule
        self._pending: dict[FlowKey, bytes] = {}
        self._decided: dict[FlowKey, Decision] = {}

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is not Transport.TCP or packet.opening:
            return PASS
        key = packet.flow
        decided = self._decided.get(key)
        if decided is not None:
            return decided
        if packet.direction is not FlowDirection.OUTBOUND:
            return PASS
        data = self._pending.pop(key, b"") + packet.payload
        scan = scan_tls_stream(data)
        if scan.status is ScanStatus.NEED_MORE and len(data) <= MAX_CLIENT_HELLO_LENGTH:
            self._pending[key] = data
            return PASS
        decision = PASS
        rule = self._rule
        if scan.status is ScanStatus.FOUND and scan.server_name is not None:
            blocked = name_matches(
                scan.server_name, rule.server_names, include_subdomains=rule.include_subdomains
            )
            if blocked:
                action = Action.RESET if rule.mode is BlockMode.RESET else Action.DROP
                decision = Decision(action, rule=rule.label, mechanism=rule.mechanism)
        self._decided[key] = decision
        return decision

    def forget(self, flow: FlowKey) -> None:
        self._pending.pop(flow, None)
        self._decided.pop(flow, None)


# --- 9. TCP freeze ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezeTcp:
    """After ``after_bytes`` server→client, inbound data stops; no RST, nothing closed (TSPU).

    With ``after_bytes_max`` above ``after_bytes`` each connection gets its own limit, drawn
    uniformly from that range by an RNG seeded with ``seed`` (the field saw cuts anywhere
    between 12 and 34 KB): reproducible for the same sequence of connections. A connection
    whose TLS ClientHello names a server in ``except_names`` is never frozen (censors exempt
    the names on their allowlist); the ClientHello is read as ``BlockTlsSni`` reads it.
    """

    after_bytes: int = 16 * 1024
    addresses: frozenset[str] = frozenset()  # outside IPs/networks it applies to; empty: all
    ports: frozenset[int] = frozenset()
    after_bytes_max: int | None = None  # a range [after_bytes, after_bytes_max] per connection
    seed: int = 0
    except_names: frozenset[str] = frozenset()
    include_subdomains: bool = True
    label: str = "freeze_tcp"
    mechanism: ClassVar[str] = "tcp_freeze_16k"

    def __post_init__(self) -> None:
        _check_addresses(self.addresses)
        if self.after_bytes_max is not None and self.after_bytes_max < self.after_bytes:
            raise ValueError("FreezeTcp after_bytes_max must not be below after_bytes")
        object.__setattr__(self, "except_names", _check_names(self.except_names))

    def evaluator(self) -> RuleEvaluator:
        return _FreezeTcpEvaluator(self)

    def decide(self, packet: Packet, flow: FlowState, after_bytes: int | None = None) -> Decision:
        """The byte arithmetic; the evaluator adds the address filter, the per-connection limit
        and the exemption."""
        if packet.transport is not Transport.TCP or packet.direction is not FlowDirection.INBOUND:
            return PASS
        limit = self.after_bytes if after_bytes is None else after_bytes
        already = flow.inbound.bytes
        if already + packet.size <= limit:
            return PASS
        keep = max(0, limit - already)
        return Decision(Action.FREEZE, keep_bytes=keep, rule=self.label, mechanism=self.mechanism)


class _FreezeTcpEvaluator(RuleEvaluator):
    def __init__(self, rule: FreezeTcp) -> None:
        self._rule = rule
        self._match = _AddressMatch(rule.addresses, rule.ports)
        self._random = random.Random(rule.seed)
        self._limits: dict[FlowKey, int] = {}
        self._hello: dict[FlowKey, bytes] = {}  # ClientHello bytes while incomplete
        self._exempt: set[FlowKey] = set()
        self._read: set[FlowKey] = set()  # connections whose first bytes were read

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        rule = self._rule
        if packet.transport is not Transport.TCP or not self._match(packet.target):
            return PASS
        key = packet.flow
        if key not in self._limits:
            high = rule.after_bytes_max
            self._limits[key] = (
                rule.after_bytes
                if high is None or high == rule.after_bytes
                else self._random.randint(rule.after_bytes, high)
            )
        if rule.except_names and packet.direction is FlowDirection.OUTBOUND:
            self._read_hello(key, packet.payload)
        if key in self._exempt:
            return PASS
        return rule.decide(packet, flow, self._limits[key])

    def _read_hello(self, key: FlowKey, payload: bytes) -> None:
        if key in self._read or not payload:
            return
        data = self._hello.pop(key, b"") + payload
        scan = scan_tls_stream(data)
        if scan.status is ScanStatus.NEED_MORE and len(data) <= MAX_CLIENT_HELLO_LENGTH:
            self._hello[key] = data
            return
        self._read.add(key)
        rule = self._rule
        if (
            scan.status is ScanStatus.FOUND
            and scan.server_name is not None
            and name_matches(
                scan.server_name, rule.except_names, include_subdomains=rule.include_subdomains
            )
        ):
            self._exempt.add(key)

    def forget(self, flow: FlowKey) -> None:
        self._limits.pop(flow, None)
        self._hello.pop(flow, None)
        self._exempt.discard(flow)
        self._read.discard(flow)


# --- 10. QUIC --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropQuic:
    """QUIC v1 is lost: every long-header v1 packet, or with ``server_names`` only the flows
    whose Initial (decrypted with the public Initial keys) names a blocked server; such a flow
    then loses every later packet both ways."""

    server_names: frozenset[str] = frozenset()
    include_subdomains: bool = True
    label: str = "drop_quic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_names", _check_names(self.server_names))

    @property
    def mechanism(self) -> str:
        return "quic_sni_blocked" if self.server_names else "quic_blocked"

    def evaluator(self) -> RuleEvaluator:
        return _DropQuicEvaluator(self)


class _DropQuicEvaluator(RuleEvaluator):
    def __init__(self, rule: DropQuic) -> None:
        self._rule = rule
        self._drop = Decision(Action.DROP, rule=rule.label, mechanism=rule.mechanism)
        self._chunks: dict[FlowKey, list[CryptoChunk]] = {}
        self._blocked: set[FlowKey] = set()
        self._cleared: set[FlowKey] = set()

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is not Transport.UDP:
            return PASS
        rule = self._rule
        if not rule.server_names:
            return self._drop if is_quic_v1_long_header(packet.payload) else PASS
        key = packet.flow
        if key in self._blocked:
            return self._drop
        if key in self._cleared or packet.direction is not FlowDirection.OUTBOUND:
            return PASS
        if not is_quic_v1_long_header(packet.payload):
            return PASS
        initial = read_quic_initial(packet.payload)
        if initial is None:
            return PASS
        chunks = self._chunks.setdefault(key, [])
        chunks.extend(initial.chunks)
        scan = scan_handshake_message(assemble_crypto_stream(chunks))
        buffered = sum(len(chunk.data) for chunk in chunks)
        if scan.status is ScanStatus.NEED_MORE and buffered <= MAX_CLIENT_HELLO_LENGTH:
            return PASS
        del self._chunks[key]
        if scan.server_name is not None and name_matches(
            scan.server_name, rule.server_names, include_subdomains=rule.include_subdomains
        ):
            self._blocked.add(key)
            return self._drop
        self._cleared.add(key)
        return PASS

    def forget(self, flow: FlowKey) -> None:
        self._chunks.pop(flow, None)
        self._blocked.discard(flow)
        self._cleared.discard(flow)


# --- 11. TCP connect -------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockTcpConnect:
    """TCP connection attempts to given outside addresses/ports are dropped or reset.

    Userspace limitation: the middlebox sees a connection only after the kernel has completed
    the client's handshake with the forwarder, so the client's connect() succeeds either way.
    DROP then looks like a connection that never answers (timeout on the first read, as after a
    SYN drop the client would time out on connect); RESET aborts it with an RST at once.
    """

    addresses: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()
    mode: BlockMode = BlockMode.DROP
    label: str = "block_tcp_connect"
    mechanism: ClassVar[str] = "tcp_connect_blocked"

    def __post_init__(self) -> None:
        _check_addresses(self.addresses)

    def evaluator(self) -> RuleEvaluator:
        return _BlockTcpConnectEvaluator(self)


class _BlockTcpConnectEvaluator(RuleEvaluator):
    def __init__(self, rule: BlockTcpConnect) -> None:
        self._rule = rule
        self._match = _AddressMatch(rule.addresses, rule.ports)
        action = Action.RESET if rule.mode is BlockMode.RESET else Action.DROP
        self._decision = Decision(action, rule=rule.label, mechanism=rule.mechanism)

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if packet.transport is Transport.TCP and packet.opening and self._match(packet.target):
            return self._decision
        return PASS


# --- 12, 13: data blackhole, allowlist ------------------------------------------------------


@dataclass(frozen=True)
class BlackholeAfter:
    """After ``after_bytes`` in a flow (both directions), everything is lost: a tunnel that
    handshakes, then carries nothing (UDP datagrams dropped, TCP connection blackholed)."""

    after_bytes: int
    addresses: frozenset[str] = frozenset()  # outside IPs/networks it applies to; empty: all
    ports: frozenset[int] = frozenset()
    transports: frozenset[Transport] = UDP_AND_TCP
    label: str = "blackhole_after"
    mechanism: ClassVar[str] = "transport_data_blackhole"

    def __post_init__(self) -> None:
        _check_addresses(self.addresses)

    def evaluator(self) -> RuleEvaluator:
        return _BlackholeAfterEvaluator(self)


class _BlackholeAfterEvaluator(RuleEvaluator):
    def __init__(self, rule: BlackholeAfter) -> None:
        self._rule = rule
        self._match = _AddressMatch(rule.addresses, rule.ports)

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        rule = self._rule
        if (
            packet.opening
            or packet.transport not in rule.transports
            or flow.bytes < rule.after_bytes
            or not self._match(packet.target)
        ):
            return PASS
        return Decision(Action.DROP, rule=rule.label, mechanism=rule.mechanism)


@dataclass(frozen=True)
class AllowOnly:
    """Allowlist mode: only flows to the listed outside addresses/ports/transports pass.

    Anything else is lost: UDP datagrams dropped, TCP connection attempts dropped.
    """

    addresses: frozenset[str] = frozenset()  # empty: any address
    ports: frozenset[int] = frozenset()  # empty: any port
    transports: frozenset[Transport] = UDP_AND_TCP
    label: str = "allow_only"
    mechanism: ClassVar[str] = "allowlist_mode"

    def __post_init__(self) -> None:
        _check_addresses(self.addresses)

    def evaluator(self) -> RuleEvaluator:
        return _AllowOnlyEvaluator(self)


class _AllowOnlyEvaluator(RuleEvaluator):
    def __init__(self, rule: AllowOnly) -> None:
        self._rule = rule
        self._match = _AddressMatch(rule.addresses, rule.ports)

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        rule = self._rule
        if packet.transport in rule.transports and self._match(packet.target):
            return PASS
        return Decision(Action.DROP, rule=rule.label, mechanism=rule.mechanism)


@dataclass(frozen=True)
class AllowOnlyTargets:
    """Allowlist mode over several services: a flow passes only when its outside address is in
    one of ``targets``' networks and, where the target names a port, on that port."""

    targets: frozenset[tuple[str, int | None]]  # (IP or CIDR network, port or None: any)
    label: str = "allow_only"
    mechanism: ClassVar[str] = "allowlist_mode"

    def __post_init__(self) -> None:
        _check_addresses(frozenset(network for network, _port in self.targets))

    def evaluator(self) -> RuleEvaluator:
        return _AllowOnlyTargetsEvaluator(self)


class _AllowOnlyTargetsEvaluator(RuleEvaluator):
    def __init__(self, rule: AllowOnlyTargets) -> None:
        self._rule = rule
        self._matches = tuple(
            _AddressMatch(frozenset({network}), frozenset() if port is None else frozenset({port}))
            for network, port in rule.targets
        )

    def decide(self, packet: Packet, flow: FlowState) -> Decision:
        if any(match(packet.target) for match in self._matches):
            return PASS
        return Decision(Action.DROP, rule=self._rule.label, mechanism=self._rule.mechanism)


# --- the censor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionRecord:
    now: float
    flow: FlowKey
    direction: FlowDirection
    size: int
    decision: Decision


@dataclass(frozen=True)
class AppliedDelay:
    """Ground truth for the accuracy benchmarks: the delay given to one forwarded packet."""

    now: float
    flow: FlowKey
    direction: FlowDirection
    size: int
    delay_s: float


@dataclass
class _Slot:
    rule: Rule
    evaluator: RuleEvaluator


@dataclass
class _Log:
    blocking: deque[DecisionRecord]
    delays: deque[AppliedDelay]
    counters: dict[str, Counter[Action]] = field(default_factory=dict)
    evaluated: int = 0
    passed: int = 0


class Censor:
    """An ordered, replaceable rule list, the per-flow state, and a log of what was done.

    Not thread-safe: use it from the event loop that runs the middlebox (a GUI thread changes
    rules with ``loop.call_soon_threadsafe(censor.set_rules, rules)``).
    """

    def __init__(self, rules: Iterable[Rule] = (), *, log_size: int = 4096) -> None:
        self._slots: list[_Slot] = []
        self._flows: dict[FlowKey, FlowState] = {}
        self._log = _Log(blocking=deque(maxlen=log_size), delays=deque(maxlen=log_size))
        self.set_rules(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(slot.rule for slot in self._slots)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replaces the rule list; rules equal to one already running keep their memory."""
        kept: dict[int, _Slot] = {}
        slots: list[_Slot] = []
        for rule in rules:
            match = next(
                (
                    index
                    for index, slot in enumerate(self._slots)
                    if index not in kept and slot.rule == rule
                ),
                None,
            )
            if match is None:
                slots.append(_Slot(rule, rule.evaluator()))
            else:
                kept[match] = self._slots[match]
                slots.append(self._slots[match])
        self._slots = slots

    def evaluate(self, packet: Packet) -> Decision:
        key = packet.flow
        state = self._flows.get(key) or FlowState(first_seen=packet.now, last_seen=packet.now)
        decision = self._decide(packet, state)
        self._flows[key] = state.seen(packet)
        self._record(packet, decision)
        return decision

    def _decide(self, packet: Packet, state: FlowState) -> Decision:
        delay = 0.0
        delaying: Decision | None = None
        for slot in self._slots:
            decision = slot.evaluator.decide(packet, state)
            if decision.action is Action.PASS:
                continue
            self._count(decision)
            if decision.action is Action.DELAY:
                delay += decision.delay_s
                delaying = delaying or decision
                continue
            if decision.action is Action.FREEZE and delay > 0.0:
                return replace(decision, delay_s=delay)
            return decision
        if delaying is None:
            return PASS
        return replace(delaying, delay_s=delay)

    def _count(self, decision: Decision) -> None:
        self._log.counters.setdefault(decision.rule, Counter())[decision.action] += 1

    def _record(self, packet: Packet, decision: Decision) -> None:
        log = self._log
        log.evaluated += 1
        if decision.action is Action.PASS:
            log.passed += 1
        elif decision.action is Action.DELAY:
            applied = AppliedDelay(
                packet.now, packet.flow, packet.direction, packet.size, decision.delay_s
            )
            log.delays.append(applied)
        else:
            log.blocking.append(
                DecisionRecord(packet.now, packet.flow, packet.direction, packet.size, decision)
            )

    def forget(self, flow: FlowKey) -> None:
        """The flow is over (UDP mapping expired, TCP connection closed)."""
        self._flows.pop(flow, None)
        for slot in self._slots:
            slot.evaluator.forget(flow)

    def flow_state(self, flow: FlowKey) -> FlowState | None:
        return self._flows.get(flow)

    @property
    def flows(self) -> Mapping[FlowKey, FlowState]:
        return dict(self._flows)

    @property
    def counters(self) -> Mapping[str, Mapping[Action, int]]:
        """Non-pass decisions per rule label, by action (delays included)."""
        return {label: dict(counts) for label, counts in self._log.counters.items()}

    def count(self, label: str, action: Action | None = None) -> int:
        counts = self._log.counters.get(label, Counter())
        return counts[action] if action is not None else sum(counts.values())

    @property
    def evaluated(self) -> int:
        return self._log.evaluated

    @property
    def passed(self) -> int:
        """Packets that left with no delay and no block."""
        return self._log.passed

    @property
    def blocking_records(self) -> tuple[DecisionRecord, ...]:
        """The most recent drop/reset/freeze decisions, oldest first."""
        return tuple(self._log.blocking)

    @property
    def applied_delays(self) -> tuple[AppliedDelay, ...]:
        """The most recent delayed packets and the total delay each was given, oldest first."""
        return tuple(self._log.delays)

    def mechanisms(self) -> Sequence[str]:
        """Blocking mechanisms seen in the recent log, in order of first appearance."""
        seen: dict[str, None] = {}
        for record in self._log.blocking:
            if record.decision.mechanism:
                seen.setdefault(record.decision.mechanism, None)
        return tuple(seen)
