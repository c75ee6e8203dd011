"""Path results and probe results → findings: how the failing paths are blocked, in plain words.

``diagnose`` is pure (the only state it reads is the current language, for the translated
texts). Each rule names one mechanism from GUIDE §3 only when the evidence singles it out, and
says how sure it is; what no rule explains ends up in one ``inconclusive`` finding that lists the
unexplained failures. It never guesses. The rules, the evidence each needs and the confidence
policy are documented in ``docs/diagnosis.md``.

Probes against the cooperative control server (``ProbeResult.control``) are the comparison that
separates a bad network from a censor; they are only used when ``control_available`` is true.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callpath.core.i18n import N_, _
from callpath.core.model.findings import (
    INCONCLUSIVE,
    Confidence,
    Finding,
)
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.model.results import Grade, PathId, PathResult, Stage, StageResult
from callpath.core.paths.registry import Carrier, path_label, paths_where
from callpath.core.probes.tls import TCP_PHASE as TLS_TCP_PHASE

UDP_PATHS = paths_where(carrier=Carrier.UDP)
TCP_PATHS = paths_where(carrier=Carrier.TCP)

FREEZE_MIN_BYTES = 12 * 1024
FREEZE_MAX_BYTES = 34 * 1024
THROTTLE_BASE_MAX_LOSS_PCT = 5.0  # the flow's normal-rate loss must stay below this…
THROTTLE_BURST_MIN_LOSS_PCT = 20.0  # …while the faster phase loses at least this much
THROTTLE_MIN_RISE_PCT = 15.0
POOR_LOSS_PCT = 5.0  # control flow as bad as this (or worse) means the network itself is bad
POOR_RTT_MS = 300.0
POOR_JITTER_MS = 30.0
CONNECT_PHASE_FAILURES = frozenset(
    {
        "generic_timeout_error",
        "connection_refused",
        "connection_reset",
        "host_unreachable",
        "network_unreachable",
    }
)
RESET_FAILURES = frozenset({"connection_reset", "eof_error"})
CERTIFICATE_FAILURES = frozenset({"ssl_unknown_authority", "ssl_invalid_certificate"})
DNS_FAILURES = frozenset({"dns_nxdomain_error", "dns_no_answer", "dns_bogon_error"})
# What filtering DoH resolvers answer for names they block: not an answer to trust.
SINKHOLE_ADDRESSES = frozenset({"0.0.0.0", "::"})
_PORT = re.compile(r"^[a-z0-9+.-]+:(?://)?(?:[^@/?]*@)?(?:\[[^\]]*\]|[^:/?]+):(\d+)", re.I)


# --- texts -----------------------------------------------------------------------------------

_TEXTS: dict[str, tuple[str, str, str]] = {
    "udp_blocked": (
        N_("Your network blocks UDP, which calls need for voice and video."),
        N_("Use a relay over TCP or TLS (TURN over TLS on port 443 works best)."),
        N_(
            "UDP lost both ways: STUN and random datagrams to the control server got no answer "
            "while TCP works. UDP paths failed: {paths}."
        ),
    ),
    "udp_blocked:paths": (
        N_("Your network seems to block UDP, which calls need for voice and video."),
        N_("Use a relay over TCP or TLS (TURN over TLS on port 443 works best)."),
        N_(
            "Every UDP path failed at STUN/ICE ({failed}) while TCP paths to the same relay "
            "work. Without a control server this cannot be told apart from STUN being "
            "filtered or the relay's address being blocked for UDP."
        ),
    ),
    "udp_ip_blocked": (
        N_("UDP to the call relays is blocked, although UDP elsewhere works."),
        N_("Use the relay over TCP or TLS, or a relay at another address."),
        N_(
            "STUN to the relay got no answer while STUN to the control server did, and TCP to "
            "the relay works. Paths: {paths}."
        ),
    ),
    "stun_signature_blocked": (
        N_("Your network drops the STUN packets calls use to connect, but lets other UDP through."),
        N_("Use a relay over TCP or TLS, or a tunnel that hides the STUN packets."),
        N_(
            "STUN Binding to the control server lost ({stun_sent} sent) while a random datagram "
            "of the same size ({datagram_bytes} bytes) came back; decoy first: random "
            "{decoy_answered}, STUN after it {decoy_stun_answered}."
        ),
    ),
    "voip_signature_blocked": (
        N_("Your network recognises call traffic (RTP) and drops it, while other UDP passes."),
        N_("Use a relay over TLS or a tunnel that hides the call traffic."),
        N_(
            "RTP-like flow to the control server never answered ({packets_sent} packets) while "
            "random datagrams of similar size came back."
        ),
    ),
    "udp_flow_cutoff": (
        N_("Calls are cut off after {cutoff_s} seconds: the network stops a UDP flow part-way."),
        N_("Use a relay over TCP or TLS; calls over UDP will keep dropping."),
        N_(
            "Echo of an RTP-like flow stopped after {cutoff_packets} packets, {cutoff_bytes} "
            "bytes sent ({cutoff_bytes_both_ways} both ways), {cutoff_s} s; a new flow "
            "answered: {fresh_flow_answered}."
        ),
    ),
    "residual_block": (
        N_("After cutting a call, the network keeps blocking the server for a while."),
        N_("Wait about ten minutes before retrying the same server, or use another one."),
        N_(
            "After the flow was cut at {cutoff_s} s, a new flow from another port to the same "
            "address got no answer either."
        ),
    ),
    "udp_throttled": (
        N_("Your network throttles UDP: voice gets choppy as soon as more data flows."),
        N_("Prefer audio-only calls, or a relay over TCP or TLS."),
        N_(
            "Flow loss {base_loss_pct} % at {rate_pps} packets/s but {burst_loss_pct} % at "
            "{burst_rate_pps} packets/s to the control server; RTT {rtt_ms} ms."
        ),
    ),
    "tcp_connect_blocked": (
        N_("Connections to the relay server are blocked."),
        N_("Use a relay at another address, or reach it through a proxy."),
        N_(
            "TCP connect to the relay failed ({failures}) while TCP to the control server "
            "works. Paths: {paths}."
        ),
    ),
    "tcp_connect_blocked:reset": (
        N_("Connections to the relay server are blocked."),
        N_("Use a relay at another address, or reach it through a proxy."),
        N_(
            "TCP connections to the relay were reset right after they opened, before the relay "
            "answered ({failures}), while TCP to the control server works. Paths: {paths}."
        ),
    ),
    "tcp_freeze_16k": (
        N_("Your network freezes connections to foreign servers after a few kilobytes."),
        N_("Use a relay inside your country, or a tunnel that keeps connections short."),
        N_(
            "A 64 KB pull from the control server stalled after {bytes_received} bytes "
            "({stall_after_s} s) without a reset: the 16–20 KB freeze."
        ),
    ),
    "tls_sni_reset": (
        N_("The network resets encrypted connections to this server by its name."),
        N_("Use a relay under another name (domain fronting, or a name of your own)."),
        N_(
            "TLS with server name {server_name} was reset right after the ClientHello while the "
            "same address with the name {neutral_sni} completed the handshake."
        ),
    ),
    "tls_sni_drop": (
        N_("The network silently blocks encrypted connections to this server by its name."),
        N_("Use a relay under another name (domain fronting, or a name of your own)."),
        N_(
            "TLS with server name {server_name} got no answer after the ClientHello (timeout) "
            "while the same address with the name {neutral_sni} completed the handshake."
        ),
    ),
    "tls_interception": (
        N_("Someone between you and the server replaces its certificate (interception)."),
        N_(
            "Do not trust this network for private calls; use a tunnel, and ask the server's "
            "operator to confirm its certificate."
        ),
        N_(
            "The certificate for {server_name} is not the server's: {reason}. Issuer seen: "
            "{issuer}. A misconfigured server looks the same, hence the confidence."
        ),
    ),
    "tls_interception:paths": (
        N_("The server's certificate is not the expected one: possibly interception."),
        N_(
            "Ask the server's operator to confirm its certificate, and run the test again with "
            "a control server; meanwhile use a tunnel."
        ),
        N_(
            "TLS to {server_name} failed with ssl_unknown_authority ({failed}). A self-signed "
            "or misconfigured server looks the same."
        ),
    ),
    "quic_blocked": (
        N_("Your network blocks QUIC (HTTP/3)."),
        N_("Tunnels over QUIC (MASQUE) will not work here; use TLS over TCP."),
        N_(
            "QUIC handshakes to the control server failed with both the target name and a "
            "neutral one, while plain UDP to it works."
        ),
    ),
    "quic_sni_blocked": (
        N_("Your network blocks QUIC connections that name this server."),
        N_("Use QUIC under another name, or TLS over TCP."),
        N_(
            "QUIC handshake with server name {server_name} failed while the name "
            "{neutral_sni} worked to the same address."
        ),
    ),
    "dns_tampering": (
        N_("Your network's DNS gives false answers for {name}."),
        N_("Use encrypted DNS (DNS over HTTPS) or write the server's address in the profile."),
        N_("System resolver: {system_result}; DNS over HTTPS: {doh_addresses}."),
    ),
    "transport_data_blackhole": (
        N_("The connection is set up, then no call data gets through."),
        N_("Try another path; this one looks connected but carries nothing."),
        N_(
            "Paths {paths} completed their handshakes, then media stopped or never arrived "
            "({failures})."
        ),
    ),
    "allowlist_mode": (
        N_("Your network only lets traffic that looks like encrypted web browsing through."),
        N_("Use TURN over TLS on port 443; it is the path that works here."),
        N_(
            "Only paths over TLS carried media ({working}, ports {working_ports}); every UDP "
            "path and every plain TCP path failed while connecting ({paths}). UDP to the "
            "control server answered: {udp_to_control}."
        ),
    ),
    "poor_network": (
        N_("Your network is just bad right now; this is not blocking."),
        N_("Move closer to the Wi-Fi router, switch networks, or try again later."),
        N_(
            "Every path was lossy or slow, and so was the control server: loss {loss_pct} %, "
            "RTT {rtt_ms} ms, jitter {jitter_ms} ms."
        ),
    ),
    "poor_network:udp": (
        N_("Your network loses many UDP packets; it may just be a bad network."),
        N_(
            "Use a relay over TCP or TLS, which resends what is lost; if it persists on a good "
            "connection, the loss may be deliberate."
        ),
        N_(
            "Every path over UDP was lossy or stalled, and so was the control flow at a low "
            "rate: loss {loss_pct} %, RTT {rtt_ms} ms, jitter {jitter_ms} ms. Relays over TCP "
            "were fine ({tcp_working}): TCP resends lost packets. A censor dropping UDP at "
            "random looks the same."
        ),
    ),
    "no_direct_route": (
        N_("A direct connection is not possible from your network; this is normal, not blocking."),
        N_("Calls work through a relay; keep the relay in your settings."),
        N_(
            "Direct ICE failed ({failure}) while TURN over UDP carried media: no public or "
            "mapped address reachable, as behind most NATs and firewalls."
        ),
    ),
    INCONCLUSIVE: (
        N_("Some paths failed, but the evidence does not show how."),
        N_("Run the test again with a control server, or send the report to your support team."),
        N_("Unexplained: {failures}."),
    ),
}


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _finding(
    mechanism: str,
    paths: Iterable[str],
    evidence: Mapping[str, Any],
    confidence: Confidence,
    extra: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
) -> Finding:
    path_ids = tuple(dict.fromkeys(paths))
    fields = _Fields({key: _text(value) for key, value in evidence.items()})
    fields["paths"] = ", ".join(path_label(p) for p in path_ids) or "-"
    for key, value in (extra or {}).items():
        fields[key] = _text(value)
    summary, recommendation, technical = _TEXTS[f"{mechanism}:{variant}" if variant else mechanism]
    return Finding(
        mechanism=mechanism,
        paths=path_ids,
        evidence=dict(evidence),
        confidence=confidence,
        summary=_(summary).format_map(fields),
        recommendation=_(recommendation).format_map(fields),
        technical=_(technical).format_map(fields),
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value) or "-"
    if value is None:
        return "?"
    return str(value)


# --- facts read from the inputs --------------------------------------------------------------


def _first_failure(path: PathResult) -> StageResult | None:
    return next((stage for stage in path.stages if stage.failure is not None), None)


def _carried_media(path: PathResult) -> bool:
    media = path.stage(Stage.MEDIA_UP)
    return path.exercised and media is not None and media.ok


def _works(path: PathResult) -> bool:
    return _carried_media(path) and path.failure is None


def _failed_before_media(path: PathResult) -> bool:
    return not _carried_media(path) and path.failure is not None


def _port(path: PathResult) -> int | None:
    match = _PORT.match(path.server or "")
    return int(match.group(1)) if match else None


def _host(path: PathResult) -> str | None:
    connect = path.stage(Stage.CONNECT)
    if connect is not None and connect.evidence.get("sni"):
        return str(connect.evidence["sni"])
    resolve = path.stage(Stage.RESOLVE)
    if resolve is not None and resolve.evidence.get("name"):
        return str(resolve.evidence["name"])
    return None


def _probe_port(probe: ProbeResult) -> int | None:
    _host, _sep, port = probe.target.rpartition(":")
    return int(port) if port.isdigit() else None


def _connect_phase_failure(path: PathResult) -> str | None:
    """The failure of a TCP connect that never completed (nothing of TLS reached)."""
    stage = path.stage(Stage.CONNECT)
    if stage is None or stage.ok or "tcp_connect_ms" in stage.evidence:
        return None
    return stage.failure if stage.failure in CONNECT_PHASE_FAILURES else None


def _tls_phase_failure(path: PathResult) -> str | None:
    """The failure of a TLS handshake after a completed TCP connect (ClientHello was sent)."""
    stage = path.stage(Stage.CONNECT)
    if stage is None or stage.ok or "tcp_connect_ms" not in stage.evidence:
        return None
    if "tls_handshake_ms" in stage.evidence:
        return None
    return stage.failure


def _stun_lost(path: PathResult) -> bool:
    """A UDP path whose STUN/TURN exchange got no answer (or, for direct, ICE failed)."""
    failed = _first_failure(path)
    if failed is None:
        return False
    if failed.stage == Stage.TURN_ALLOCATE and failed.failure == "stun_no_response":
        return True
    return failed.stage == Stage.ICE and failed.failure in ("ice_failed", "stun_no_response")


def _stage_reached_ok(path: PathResult, stage: Stage) -> bool:
    result = path.stage(stage)
    return result is not None and result.ok


def _loss_of(path: PathResult) -> float | None:
    return path.voice.loss_pct


def _path_failure_text(path: PathResult) -> str:
    failed = _first_failure(path)
    if failed is not None:
        return f"{path.path_id}: {failed.failure} @ {failed.stage.value}"
    if path.failure is not None:
        return f"{path.path_id}: {path.failure}"
    return f"{path.path_id}: voice {path.voice.grade.value}, video {path.video.grade.value}"


@dataclass
class _Inputs:
    paths: Sequence[PathResult]
    probes: Sequence[ProbeResult]
    control_available: bool
    explained_paths: set[str] = field(default_factory=set)
    explained_probes: set[int] = field(default_factory=set)

    def probe(self, kind: ProbeKind, *, control: bool | None = None) -> tuple[int, ProbeResult]:
        for index, probe in enumerate(self.probes):
            if probe.probe != kind.value:
                continue
            if probe.control and not self.control_available:
                continue  # the control server was not reachable: its probes prove nothing
            if control is None or probe.control == control:
                return index, probe
        return -1, _MISSING

    def all_probes(self, kind: ProbeKind) -> list[tuple[int, ProbeResult]]:
        return [
            (index, probe)
            for index, probe in enumerate(self.probes)
            if probe.probe == kind.value and (self.control_available or not probe.control)
        ]

    def by_kind(self, kinds: Iterable[str]) -> list[PathResult]:
        wanted = set(kinds)
        return [path for path in self.paths if path.path_id in wanted]

    @property
    def udp_paths(self) -> list[PathResult]:
        return self.by_kind(UDP_PATHS)

    @property
    def tcp_paths(self) -> list[PathResult]:
        return self.by_kind(TCP_PATHS)

    def control_tcp_works(self) -> bool:
        for kind in (ProbeKind.TCP_BULK, ProbeKind.TCP_CONNECT):
            for _index, probe in self.all_probes(kind):
                if probe.control and "tcp_connect_ms" in probe.evidence:
                    return True
        return False


_MISSING = ProbeResult(probe="", target="", started_at=0.0, duration=0.0, failure=None)


def _present(probe: ProbeResult) -> bool:
    return probe is not _MISSING


# --- rules -----------------------------------------------------------------------------------


def _is_tls(path: PathResult) -> bool:
    connect = path.stage(Stage.CONNECT)
    tls_handshake = connect is not None and "tls_handshake_ms" in connect.evidence
    return tls_handshake or (path.server or "").lower().startswith("turns:")


def _failed_setting_up(path: PathResult) -> bool:
    """Failed while connecting, allocating or checking connectivity: nothing got through."""
    failed = _first_failure(path)
    return (
        not _carried_media(path)
        and failed is not None
        and failed.stage in (Stage.CONNECT, Stage.TURN_ALLOCATE, Stage.ICE)
    )


def _plain_tcp_passes(facts: _Inputs) -> bool:
    """Data came back over plain TCP from the control server on a port other than 443."""
    for kind in (ProbeKind.TCP_BULK, ProbeKind.TCP_CONNECT):
        for _index, probe in facts.all_probes(kind):
            if not probe.control or _probe_port(probe) in (None, 443):
                continue
            received = probe.evidence.get("bytes_received")
            if (isinstance(received, int) and received > 0) or probe.evidence.get("answered"):
                return True
    return False


def _allowlist(facts: _Inputs) -> list[Finding]:
    """Only traffic that looks like web browsing (TLS over TCP) gets through.

    Port-independent: the paths that carried media are all TLS ones, while every UDP path and
    every plain TCP path failed while connecting or allocating. Plain TCP to the control server
    on another port than 443 getting through contradicts it (the network passes more than the
    web), and so does UDP reaching the control server."""
    working = [p for p in facts.paths if _carried_media(p)]
    udp = facts.udp_paths
    plain_tcp = [p for p in facts.tcp_paths if not _is_tls(p)]
    if not working or not udp or not plain_tcp:
        return []
    if not all(_is_tls(p) and p.path_id in TCP_PATHS for p in working):
        return []
    if not all(_failed_setting_up(p) for p in udp + plain_tcp):
        return []
    _stun_index, stun = facts.probe(ProbeKind.STUN, control=True)
    if _present(stun) and stun.evidence.get("random_answered"):
        return []  # UDP reaches the control server: not an allowlist
    if _plain_tcp_passes(facts):
        return []  # plain TCP to an arbitrary port works: blocked paths have another cause
    on_443 = any(_port(p) == 443 for p in working)
    confidence = Confidence.HIGH if on_443 and _present(stun) else Confidence.MEDIUM
    failed = [p for p in facts.paths if p not in working and p.failure is not None]
    facts.explained_paths.update(p.path_id for p in failed)
    # The control server's own ports (not 443) are behind the same allowlist.
    for index, probe in enumerate(facts.probes):
        if probe.control and probe.failure is not None and _probe_port(probe) != 443:
            facts.explained_probes.add(index)
    evidence = {
        "working_paths": [p.path_id for p in working],
        "working_ports": sorted({port for p in working if (port := _port(p))}),
        "failed": [_path_failure_text(p) for p in failed],
        "ports_failed": sorted({port for p in plain_tcp if (port := _port(p))}),
        "udp_to_control": False if _present(stun) else None,
    }
    return [
        _finding(
            "allowlist_mode",
            [p.path_id for p in failed],
            evidence,
            confidence,
            {"working": ", ".join(path_label(p.path_id) for p in working)},
        )
    ]


def _udp_findings(facts: _Inputs) -> list[Finding]:
    """stun_signature_blocked, udp_blocked, udp_ip_blocked, no_direct_route."""
    findings: list[Finding] = []
    stun_index, stun = facts.probe(ProbeKind.STUN, control=True)
    flow_index, flow = facts.probe(ProbeKind.UDP_FLOW, control=True)
    stun_lost_paths = [
        p for p in facts.udp_paths if _stun_lost(p) and p.path_id not in facts.explained_paths
    ]
    udp_working = [p for p in facts.udp_paths if _carried_media(p)]
    tcp_working = [p for p in facts.tcp_paths if _carried_media(p)]
    tcp_allocated = [p for p in facts.tcp_paths if _stage_reached_ok(p, Stage.TURN_ALLOCATE)]
    probe_evidence = {key: stun.evidence.get(key) for key in _STUN_KEYS} if _present(stun) else {}

    if _present(stun) and stun.evidence.get("icmp_refused"):
        return findings  # nothing listens on the control server's UDP port: no comparison
    if (
        _present(stun)
        and stun.evidence.get("stun_answered") is False
        and stun.evidence.get("random_answered") is True
    ):
        both_ways = (
            stun.evidence.get("decoy_answered") is True
            and stun.evidence.get("decoy_stun_answered") is False
        )
        facts.explained_probes.add(stun_index)
        facts.explained_paths.update(p.path_id for p in stun_lost_paths)
        findings.append(
            _finding(
                "stun_signature_blocked",
                [p.path_id for p in stun_lost_paths],
                {**probe_evidence, "disagreeing_probes": ["stun", "random_datagram"]},
                Confidence.HIGH if both_ways else Confidence.MEDIUM,
            )
        )
        return findings

    udp_dead_at_control = (
        _present(stun)
        and stun.evidence.get("stun_answered") is False
        and stun.evidence.get("random_answered") is False
        and (not _present(flow) or flow.evidence.get("packets_echoed") == 0)
    )
    all_udp_failed = bool(facts.udp_paths) and not udp_working and bool(stun_lost_paths)
    tcp_ok = bool(tcp_working or tcp_allocated) or facts.control_tcp_works()
    if udp_dead_at_control and facts.control_tcp_works():
        facts.explained_probes.add(stun_index)
        if _present(flow):
            facts.explained_probes.add(flow_index)
        explained = [p for p in facts.udp_paths if _failed_before_media(p)]
        facts.explained_paths.update(p.path_id for p in explained)
        findings.append(
            _finding(
                "udp_blocked",
                [p.path_id for p in explained],
                {**probe_evidence, "tcp_to_control": True},
                Confidence.HIGH,
            )
        )
        return findings
    if all_udp_failed and tcp_ok and not _present(stun):
        # Paths alone: cannot tell a STUN signature or the relay's address from all UDP.
        facts.explained_paths.update(p.path_id for p in stun_lost_paths)
        findings.append(
            _finding(
                "udp_blocked",
                [p.path_id for p in stun_lost_paths],
                {
                    "failed": [_path_failure_text(p) for p in stun_lost_paths],
                    "tcp_working": [p.path_id for p in tcp_working + tcp_allocated],
                },
                Confidence.MEDIUM,
                {"failed": "; ".join(_path_failure_text(p) for p in stun_lost_paths)},
                variant="paths",
            )
        )
        return findings

    udp_fine_at_control = _present(stun) and stun.evidence.get("stun_answered") is True
    relay_lost = [
        p
        for p in stun_lost_paths
        if (failed := _first_failure(p)) is not None and failed.stage == Stage.TURN_ALLOCATE
    ]
    # On a lossy network a lost Allocate proves little about the relay's address.
    lossy = _present(flow) and _control_flow_bad(flow)
    if udp_fine_at_control and relay_lost and (tcp_working or tcp_allocated) and not lossy:
        facts.explained_paths.update(p.path_id for p in relay_lost)
        findings.append(
            _finding(
                "udp_ip_blocked",
                [p.path_id for p in relay_lost],
                {
                    **probe_evidence,
                    "failed": [_path_failure_text(p) for p in relay_lost],
                    "tcp_working": [p.path_id for p in tcp_working + tcp_allocated],
                    "disagreeing_probes": ["stun_to_relay", "stun_to_control"],
                },
                Confidence.MEDIUM,
            )
        )

    direct = next((p for p in facts.udp_paths if p.path_id == PathId.DIRECT), None)
    turn_udp = next((p for p in facts.udp_paths if p.path_id == PathId.TURN_UDP), None)
    if (
        direct is not None
        and direct.path_id not in facts.explained_paths
        and (failed := _first_failure(direct)) is not None
        and failed.stage == Stage.ICE
        and turn_udp is not None
        and _carried_media(turn_udp)
    ):
        facts.explained_paths.add(direct.path_id)
        evidence = {"failure": failed.failure, **_subset(failed.evidence, _ICE_KEYS)}
        findings.append(_finding("no_direct_route", [direct.path_id], evidence, Confidence.MEDIUM))
    return findings


_STUN_KEYS = (
    "stun_answered",
    "stun_sent",
    "random_answered",
    "random_sent",
    "decoy_answered",
    "decoy_stun_answered",
    "datagram_bytes",
    "stun_rtt_ms",
    "random_rtt_ms",
)
_ICE_KEYS = ("local_candidates", "remote_candidates", "candidate_types")
_FLOW_KEYS = (
    "packets_sent",
    "packets_echoed",
    "rate_pps",
    "burst_rate_pps",
    "base_loss_pct",
    "burst_loss_pct",
    "rtt_ms",
    "jitter_ms",
    "cutoff_packets",
    "cutoff_bytes",
    "cutoff_bytes_both_ways",
    "cutoff_s",
    "fresh_flow_answered",
)


def _subset(evidence: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {key: evidence[key] for key in keys if key in evidence}


def _stalled_after_connecting(path: PathResult) -> bool:
    """The path's handshakes completed, then media never came or stopped."""
    if not _stage_reached_ok(path, Stage.DTLS):
        return False
    failed = _first_failure(path)
    return failed is not None and failed.stage in (Stage.MEDIA_UP, Stage.QUALITY)


