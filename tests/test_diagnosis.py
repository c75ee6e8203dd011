"""The diagnosis over recorded results (tests/fixtures/diagnosis/*.json), one case per file,
and over whole lab runs recorded by ``tests/record_diagnosis.py`` (fixtures/diagnosis/recorded).

Each fixture holds path results as the engine records them, probe results as the probes record
them, whether the control server was reachable, and the exact findings expected: mechanism,
confidence and affected paths. No other finding may appear.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callpath.core import i18n
from callpath.core.diagnosis.rules import diagnose
from callpath.core.lab.comparison import as_expected
from callpath.core.lab.scenario import find_scenario
from callpath.core.model.findings import (
    CENSORSHIP_MECHANISMS,
    INCONCLUSIVE,
    NETWORK_MECHANISMS,
    Finding,
)
from callpath.core.model.probe_results import ProbeResult
from callpath.core.model.results import (
    Direction,
    Grade,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    SelectedPair,
    Stage,
    StageResult,
)

FIXTURES = Path(__file__).parent / "fixtures" / "diagnosis"
CASES = sorted(FIXTURES.glob("*.json"))
# Whole lab runs, recorded by ``python -m tests.record_diagnosis`` (real timings and evidence).
RECORDED = sorted((FIXTURES / "recorded").glob("*.json"))


def _quality(data: dict[str, Any] | None, kind: MediaKind) -> MediaQuality:
    if data is None:
        return MediaQuality.not_tested(kind)
    return MediaQuality(
        kind=MediaKind(data["kind"]),
        grade=Grade(data["grade"]),
        mos=data.get("mos"),
        rtt_ms=data.get("rtt_ms"),
        jitter_ms=data.get("jitter_ms"),
        loss_pct=data.get("loss_pct"),
        bitrate_kbps=data.get("bitrate_kbps"),
        reasons=tuple(data.get("reasons", ())),
        samples=tuple(
            QualitySample(
                t=s["t"],
                kind=MediaKind(s["kind"]),
                direction=Direction(s["direction"]),
                rtt_ms=s.get("rtt_ms"),
                jitter_ms=s.get("jitter_ms"),
                loss_pct=s.get("loss_pct"),
                bitrate_kbps=s.get("bitrate_kbps"),
            )
            for s in data.get("samples", ())
        ),
    )


def load_path(data: dict[str, Any]) -> PathResult:
    pair = data.get("selected_pair")
    return PathResult(
        path_id=data["path_id"],
        exercised=data["exercised"],
        failure=data.get("failure"),
        stages=tuple(
            StageResult(
                stage=Stage(stage["stage"]),
                started_at=stage["started_at"],
                duration=stage["duration"],
                failure=stage.get("failure"),
                evidence=stage.get("evidence", {}),
            )
            for stage in data["stages"]
        ),
        server=data.get("server"),
        selected_pair=SelectedPair(**pair) if pair else None,
        voice=_quality(data.get("voice"), MediaKind.AUDIO),
        video=_quality(data.get("video"), MediaKind.VIDEO),
        duration=data.get("duration", 0.0),
    )


def load_probe(data: dict[str, Any]) -> ProbeResult:
    return ProbeResult(
        probe=data["probe"],
        target=data["target"],
        started_at=data["started_at"],
        duration=data["duration"],
        failure=data.get("failure"),
        evidence=data.get("evidence", {}),
        control=data.get("control", False),
    )


def as_recorded(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    """Findings in the form a fixture's ``expected`` list records them."""
    return [
        {"mechanism": f.mechanism, "confidence": f.confidence.value, "paths": list(f.paths)}
        for f in findings
    ]


def run_case(case: Path) -> tuple[dict[str, Any], tuple[Finding, ...]]:
    data = json.loads(case.read_text())
    findings = diagnose(
        [load_path(p) for p in data["paths"]],
        [load_probe(p) for p in data["probes"]],
        control_available=data["control_available"],
    )
    return data, findings


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    i18n.set_language("en")
    yield
    i18n.set_language("en")


