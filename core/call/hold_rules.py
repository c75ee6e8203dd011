"""How a held call ended, from its series and timings: pure logic, no I/O (docs/hold.md).

The same rule as the diagnosis: inconclusive is allowed, wrong is not. A stop is named
``flow_cut`` (media stopped at once, with the flow's age and bytes at that moment: one call
cannot tell a cut after N seconds from a cut after N bytes), ``relay_allocation_expired`` (the
stop came when a TURN allocation that was not refreshed ran out) or left unnamed (a fade);
``compare_cuts`` can tell time from volume when two held calls on different flows were cut.
A fall to a lower steady rate after a good start is ``rate_capped_after_burst``.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from callpath.core.model.results import (
    Direction,
    DirectionEnd,
    HoldEnd,
    HoldResult,
    HoldTick,
)

FLOW_CUT = "flow_cut"
CUT_AFTER_TIME = "cut_after_time"
CUT_AFTER_VOLUME = "cut_after_volume"
RELAY_ALLOCATION_EXPIRED = "relay_allocation_expired"
RELAY_PERMISSION_EXPIRED = "relay_permission_expired"
RATE_CAPPED_AFTER_BURST = "rate_capped_after_burst"
MECHANISMS = (
    FLOW_CUT,
    CUT_AFTER_TIME,
    CUT_AFTER_VOLUME,
    RELAY_ALLOCATION_EXPIRED,
    RELAY_PERMISSION_EXPIRED,
    RATE_CAPPED_AFTER_BURST,
)
PERMISSION_LIFETIME_S = 300.0  # fixed by RFC 8656 §9


@dataclass(frozen=True)
class HoldRules:
    quiet_bytes_per_s: int = 300  # less than this received in a second counts as nothing
    stop_min_quiet_s: int = 2  # a stop is at least this many quiet seconds (else a hiccup)
    abrupt_ratio: float = 0.5  # the last second before a cut still carried this share
    cap_ratio: float = 0.6  # a steady rate below this share of the start's is a cap
    cap_min_s: int = 4  # ... for at least this long
    before_min_s: int = 2  # the good start lasted at least this long
    expiry_tolerance_s: float = 3.0  # a stop this close to an unrefreshed expiry is one


@dataclass(frozen=True)
class RelayTimings:
    """A TURN allocation's timings, in seconds into the hold (negative: before it)."""

    allocated_at_s: float
    lifetime_s: float  # as granted by the server
    refreshed_at_s: tuple[float, ...] = ()  # successful refreshes
    refresh_failed_at_s: tuple[float, ...] = ()
    channel_bound_at_s: tuple[float, ...] = ()  # each refreshes the peer's permission
    permission_lifetime_s: float = PERMISSION_LIFETIME_S


@dataclass(frozen=True)
class HoldEvidence:
    path_id: str
    asked_s: float
    flow_age_s: float  # seconds the call's media had run when the hold began
    start: HoldTick  # the byte counters when the hold began (t = 0)
    ticks: Sequence[HoldTick]  # one a second during the hold
    last_received_s: float | None  # when media last arrived, seconds into the hold
    ended_s: float  # when the hold ended, seconds into it
    stopped_by_user: bool = False
    relay: RelayTimings | None = None


@dataclass(frozen=True)
class HoldJudgement:
    ended: HoldEnd
    ended_at_s: float | None
    achieved_s: float
    mechanism: str | None
    directions: tuple[DirectionEnd, ...]
    evidence: dict[str, float | int | str]