def _flow_findings(facts: _Inputs) -> list[Finding]:
    """udp_flow_cutoff (+ residual_block), voip_signature_blocked, udp_throttled."""
    findings: list[Finding] = []
    flow_index, flow = facts.probe(ProbeKind.UDP_FLOW, control=True)
    if not _present(flow):
        return findings
    evidence = _subset(flow.evidence, _FLOW_KEYS)
    if flow.evidence.get("cut_off"):
        facts.explained_probes.add(flow_index)
        stalled = [p for p in facts.udp_paths if _stalled_after_connecting(p)]
        facts.explained_paths.update(p.path_id for p in stalled)
        fresh = flow.evidence.get("fresh_flow_answered")
        confidence = Confidence.HIGH if fresh is True or stalled else Confidence.MEDIUM
        findings.append(
            _finding("udp_flow_cutoff", [p.path_id for p in stalled], evidence, confidence)
        )
        if fresh is False:
            findings.append(_finding("residual_block", [], evidence, Confidence.LOW))
        return findings
    _stun_index, stun = facts.probe(ProbeKind.STUN, control=True)
    if (
        flow.evidence.get("packets_echoed") == 0
        and _present(stun)
        and stun.evidence.get("random_answered") is True
    ):
        facts.explained_probes.add(flow_index)
        stalled = [p for p in facts.udp_paths if _stalled_after_connecting(p)]
        facts.explained_paths.update(p.path_id for p in stalled)
        confidence = (
            Confidence.HIGH if stun.evidence.get("stun_answered") is True else Confidence.MEDIUM
        )
        findings.append(
            _finding(
                "voip_signature_blocked",
                [p.path_id for p in stalled],
                {**evidence, "disagreeing_probes": ["udp_flow", "random_datagram"]},
                confidence,
            )
        )
        return findings
    base, burst = flow.evidence.get("base_loss_pct"), flow.evidence.get("burst_loss_pct")
    if (
        isinstance(base, int | float)
        and isinstance(burst, int | float)
        and base < THROTTLE_BASE_MAX_LOSS_PCT
        and burst >= THROTTLE_BURST_MIN_LOSS_PCT
        and burst - base >= THROTTLE_MIN_RISE_PCT
    ):
        facts.explained_probes.add(flow_index)
        # A throttle lets the handshakes' few small packets through and loses a call's media
        # (a video keyframe is a burst): paths that connected, then got no media or stalled.
        lossy = [
            p
            for p in facts.udp_paths
            if p.path_id not in facts.explained_paths
            and (
                (_carried_media(p) and p.voice.grade in (Grade.DEGRADED, Grade.UNUSABLE))
                or _stalled_after_connecting(p)
            )
        ]
        facts.explained_paths.update(p.path_id for p in lossy)
        findings.append(
            _finding("udp_throttled", [p.path_id for p in lossy], evidence, Confidence.MEDIUM)
        )
    return findings


