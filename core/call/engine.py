"""The diagnosis engine: one real test call per path, stage by stage.

Connectivity (resolve → connect → turn_allocate → ice → dtls) runs for all paths at once; the
media phase (media_up → quality) too, up to ``QualityConfig.concurrency`` paths at a time. Voice
and video are encoded once per run and the same frames are sent on every path
(``callpath.core.call.media.SharedMedia``): what costs per path is packetising, SRTP and the
network, so measuring every path at once no longer multiplies the encoders' CPU. Media only
starts flowing once a path holds a quality slot (the tracks are gated).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callpath.core.call import quality as quality_rules
from callpath.core.call.library_adapter import (
    PreparedRelay,
    ReceivedBytes,
    ReceiverReports,
    ReportCounters,
    count_received_bytes,
    host_addresses,
    ice_round_trip,
    on_keyframe_request,
    selected_pair,
    skip_decoding,
    use_prepared_turn,
    watch_receiver_reports,
)
from callpath.core.call.media import EncodedTrack, SharedMedia
from callpath.core.call.resolver import Resolver, SystemResolver, is_address
from callpath.core.call.stages import StageFailure, StageRecorder
from callpath.core.call.targets import (
    EchoSession,
    EchoTarget,
)
from callpath.core.call.verdict import decide
from callpath.core.model.config import HoldConfig, QualityConfig, Timeouts
from callpath.core.model.events import EventSink, PathFinished, RunStarted, SampleTaken
from callpath.core.model.results import (
    Direction,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    RunResult,
    SelectedPair,
    Stage,
    StageResult,
)
from callpath.core.paths.base import PairProof, PathContext, PathPlan
from callpath.core.paths.registry import path_kind
from callpath.core.paths.relay import (
    StreamCounters,
    StreamOpener,
    open_tcp,
    tls_server_names,
    try_server_names,
)

CLOCK_RATE = {MediaKind.AUDIO: 48000, MediaKind.VIDEO: 90000}
MAX_PLAUSIBLE_RTT_S = 10.0


@dataclass(frozen=True)
class EngineOptions:
    timeouts: Timeouts = field(default_factory=Timeouts)
    quality: QualityConfig = field(default_factory=QualityConfig)
    thresholds: quality_rules.Thresholds = field(default_factory=quality_rules.Thresholds)
    # Addresses ICE gathers host candidates on; None lets aioice use every interface.
    host_addresses: tuple[str, ...] | None = None
    resolver: Resolver = field(default_factory=SystemResolver)
    ssl_context: ssl.SSLContext | None = None  # for TURN over TLS (private CA bundles)
    stream_opener: StreamOpener = open_tcp
    profile_name: str = ""
    scenario: str | None = None
    # Keep the calls that worked open for the hold phase (callpath.core.call.hold).
    hold: HoldConfig | None = None


class _Arrivals:
    """When frames of each kind arrive from the echo peer."""

    def __init__(self) -> None:
        self.first: dict[MediaKind, float] = {}
        self.last: dict[MediaKind, float] = {}
        self.longest_gap: dict[MediaKind, float] = {}
        self.gap_started: dict[MediaKind, float] = {}  # when the longest gap began
        self.changed = asyncio.Event()

    def note(self, kind: MediaKind) -> None:
        now = time.monotonic()
        self.first.setdefault(kind, now)
        previous = self.last.get(kind)
        if previous is not None and now - previous > self.longest_gap.get(kind, 0.0):
            self.longest_gap[kind] = now - previous
            self.gap_started[kind] = previous
        self.last[kind] = now
        self.changed.set()


class _PathCall:
    """Everything one path's call owns, so teardown can release all of it."""

    def __init__(self) -> None:
        self.pc: RTCPeerConnection | None = None
        self.session: EchoSession | None = None
        self.prepared: list[PreparedRelay] = []
        self.consumers: list[asyncio.Task[None]] = []
        self.gate = asyncio.Event()
        self.tracks: list[EncodedTrack] = []
        self.arrivals = _Arrivals()
        self.received: dict[MediaKind, ReceivedBytes] = {}
        self.media_started: float | None = None  # time.monotonic() when media began to flow
        self.reports: dict[MediaKind, ReceiverReports] = {}
        self.relay_counters: StreamCounters | None = None  # the TCP/TLS relay connection's
        self.relay_port = 0

    def watch_relay(self, counters: StreamCounters, port: int) -> None:
        """The path's TCP/TLS relay connection counts its bytes in ``counters``."""
        self.relay_counters = counters
        self.relay_port = port

    def relay_evidence(self) -> dict[str, Any]:
        """The relay connection's byte counters (``relay_*``), before teardown closes it."""
        if self.relay_counters is None or self.relay_counters.opened_at is None:
            return {}
        return self.relay_counters.evidence(self.relay_port)

    async def close(self, timeout: float) -> None:
        for track in self.tracks:
            track.stop()
        for task in self.consumers:
            task.cancel()
        for task in self.consumers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.session.close(), timeout=timeout)
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), timeout=timeout)
        for prepared in self.prepared:
            prepared.close()


