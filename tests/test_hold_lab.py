"""The hold presets: the binding rule, the scenario's ``hold:`` block, and each preset run in
the userspace lab with its times scaled down (the files keep the real values), through
``run_source`` and through ``callpath lab --hold``."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from callpath.core.cli.main import main
from callpath.core.lab.hold_expectation import compare_hold, scaled
from callpath.core.lab.rules import (
    Action,
    Censor,
    ExpireIdleBinding,
    FlowDirection,
    Packet,
    Transport,
)
from callpath.core.lab.scenario import ScenarioError, find_scenario, parse_scenario
from callpath.core.lab.source import LabSource
from callpath.core.model.config import HoldConfig
from callpath.core.model.results import HoldEnd
from callpath.core.run.source import run_source

CLIENT = ("10.0.0.2", 40000)
FAR = ("10.0.0.9", 3478)
HOLD_PRESETS = ("udp-cut-20s", "udp-cut-volume", "nat-binding-30s", "udp-burst-cap")


def udp(now: float, direction: FlowDirection) -> Packet:
    return Packet(now, Transport.UDP, direction, CLIENT, FAR, b"x" * 100)


def test_a_binding_expires_after_one_way_silence_only() -> None:
    censor = Censor([ExpireIdleBinding(idle_s=30)])
    assert censor.evaluate(udp(0.0, FlowDirection.OUTBOUND)).action == Action.PASS
    # Inbound traffic alone does not refresh the binding ...
    for second in range(1, 30):
        assert censor.evaluate(udp(float(second), FlowDirection.INBOUND)).action == Action.PASS
    # ... so 30 s after the last outbound packet it is gone, and the flow with it, both ways.
    expired = censor.evaluate(udp(30.0, FlowDirection.INBOUND))
    assert expired.action == Action.DROP and expired.mechanism == "nat_binding_expired"
    assert censor.evaluate(udp(31.0, FlowDirection.OUTBOUND)).action == Action.DROP


def test_outbound_keep_alives_keep_a_binding() -> None:
    censor = Censor([ExpireIdleBinding(idle_s=30)])
    for second in range(0, 120, 5):  # ICE consent checks every 5 s
        assert censor.evaluate(udp(float(second), FlowDirection.OUTBOUND)).action == Action.PASS
        assert censor.evaluate(udp(second + 2.5, FlowDirection.INBOUND)).action == Action.PASS


def test_every_hold_preset_states_its_hold_and_keeps_the_real_numbers() -> None:
    for name in HOLD_PRESETS:
        scenario = find_scenario(name)
        assert scenario.hold is not None and scenario.hold.seconds == 45, name
        held = [p for p, want in scenario.hold.paths.items() if want.ended == "held"]
        assert "turn-tcp" in held, name  # a path the preset does not touch
    cut = find_scenario("udp-cut-20s")
    assert cut.rules[0].params == {"max_seconds": 20}
    half = scaled(cut, 0.5)
    assert half.rules[0].params == {"max_seconds": 10}
    assert half.hold is not None and half.hold.seconds == 22.5
    assert half.hold.paths["direct"].flow_age_s == (8.0, 11.0)
    volume = scaled(find_scenario("udp-cut-volume"), 0.5)
    assert volume.rules[0].params == {"max_bytes": 2_000_000}


BASE = (
    "version: 1\nid: t\ntitle: t\nexplanation: t\npaths: [direct, turn-tcp]\nrules: []\n"
    "expect: {voice: [], video: []}\n"
)


@pytest.mark.parametrize(
    ("hold", "message"),
    [
        ("hold: {paths: {}}", "hold needs 'seconds' and 'paths'"),
        ("hold: {seconds: 0, paths: {}}", "hold.seconds must be"),
        ("hold: {seconds: 45, paths: {turn-udp: {ended: held}}}", "not one of the scenario"),
        ("hold: {seconds: 45, paths: {direct: {ended: gone}}}", "ended must be one of"),
        ("hold: {seconds: 45, paths: {direct: {}}}", "needs 'ended'"),
        (
            "hold: {seconds: 45, paths: {direct: {ended: media_stopped, mechanism: magic}}}",
            "mechanism must be one of",
        ),
        (
            "hold: {seconds: 45, paths: {direct: {ended: held, flow_age_s: [5, 1]}}}",
            "must be [low, high]",
        ),
    ],
)
def test_a_bad_hold_block_names_the_line_and_the_fix(hold: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[")) as error:
        parse_scenario(BASE + hold + "\n", Path("s.yaml"))
    assert "s.yaml:8" in str(error.value)


# Factor and hold per preset: the flow is ~7 s old when the hold begins (the fast window and
# the probes), and a stop needs a few quiet seconds, a cap four steady ones, to be judged.
SCALED_RUNS = {
    "udp-cut-20s": (0.6, 12.0),
    "udp-cut-volume": (0.5, 12.0),
    "nat-binding-30s": (0.2, 10.0),  # a 6 s binding: a live call keeps it all the same
    # The 1.5 MB allowance runs out a few seconds into the hold; the cap then needs its four
    # steady seconds, with room for a loaded machine.
    "udp-burst-cap": (0.5, 26.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", HOLD_PRESETS)
async def test_each_hold_preset_names_its_cut_and_holds_the_untouched_path(name: str) -> None:
    factor, seconds = SCALED_RUNS[name]
    scenario = scaled(find_scenario(name), factor)
    assert scenario.hold is not None
    run = await run_source(
        LabSource(scenario), lambda event: None, HoldConfig(duration_s=seconds, every_path=True)
    )
    holds = {hold.path_id: hold for hold in run.holds}
    assert set(holds) == {"direct", "turn-tcp"}, run.paths
    assert compare_hold(scenario.hold, run) == [], holds
    assert holds["turn-tcp"].ended == HoldEnd.HELD
    assert holds["turn-tcp"].achieved_s == seconds


@pytest.mark.slow
def test_callpath_lab_hold_names_the_cut_and_the_held_path(tmp_path: Path) -> None:
    scenario = tmp_path / "cut.yaml"
    scenario.write_text(
        BASE.replace("rules: []", "rules:\n  - cut_udp_flow: {max_seconds: 12}").replace(
            "{voice: [], video: []}", "{voice: [direct, turn-tcp], video: [direct, turn-tcp]}"
        )
        + "hold:\n  seconds: 12\n  paths:\n"
        + "    direct: {ended: media_stopped, mechanism: flow_cut, flow_age_s: [9, 14]}\n"
        + "    turn-tcp: {ended: held}\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.json"
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "--lang",
                "en",
                "lab",
                "--scenario",
                str(scenario),
                "--hold",
                "12s",
                "--json",
                str(report),
            ]
        )
    text = out.getvalue()
    assert code == 0, text
    assert "TURN over TCP: held 12 s" in text
    assert "direct UDP: media stopped" in text and "the flow was cut after" in text
    assert "The hold matches the scenario." in text
    # The verdict came first, then the hold.
    assert text.index("Voice and video calls work") < text.index("Keeping the call going")
    assert '"hold"' in report.read_text(encoding="utf-8")