def _control_flow_bad(flow: ProbeResult) -> bool:
    """The control flow at its normal rate was lossy, slow or jittery: the network itself."""
    loss, rtt = flow.evidence.get("base_loss_pct"), flow.evidence.get("rtt_ms")
    jitter = flow.evidence.get("jitter_ms")
    return (
        (isinstance(loss, int | float) and POOR_LOSS_PCT <= loss < 100)
        or (isinstance(rtt, int | float) and rtt >= POOR_RTT_MS)
        or (isinstance(jitter, int | float) and jitter >= POOR_JITTER_MS)
    )


def _poor_network(facts: _Inputs) -> list[Finding]:
    flow_index, flow = facts.probe(ProbeKind.UDP_FLOW, control=True)
    if not _present(flow) or flow.evidence.get("cut_off") or flow_index in facts.explained_probes:
        return []  # no flow, or a censor's rule (cut-off, throttle, signature) explained it
    if not _control_flow_bad(flow):
        return []

    def bad(path: PathResult) -> bool:
        return path.voice.grade in (Grade.DEGRADED, Grade.UNUSABLE) or (
            path.failure in ("media_stalled", "generic_timeout_error")
            and path.path_id not in facts.explained_paths
        )

    # Paths that connected and then carried little or nothing: on a network this lossy they
    # are explained by the loss (a blackhole needs a clean control flow to be told apart).
    carried = [
        p
        for p in facts.paths
        if _carried_media(p)
        or (_stage_reached_ok(p, Stage.DTLS) and p.path_id not in facts.explained_paths)
    ]
    udp_carried = [p for p in carried if p.path_id in UDP_PATHS]
    variant: str | None = None
    if carried and all(bad(p) for p in carried):
        explained = carried
        confidence = Confidence.HIGH if len(carried) >= 2 else Confidence.MEDIUM
    elif udp_carried and all(bad(p) for p in udp_carried):
        # TCP resends what is lost, so relays over TCP can sound fine on a lossy network; but
        # a censor making UDP lossy on purpose looks the same, hence low confidence.
        explained, confidence, variant = udp_carried, Confidence.LOW, "udp"
    else:
        return []
    facts.explained_probes.add(flow_index)
    facts.explained_paths.update(p.path_id for p in explained)
    evidence = {
        "loss_pct": flow.evidence.get("base_loss_pct"),
        "rtt_ms": flow.evidence.get("rtt_ms"),
        "jitter_ms": flow.evidence.get("jitter_ms"),
        "path_loss_pct": {p.path_id: _loss_of(p) for p in explained},
        "path_rtt_ms": {p.path_id: p.voice.rtt_ms for p in explained},
    }
    if variant is not None:
        evidence["tcp_working"] = [p.path_id for p in carried if p.path_id in TCP_PATHS]
    working = ", ".join(path_label(p.path_id) for p in carried if p.path_id in TCP_PATHS)
    return [
        _finding(
            "poor_network",
            [p.path_id for p in explained],
            evidence,
            confidence,
            {"tcp_working": working or "-"},
            variant=variant,
        )
    ]


