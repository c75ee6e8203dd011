"""``callpath --self-test``: passes on a whole installation, names what is broken otherwise."""

from __future__ import annotations

import argparse
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callpath.core import i18n
from callpath.core.cli import self_test
from callpath.core.cli.self_test import CheckFailed, format_check, run_self_test
from callpath.core.i18n import current_language, set_language
from callpath.core.lab import scenario as scenario_module
from callpath.core.model.results import (
    Direction,
    Grade,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    RunResult,
    Verdict,
)


def _check(report: self_test.SelfTestReport, name: str) -> self_test.CheckResult:
    matches = [check for check in report.checks if check.name == name]
    assert len(matches) == 1, [check.name for check in report.checks]
    return matches[0]


def test_self_test_passes_from_the_source_checkout() -> None:
    seen: list[str] = []
    report = run_self_test(on_check=lambda result: seen.append(result.name))

    assert report.passed, "\n".join(format_check(check) for check in report.failures)
    names = [check.name for check in report.checks]
    assert seen == names
    for module in self_test.NATIVE_MODULES:
        assert f"import {module}" in names
    assert "codec libopus" in names and "codec libvpx" in names
    lab = _check(report, "lab call (open-network, direct)")
    assert "voice came back" in lab.detail
    assert _check(report, "lab call report").passed
    scenarios = _check(report, "lab scenarios")
    assert str(scenario_module.preset_directory()) in scenarios.detail


def test_main_prints_one_line_per_check_and_exits_zero() -> None:
    out = io.StringIO()
    status = self_test.main(["--no-lab-call"], stream=out)

    lines = out.getvalue().splitlines()
    assert status == self_test.EXIT_PASSED
    assert lines[0].startswith("CallPath self-test (")
    check_lines = lines[1:-1]
    assert check_lines and all(line.startswith("ok ") for line in check_lines)
    assert not any("lab call" in line for line in check_lines)
    assert lines[-1] == f"Self-test passed (checks: {len(check_lines)})."


def test_a_broken_scenario_fails_with_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    presets = tmp_path / "scenarios"
    presets.mkdir()
    source = scenario_module.preset_directory() / "open-network.yaml"
    (presets / "open-network.yaml").write_text(source.read_text(encoding="utf-8"), "utf-8")
    (presets / "broken.yaml").write_text(
        "version: 1\nid: broken\ntitle: Broken\nexplanation: x\nrules:\n  - drop_udpp: {}\n"
        "expect: {voice: [], video: []}\n",
        "utf-8",
    )
    monkeypatch.setattr(scenario_module, "preset_directory", lambda: presets)
    out = io.StringIO()

    status = self_test.main(["--no-lab-call"], stream=out)

    assert status == self_test.EXIT_FAILED
    failed = [line for line in out.getvalue().splitlines() if line.startswith("FAILED")]
    assert failed == [
        f"FAILED lab scenarios: {presets / 'broken.yaml'}:6: unknown rule 'drop_udpp'; "
        "did you mean 'drop_udp'? (known rules: " + ", ".join(scenario_module.RULE_PARAMETERS) + ")"
    ]
    assert out.getvalue().splitlines()[-1].startswith("Self-test FAILED (failed checks: 1, ")


def test_a_missing_preset_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario_module, "preset_directory", lambda: tmp_path)

    report = run_self_test(lab_call=False)

    check = _check(report, "lab scenarios")
    assert not check.passed
    assert check.detail == "the scenario 'open-network' is missing from the presets"


def test_a_missing_russian_catalogue_fails_and_keeps_the_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(i18n, "_load", lambda language: i18n._Catalogue(language))
    set_language("en")

    report = run_self_test(lab_call=False)

    check = _check(report, "Russian translation")
    assert not check.passed
    assert "did not translate 'CallPath self-test'" in check.detail
    assert current_language() == "en"
    assert [c.name for c in report.failures] == ["Russian translation"]


def test_a_missing_codec_and_a_missing_module_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import av.codec

    real_codec = av.codec.Codec

    def codec(name: str, mode: str = "r") -> object:
        if name == "libvpx" and mode == "w":
            raise av.codec.codec.UnknownCodecError(name)
        return real_codec(name, mode)

    monkeypatch.setattr(av.codec, "Codec", codec)
    monkeypatch.setitem(sys.modules, "aioquic", None)  # as if the package were not bundled

    report = run_self_test(lab_call=False)

    failures = {check.name: check.detail for check in report.failures}
    assert set(failures) == {"codec libvpx", "import aioquic"}
    assert failures["codec libvpx"].startswith("FFmpeg in PyAV has no libvpx encoder")
    assert failures["import aioquic"].startswith("ModuleNotFoundError: ")


def _run_with(path: PathResult) -> RunResult:
    now = datetime.now(UTC)
    return RunResult(
        started_at=now,
        finished_at=now,
        profile_name="self-test",
        target="lab",
        paths=(path,),
        verdict=Verdict((), (), ""),
    )


def _voice(received_kbps: float | None) -> MediaQuality:
    samples = (
        QualitySample(1.0, MediaKind.AUDIO, Direction.SENT, 1.0, 1.0, 0.0, 40.0),
        QualitySample(1.0, MediaKind.AUDIO, Direction.RECEIVED, 1.0, 1.0, 0.0, received_kbps),
    )
    return MediaQuality(MediaKind.AUDIO, Grade.GOOD, samples=samples)


def test_lab_call_results_are_judged_by_voice_received() -> None:
    good = PathResult("direct", True, None, (), None, voice=_voice(38.5))
    assert self_test._check_lab_call(_run_with(good)) == "voice came back at 38 kbit/s"

    silent = PathResult("direct", True, None, (), None, voice=_voice(0.0))
    with pytest.raises(CheckFailed, match="no voice came back"):
        self_test._check_lab_call(_run_with(silent))

    failed = PathResult("direct", False, "ice_failed", (), None)
    with pytest.raises(CheckFailed, match="the direct path failed: ice_failed"):
        self_test._check_lab_call(_run_with(failed))

    other = PathResult("turn-udp", True, None, (), None, voice=_voice(38.5))
    with pytest.raises(CheckFailed, match="the lab ran no direct path"):
        self_test._check_lab_call(_run_with(other))


def test_self_test_action_runs_in_the_language_given_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    languages: list[str] = []

    def fake_main(argv: object = None, stream: object = None) -> int:
        languages.append(current_language())
        return 7

    monkeypatch.setattr(self_test, "main", fake_main)
    parser = argparse.ArgumentParser()
    parser.add_argument("--lang")
    parser.add_argument("--self-test", action=self_test.SelfTestAction)
    parser.add_argument("command")  # required, like callpath's subcommand
    try:
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["--lang", "ru", "--self-test"])
        assert exited.value.code == 7
        assert languages == ["ru"]
    finally:
        set_language("en")
