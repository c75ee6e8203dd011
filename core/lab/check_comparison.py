"""A lab check beside its scenario's messenger expectation (``expect.network``,
``expect.messengers`` directly, ``expect.messengers_through_proxy`` through the scenario's
first check proxy)."""

from __future__ import annotations

from dataclasses import dataclass

from callpath.core.checkup.results import CheckResult
from callpath.core.lab.scenario import Scenario
from callpath.core.messengers.judge import DIRECT


@dataclass(frozen=True)
class CheckDifference:
    what: str  # network | <messenger> messages (direct) | …
    expected: str
    found: str


def compare_check(scenario: Scenario, result: CheckResult) -> tuple[CheckDifference, ...]:
    """Every expectation the check did not meet (empty: it agrees)."""
    expect = scenario.expect
    differences: list[CheckDifference] = []
    if expect.network is not None and expect.network != result.network.value:
        differences.append(CheckDifference("network", expect.network, result.network.value))
    first_proxy = next((p.id for p in result.proxies if p.usable), None)
    for through, expectations in (
        (DIRECT, expect.messengers),
        (first_proxy, expect.messengers_through_proxy),
    ):
        for messenger, expected in expectations.items():
            found = next(
                (m for m in result.messengers if m.id == messenger and m.through == through), None
            )
            route = through or "proxy"
            for field in ("messages", "calls"):
                wanted = getattr(expected, field)
                if wanted is None:
                    continue
                value = "missing" if found is None else getattr(found, field).value.value
                if value != wanted:
                    differences.append(
                        CheckDifference(f"{messenger} {field} ({route})", wanted, value)
                    )
    return tuple(differences)