def _tls_probe_finding(probe: ProbeResult, tls_paths: Sequence[PathResult]) -> Finding | None:
    target = probe.evidence.get("target") or {}
    neutral = probe.evidence.get("neutral") or {}
    names = {
        "server_name": probe.evidence.get("server_name"),
        "neutral_sni": probe.evidence.get("neutral_sni"),
        "target": probe.target,
    }
    failure = target.get("failure")
    in_tls = target.get("phase") == "tls_handshake"
    pinned = probe.evidence.get("pin_mismatch") is True
    if pinned or (in_tls and failure in CERTIFICATE_FAILURES):
        certificate = target.get("certificate") or {}
        evidence = {
            **names,
            "failure": probe.failure,
            "pin_mismatch": probe.evidence.get("pin_mismatch"),
            "issuer": certificate.get("issuer"),
            "spki_sha256": certificate.get("spki_sha256"),
        }
        if pinned:
            reason = _("its public key differs from the pinned one")
        else:
            reason = _("it does not chain to the expected certificate authority")
        matching = [p for p in tls_paths if _tls_phase_failure(p) in CERTIFICATE_FAILURES]
        confidence = Confidence.HIGH if pinned else Confidence.MEDIUM
        return _finding(
            "tls_interception",
            [p.path_id for p in matching],
            evidence,
            confidence,
            {"reason": reason},
        )
    if not in_tls or failure is None or neutral.get("failure") is not None:
        return None  # reached no ClientHello, worked, or the neutral name fails too
    if failure in RESET_FAILURES:
        mechanism, path_failures = "tls_sni_reset", RESET_FAILURES
    elif failure == "generic_timeout_error":
        mechanism, path_failures = "tls_sni_drop", frozenset({"generic_timeout_error"})
    else:
        return None
    matching = [p for p in tls_paths if _tls_phase_failure(p) in path_failures]
    evidence = {
        **names,
        "failure": failure,
        "after_s": target.get("after_s"),
        "tcp_connect_ms": target.get("tcp_connect_ms"),
        "neutral_tls_handshake_ms": neutral.get("tls_handshake_ms"),
        "disagreeing_probes": ["tls_target_sni", "tls_neutral_sni"],
    }
    return _finding(mechanism, [p.path_id for p in matching], evidence, Confidence.HIGH)


