"""STUN and UDP-flow probes against the control server (127.0.0.2), through the lab's censor
middlebox (127.0.0.3) where a test needs blocking. Assertions leave slack for a busy machine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callpath.core.lab.middlebox import Middlebox
from callpath.core.lab.rules import Censor, CutUdpFlow, DropStun, DropUdp, Rule, Throttle
from callpath.core.model.probe_results import ProbeKind
from callpath.core.probes import ProbeConfig
from callpath.core.probes.stun import (
    is_binding_success,
    padded_binding_request,
    probe_stun,
    random_datagram,
)
from callpath.core.probes.udp_flow import (
    FlowMeter,
    parse_rtp,
    probe_udp_flow,
    rate_ceiling,
    rtp_packet,
)
from callpath.core.servers.control_server import ControlServer

SERVER_HOST = "127.0.0.2"
Address = tuple[str, int]

FAST = ProbeConfig(
    stun_attempts=2,
    stun_wait_s=0.6,
    flow_duration_s=2.4,
    flow_burst_s=0.8,
    flow_silence_s=0.6,
)


@pytest.fixture
async def control() -> AsyncIterator[ControlServer]:
    async with ControlServer() as server:
        await server.start(SERVER_HOST, tcp_bulk_port=None, quic_port=None)
        yield server


async def _through(box: Middlebox, control: ControlServer) -> Address:
    assert control.udp_address is not None
    return await box.expose_udp(control.udp_address)


# --- pure parts ------------------------------------------------------------------------------


def test_padded_request_has_the_asked_size_and_the_random_datagram_is_not_stun() -> None:
    request = padded_binding_request(120, b"\x01" * 12)
    assert len(request) == 120
    assert request[4:8] == b"\x21\x12\xa4\x42"
    assert not is_binding_success(request, {b"\x01" * 12})  # a request, not a response
    decoy = random_datagram(120)
    assert len(decoy) == 120 and 4 <= decoy[0] <= 15 and parse_rtp(decoy) is None


def test_rtp_round_trip() -> None:
    packet = rtp_packet(65537, 960, 0xDEADBEEF, b"x" * 160)
    assert len(packet) == 172
    assert packet[0] == 0x80 and packet[1] == 111
    assert parse_rtp(packet) == (1, 0xDEADBEEF)


def test_flow_meter_finds_the_cut_and_keeps_loss_before_it() -> None:
    meter = FlowMeter(started=100.0, silence_s=0.5)
    for sequence in range(100):
        at = 100.0 + sequence * 0.02
        meter.sent(sequence, 180, "base", at)
        if sequence < 40 and sequence != 10:
            meter.received(sequence, 180, at + 0.01)
    summary = meter.summary()
    assert summary["cut_off"] is True
    assert summary["cutoff_packets"] == 40
    assert summary["cutoff_bytes"] == 40 * 180
    assert summary["cutoff_bytes_both_ways"] == 40 * 180 + 39 * 180
    assert summary["cutoff_s"] == pytest.approx(0.8)
    assert summary["base_loss_pct"] == pytest.approx(2.5)  # one of the 40 before the cut
    assert summary["rtt_ms"] == pytest.approx(10.0)


def test_flow_meter_short_silent_tail_is_loss_not_a_cut() -> None:
    meter = FlowMeter(started=0.0, silence_s=0.5)
    for sequence in range(50):
        meter.sent(sequence, 180, "base", sequence * 0.02)
        if sequence < 45:
            meter.received(sequence, 180, sequence * 0.02 + 0.01)
    assert meter.cutoff() is None  # the last five span 0.08 s


def test_flow_meter_never_answered_is_not_a_cut() -> None:
    meter = FlowMeter(started=0.0, silence_s=0.5)
    for sequence in range(100):
        meter.sent(sequence, 180, "base", sequence * 0.02)
    assert meter.cutoff() is None
    assert meter.summary()["base_loss_pct"] == 100.0


def test_flow_meter_counts_the_packets_still_out() -> None:
    # The probe stops waiting for late echoes once none is out: a clean path does not wait.
    meter = FlowMeter(started=0.0, silence_s=0.5)
    for sequence in range(3):
        meter.sent(sequence, 180, "base", sequence * 0.02)
    assert meter.outstanding == 3
    meter.received(1, 180, 0.05)
    meter.received(1, 180, 0.06)  # a duplicate answers nothing more
    meter.received(7, 180, 0.06)  # not ours
    assert meter.outstanding == 2
    meter.received(0, 180, 0.07)
    meter.received(2, 180, 0.08)
    assert meter.outstanding == 0


# --- STUN probe ------------------------------------------------------------------------------


async def _stun_through(control: ControlServer, *rules: Rule) -> dict[str, object]:
    async with Middlebox(Censor(rules)) as box:
        result = await probe_stun(await _through(box, control), FAST)
    assert result.probe == ProbeKind.STUN and result.control
    return {"failure": result.failure, **result.evidence}


async def test_stun_probe_open_network(control: ControlServer) -> None:
    evidence = await _stun_through(control)
    assert evidence["failure"] is None
    assert evidence["stun_answered"] and evidence["random_answered"]
    assert evidence["decoy_answered"] and evidence["decoy_stun_answered"]
    assert isinstance(evidence["stun_rtt_ms"], float)


async def test_stun_probe_sees_stun_dropped_by_signature(control: ControlServer) -> None:
    evidence = await _stun_through(control, DropStun())
    assert evidence["failure"] == "stun_no_response"
    assert evidence["stun_answered"] is False and evidence["decoy_stun_answered"] is False
    assert evidence["random_answered"] is True and evidence["decoy_answered"] is True


async def test_stun_probe_sees_all_udp_dropped(control: ControlServer) -> None:
    evidence = await _stun_through(control, DropUdp())
    assert evidence["failure"] == "stun_no_response"
    assert evidence["stun_answered"] is False and evidence["random_answered"] is False


async def test_stun_probe_port_unreachable_is_refused() -> None:
    async with ControlServer() as server:
        await server.start(SERVER_HOST, tcp_bulk_port=None, quic_port=None)
        assert server.udp_address is not None
        address = server.udp_address
    result = await probe_stun(address, FAST)  # closed: ICMP port unreachable on loopback
    assert result.failure == "connection_refused"
    assert result.evidence["random_answered"] is False


def _step(rate: float, loss: float, echoed: float, packets: int = 100) -> dict[str, float]:
    return {
        "rate_kBps": rate,
        "offered_kBps": rate,
        "loss_pct": loss,
        "echoed_kBps": echoed,
        "packets_sent": packets,
    }


def test_rate_ceiling_is_the_flat_echo_under_a_cap() -> None:
    per_flow = [_step(3, 0, 3.0), _step(8, 40, 4.8, 8), _step(32, 84, 5.1, 32), _step(128, 96, 5.2)]
    assert rate_ceiling(per_flow) == 5.2
    # A cap the calls already fill: the short low steps lose as much as the top one, but
    # against the long normal phase the loss rose and the echo stayed nearly flat.
    shared = [_step(3, 10, 2.7), _step(8, 87.5, 1.0, 8), _step(32, 72, 9.0, 32), _step(128, 91, 12)]
    assert rate_ceiling(shared) == 12.0


def test_rate_independent_loss_has_no_ceiling() -> None:
    lossy = [_step(3, 28, 2.2), _step(8, 25, 6.0, 8), _step(32, 37.5, 20.0, 32), _step(128, 29, 91)]
    assert rate_ceiling(lossy) is None
    clean = [_step(3, 0, 3.0), _step(8, 0, 8.0, 8), _step(32, 0, 32.0, 32), _step(128, 0, 128)]
    assert rate_ceiling(clean) is None
    # A busy machine losing some of the top step: the echo still grows with the rate sent.
    busy = [_step(3, 0, 3.0), _step(128, 55, 57.6)]
    assert rate_ceiling(busy) is None
    assert rate_ceiling(clean[:1]) is None


def test_flow_meter_summarises_each_phase() -> None:
    meter = FlowMeter(started=0.0, silence_s=0.5)
    for index in range(16):  # 16 packets of 500 bytes in 0.5 s: 16 KB/s, half of it echoed
        meter.sent(index, 500, "step0", index / 32)
        if index % 2 == 0:
            meter.received(index, 500, index / 32 + 0.01)
    (step,) = meter.step_summary([("step0", 16.0, 0.5), ("step1", 64.0, 0.5)])
    assert step["phase"] == "step0" and step["rate_kBps"] == 16.0
    assert step["packets_sent"] == 16 and step["packets_echoed"] == 8
    assert step["loss_pct"] == 50.0
    assert step["offered_kBps"] == 16.0 and step["echoed_kBps"] == 8.0


# --- UDP flow probe --------------------------------------------------------------------------


async def _flow_through(control: ControlServer, *rules: Rule) -> dict[str, object]:
    async with Middlebox(Censor(rules)) as box:
        result = await probe_udp_flow(await _through(box, control), FAST)
    assert result.probe == ProbeKind.UDP_FLOW
    return {"failure": result.failure, **result.evidence}


async def test_flow_probe_open_network(control: ControlServer) -> None:
    evidence = await _flow_through(control)
    assert evidence["failure"] is None
    assert evidence["cut_off"] is False
    assert evidence["packets_sent"] >= 100  # base phase and burst phase ran
    base_loss = evidence["base_loss_pct"]
    assert isinstance(base_loss, float) and base_loss < 10
    assert evidence["burst_loss_pct"] is not None


async def test_flow_probe_records_the_cut_off(control: ControlServer) -> None:
    # 60 packets both ways counted: the 30th packet sent is the last echoed.
    evidence = await _flow_through(control, CutUdpFlow(max_packets=60))
    assert evidence["failure"] == "media_stalled"
    assert evidence["cut_off"] is True
    packets = evidence["cutoff_packets"]
    assert isinstance(packets, int) and 25 <= packets <= 31
    cutoff_bytes = evidence["cutoff_bytes"]
    assert isinstance(cutoff_bytes, int) and 160 * packets <= cutoff_bytes <= 200 * packets
    cutoff_s = evidence["cutoff_s"]
    assert isinstance(cutoff_s, float) and 0.3 < cutoff_s < 1.5
    assert evidence["fresh_flow_answered"] is True  # only that flow was cut


async def test_flow_probe_sees_a_residual_block(control: ControlServer) -> None:
    evidence = await _flow_through(control, CutUdpFlow(max_packets=60, residual_block_s=30))
    assert evidence["cut_off"] is True
    assert evidence["fresh_flow_answered"] is False


async def test_flow_probe_sees_loss_rise_with_rate(control: ControlServer) -> None:
    # ~9 KB/s passes (50 pps × ~180 B); the 200 pps burst (~36 KB/s) loses most packets.
    evidence = await _flow_through(control, Throttle(rate_bytes_per_s=14_000, burst_bytes=4_000))
    base_loss, burst_loss = evidence["base_loss_pct"], evidence["burst_loss_pct"]
    assert isinstance(base_loss, float) and isinstance(burst_loss, float)
    assert base_loss < 10
    assert burst_loss > 30


async def test_flow_probe_rate_steps_show_a_shared_cap(control: ControlServer) -> None:
    """A link capped at 12 KB/s for every flow together: the steps' echo stays near the cap
    while the rate sent grows 16-fold, so the probe reports the ceiling."""
    cap = Throttle(rate_bytes_per_s=12_000, burst_bytes=3_000, shared=True)
    evidence = await _flow_through(control, cap)
    steps = evidence["rate_steps"]
    assert isinstance(steps, list) and [s["rate_kBps"] for s in steps[1:]] == [8.0, 32.0, 128.0]
    assert steps[0]["phase"] == "base"
    assert steps[-1]["loss_pct"] > 60 and steps[-1]["loss_pct"] > steps[0]["loss_pct"] + 20
    ceiling = evidence["ceiling_kBps"]
    assert isinstance(ceiling, float) and 5 <= ceiling <= 20


async def test_flow_probe_rate_steps_on_an_open_network_have_no_ceiling(
    control: ControlServer,
) -> None:
    evidence = await _flow_through(control)
    steps = evidence["rate_steps"]
    assert isinstance(steps, list) and len(steps) == 4  # the normal phase and three steps
    assert evidence["ceiling_kBps"] is None
    assert steps[-1]["packets_sent"] >= 100  # the top step really sent ~128 KB/s


async def test_flow_probe_all_udp_dropped(control: ControlServer) -> None:
    evidence = await _flow_through(control, DropUdp())
    assert evidence["failure"] == "generic_timeout_error"
    assert evidence["packets_echoed"] == 0 and evidence["cut_off"] is False