def test_every_rule_has_a_fixture() -> None:
    expected = {
        finding["mechanism"]
        for case in CASES
        for finding in json.loads(case.read_text())["expected"]
    }
    assert expected == CENSORSHIP_MECHANISMS | NETWORK_MECHANISMS | {INCONCLUSIVE}
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_diagnosis_matches_the_recorded_case(case: Path) -> None:
    data, findings = run_case(case)
    assert as_recorded(findings) == data["expected"], data["description"]
    for finding in findings:
        assert finding.summary and finding.recommendation and finding.technical
        assert "{" not in finding.summary + finding.recommendation + finding.technical
        assert "?" not in finding.summary  # every placeholder the user sees was filled


@pytest.mark.parametrize("case", RECORDED, ids=[case.stem for case in RECORDED])
def test_recorded_lab_runs_name_what_their_scenario_expects(case: Path) -> None:
    data, findings = run_case(case)
    assert as_recorded(findings) == data["expected"], data["description"]
    expected = find_scenario(data["scenario"]).expect
    named = {f.mechanism for f in findings} - {INCONCLUSIVE}
    # A port-level block counts for the address-level name a scenario expects (docs/lab.md).
    assert as_expected(named, expected.mechanisms) == expected.mechanisms
    # Inconclusive only about paths nobody expects to restore calls (docs/lab.md).
    restoring = expected.voice | expected.video
    for finding in findings:
        if finding.mechanism == INCONCLUSIVE:
            assert not set(finding.paths) & restoring, finding


def test_every_preset_has_a_recorded_run() -> None:
    from callpath.core.lab.scenario import list_presets

    assert {json.loads(case.read_text())["scenario"] for case in RECORDED} == {
        scenario.id for scenario in list_presets()
    }


def test_findings_carry_numbers() -> None:
    _, cutoff = run_case(FIXTURES / "udp_flow_cutoff.json")
    assert cutoff[0].evidence["cutoff_bytes"] == 5412
    assert cutoff[0].evidence["cutoff_s"] == 0.6
    assert "5412" in cutoff[0].technical and "30 packets" in cutoff[0].technical
    _, freeze = run_case(FIXTURES / "tcp_freeze_16k.json")
    assert freeze[0].evidence["bytes_received"] == 16384
    _, signature = run_case(FIXTURES / "stun_signature_blocked.json")
    assert signature[0].evidence["disagreeing_probes"] == ["stun", "random_datagram"]
    _, poor = run_case(FIXTURES / "poor_network.json")
    assert poor[0].evidence["loss_pct"] == 10.5 and not poor[0].censorship
    assert "not blocking" in poor[0].summary


def test_not_censorship_findings_say_so() -> None:
    _, findings = run_case(FIXTURES / "no_direct_route.json")
    assert [f.censorship for f in findings] == [False]
    assert "not blocking" in findings[0].summary


def test_inconclusive_lists_what_it_could_not_explain() -> None:
    _, findings = run_case(FIXTURES / "everything_fails.json")
    (finding,) = findings
    assert finding.mechanism == INCONCLUSIVE
    assert "turn-tcp: connection_refused @ connect" in finding.evidence["failed"]
    assert finding.evidence["control_available"] is False


def test_russian_texts() -> None:
    i18n.set_language("ru")
    for name in ("udp_blocked", "tcp_freeze_16k", "poor_network", "everything_fails"):
        _, findings = run_case(FIXTURES / f"{name}.json")
        for finding in findings:
            for text in (finding.summary, finding.recommendation, finding.technical):
                assert any("а" <= ch <= "я" for ch in text.lower()), text


def test_every_text_has_a_russian_translation() -> None:
    from callpath.core.diagnosis.rules import _TEXTS

    i18n.set_language("ru")
    missing = [text for texts in _TEXTS.values() for text in texts if i18n._(text) == text]
    assert missing == []


def test_empty_input_gives_no_finding() -> None:
    assert diagnose([], [], control_available=False) == ()


def test_dns_probe_only_flags_bogons_doh_did_not_confirm() -> None:
    from callpath.core.probes.dns import compare

    # The lab's relay (and an office's server) really lives on a non-global address.
    failure, evidence = compare("relay.lab", ["127.0.0.3"], None, ["127.0.0.3"], None)
    assert failure is None
    assert evidence["system_bogons"] == ["127.0.0.3"] and evidence["unconfirmed_bogons"] == []
    failure, evidence = compare("relay.lab", ["127.0.0.9"], None, ["127.0.0.3"], None)
    assert failure == "dns_bogon_error" and evidence["unconfirmed_bogons"] == ["127.0.0.9"]
    failure, _evidence = compare("relay.lab", ["10.0.0.1"], None, None, "generic_timeout_error")
    assert failure == "dns_bogon_error"  # nothing confirmed it