def _tls_findings(facts: _Inputs) -> list[Finding]:
    """tls_sni_reset, tls_sni_drop, tls_interception."""
    findings: list[Finding] = []
    tls_paths = [p for p in facts.paths if _tls_phase_failure(p) is not None]
    seen: set[str] = set()
    for index, probe in facts.all_probes(ProbeKind.TLS_HANDSHAKE):
        finding = _tls_probe_finding(probe, tls_paths)
        if finding is None or finding.mechanism in seen:
            continue
        seen.add(finding.mechanism)
        facts.explained_probes.add(index)
        facts.explained_paths.update(finding.paths)
        findings.append(finding)

    if "tls_interception" not in seen:
        # Paths alone: a certificate the expected CAs do not vouch for. A misconfigured
        # server looks the same, so this is only a low-confidence finding.
        unknown = [p for p in tls_paths if _tls_phase_failure(p) == "ssl_unknown_authority"]
        if unknown:
            facts.explained_paths.update(p.path_id for p in unknown)
            failed = [_path_failure_text(p) for p in unknown]
            evidence = {"failed": failed, "server_name": _host(unknown[0])}
            findings.append(
                _finding(
                    "tls_interception",
                    [p.path_id for p in unknown],
                    evidence,
                    Confidence.LOW,
                    {"failed": "; ".join(failed)},
                    variant="paths",
                )
            )
    return findings