class Engine:
    """Runs the planned paths against an echo target and reports events and a RunResult."""

    def __init__(
        self,
        plans: Sequence[PathPlan],
        target: EchoTarget,
        sink: EventSink,
        options: EngineOptions | None = None,
    ) -> None:
        self._plans = list(plans)
        self._target = target
        self._sink = sink
        self._options = options or EngineOptions()
        self._quality_slots = asyncio.Semaphore(max(1, self._options.quality.concurrency))
        # Calls that worked, left open for the hold phase when one is asked for.
        self.kept: dict[str, PathCall] = {}
        self._media: SharedMedia | None = None

    @property
    def teardown_s(self) -> float:
        return self._options.timeouts.teardown

    async def release(self) -> None:
        """Close the calls kept for the hold phase (those it did not take already)."""
        kept, self.kept = list(self.kept.values()), {}
        await asyncio.gather(
            *(call.close(self._options.timeouts.teardown) for call in kept),
            return_exceptions=True,
        )
        # The kept calls sent the run's shared media until now.
        if kept and self._media is not None:
            self._media.close()

    async def run(self) -> RunResult:
        """Run every path; if cancelled, stop them cleanly and return what was measured."""
        started_at = datetime.now(UTC)
        run_started = time.monotonic()
        self._sink(
            RunStarted(tuple(plan.path_id for plan in self._plans), self._options.quality.window_s)
        )
        config = self._options.quality
        self._media = SharedMedia(config.video_width, config.video_height, config.video_fps)
        tasks = [
            asyncio.create_task(self._run_path(plan, run_started), name=f"path {plan.path_id}")
            for plan in self._plans
        ]
        cancelled = False
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            cancelled = True
            for task in tasks:
                task.cancel()
            # Each path tears itself down when cancelled; give them a bounded time to do it.
            await asyncio.wait(tasks, timeout=self._options.timeouts.teardown * 3)
        finally:
            if not self.kept:  # calls kept for the hold phase still send it (see ``release``)
                self._media.close()
        results = []
        for plan, task in zip(self._plans, tasks, strict=True):
            if task.done() and not task.cancelled() and task.exception() is None:
                results.append(task.result())
            else:
                results.append(
                    PathResult(
                        path_id=plan.path_id,
                        exercised=False,
                        failure="interrupted" if cancelled else "unknown_failure: path crashed",
                        stages=(),
                        server=plan.server_uri,
                    )
                )
        run = RunResult(
            started_at=started_at,
            finished_at=datetime.now(UTC),
            profile_name=self._options.profile_name,
            target=self._target.kind,
            paths=tuple(results),
            verdict=decide(results),
            cancelled=cancelled,
            scenario=self._options.scenario,
        )
        return run  # RunFinished comes from the investigation, after the diagnosis

    # --- one path ---------------------------------------------------------------------------

    async def _run_path(self, plan: PathPlan, run_started: float) -> PathResult:
        relay_transport = path_kind(plan.path_id).proof(plan).relay_transport
        names = tls_server_names(plan.host, plan.sni_alternatives, relay_transport)
        if not names:
            result = await self._run_path_once(plan, run_started)
        else:
            result = await try_server_names(
                names, lambda name: self._run_path_once(replace(plan, sni=name), run_started)
            )
        self._sink(PathFinished(result))
        return result

    async def _run_path_once(self, plan: PathPlan, run_started: float) -> PathResult:
        recorder = StageRecorder(plan.path_id, self._sink, run_started)
        call = _PathCall()
        pair: SelectedPair | None = None
        voice = MediaQuality.not_tested(MediaKind.AUDIO)
        video = MediaQuality.not_tested(MediaKind.VIDEO)
        failure: str | None = None
        start = recorder.now()
        try:
            with host_addresses(self._options.host_addresses):
                pair, voice, video = await self._call(plan, recorder, call)
        except StageFailure as error:
            failure = error.failure
        except asyncio.CancelledError:
            failure = "interrupted"
        finally:
            relay_evidence = call.relay_evidence()
            keep = self._options.hold is not None and failure is None and pair is not None
            keep = keep and recorder.failure is None
            if keep:
                self.kept[plan.path_id] = call
            else:
                await asyncio.shield(call.close(self._options.timeouts.teardown))
        if relay_evidence:
            recorder.results = _with_connect_evidence(recorder.results, relay_evidence)
        # A proven route that later stalls keeps its pair (it was exercised) and still fails.
        failure = failure or recorder.failure
        exercised = pair is not None
        result = PathResult(
            path_id=plan.path_id,
            exercised=exercised,
            failure=failure,
            stages=tuple(recorder.results),
            server=plan.server_uri,
            selected_pair=pair,
            voice=voice,
            video=video,
            duration=recorder.now() - start,
        )
        return result

    async def _call(
        self, plan: PathPlan, recorder: StageRecorder, call: _PathCall
    ) -> tuple[SelectedPair, MediaQuality, MediaQuality]:
        timeouts = self._options.timeouts
        address = None
        if plan.host is not None:
            if plan.proxy is not None and plan.proxy.url.remote_dns:
                address = plan.host  # the proxy resolves the name, as the user's apps would
            else:
                address = await self._resolve(plan, recorder)
        kind = path_kind(plan.path_id)
        proof = kind.proof(plan)
        context = PathContext(
            recorder=recorder,
            timeouts=timeouts,
            ssl_context=self._options.ssl_context,
            stream_opener=self._options.stream_opener,
            keep=call.prepared.append,
            watch_relay=call.watch_relay,
            relay_loopback=self._target.kind == "relay-loopback",
        )
        ready = await kind.prepare(plan, address, context)
        prepared = ready.relay
        call.session = ready.session

        if call.session is None:
            call.session = self._target.open_session(plan.path_id)
        relayed = proof.relay_transport is not None
        policy = RTCIceTransportPolicy.RELAY if relayed else RTCIceTransportPolicy.ALL
        with use_prepared_turn(prepared):
            pc = RTCPeerConnection(
                RTCConfiguration(
                    iceServers=list(ready.ice_servers),
                    iceTransportPolicy=policy,
                    bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                )
            )
        call.pc = pc
        self._add_media(pc, call)

        async def negotiate_and_connect(evidence: dict[str, Any]) -> None:
            with use_prepared_turn(prepared):
                await pc.setLocalDescription(await pc.createOffer())
            evidence["local_candidates"] = pc.localDescription.sdp.count("a=candidate:")
            assert call.session is not None
            answer = await call.session.exchange(pc.localDescription.sdp)
            evidence["remote_candidates"] = answer.count("a=candidate:")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await _wait_for_state(pc, "iceConnectionState", {"completed"}, {"failed", "closed"})

        await recorder.run(
            Stage.ICE, negotiate_and_connect, timeouts.ice, timeout_failure="ice_failed"
        )

        async def dtls(evidence: dict[str, Any]) -> None:
            await _wait_for_state(pc, "connectionState", {"connected"}, {"failed", "closed"})

        await recorder.run(
            Stage.DTLS, dtls, timeouts.dtls, timeout_failure="dtls_handshake_timeout"
        )
        pair = selected_pair(pc)
        self._verify_pair(pair, proof, recorder)
        assert pair is not None

        async with self._quality_slots:
            call.gate.set()
            call.media_started = time.monotonic()
            await recorder.run(
                Stage.MEDIA_UP, lambda ev: self._media_up(call, ev), timeouts.media_up
            )
            voice, video = await self._measure(plan, recorder, call)
        return pair, voice, video

    async def _resolve(self, plan: PathPlan, recorder: StageRecorder) -> str:
        assert plan.host is not None
        host = plan.host

        async def resolve(evidence: dict[str, Any]) -> str:
            evidence["name"] = host
            if is_address(host):
                return host
            addresses = await self._options.resolver.resolve(host)
            evidence["addresses"] = addresses
            return addresses[0]

        return await recorder.run(Stage.RESOLVE, resolve, self._options.timeouts.resolve)

    def _verify_pair(
        self, pair: SelectedPair | None, proof: PairProof, recorder: StageRecorder
    ) -> None:
        """A path counts only if the selected pair proves it went the way under test."""
        at = recorder.now()
        problem = proof.problem(pair)
        if problem is not None:
            evidence = {"reason": problem}
            recorder.record(Stage.DTLS, at, "path_not_exercised", evidence)
            raise StageFailure("path_not_exercised", evidence)

    def _add_media(self, pc: RTCPeerConnection, call: _PathCall) -> None:
        assert self._media is not None
        for kind in MediaKind:
            track = self._media.track(kind.value, call.gate)
            call.tracks.append(track)
            sender = pc.addTrack(track)
            on_keyframe_request(sender, track.request_keyframe)
            call.reports[kind] = watch_receiver_reports(sender)
        for transceiver in pc.getTransceivers():
            kind = MediaKind(transceiver.kind)
            call.received[kind] = count_received_bytes(transceiver.receiver)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            skip_decoding(track)
            call.consumers.append(asyncio.create_task(_consume(track, call.arrivals)))

    async def _media_up(self, call: _PathCall, evidence: dict[str, Any]) -> None:
        started = time.monotonic()
        arrivals = call.arrivals
        while len(arrivals.first) < len(MediaKind):
            arrivals.changed.clear()
            await arrivals.changed.wait()
        for kind, first in arrivals.first.items():
            evidence[f"{kind.value}_first_ms"] = round((first - started) * 1000, 1)

    async def _measure(
        self, plan: PathPlan, recorder: StageRecorder, call: _PathCall
    ) -> tuple[MediaQuality, MediaQuality]:
        config = self._options.quality
        assert call.pc is not None
        round_trips = _RoundTrips(call.pc, config.rtt_check_interval_s)
        sampler = _StatsSampler(call, round_trips)
        samples: list[QualitySample] = []
        stage_start = recorder.started(Stage.QUALITY)
        media_start = time.monotonic()
        stalled: set[MediaKind] = set()
        stall_onsets: list[float] = []
        await sampler.prime()
        round_trips.start()
        seconds = max(1, round(config.window_s))
        try:
            for second in range(1, seconds + 1):
                await asyncio.sleep(media_start + second - time.monotonic())
                for sample in await sampler.sample(float(second)):
                    samples.append(sample)
                    self._sink(SampleTaken(plan.path_id, sample))
                now = time.monotonic()
                for kind in MediaKind:
                    last = call.arrivals.last.get(kind, media_start)
                    if now - last > config.stall_s:
                        stalled.add(kind)
                        stall_onsets.append(last)
        finally:
            await round_trips.stop()
        for kind, gap in call.arrivals.longest_gap.items():
            if gap > config.stall_s:
                stalled.add(kind)
                stall_onsets.append(call.arrivals.gap_started[kind])
        pixels = config.video_width * config.video_height
        counted = {kind: sampler.window_upstream_loss_pct(kind) for kind in MediaKind}
        voice = quality_rules.summarize(
            MediaKind.AUDIO,
            [s for s in samples if s.kind == MediaKind.AUDIO],
            self._options.thresholds,
            stalled=MediaKind.AUDIO in stalled,
            sent_loss_pct=counted[MediaKind.AUDIO],
        )
        video = quality_rules.summarize(
            MediaKind.VIDEO,
            [s for s in samples if s.kind == MediaKind.VIDEO],
            self._options.thresholds,
            video_pixels=pixels,
            stalled=MediaKind.VIDEO in stalled,
            sent_loss_pct=counted[MediaKind.VIDEO],
        )
        failure = "media_stalled" if stalled else None
        evidence: dict[str, Any] = {
            "window_s": seconds,
            "stalled": sorted(kind.value for kind in stalled),
            # Counted between the window's first and last receiver reports.
            "upstream_loss_pct": {
                kind.value: value for kind, value in counted.items() if value is not None
            },
        }
        if stall_onsets:
            # Seconds of media before the first stall: "stalled after N s".
            first = min(call.arrivals.first.values(), default=media_start)
            evidence["stalled_after_s"] = round(max(0.0, min(stall_onsets) - first), 1)
        recorder.record(Stage.QUALITY, stage_start, failure, evidence)
        return voice, video