def judge_hold(evidence: HoldEvidence, rules: HoldRules | None = None) -> HoldJudgement:
    """How the held call in ``evidence`` ended (module docstring)."""
    rules = rules or HoldRules()
    ticks = [evidence.start, *evidence.ticks]
    rates = [
        (b.t, max(0, b.received_bytes - a.received_bytes) / max(1e-3, b.t - a.t))
        for a, b in itertools.pairwise(ticks)
    ]
    stop_index = _stop_index(rates, rules)
    if stop_index is not None and len(rates) - stop_index < rules.stop_min_quiet_s:
        stop_index = None
    if stop_index is not None:
        return _stopped(evidence, ticks, rates, stop_index, rules)
    cap = _cap(evidence, ticks, rates, rules)
    if cap is not None:
        return cap
    ended = HoldEnd.STOPPED_BY_USER if evidence.stopped_by_user else HoldEnd.HELD
    last = ticks[-1]
    return HoldJudgement(
        ended=ended,
        ended_at_s=evidence.ended_s if evidence.stopped_by_user else None,
        achieved_s=round(evidence.ended_s, 1),
        mechanism=None,
        directions=(
            DirectionEnd(Direction.SENT, None, last.sent_bytes),
            DirectionEnd(Direction.RECEIVED, None, last.received_bytes),
        ),
        evidence={},
    )


def _stop_index(rates: list[tuple[float, float]], rules: HoldRules) -> int | None:
    """The index of the first quiet second of a silence that lasts to the end, if any."""
    index = None
    for i in range(len(rates) - 1, -1, -1):
        if rates[i][1] < rules.quiet_bytes_per_s:
            index = i
        else:
            break
    return index


def _stopped(
    evidence: HoldEvidence,
    ticks: list[HoldTick],
    rates: list[tuple[float, float]],
    stop_index: int,
    rules: HoldRules,
) -> HoldJudgement:
    before = [rate for _, rate in rates[:stop_index]]
    last_t = ticks[stop_index].t  # the tick before the first quiet second
    at = evidence.last_received_s if evidence.last_received_s is not None else last_t
    at = max(0.0, min(at, rates[stop_index][0]))
    received = ticks[stop_index].received_bytes
    sent = _sent_at(ticks, at)
    flow_age = evidence.flow_age_s + at
    facts: dict[str, float | int | str] = {
        "flow_age_s": round(flow_age, 1),
        "sent_bytes": sent,
        "received_bytes": received,
    }
    mechanism = None
    expiry = _unrefreshed_expiry(evidence.relay, at, rules)
    permission = _unrefreshed_permission(evidence.relay, at, rules)
    if expiry is not None:
        mechanism = RELAY_ALLOCATION_EXPIRED
        facts["allocation_expired_s"] = round(expiry, 1)
    elif permission is not None:
        mechanism = RELAY_PERMISSION_EXPIRED
        facts["permission_expired_s"] = round(permission, 1)
    elif before:
        baseline = statistics.median(before)
        facts["rate_before_kbps"] = round(baseline * 8 / 1000, 1)
        # The second the cut fell in carries only part of it: look at the last two.
        if baseline > 0 and max(before[-2:]) >= rules.abrupt_ratio * baseline:
            mechanism = FLOW_CUT
    elif evidence.flow_age_s > 0:
        mechanism = FLOW_CUT  # it stopped at once, at the hold's very start
    return HoldJudgement(
        ended=HoldEnd.MEDIA_STOPPED,
        ended_at_s=round(at, 1),
        achieved_s=round(at, 1),
        mechanism=mechanism,
        directions=(
            # Far-end reports cannot say which way a cut went; what we sent up to the stop is
            # known, and the echo's return stopped at ``at``.
            DirectionEnd(Direction.SENT, None, sent),
            DirectionEnd(Direction.RECEIVED, round(at, 1), received, round(flow_age, 1)),
        ),
        evidence=facts,
    )


def _sent_at(ticks: list[HoldTick], at: float) -> int:
    sent = ticks[0].sent_bytes
    for tick in ticks:
        if tick.t <= at + 0.5:
            sent = tick.sent_bytes
    return sent