def _tcp_findings(facts: _Inputs) -> list[Finding]:
    """tcp_freeze_16k, tcp_connect_blocked."""
    findings: list[Finding] = []
    bulk_index, bulk = facts.probe(ProbeKind.TCP_BULK, control=True)
    if _present(bulk) and bulk.evidence.get("stalled") is True:
        received = bulk.evidence.get("bytes_received")
        if isinstance(received, int) and FREEZE_MIN_BYTES <= received <= FREEZE_MAX_BYTES:
            facts.explained_probes.add(bulk_index)
            stalled = [
                p
                for p in facts.tcp_paths
                if _stalled_after_connecting(p)
                or (
                    _stage_reached_ok(p, Stage.CONNECT)
                    and (f := _first_failure(p)) is not None
                    and f.failure in ("ice_failed", "dtls_handshake_timeout", "media_stalled")
                )
            ]
            facts.explained_paths.update(p.path_id for p in stalled)
            evidence = _subset(
                bulk.evidence, ("requested", "bytes_received", "stall_after_s", "tcp_connect_ms")
            )
            findings.append(
                _finding("tcp_freeze_16k", [p.path_id for p in stalled], evidence, Confidence.HIGH)
            )
    unexplained = [p for p in facts.tcp_paths if p.path_id not in facts.explained_paths]
    failures = {
        p.path_id: failure
        for p in unexplained
        if (failure := _connect_phase_failure(p) or _reset_before_reply(p, facts)) is not None
    }
    blocked = [p for p in unexplained if p.path_id in failures]
    if blocked and facts.control_tcp_works():
        facts.explained_paths.update(p.path_id for p in blocked)
        # The TLS probe to a blocked port was stopped by the same block, whatever the name.
        facts.explained_probes.update(
            index for p in blocked if (index := _tls_probe_stopped_at_port(facts, _port(p))) >= 0
        )
        evidence = {
            "failed": [_path_failure_text(p) for p in blocked],
            "tcp_to_control": True,
            "disagreeing_probes": ["tcp_to_relay", "tcp_to_control"],
        }
        reset_only = not any(_connect_phase_failure(p) for p in blocked)
        findings.append(
            _finding(
                "tcp_connect_blocked",
                [p.path_id for p in blocked],
                evidence,
                Confidence.MEDIUM,
                {"failures": ", ".join(sorted(set(failures.values())))},
                variant="reset" if reset_only else None,
            )
        )
    return findings


