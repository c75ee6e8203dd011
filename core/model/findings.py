"""Findings: how a failing path is blocked, with its evidence, confidence and texts.

The types live here, below the diagnosis that makes them, so that results, events and reports
carry findings without importing the rules.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Mechanism(enum.StrEnum):
    """How a failing path is blocked (GUIDE §3), or why it fails without a censor."""

    UDP_BLOCKED = "udp_blocked"
    UDP_IP_BLOCKED = "udp_ip_blocked"
    UDP_PORT_BLOCKED = "udp_port_blocked"
    STUN_SIGNATURE_BLOCKED = "stun_signature_blocked"
    VOIP_SIGNATURE_BLOCKED = "voip_signature_blocked"
    UDP_FLOW_CUTOFF = "udp_flow_cutoff"
    UDP_THROTTLED = "udp_throttled"
    RESIDUAL_BLOCK = "residual_block"
    TCP_CONNECT_BLOCKED = "tcp_connect_blocked"
    TCP_PORT_BLOCKED = "tcp_port_blocked"
    TCP_FREEZE_16K = "tcp_freeze_16k"
    TLS_SNI_RESET = "tls_sni_reset"
    TLS_SNI_DROP = "tls_sni_drop"
    TLS_INTERCEPTION = "tls_interception"
    QUIC_BLOCKED = "quic_blocked"
    QUIC_SNI_BLOCKED = "quic_sni_blocked"
    DNS_TAMPERING = "dns_tampering"
    TRANSPORT_DATA_BLACKHOLE = "transport_data_blackhole"
    ALLOWLIST_MODE = "allowlist_mode"
    POOR_NETWORK = "poor_network"
    NO_DIRECT_ROUTE = "no_direct_route"
    SERVER_UNREACHABLE = "server_unreachable"
    # The signalling or control server stopped answering during the run (it crashed, was
    # restarted or lost its network): no blocking mechanism can be named for those calls.
    FAR_END_GONE = "far_end_gone"
    INCONCLUSIVE = "inconclusive"


class Confidence(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


INCONCLUSIVE = Mechanism.INCONCLUSIVE
CENSORSHIP_MECHANISMS = frozenset(
    {
        Mechanism.UDP_BLOCKED,
        Mechanism.UDP_IP_BLOCKED,
        Mechanism.UDP_PORT_BLOCKED,
        Mechanism.STUN_SIGNATURE_BLOCKED,
        Mechanism.VOIP_SIGNATURE_BLOCKED,
        Mechanism.UDP_FLOW_CUTOFF,
        Mechanism.UDP_THROTTLED,
        Mechanism.RESIDUAL_BLOCK,
        Mechanism.TCP_CONNECT_BLOCKED,
        Mechanism.TCP_PORT_BLOCKED,
        Mechanism.TCP_FREEZE_16K,
        Mechanism.TLS_SNI_RESET,
        Mechanism.TLS_SNI_DROP,
        Mechanism.TLS_INTERCEPTION,
        Mechanism.QUIC_BLOCKED,
        Mechanism.QUIC_SNI_BLOCKED,
        Mechanism.DNS_TAMPERING,
        Mechanism.TRANSPORT_DATA_BLACKHOLE,
        Mechanism.ALLOWLIST_MODE,
    }
)
# Findings that explain a failure without any censor involved (``server_unreachable``: the
# servers' names do not exist or the servers refuse connections, as far as the run can tell).
NETWORK_MECHANISMS = frozenset(
    {Mechanism.POOR_NETWORK, Mechanism.NO_DIRECT_ROUTE, Mechanism.SERVER_UNREACHABLE}
)


@dataclass(frozen=True)
class Finding:
    mechanism: str  # a ``Mechanism`` value
    paths: tuple[str, ...]  # path ids this explains
    evidence: Mapping[str, Any]  # bytes, seconds, loss, rtt, probes that disagree, …
    confidence: Confidence
    summary: str  # for end users, translated
    recommendation: str  # what to do, translated
    technical: str  # for support staff, translated

    @property
    def censorship(self) -> bool:
        return self.mechanism in CENSORSHIP_MECHANISMS