class _RoundTrips:
    """STUN checks on the nominated pair through the quality window, ``interval`` apart.

    Each is answered by the far ICE agent at once and crosses the network on the media's own
    5-tuple (relays and tunnels included), so it is a round trip of the call's path. RTCP gives
    one round trip a second per stream, whose median over a short window is at the mercy of
    jitter; tens of checks a second average it out. Checks go out on schedule without waiting
    for earlier answers (a long round trip must not thin the samples); a check that gets no
    answer within aioice's half second counts for nothing."""

    MAX_OUTSTANDING = 64

    def __init__(self, pc: RTCPeerConnection, interval: float) -> None:
        self._pc = pc
        self._interval = interval
        self._values: list[float] = []
        self._outstanding: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if len(self._outstanding) < self.MAX_OUTSTANDING:
                check = asyncio.create_task(self._check())
                self._outstanding.add(check)
                check.add_done_callback(self._outstanding.discard)
            next_at += self._interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _check(self) -> None:
        rtt = await ice_round_trip(self._pc)
        if rtt is not None and 0 < rtt < MAX_PLAUSIBLE_RTT_S:
            self._values.append(rtt * 1000)

    def take(self) -> list[float]:
        """The round trips (ms) answered since the last call."""
        values, self._values = self._values, []
        return values

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._outstanding) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _StatsSampler:
    """Turns aiortc's cumulative stats into per-second samples per kind and direction."""

    def __init__(self, call: _PathCall, round_trips: _RoundTrips) -> None:
        self._call = call
        self._round_trips = round_trips
        self._previous: dict[str, Any] = {}
        self._at = time.monotonic()
        # Per kind: the first receiver report of the window, and the upstream loss counted from
        # it to the latest (the downstream share is taken against this running figure: one
        # report interval's would differ from the second's loop loss by chance, and clipping
        # the difference at zero would bias the downstream loss upwards).
        self._first_report: dict[MediaKind, ReportCounters] = {}
        self._upstream_loss: dict[MediaKind, float] = {}

    async def _snapshot(self) -> dict[str, Any]:
        assert self._call.pc is not None
        report = await asyncio.wait_for(self._call.pc.getStats(), timeout=2.0)
        snapshot: dict[str, Any] = {}
        for stat in report.values():
            kind = getattr(stat, "kind", None)
            if kind in ("audio", "video"):
                snapshot[f"{stat.type}:{kind}"] = stat
        for kind, counter in self._call.received.items():
            snapshot[f"received-bytes:{kind.value}"] = counter.total
        for kind, reports in self._call.reports.items():
            snapshot[f"report:{kind.value}"] = reports.latest
        return snapshot

    def totals(self) -> tuple[int, int]:
        """RTP bytes sent and received (all kinds) up to the last sample."""
        sent = sum(
            int(stat.bytesSent)
            for key, stat in self._previous.items()
            if key.startswith("outbound-rtp:")
        )
        received = sum(
            int(value) for key, value in self._previous.items() if key.startswith("received-bytes:")
        )
        return sent, received

    def window_upstream_loss_pct(self, kind: MediaKind) -> float | None:
        """The upstream loss counted from the window's first receiver report to its last (None
        until two reports came)."""
        first = self._first_report.get(kind)
        latest = self._previous.get(f"report:{kind.value}")
        if first is None or latest is None or first is latest:
            return None
        return report_loss_pct(first, latest, 0.0)

    async def prime(self) -> None:
        self._previous = await self._snapshot()
        self._at = time.monotonic()
        for kind in MediaKind:
            report = self._previous.get(f"report:{kind.value}")
            if report is not None:
                self._first_report[kind] = report

    async def sample(self, t: float) -> list[QualitySample]:
        try:
            current = await self._snapshot()
        except TimeoutError:
            return []
        now = time.monotonic()
        elapsed = max(1e-3, now - self._at)
        checks = self._round_trips.take()
        check_rtt = statistics.fmean(checks) if checks else None
        samples = []
        for kind in MediaKind:
            sent = self._sent(kind, current, elapsed, t, check_rtt)
            samples.append(sent)
            report = current.get(f"report:{kind.value}")
            first = self._first_report.setdefault(kind, report) if report is not None else None
            running = report_loss_pct(first, report, -1.0) if first is not report else None
            if running is not None:
                self._upstream_loss[kind] = running
            elif sent.loss_pct is not None and kind not in self._upstream_loss:
                self._upstream_loss[kind] = sent.loss_pct
            upstream = self._upstream_loss.get(kind)
            samples.append(self._received(kind, current, elapsed, t, upstream))
        self._previous, self._at = current, now
        return samples

    def _sent(
        self,
        kind: MediaKind,
        current: dict[str, Any],
        elapsed: float,
        t: float,
        check_rtt: float | None,
    ) -> QualitySample:
        """Upstream quality from the far end's receiver reports; the round trip is the mean of
        this second's STUN checks, or RTCP's when no check was answered. The loss is counted
        from the reports' cumulative counters (``report_loss_pct``): no second without a new
        report repeats an old one, none is skipped, and no fraction is truncated."""
        remote = current.get(f"remote-inbound-rtp:{kind.value}")
        outbound = current.get(f"outbound-rtp:{kind.value}")
        previous = self._previous.get(f"outbound-rtp:{kind.value}")
        rtt = jitter = loss = bitrate = None
        if remote is not None:
            # aiortc can report a negative round trip when a receiver report echoes an old
            # sender report (seen under loss); such a value is not a measurement.
            if remote.roundTripTime and 0 < remote.roundTripTime < MAX_PLAUSIBLE_RTT_S:
                rtt = float(remote.roundTripTime) * 1000
            jitter = float(remote.jitter) / CLOCK_RATE[kind] * 1000
            loss = report_loss_pct(
                self._previous.get(f"report:{kind.value}"),
                current.get(f"report:{kind.value}"),
                float(remote.fractionLost) / 256 * 100,
            )
        if check_rtt is not None:
            rtt = check_rtt
        if outbound is not None:
            sent_before = int(previous.bytesSent) if previous is not None else 0
            bitrate = (int(outbound.bytesSent) - sent_before) * 8 / elapsed / 1000
        return QualitySample(t, kind, Direction.SENT, rtt, jitter, loss, bitrate)

    def _received(
        self,
        kind: MediaKind,
        current: dict[str, Any],
        elapsed: float,
        t: float,
        upstream_loss_pct: float | None,
    ) -> QualitySample:
        """Downstream quality of the echo. Echo servers forward packets with their sequence
        numbers (ours and Janus's alike), so a packet lost on the way up is missing on the way
        back too: the downstream share of the loss is what the loop lost beyond the upstream's,
        1 - (1 - loop) / (1 - up)."""
        inbound = current.get(f"inbound-rtp:{kind.value}")
        previous = self._previous.get(f"inbound-rtp:{kind.value}")
        jitter = loss = None
        if inbound is not None:
            jitter = float(inbound.jitter) / CLOCK_RATE[kind] * 1000
            received = int(inbound.packetsReceived) - (
                int(previous.packetsReceived) if previous is not None else 0
            )
            lost = int(inbound.packetsLost) - (
                int(previous.packetsLost) if previous is not None else 0
            )
            lost = max(0, lost)
            if received + lost > 0:
                loss = downstream_loss_pct(lost / (received + lost) * 100, upstream_loss_pct)
        key = f"received-bytes:{kind.value}"
        byte_delta = int(current.get(key, 0)) - int(self._previous.get(key, 0))
        bitrate = byte_delta * 8 / elapsed / 1000
        return QualitySample(t, kind, Direction.RECEIVED, None, jitter, loss, bitrate)


