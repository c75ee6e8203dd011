"""The hold's judgement (pure logic): how a held call ended, from its byte series and timings.

Series are built second by second at a given received rate (bytes/s); the sent side runs a
little ahead, as an echo's does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from callpath.core.call.hold_rules import (
    CUT_AFTER_TIME,
    CUT_AFTER_VOLUME,
    FLOW_CUT,
    RATE_CAPPED_AFTER_BURST,
    RELAY_ALLOCATION_EXPIRED,
    RELAY_PERMISSION_EXPIRED,
    HoldEvidence,
    RelayTimings,
    compare_cuts,
    judge_hold,
)
from callpath.core.model.results import Direction, HoldEnd, HoldResult, HoldTick

START = HoldTick(0.0, 200_000, 190_000)


def series(rates: Sequence[float], start: HoldTick = START) -> list[HoldTick]:
    ticks, sent, received = [], start.sent_bytes, start.received_bytes
    for second, rate in enumerate(rates, start=1):
        sent += 60_000  # the caller keeps sending whatever comes back
        received += int(rate)
        ticks.append(HoldTick(float(second), sent, received))
    return ticks


def evidence(rates: Sequence[float], **changes: object) -> HoldEvidence:
    ticks = series(rates)
    base = HoldEvidence(
        path_id="turn-udp",
        asked_s=float(len(rates)),
        flow_age_s=5.0,
        start=START,
        ticks=ticks,
        last_received_s=None,
        ended_s=float(len(rates)),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_call_that_kept_its_rate_held() -> None:
    judgement = judge_hold(evidence([60_000] * 30))
    assert judgement.ended == HoldEnd.HELD
    assert judgement.mechanism is None
    assert judgement.achieved_s == 30
    assert judgement.ended_at_s is None


def test_one_quiet_second_is_a_hiccup_not_a_stop() -> None:
    judgement = judge_hold(evidence([60_000] * 29 + [0]))
    assert judgement.ended == HoldEnd.HELD


def test_an_abrupt_stop_is_a_flow_cut_with_its_age_and_volume() -> None:
    rates = [60_000] * 15 + [0] * 8
    judgement = judge_hold(evidence(rates, last_received_s=14.8, ended_s=23.0, asked_s=45.0))
    assert judgement.ended == HoldEnd.MEDIA_STOPPED
    assert judgement.mechanism == FLOW_CUT
    assert judgement.ended_at_s == 14.8
    assert judgement.achieved_s == 14.8
    assert judgement.evidence["flow_age_s"] == 19.8  # 5 s before the hold + 14.8 s into it
    received = next(d for d in judgement.directions if d.direction == Direction.RECEIVED)
    assert received.at_s == 14.8
    assert received.bytes == 190_000 + 15 * 60_000
    sent = next(d for d in judgement.directions if d.direction == Direction.SENT)
    assert sent.at_s is None  # an echo cannot tell which way the cut went
    assert sent.bytes == 200_000 + 15 * 60_000


def test_a_cut_inside_a_second_is_still_abrupt() -> None:
    rates = [60_000] * 15 + [18_000] + [0] * 6
    judgement = judge_hold(evidence(rates, last_received_s=15.3))
    assert judgement.mechanism == FLOW_CUT
    assert judgement.ended_at_s == 15.3


def test_a_fade_to_nothing_names_no_mechanism() -> None:
    rates = [60_000] * 10 + [30_000, 15_000, 5_000, 1_000] + [0] * 6
    judgement = judge_hold(evidence(rates))
    assert judgement.ended == HoldEnd.MEDIA_STOPPED
    assert judgement.mechanism is None


def test_a_stop_when_an_unrefreshed_allocation_ran_out_is_its_expiry() -> None:
    relay = RelayTimings(allocated_at_s=-5.0, lifetime_s=20.0, refresh_failed_at_s=(12.0,))
    rates = [60_000] * 15 + [0] * 8
    judgement = judge_hold(evidence(rates, last_received_s=14.9, relay=relay))
    assert judgement.mechanism == RELAY_ALLOCATION_EXPIRED
    assert judgement.evidence["allocation_expired_s"] == 15.0


def test_a_refreshed_allocation_is_not_blamed_for_a_stop() -> None:
    relay = RelayTimings(allocated_at_s=-5.0, lifetime_s=20.0, refreshed_at_s=(11.7,))
    rates = [60_000] * 15 + [0] * 8
    judgement = judge_hold(evidence(rates, last_received_s=14.9, relay=relay))
    assert judgement.mechanism == FLOW_CUT


def test_a_stop_300_s_after_the_last_channel_binding_is_the_permission_expiring() -> None:
    # A 6-minute hold: the channel was bound 290 s before the hold and never again, while
    # the allocation itself was refreshed; media stopped 10 s in, as the permission ran out.
    relay = RelayTimings(
        allocated_at_s=-291.0,
        lifetime_s=600.0,
        refreshed_at_s=(),
        channel_bound_at_s=(-290.0,),
    )
    rates = [60_000] * 10 + [0] * 8
    judgement = judge_hold(evidence(rates, last_received_s=9.8, relay=relay))
    assert judgement.mechanism == RELAY_PERMISSION_EXPIRED
    assert judgement.evidence["permission_expired_s"] == 10.0
    rebound = replace(relay, channel_bound_at_s=(-290.0, -50.0))
    assert judge_hold(evidence(rates, last_received_s=9.8, relay=rebound)).mechanism == FLOW_CUT


def test_a_fall_to_a_steady_lower_rate_is_a_cap_after_a_burst() -> None:
    rates = [60_000] * 8 + [12_000] * 10
    judgement = judge_hold(evidence(rates))
    assert judgement.ended == HoldEnd.DEGRADED
    assert judgement.mechanism == RATE_CAPPED_AFTER_BURST
    assert judgement.ended_at_s == 8.0
    assert judgement.evidence["cap_kbps"] == 96.0
    assert judgement.evidence["burst_bytes"] == 190_000 + 8 * 60_000
    assert judgement.achieved_s == 18.0


def test_a_short_dip_is_not_a_cap() -> None:
    rates = [60_000] * 8 + [12_000] * 3 + [60_000] * 8
    assert judge_hold(evidence(rates)).ended == HoldEnd.HELD


def test_stopped_by_the_user_keeps_what_was_measured() -> None:
    judgement = judge_hold(evidence([60_000] * 7, stopped_by_user=True, ended_s=7.4))
    assert judgement.ended == HoldEnd.STOPPED_BY_USER
    assert judgement.achieved_s == 7.4


def _cut(path_id: str, age: float, sent: int) -> HoldResult:
    return HoldResult(
        path_id=path_id,
        held_for=(),
        asked_s=45.0,
        achieved_s=age - 5,
        ended=HoldEnd.MEDIA_STOPPED,
        ended_at_s=age - 5,
        mechanism=FLOW_CUT,
        flow_age_s=5.0,
        evidence={"flow_age_s": age, "sent_bytes": sent},
    )


def test_two_flows_cut_at_the_same_age_with_different_volumes_were_cut_on_time() -> None:
    found = compare_cuts([_cut("direct", 20.1, 900_000), _cut("turn-udp", 20.6, 300_000)])
    assert found == {"direct": CUT_AFTER_TIME, "turn-udp": CUT_AFTER_TIME}


def test_two_flows_cut_at_the_same_volume_at_different_ages_were_cut_on_volume() -> None:
    found = compare_cuts([_cut("direct", 10.0, 500_000), _cut("turn-udp", 30.0, 520_000)])
    assert found == {"direct": CUT_AFTER_VOLUME, "turn-udp": CUT_AFTER_VOLUME}


def test_one_cut_or_mixed_cuts_stay_undecided() -> None:
    assert compare_cuts([_cut("direct", 20.0, 500_000)]) == {}
    assert compare_cuts([_cut("direct", 20.0, 500_000), _cut("turn-udp", 20.5, 510_000)]) == {}