def test_a_port_block_counts_for_the_address_block_a_scenario_expects() -> None:
    """docs/lab.md: where a scenario expects tcp_connect_blocked, tcp_port_blocked (the same
    block, seen on one port while another port of the address answered) names it too; not the
    other way round, and an expected port block needs its own name."""
    general = frozenset({"tcp_connect_blocked", "stun_signature_blocked"})
    found = {"tcp_port_blocked", "stun_signature_blocked"}
    assert as_expected(found, general) == general
    assert as_expected({"tcp_connect_blocked"}, frozenset({"tcp_port_blocked"})) == {
        "tcp_connect_blocked"
    }
    assert as_expected({"udp_port_blocked"}, frozenset({"udp_port_blocked"})) == {
        "udp_port_blocked"
    }


def test_new_findings_carry_their_numbers() -> None:
    _, freeze = run_case(FIXTURES / "tcp_freeze_16k_path_counters.json")
    assert freeze[0].evidence["bytes"] == 15210 and freeze[0].evidence["port"] == 443
    assert "15210 bytes" in freeze[0].technical and "port 443" in freeze[0].technical
    _, throttle = run_case(FIXTURES / "udp_throttled_rate_steps.json")
    assert throttle[0].evidence["ceiling_kBps"] == 5.5
    assert "5.5 KB/s" in throttle[0].summary
    _, port = run_case(FIXTURES / "udp_port_blocked.json")
    assert port[0].evidence["port"] == 3478 and "3478" in port[0].summary
    _, unreachable = run_case(FIXTURES / "server_unreachable_dns.json")
    assert "relay.example.org does not resolve" in unreachable[0].summary
    assert not unreachable[0].censorship
    _, refused = run_case(FIXTURES / "server_unreachable_refused.json")
    assert "refused the connection on port 443" in refused[0].summary


def _with_samples(path: PathResult, series: list[tuple[float, float, float]]) -> PathResult:
    """``path`` whose call sent (voice kbit/s, video kbit/s, upstream loss %) each second."""
    from dataclasses import replace

    def sample(t: int, kind: MediaKind, kbps: float, loss: float) -> QualitySample:
        return QualitySample(t, kind, Direction.SENT, 40.0, 5.0, loss, kbps)

    voice = [sample(t, MediaKind.AUDIO, v, loss) for t, (v, _w, loss) in enumerate(series, 1)]
    video = [sample(t, MediaKind.VIDEO, w, loss) for t, (_v, w, loss) in enumerate(series, 1)]
    return replace(
        path,
        voice=replace(path.voice, samples=tuple(voice)),
        video=replace(path.video, samples=tuple(video)),
    )


def test_a_call_whose_loss_starts_at_the_ceiling_is_a_second_witness() -> None:
    """The calls' own per-second series: clean while the call sent below the measured ceiling
    (5.5 KB/s here), lossy once its bitrate crossed it — the throttle is then named with high
    confidence; a call lossy at every rate does not count as a witness."""
    data = json.loads((FIXTURES / "udp_throttled_rate_steps.json").read_text())
    paths = [load_path(p) for p in data["paths"]]
    probes = [load_probe(p) for p in data["probes"]]
    crossing = [(32.0, 0.0, 0.0), (32.0, 8.0, 1.0), (32.0, 300.0, 45.0), (32.0, 400.0, 60.0)]
    witnessed = [_with_samples(p, crossing) if p.path_id == "turn-udp" else p for p in paths]
    (finding,) = diagnose(witnessed, probes, control_available=True)
    assert finding.mechanism == "udp_throttled" and finding.confidence.value == "high"
    call = finding.evidence["calls"]["turn-udp"]
    assert (call["seconds_under"], call["seconds_over"]) == (2, 2)
    assert call["loss_under_pct"] == 0.5 and call["loss_over_pct"] == 52.5
    assert finding.evidence["calls_agree"] == ["turn-udp"]
    lossy_always = [(32.0, 0.0, 30.0), (32.0, 300.0, 45.0)]
    other = [_with_samples(p, lossy_always) if p.path_id == "turn-udp" else p for p in paths]
    (finding,) = diagnose(other, probes, control_available=True)
    assert finding.confidence.value == "medium" and finding.evidence["calls_agree"] == []
