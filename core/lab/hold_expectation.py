"""A lab hold beside the scenario's ``hold:`` expectation, and presets scaled for tests.

A preset keeps its real numbers (a cut 20 s into a flow, a 30 s binding); ``scaled`` shrinks
every time and volume of its rules and of its hold expectation by one factor, so a test can run
it with a shorter hold. The flow's age when the hold begins (the fast window and the time to the
verdict) does not shrink, which the factor has to leave room for.
"""

from __future__ import annotations

from dataclasses import replace

from callpath.core.i18n import _
from callpath.core.lab.scenario import HeldPathExpectation, HoldExpectation, RuleSpec, Scenario
from callpath.core.model.results import HoldResult, RunResult

SCALED_PARAMETERS = ("max_seconds", "max_bytes", "idle_s", "burst_bytes")


def compare_hold(expect: HoldExpectation, run: RunResult) -> list[str]:
    """Every way the run's holds differ from ``expect`` (empty: they agree)."""
    holds = {hold.path_id: hold for hold in run.holds}
    differences: list[str] = []
    for path_id, want in expect.paths.items():
        hold = holds.get(path_id)
        if hold is None:
            differences.append(
                _("{path}: expected a held call, none was held").format(path=path_id)
            )
            continue
        differences += _differences(path_id, want, hold)
    return differences


def _differences(path_id: str, want: HeldPathExpectation, hold: HoldResult) -> list[str]:
    found: list[str] = []
    if hold.ended.value != want.ended:
        found.append(
            _("{path}: expected the hold to end {expected}, it ended {ended}").format(
                path=path_id, expected=want.ended, ended=hold.ended.value
            )
        )
        return found
    if want.ended != "held" and hold.mechanism != want.mechanism:
        found.append(
            _("{path}: expected the mechanism {expected}, found {mechanism}").format(
                path=path_id, expected=want.mechanism or "-", mechanism=hold.mechanism or "-"
            )
        )
    age = hold.evidence.get("flow_age_s")
    if want.flow_age_s is not None and not _within(age, want.flow_age_s):
        found.append(
            _("{path}: expected it at {low}–{high} s of flow, found {value}").format(
                path=path_id, low=want.flow_age_s[0], high=want.flow_age_s[1], value=age
            )
        )
    volume = _flow_bytes(hold)
    if want.flow_bytes is not None and not _within(volume, want.flow_bytes):
        found.append(
            _("{path}: expected it after {low}–{high} bytes of flow, found {value}").format(
                path=path_id, low=want.flow_bytes[0], high=want.flow_bytes[1], value=volume
            )
        )
    return found


def _flow_bytes(hold: HoldResult) -> int | None:
    if "burst_bytes" in hold.evidence:
        return int(hold.evidence["burst_bytes"])
    sent, received = hold.evidence.get("sent_bytes"), hold.evidence.get("received_bytes")
    if isinstance(sent, int) and isinstance(received, int):
        return sent + received
    return None


def _within(value: object, bounds: tuple[float, float]) -> bool:
    return isinstance(value, int | float) and bounds[0] <= value <= bounds[1]


def scaled(scenario: Scenario, factor: float) -> Scenario:
    """``scenario`` with every time and volume of its rules and hold expectation times
    ``factor`` (module docstring)."""
    rules = tuple(
        RuleSpec(
            spec.kind,
            {
                name: (_scale(value, factor) if name in SCALED_PARAMETERS else value)
                for name, value in spec.params.items()
            },
        )
        for spec in scenario.rules
    )
    hold = scenario.hold
    if hold is not None:
        hold = HoldExpectation(
            hold.seconds * factor,
            {
                path_id: replace(
                    want,
                    flow_age_s=_scale_range(want.flow_age_s, factor),
                    flow_bytes=_scale_bytes(want.flow_bytes, factor),
                )
                for path_id, want in hold.paths.items()
            },
        )
    return replace(scenario, rules=rules, hold=hold)


def _scale(value: object, factor: float) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return round(value * factor) if isinstance(value, int) else value * factor


def _scale_bytes(bounds: tuple[int, int] | None, factor: float) -> tuple[int, int] | None:
    if bounds is None:
        return None
    return (round(bounds[0] * factor), round(bounds[1] * factor))


def _scale_range(bounds: tuple[float, float] | None, factor: float) -> tuple[float, float] | None:
    if bounds is None:
        return None
    return (bounds[0] * factor, bounds[1] * factor)
