"""The hold phase: after the fast verdict, the winning calls are kept going (docs/hold.md).

The engine, asked for a hold (``EngineOptions.hold``), leaves the calls that worked open
instead of hanging up (``Engine.kept``): the same peer connection, the same 5-tuple and TURN
allocation, media flowing all along, so a middlebox that cuts a flow N seconds or N bytes after
it began sees one continuous call, as it would a real one. Re-establishing calls would start a
new flow and hide exactly those cuts. ``run_hold`` takes the best path per kind (or every path
that worked), keeps sampling it once a second with the quality model's sampler while aioice
sends ICE consent checks and refreshes the TURN allocation and channel bindings, stops when
media is gone for ``give_up_s`` or the time is up, and judges each call with
``callpath.core.call.hold_rules``. Cancelling it (Ctrl-C, Stop) keeps the partial result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

from callpath.core.call.engine import Engine, PathCall, RoundTrips, StatsSampler
from callpath.core.call.hold_rules import (
    FLOW_CUT,
    HoldEvidence,
    HoldRules,
    RelayTimings,
    compare_cuts,
    judge_hold,
)
from callpath.core.call.library_adapter import turn_lifetimes
from callpath.core.model.config import HoldConfig
from callpath.core.model.events import (
    EventSink,
    HoldFinished,
    HoldPathEnded,
    HoldSampleTaken,
    HoldStarted,
)
from callpath.core.model.results import (
    HoldResult,
    HoldTick,
    MediaKind,
    QualitySample,
    RunResult,
)

STATS_TIMEOUT_S = 2.0


def choose_held(
    run: RunResult, kept: set[str], every_path: bool
) -> dict[str, tuple[MediaKind, ...]]:
    """The paths to hold and the kinds each is the best for: the verdict's first path for voice
    and for video (when kept open), else the first path that worked; or every kept path."""
    chosen: dict[str, list[MediaKind]] = {}
    worked = [path.path_id for path in run.paths if path.path_id in kept]
    for kind, ranking in (
        (MediaKind.AUDIO, run.verdict.voice_restored_by),
        (MediaKind.VIDEO, run.verdict.video_restored_by),
    ):
        best = next((path_id for path_id in ranking if path_id in kept), None)
        if best is None and worked:
            best = worked[0]
        if best is not None:
            chosen.setdefault(best, []).append(kind)
    if every_path:
        for path_id in worked:
            chosen.setdefault(path_id, [])
    order = {path_id: index for index, path_id in enumerate(worked)}
    return {
        path_id: tuple(kinds)
        for path_id, kinds in sorted(chosen.items(), key=lambda item: order[item[0]])
    }


async def run_hold(
    engine: Engine, run: RunResult, config: HoldConfig, sink: EventSink
) -> RunResult:
    """Hold the chosen calls (module docstring); returns ``run`` with its ``holds``."""
    chosen = choose_held(run, set(engine.kept), config.every_path)
    calls = {path_id: engine.kept.pop(path_id) for path_id in chosen}
    await engine.release()  # the calls not held
    sink(HoldStarted(tuple(chosen), config.duration_s))
    tasks = [
        asyncio.create_task(_hold(path_id, kinds, calls[path_id], config, sink, engine))
        for path_id, kinds in chosen.items()
    ]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=engine.teardown_s * 3)
    holds = [
        task.result()
        for task in tasks
        if task.done() and not task.cancelled() and task.exception() is None
    ]
    sharper = compare_cuts(holds)
    holds = [
        replace(hold, mechanism=sharper[hold.path_id])
        if hold.path_id in sharper and hold.mechanism == FLOW_CUT
        else hold
        for hold in holds
    ]
    result = replace(run, holds=tuple(holds))
    sink(HoldFinished(result))
    return result


async def _hold(
    path_id: str,
    kinds: tuple[MediaKind, ...],
    call: PathCall,
    config: HoldConfig,
    sink: EventSink,
    engine: Engine,
) -> HoldResult:
    try:
        return await _hold_call(path_id, kinds, call, config, sink)
    finally:
        await asyncio.shield(call.close(engine.teardown_s))


async def _hold_call(
    path_id: str,
    kinds: tuple[MediaKind, ...],
    call: PathCall,
    config: HoldConfig,
    sink: EventSink,
) -> HoldResult:
    assert call.pc is not None
    round_trips = RoundTrips(call.pc, config.rtt_check_interval_s)
    sampler = StatsSampler(call, round_trips)
    with contextlib.suppress(TimeoutError):
        await sampler.prime()
    start = time.monotonic()
    flow_age = start - (call.media_started or start)
    sent, received = sampler.totals()
    start_tick = HoldTick(0.0, sent, received)
    ticks: list[HoldTick] = []
    samples: list[QualitySample] = []
    stopped_by_user = False
    round_trips.start()
    try:
        second = 0
        while second < config.duration_s:
            second += 1
            at = min(float(second), config.duration_s)
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            for sample in await sampler.sample(at):
                samples.append(sample)
                sink(HoldSampleTaken(path_id, sample))
            sent, received = sampler.totals()
            ticks.append(HoldTick(at, sent, received))
            last = max(call.arrivals.last.values(), default=start)
            if time.monotonic() - max(last, start) > config.give_up_s:
                break
            if call.pc.connectionState in ("failed", "closed"):
                break
    except asyncio.CancelledError:
        stopped_by_user = True
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(round_trips.stop()), STATS_TIMEOUT_S)
    ended = time.monotonic() - start
    last_arrival = max(call.arrivals.last.values(), default=None)
    evidence = HoldEvidence(
        path_id=path_id,
        asked_s=config.duration_s,
        flow_age_s=flow_age,
        start=start_tick,
        ticks=ticks,
        last_received_s=None if last_arrival is None else last_arrival - start,
        ended_s=min(ended, config.duration_s),
        stopped_by_user=stopped_by_user,
        relay=_relay_timings(call, start),
    )
    judgement = judge_hold(evidence, HoldRules(stop_min_quiet_s=round(config.stop_gap_s)))
    facts = dict(judgement.evidence)
    if evidence.relay is not None:
        facts["allocation_lifetime_s"] = round(evidence.relay.lifetime_s, 1)
        facts["allocation_refreshes"] = len(evidence.relay.refreshed_at_s)
        facts["allocation_refresh_failures"] = len(evidence.relay.refresh_failed_at_s)
        facts["channel_binds"] = len(evidence.relay.channel_bound_at_s)
    result = HoldResult(
        path_id=path_id,
        held_for=kinds,
        asked_s=config.duration_s,
        achieved_s=judgement.achieved_s,
        ended=judgement.ended,
        ended_at_s=judgement.ended_at_s,
        mechanism=judgement.mechanism,
        flow_age_s=round(flow_age, 1),
        directions=judgement.directions,
        evidence=facts,
        ticks=tuple(ticks),
        samples=tuple(samples),
    )
    sink(HoldPathEnded(result))
    return result


def _relay_timings(call: PathCall, start: float) -> RelayTimings | None:
    for prepared in call.prepared:
        lifetimes = turn_lifetimes(prepared)
        if lifetimes is None or lifetimes.allocated_at is None or not lifetimes.lifetime_s:
            continue
        return RelayTimings(
            allocated_at_s=lifetimes.allocated_at - start,
            lifetime_s=float(lifetimes.lifetime_s),
            refreshed_at_s=tuple(at - start for at in lifetimes.refreshed_at),
            refresh_failed_at_s=tuple(at - start for at in lifetimes.refresh_failed_at),
            channel_bound_at_s=tuple(at - start for at in lifetimes.channel_bound_at),
        )
    return None
