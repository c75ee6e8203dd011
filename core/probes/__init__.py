"""Network probes that explain *how* a path is blocked, one module per probe.

Each probe is an async function taking its target, a frozen ``ProbeConfig`` and keyword options,
and returning a ``ProbeResult``: which probe, against what, an OONI-style ``failure`` (or None),
timing, and ``evidence`` (plain JSON-able values) that ``callpath.core.diagnosis.rules`` reads.
Probes never
raise for network trouble; every await in them is bounded by the config's timeouts.

The STUN, UDP-flow, TCP-bulk and QUIC probes talk to the cooperative control server
(``callpath.core.servers.control_server``), so their results also tell a bad network from a censor.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callpath.core.model.probe_results import ProbeKind, ProbeResult


@dataclass(frozen=True)
class ProbeConfig:
    """Timeouts and sizes of every probe (seconds, bytes, packets per second)."""

    connect_timeout_s: float = 4.0
    tls_timeout_s: float = 5.0
    neutral_sni: str = "www.example.com"  # a name no censor has reason to block

    stun_attempts: int = 3  # datagrams of each kind; one answer is enough
    stun_wait_s: float = 1.0  # for the answers after the last attempt
    stun_datagram_bytes: int = 120  # STUN requests are padded to this size, decoys too

    flow_rate_pps: int = 50  # an Opus call: one packet every 20 ms
    flow_duration_s: float = 6.0
    flow_burst_rate_pps: int = 200  # a second, faster phase to see if loss rises with rate
    flow_burst_s: float = 1.5
    flow_packet_min_bytes: int = 160
    flow_packet_max_bytes: int = 200
    flow_silence_s: float = 1.0  # no echo for this long while sending = the flow was cut
    flow_fresh_attempts: int = 3  # datagrams on a new flow after a cut-off (residual block?)
    # Rate steps (KB/s, 1 KB = 1000 bytes): loss rising with the rate is a cap, not bad luck.
    flow_step_rates_kBps: tuple[float, ...] = (8.0, 32.0, 128.0)
    flow_step_s: float = 0.5
    flow_step_packet_bytes: int = 500
    flow_step_wait_s: float = 2.0  # for late echoes after the last step

    bulk_bytes: int = 64 * 1024
    bulk_stall_s: float = 3.0  # no data for this long = stalled
    bulk_timeout_s: float = 20.0

    dns_timeout_s: float = 4.0
    doh_url: str = "https://cloudflare-dns.com/dns-query"
    doh_format: str = "wire"  # wire (RFC 8484) | json (application/dns-json)

    quic_timeout_s: float = 4.0
    quic_alpn: str = "callpath-probe"

    # Every socket a probe opens leaves by this interface (Linux SO_BINDTODEVICE): the
    # messenger check's side around a VPN. None: the default route.
    bind_interface: str | None = None


class ProbeTimer:
    """Start time and duration of one probe, relative to ``origin`` (a ``time.monotonic()``)."""

    def __init__(self, origin: float = 0.0) -> None:
        self._origin = origin
        self._start = time.monotonic()

    @property
    def started_at(self) -> float:
        return self._start - self._origin

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def result(
        self,
        probe: ProbeKind,
        target: str,
        failure: str | None,
        evidence: Mapping[str, Any],
        *,
        control: bool = False,
    ) -> ProbeResult:
        return ProbeResult(
            probe=probe.value,
            target=target,
            started_at=round(self.started_at, 3),
            duration=round(self.elapsed(), 3),
            failure=failure,
            evidence=dict(evidence),
            control=control,
        )


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 1)
