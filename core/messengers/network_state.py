"""Is this device online at all, or in allowlist ("white list") mode? Pure logic, no I/O.

- ``offline``: nothing answers — no domestic reference, no DoH, no public STUN, no messenger;
- ``allowlist``: at least one domestic reference endpoint answers while every foreign endpoint
  (DoH, public STUN, every messenger endpoint tried directly) fails — the 2025–26 mobile
  "white lists", which by late 2025 went by IP range;
- ``online``: anything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class NetworkState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    ALLOWLIST = "allowlist"


@dataclass(frozen=True)
class NetworkObservations:
    domestic_answered: int  # domestic reference endpoints that answered
    domestic_tried: int
    foreign_answered: int  # DoH, public STUN and messenger endpoints tried directly
    foreign_tried: int


def network_state(seen: NetworkObservations) -> NetworkState:
    if seen.foreign_answered:
        return NetworkState.ONLINE
    if seen.domestic_answered:
        return NetworkState.ALLOWLIST
    if seen.foreign_tried or seen.domestic_tried:
        return NetworkState.OFFLINE
    return NetworkState.ONLINE  # nothing was tried: no reason to say offline


def udp_state(public_stun_answered: int, public_stun_tried: int) -> str:
    """``works`` | ``blocked`` | ``unknown``: is UDP possible at all (public STUN)?"""
    if public_stun_answered:
        return "works"
    return "blocked" if public_stun_tried else "unknown"
