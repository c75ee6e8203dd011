"""Frozen result types shared by the engine, the report and the front ends.

Every path and stage result carries an OONI-style ``failure`` string (or None), timings and
evidence. Times are seconds relative to the start of the run (monotonic clock), except
``RunResult.started_at`` / ``finished_at`` which are wall-clock UTC datetimes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callpath.core.model.findings import Finding
from callpath.core.model.probe_results import ProbeResult
from callpath.core.model.route import RouteSituation


class PathId(enum.StrEnum):
    DIRECT = "direct"
    TURN_UDP = "turn-udp"
    TURN_TCP = "turn-tcp"
    TURN_TLS = "turn-tls"
    SOCKS5_UDP = "socks5-udp"
    SOCKS5_TURN = "socks5-turn"
    HTTP_TURN = "http-turn"
    MASQUE = "masque"


class Stage(enum.StrEnum):
    RESOLVE = "resolve"
    CONNECT = "connect"
    TURN_ALLOCATE = "turn_allocate"
    ICE = "ice"
    DTLS = "dtls"
    MEDIA_UP = "media_up"
    QUALITY = "quality"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


class MediaKind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class Direction(enum.StrEnum):
    """Direction of a media stream as seen from the user's machine."""

    SENT = "sent"  # user -> echo peer (measured from the peer's receiver reports)
    RECEIVED = "received"  # echo peer -> user (measured by the local receiver)


class Grade(enum.StrEnum):
    GOOD = "good"
    DEGRADED = "degraded"
    UNUSABLE = "unusable"
    NOT_TESTED = "not_tested"  # the path never carried media


@dataclass(frozen=True)
class StageResult:
    stage: Stage
    started_at: float
    duration: float
    failure: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class QualitySample:
    """One per-second sample of one media kind in one direction."""

    t: float  # seconds since media started flowing on this path
    kind: MediaKind
    direction: Direction
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    bitrate_kbps: float | None


@dataclass(frozen=True)
class MediaQuality:
    """Summary of one media kind over the quality window.

    ``mos`` is only set for audio. Aggregates are over both directions: RTT is the median,
    jitter the worst direction's median, loss the worst direction's mean per-second loss,
    bitrate the lowest direction's mean (a call is as good as its worse leg).
    """

    kind: MediaKind
    grade: Grade
    mos: float | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    bitrate_kbps: float | None = None
    reasons: tuple[str, ...] = ()  # machine-readable reasons for a grade below good
    samples: tuple[QualitySample, ...] = ()

    @staticmethod
    def not_tested(kind: MediaKind) -> MediaQuality:
        return MediaQuality(kind=kind, grade=Grade.NOT_TESTED)


@dataclass(frozen=True)
class SelectedPair:
    """The ICE candidate pair that carried the call, read from the nominated pair."""

    local_type: str  # host | srflx | prflx | relay
    local_address: str
    local_port: int
    remote_type: str
    remote_address: str
    remote_port: int
    relay_transport: str | None = None  # udp | tcp | tls, for relay candidates
    relay_server: str | None = None  # host:port of the TURN server, for relay candidates


@dataclass(frozen=True)
class SniAttempt:
    """One try of a TLS relay under a server name (its own first, then the profile's others)."""

    server_name: str
    failure: str | None


@dataclass(frozen=True)
class PathResult:
    path_id: str
    exercised: bool
    failure: str | None
    stages: tuple[StageResult, ...]
    server: str | None  # the ICE server URI (or proxy URL) under test; redacted in reports
    selected_pair: SelectedPair | None = None
    voice: MediaQuality = field(default_factory=lambda: MediaQuality.not_tested(MediaKind.AUDIO))
    video: MediaQuality = field(default_factory=lambda: MediaQuality.not_tested(MediaKind.VIDEO))
    duration: float = 0.0
    # A TLS relay with alternative server names: every name tried, in order; the last one is
    # the name of this result (the one that carried the call, when it worked).
    sni_attempts: tuple[SniAttempt, ...] = ()

    @property
    def server_name(self) -> str | None:
        """The SNI under which this result's call ran, when other names were configured."""
        return self.sni_attempts[-1].server_name if self.sni_attempts else None

    def stage(self, stage: Stage) -> StageResult | None:
        for result in self.stages:
            if result.stage == stage:
                return result
        return None


@dataclass(frozen=True)
class Verdict:
    voice_restored_by: tuple[str, ...]  # path ids with a good voice grade, best first
    video_restored_by: tuple[str, ...]
    headline: str  # already translated, one line


class HoldEnd(enum.StrEnum):
    """How a held call ended."""

    HELD = "held"  # it lasted the whole duration asked
    MEDIA_STOPPED = "media_stopped"  # media stopped arriving (and did not come back)
    DEGRADED = "degraded"  # it kept going, but its quality fell during the hold
    STOPPED_BY_USER = "stopped_by_user"  # Ctrl-C or Stop: the partial result is kept


@dataclass(frozen=True)
class HoldTick:
    """Cumulative media bytes per direction, ``t`` seconds into the hold."""

    t: float
    sent_bytes: int  # RTP bytes sent (all kinds) since the call's media started
    received_bytes: int  # RTP bytes received back (all kinds) since the call's media started


@dataclass(frozen=True)
class DirectionEnd:
    """When media stopped one way (``at_s`` None: it did not, or the evidence cannot say)."""

    direction: Direction
    at_s: float | None  # seconds into the hold
    bytes: int  # bytes that had crossed that way (since the call's media started) by then
    flow_age_s: float | None = None  # seconds since the call's media started, at ``at_s``


@dataclass(frozen=True)
class HoldResult:
    """One held call (report section ``hold``, version ``HOLD_VERSION``)."""

    path_id: str
    held_for: tuple[MediaKind, ...]  # the kinds this path was the best for (empty: on request)
    asked_s: float
    achieved_s: float  # how long media kept flowing in the hold (the whole hold when it held)
    ended: HoldEnd
    ended_at_s: float | None  # seconds into the hold when it stopped or degraded
    mechanism: str | None  # what the evidence supports (docs/hold.md), or None: inconclusive
    flow_age_s: float  # seconds the call's media had run before the hold began
    directions: tuple[DirectionEnd, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)
    ticks: tuple[HoldTick, ...] = ()
    samples: tuple[QualitySample, ...] = ()


HOLD_VERSION = 1


@dataclass(frozen=True)
class RunResult:
    started_at: datetime
    finished_at: datetime
    profile_name: str
    target: str  # kind of echo target: echo | janus | relay-loopback | lab
    paths: tuple[PathResult, ...]
    verdict: Verdict
    cancelled: bool = False
    scenario: str | None = None  # lab scenario id, when the run was a lab run
    probes: tuple[
        ProbeResult, ...
    ] = ()  # what callpath.core.run.investigation measured beside the calls
    findings: tuple[
        Finding, ...
    ] = ()  # callpath.core.diagnosis.rules: how the failing paths are blocked
    route: RouteSituation | None = None  # a VPN the calls went through (real runs only)
    holds: tuple[HoldResult, ...] = ()  # the hold phase after the verdict (HoldConfig)
