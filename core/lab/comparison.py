"""A lab run beside its scenario's expectation: the verdict and the named mechanisms."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callpath.core.lab.scenario import Scenario
from callpath.core.model.findings import INCONCLUSIVE, Mechanism
from callpath.core.model.results import RunResult

# A port-level block is the more precise name of its address-level one: where the scenario
# expects the general name, the precise one (when the same address answered on another port,
# as the userspace lab's single middlebox address always does) names the same thing.
REFINES = {
    Mechanism.TCP_PORT_BLOCKED.value: Mechanism.TCP_CONNECT_BLOCKED.value,
    Mechanism.UDP_PORT_BLOCKED.value: Mechanism.UDP_IP_BLOCKED.value,
}


def as_expected(found: Iterable[str], expected: frozenset[str]) -> frozenset[str]:
    """``found`` with each refinement read as the general name the scenario expects."""
    return frozenset(
        REFINES[m] if m not in expected and REFINES.get(m) in expected else m for m in found
    )


@dataclass(frozen=True)
class Comparison:
    """The verdict and the named mechanisms beside what the scenario expects.

    Mechanisms agree (docs/lab.md) when the diagnosis names exactly the expected ones — every
    expected mechanism named, nothing else named (``poor_network`` and ``no_direct_route``
    count as named) — and no ``inconclusive`` finding covers a path the scenario expects to
    restore voice or video, or appears at all in a scenario that expects no mechanism."""

    voice_expected: frozenset[str]
    voice_found: frozenset[str]
    video_expected: frozenset[str]
    video_found: frozenset[str]
    mechanisms_expected: frozenset[str] = frozenset()
    mechanisms_found: frozenset[str] = frozenset()
    inconclusive_paths: frozenset[str] = frozenset()  # paths an inconclusive finding lists
    inconclusive: bool = False  # the diagnosis made an inconclusive finding

    @property
    def verdict_agrees(self) -> bool:
        return self.voice_expected == self.voice_found and self.video_expected == self.video_found

    @property
    def missing(self) -> frozenset[str]:
        return self.mechanisms_expected - self.mechanisms_found

    @property
    def unexpected(self) -> frozenset[str]:
        return self.mechanisms_found - self.mechanisms_expected

    @property
    def inconclusive_counts(self) -> bool:
        """Whether the inconclusive finding (if any) is a disagreement (rule above)."""
        if not self.inconclusive:
            return False
        restoring = self.voice_expected | self.video_expected
        return not self.mechanisms_expected or bool(self.inconclusive_paths & restoring)

    @property
    def mechanisms_agree(self) -> bool:
        return not self.missing and not self.unexpected and not self.inconclusive_counts

    @property
    def agrees(self) -> bool:
        return self.verdict_agrees and self.mechanisms_agree


def comparison(
    scenario: Scenario,
    voice_found: Iterable[str],
    video_found: Iterable[str],
    findings: Iterable[tuple[str, Iterable[str]]],
    paths_run: frozenset[str] | None = None,
    *,
    with_sni: bool = False,
) -> Comparison:
    """What was found — restoring paths and (mechanism, paths) of each finding — beside what
    ``scenario`` expects; ``paths_run`` limits the expected verdict to the paths a lab has.
    ``with_sni``: the TLS relay was also tried under other server names (``expect_with_sni``)."""
    findings = [(mechanism, tuple(paths)) for mechanism, paths in findings]
    inconclusive = [paths for mechanism, paths in findings if mechanism == INCONCLUSIVE]
    expect = scenario.expect
    if with_sni and scenario.expect_with_sni is not None:
        expect = scenario.expect_with_sni
    voice, video = expect.voice, expect.video
    if paths_run is not None:
        voice, video = voice & paths_run, video & paths_run
    return Comparison(
        voice_expected=voice,
        voice_found=frozenset(voice_found),
        video_expected=video,
        video_found=frozenset(video_found),
        mechanisms_expected=expect.mechanisms,
        mechanisms_found=as_expected(
            (m for m, _paths in findings if m != INCONCLUSIVE), expect.mechanisms
        ),
        inconclusive_paths=frozenset(p for paths in inconclusive for p in paths),
        inconclusive=bool(inconclusive),
    )


def compare(
    scenario: Scenario,
    run: RunResult,
    paths_run: frozenset[str] | None = None,
    *,
    with_sni: bool = False,
) -> Comparison:
    """A run (a report read back with ``report_from_dict``) beside ``scenario``; ``with_sni``:
    the TLS relay was also tried under other server names."""
    return comparison(
        scenario,
        run.verdict.voice_restored_by,
        run.verdict.video_restored_by,
        ((f.mechanism, f.paths) for f in run.findings),
        with_sni=with_sni,
        paths_run=paths_run,
    )