def _reset_before_reply(path: PathResult, facts: _Inputs) -> str | None:
    """A reset (or close) right after the TCP connect, before the relay sent a single byte.

    Plain TCP: the Allocate, the first message, was answered by a reset. TLS: the handshake
    was reset, the TLS probe to the same port saw the neutral name reset as well (so the server
    name is not what the censor keys on, else ``tls_sni_reset``), and no TCP path got a byte
    from the relay (else the address takes TCP and the reset is aimed at TLS: inconclusive)."""
    connect = path.stage(Stage.CONNECT)
    if connect is None or "tcp_connect_ms" not in connect.evidence:
        return None
    if "tls_handshake_ms" in connect.evidence:
        return None  # the relay's side of the TLS handshake arrived
    if not connect.ok:
        if connect.failure not in RESET_FAILURES or _neutral_name_reset(facts, _port(path)) < 0:
            return None
        if any(_relay_answered_over_tcp(p) for p in facts.tcp_paths):
            return None  # the relay's address takes TCP: a reset aimed at TLS, not the address
        return connect.failure
    if _is_tls(path):
        return None
    allocate = path.stage(Stage.TURN_ALLOCATE)
    if allocate is not None and allocate.failure in RESET_FAILURES:
        return allocate.failure
    return None


def _relay_answered_over_tcp(path: PathResult) -> bool:
    connect = path.stage(Stage.CONNECT)
    tls_answered = connect is not None and "tls_handshake_ms" in connect.evidence
    return tls_answered or _stage_reached_ok(path, Stage.TURN_ALLOCATE)


def _neutral_name_reset(facts: _Inputs, port: int | None) -> int:
    """The index of a TLS probe to ``port`` reset with the real and the neutral name, or -1."""
    for index, probe in facts.all_probes(ProbeKind.TLS_HANDSHAKE):
        target = probe.evidence.get("target") or {}
        neutral = probe.evidence.get("neutral") or {}
        if (
            port is not None
            and _probe_port(probe) == port
            and target.get("failure") in RESET_FAILURES
            and neutral.get("failure") in RESET_FAILURES
        ):
            return index
    return -1


def _tls_probe_stopped_at_port(facts: _Inputs, port: int | None) -> int:
    """The index of a TLS probe to ``port`` that the port's block stopped, or -1: reset with
    both names, or stopped at the TCP connect before any name was sent (a censor answering the
    SYN with a reset gives ``connection_refused``)."""
    index = _neutral_name_reset(facts, port)
    if index >= 0 or port is None:
        return index
    for index, probe in facts.all_probes(ProbeKind.TLS_HANDSHAKE):
        target = probe.evidence.get("target") or {}
        if (
            _probe_port(probe) == port
            and target.get("phase") == TLS_TCP_PHASE
            and target.get("failure") is not None
        ):
            return index
    return -1