def _unrefreshed_expiry(relay: RelayTimings | None, at: float, rules: HoldRules) -> float | None:
    """When the allocation ran out unrefreshed, if the stop at ``at`` matches it."""
    if relay is None:
        return None
    expires = relay.allocated_at_s + relay.lifetime_s
    for refreshed in sorted(relay.refreshed_at_s):
        if refreshed <= expires:
            expires = refreshed + relay.lifetime_s
    if abs(at - expires) <= rules.expiry_tolerance_s:
        return expires
    return None


def _unrefreshed_permission(
    relay: RelayTimings | None, at: float, rules: HoldRules
) -> float | None:
    """When the peer's permission ran out unrefreshed, if the stop at ``at`` matches it."""
    if relay is None or not relay.channel_bound_at_s:
        return None
    bound = [t for t in relay.channel_bound_at_s if t <= at + rules.expiry_tolerance_s]
    if not bound:
        return None
    expires = max(bound) + relay.permission_lifetime_s
    if abs(at - expires) <= rules.expiry_tolerance_s:
        return expires
    return None


def _cap(
    evidence: HoldEvidence,
    ticks: list[HoldTick],
    rates: list[tuple[float, float]],
    rules: HoldRules,
) -> HoldJudgement | None:
    """A fall to a lower steady rate that lasts to the end, after a good start."""
    values = [rate for _, rate in rates]
    for split in range(rules.before_min_s, len(values) - rules.cap_min_s + 1):
        before, after = values[:split], values[split:]
        baseline = statistics.median(before)
        if baseline <= 0 or max(after) >= rules.cap_ratio * baseline:
            continue
        if min(after) < rules.quiet_bytes_per_s:
            continue  # not steady: a stop or stutter, not a cap
        at = rates[split - 1][0]
        tick = ticks[split]
        cap_kbps = statistics.median(after) * 8 / 1000
        return HoldJudgement(
            ended=HoldEnd.DEGRADED,
            ended_at_s=round(at, 1),
            achieved_s=round(evidence.ended_s, 1),
            mechanism=RATE_CAPPED_AFTER_BURST,
            directions=(
                DirectionEnd(Direction.SENT, None, tick.sent_bytes),
                DirectionEnd(
                    Direction.RECEIVED,
                    round(at, 1),
                    tick.received_bytes,
                    round(evidence.flow_age_s + at, 1),
                ),
            ),
            evidence={
                "rate_before_kbps": round(baseline * 8 / 1000, 1),
                "cap_kbps": round(cap_kbps, 1),
                "burst_bytes": tick.received_bytes,
                "flow_age_s": round(evidence.flow_age_s + at, 1),
            },
        )
    return None


def compare_cuts(holds: Sequence[HoldResult]) -> dict[str, str]:
    """Time or volume, when at least two held calls on different flows were cut: the same age
    with different volumes is a cut after a time, the same volume at different ages one after
    a volume. Returns the sharper mechanism per path id (empty: no better answer)."""
    cuts = [h for h in holds if h.mechanism == FLOW_CUT and _cut_point(h) is not None]
    if len(cuts) < 2:
        return {}
    points = [_cut_point(h) for h in cuts]
    ages = [p[0] for p in points if p is not None]
    volumes = [p[1] for p in points if p is not None]
    same_age = max(ages) - min(ages) <= 2.0
    same_volume = min(volumes) > 0 and max(volumes) / min(volumes) <= 1.15
    if same_age and not same_volume and max(volumes) / max(1, min(volumes)) >= 1.5:
        return {h.path_id: CUT_AFTER_TIME for h in cuts}
    if same_volume and not same_age and max(ages) / max(1e-3, min(ages)) >= 1.5:
        return {h.path_id: CUT_AFTER_VOLUME for h in cuts}
    return {}


def _cut_point(hold: HoldResult) -> tuple[float, int] | None:
    age = hold.evidence.get("flow_age_s")
    sent = hold.evidence.get("sent_bytes")
    if not isinstance(age, int | float) or not isinstance(sent, int):
        return None
    return float(age), sent