def _with_connect_evidence(results: list[StageResult], extra: dict[str, Any]) -> list[StageResult]:
    """The stages with ``extra`` added to the connect stage's evidence."""
    return [
        dataclasses.replace(r, evidence={**r.evidence, **extra}) if r.stage == Stage.CONNECT else r
        for r in results
    ]


def report_loss_pct(
    earlier: ReportCounters | None, later: ReportCounters | None, fraction_lost_pct: float
) -> float | None:
    """The upstream loss between two receiver reports, from their cumulative counters: packets
    lost over packets expected (the advance of the highest sequence number, 16 bits). None when
    no report came since ``earlier`` (the second adds nothing rather than repeating the last);
    the report's own ``fraction_lost`` (``fraction_lost_pct``, a truncated 8-bit figure for its
    interval) when there is no earlier report to count from."""
    if later is None:
        return None
    if earlier is None:
        return fraction_lost_pct
    expected = (later.highest_sequence - earlier.highest_sequence) % 0x10000
    if expected == 0 or expected > 0x8000:  # no new report, or an older one (reordered)
        return None
    lost = later.packets_lost - earlier.packets_lost
    return max(0.0, min(100.0, lost / expected * 100))


def downstream_loss_pct(loop_loss_pct: float, upstream_loss_pct: float | None) -> float:
    """The downstream loss of an echo whose loop lost ``loop_loss_pct`` when the upstream
    lost ``upstream_loss_pct`` (unknown: the loop's loss is all we can say)."""
    if upstream_loss_pct is None or upstream_loss_pct <= 0:
        return loop_loss_pct
    if upstream_loss_pct >= 100:
        return 0.0
    delivered = (1 - loop_loss_pct / 100) / (1 - upstream_loss_pct / 100)
    return max(0.0, min(100.0, (1 - delivered) * 100))


async def _consume(track: MediaStreamTrack, arrivals: _Arrivals) -> None:
    kind = MediaKind(track.kind)
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
            arrivals.note(kind)


async def _wait_for_state(
    pc: RTCPeerConnection, attribute: str, success: set[str], failure: set[str]
) -> None:
    """Wait until ``pc.<attribute>`` reaches a success state; fail on a failure state."""
    while True:
        state = getattr(pc, attribute)
        if state in success:
            return
        if state in failure:
            name = "ice_failed" if attribute == "iceConnectionState" else "dtls_handshake_timeout"
            raise StageFailure(name, {"state": state})
        await asyncio.sleep(0.02)


# The hold phase (callpath.core.call.hold) carries on with the calls the engine kept.
PathCall = _PathCall
RoundTrips = _RoundTrips
StatsSampler = _StatsSampler