def _quic_findings(facts: _Inputs) -> list[Finding]:
    findings: list[Finding] = []
    _stun_index, stun = facts.probe(ProbeKind.STUN, control=True)
    udp_passes = _present(stun) and stun.evidence.get("random_answered") is True
    udp_dead = _present(stun) and stun.evidence.get("random_answered") is False
    for index, probe in facts.all_probes(ProbeKind.QUIC_HANDSHAKE):
        target_ok = probe.evidence.get("target_ok")
        neutral_ok = probe.evidence.get("neutral_ok")
        evidence = _subset(
            probe.evidence,
            ("server_name", "neutral_sni", "target_failure", "neutral_failure", "handshake_ms"),
        )
        if target_ok is False and neutral_ok is True:
            facts.explained_probes.add(index)
            # A MASQUE proxy under the blocked name that failed its QUIC handshake.
            name = probe.evidence.get("server_name")
            masque = [
                p
                for p in facts.paths
                if p.path_id == PathId.MASQUE
                and p.path_id not in facts.explained_paths
                and (failed := _first_failure(p)) is not None
                and failed.stage == Stage.CONNECT
                and not _carried_media(p)
                and _host(p) in (None, name)
            ]
            facts.explained_paths.update(p.path_id for p in masque)
            findings.append(
                _finding(
                    "quic_sni_blocked",
                    [p.path_id for p in masque],
                    {**evidence, "disagreeing_probes": ["quic_target_sni", "quic_neutral_sni"]},
                    Confidence.HIGH,
                )
            )
        elif target_ok is False and neutral_ok is False and udp_passes:
            facts.explained_probes.add(index)
            masque = [p for p in facts.paths if p.path_id == PathId.MASQUE and not _works(p)]
            facts.explained_paths.update(p.path_id for p in masque)
            findings.append(
                _finding(
                    "quic_blocked",
                    [p.path_id for p in masque],
                    {**evidence, "udp_to_control": True},
                    Confidence.HIGH,
                )
            )
        elif target_ok is False and neutral_ok is False and udp_dead:
            facts.explained_probes.add(index)  # all UDP is lost: QUIC cannot work either
        if findings:
            break
    return findings


def _dns_findings(facts: _Inputs) -> list[Finding]:
    findings: list[Finding] = []
    for index, probe in facts.all_probes(ProbeKind.DNS):
        evidence = probe.evidence
        system_failure = evidence.get("system_failure")
        doh = evidence.get("doh_addresses") or []
        # A private or reserved answer DoH gave too is the name's real address (an office
        # network, the lab's loopback); only one DoH did not confirm is suspicious.
        bogons = [a for a in evidence.get("system_bogons") or [] if a not in doh]
        if not doh or evidence.get("doh_failure") or any(a in SINKHOLE_ADDRESSES for a in doh):
            continue  # no answer to compare with, or a filtering DoH resolver's sinkhole
        if system_failure in DNS_FAILURES or bogons:
            facts.explained_probes.add(index)
            name = evidence.get("name", probe.target)
            resolve_failed = [
                p
                for p in facts.paths
                if (s := p.stage(Stage.RESOLVE)) is not None
                and s.failure in DNS_FAILURES
                and s.evidence.get("name") == name
            ]
            facts.explained_paths.update(p.path_id for p in resolve_failed)
            system_result = system_failure or ", ".join(evidence.get("system_addresses") or [])
            findings.append(
                _finding(
                    "dns_tampering",
                    [p.path_id for p in resolve_failed],
                    {
                        "name": name,
                        "system_failure": system_failure,
                        "system_addresses": evidence.get("system_addresses"),
                        "system_bogons": bogons,
                        "doh_addresses": doh,
                        "disagreeing_probes": ["system_resolver", "dns_over_https"],
                    },
                    Confidence.HIGH,
                    {"system_result": system_result},
                )
            )
    return findings


def _blackhole(facts: _Inputs) -> list[Finding]:
    stalled = [
        p
        for p in facts.paths
        if p.path_id not in facts.explained_paths and _stalled_after_connecting(p)
    ]
    if not stalled:
        return []
    facts.explained_paths.update(p.path_id for p in stalled)
    failures = [_path_failure_text(p) for p in stalled]
    evidence = {"failed": failures}
    return [
        _finding(
            "transport_data_blackhole",
            [p.path_id for p in stalled],
            evidence,
            Confidence.MEDIUM,
            {"failures": "; ".join(failures)},
        )
    ]


def _unexplained(facts: _Inputs) -> list[Finding]:
    paths = [
        p
        for p in facts.paths
        if p.path_id not in facts.explained_paths
        and (
            p.failure is not None
            or p.voice.grade in (Grade.DEGRADED, Grade.UNUSABLE)
            or p.video.grade in (Grade.DEGRADED, Grade.UNUSABLE)
        )
    ]
    probes = [
        (index, probe)
        for index, probe in enumerate(facts.probes)
        if index not in facts.explained_probes
        and probe.failure is not None
        and (facts.control_available or not probe.control)
    ]
    if not paths and not probes:
        return []
    failures = [_path_failure_text(p) for p in paths] + [
        f"{probe.probe} {probe.target}: {probe.failure}" for _index, probe in probes
    ]
    evidence: dict[str, Any] = {"failed": failures, "control_available": facts.control_available}
    return [
        _finding(
            INCONCLUSIVE,
            [p.path_id for p in paths],
            evidence,
            Confidence.LOW,
            {"failures": "; ".join(failures)},
        )
    ]


def diagnose(
    paths: Sequence[PathResult], probes: Sequence[ProbeResult], *, control_available: bool
) -> tuple[Finding, ...]:
    """Findings, strongest explanation first; empty when nothing failed and nothing is odd."""
    facts = _Inputs(paths, probes, control_available)
    findings: list[Finding] = []
    # Order matters: a rule marks what it explains, and later, weaker rules skip it.
    for rule in (
        _dns_findings,
        _tls_findings,
        _allowlist,
        _udp_findings,
        _flow_findings,
        _tcp_findings,
        _quic_findings,
        _poor_network,
        _blackhole,
        _unexplained,
    ):
        findings.extend(rule(facts))
    return tuple(findings)
