"""Timeouts and limits, passed explicitly to the engine (no globals)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Upper bound, in seconds, of each stage of a path."""

    resolve: float = 3.0
    connect: float = 4.0
    # Three Allocate transmissions fit in 2.5 s; a relay silent that long is blocked for calls.
    turn_allocate: float = 2.5
    # ICE checks go out at 0, 0.5, 1.5 and 3.5 s (aioice's retransmission schedule); a peer
    # silent to all four, with two seconds to spare for pacing and signalling, is not reachable.
    ice: float = 5.5
    dtls: float = 5.0
    media_up: float = 4.0
    teardown: float = 2.0


@dataclass(frozen=True)
class QualityConfig:
    window_s: float = 3.0  # how long media is measured once it flows
    concurrency: int = 8  # paths measured at the same time (media is encoded once for all)
    video_width: int = 320
    video_height: int = 240
    video_fps: int = 30
    stall_s: float = 1.5  # no media for this long after media_up -> media_stalled
    # One STUN check on the media's candidate pair this often during the window: the RTT
    # samples (RTCP gives about one a second, too few under jitter; docs/performance.md).
    rtt_check_interval_s: float = 0.025


@dataclass(frozen=True)
class HoldConfig:
    """The hold phase after the fast verdict: the winning calls kept going (docs/hold.md)."""

    duration_s: float = 120.0  # how long each held call is asked to last
    every_path: bool = False  # hold every path that worked, not only the best per kind
    # No media received for this long: the call has stopped; the hold waits this long more
    # (consent checks, a relay refresh might bring it back) before it gives up on the path.
    stop_gap_s: float = 3.0
    give_up_s: float = 8.0
    # STUN checks on the pair during the hold (round trips; the fast window checks far more).
    rtt_check_interval_s: float = 0.5


@dataclass(frozen=True)
class EchoServerLimits:
    """What ``callpath echo-server`` accepts from the network (docs/control-server.md, "Limits
    of the echo server")."""

    max_calls: int = 20
    max_call_s: float = 300.0
    max_request_bytes: int = 64 * 1024
    # HTTP: open connections at once; a connection that has not sent a request's headers this
    # long after connecting (or after its last request) is closed; a body must arrive this fast.
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_json_depth: int = 32
    # ICE: candidates an offer may carry; STUN requests the server sends per call (checks and
    # their retransmissions); a call whose ICE has not connected this long after the answer is
    # closed and its slot freed. STUN bytes sent never exceed the offer's bytes plus the bytes
    # received from the caller (no amplification).
    max_candidates_per_offer: int = 16
    max_ice_checks_per_call: int = 64
    ice_timeout_s: float = 15.0
    # A connected call from which nothing has arrived this long (the caller vanished without
    # hanging up) is closed and its slot freed.
    caller_silence_s: float = 20.0
    # Candidates in loopback, private or reserved ranges are refused unless this is set (the
    # lab and the tests run on loopback; coturn's denied-peer-ip is the same idea).
    allow_private_candidates: bool = False
