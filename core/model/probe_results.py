"""What a probe found: which probe, against what, its OONI-style failure, timing and evidence."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ProbeKind(enum.StrEnum):
    DNS = "dns"
    TCP_CONNECT = "tcp_connect"
    TLS_HANDSHAKE = "tls_handshake"
    STUN = "stun"
    UDP_FLOW = "udp_flow"
    TCP_BULK = "tcp_bulk"
    QUIC_HANDSHAKE = "quic_handshake"


@dataclass(frozen=True)
class ProbeResult:
    probe: str  # a ProbeKind value
    target: str  # host:port (or a name for DNS) the probe was aimed at
    started_at: float  # seconds since ``origin`` (the run's start), monotonic clock
    duration: float
    failure: str | None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    control: bool = False  # aimed at the cooperative control server, not at a call target

    @property
    def ok(self) -> bool:
        return self.failure is None
