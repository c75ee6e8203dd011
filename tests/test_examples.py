"""The examples/ folder: every profile loads, every target kind has one, the full example shows
every section, and the lab example runs offline with no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callpath.core.model.results import PathId
from callpath.core.profile.document import load_profile

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CALLPATH_LANG": "en", "COLUMNS": "100"}
    for name in list(environment):
        if name.startswith("CALLPATH_") and name.endswith(("TOKEN", "PASSWORD")):
            del environment[name]
    return subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", "lab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=environment,
        check=False,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_loads(example: Path) -> None:
    profile = load_profile(example)
    assert profile.paths
    text = example.read_text(encoding="utf-8")
    assert "docs/profile.md" in text or "examples/profile.yaml" in text


def test_there_is_an_example_for_every_target_kind_and_the_lab() -> None:
    kinds = {load_profile(example).target.kind for example in EXAMPLES}
    assert kinds >= {"echo", "janus", "relay-loopback"}
    assert (ROOT / "examples" / "lab.yaml") in EXAMPLES


def test_the_full_example_has_every_section_and_every_path() -> None:
    example = ROOT / "examples" / "profile.yaml"
    profile = load_profile(example)
    assert set(profile.paths) == {path.value for path in PathId}
    assert profile.proxies and profile.masque is not None
    text = example.read_text(encoding="utf-8")
    for section in ("proxies:", "masque:", "control:", "timeouts:", "quality:", "ca_bundle:"):
        assert section in text, section


def test_the_lab_example_needs_no_secret() -> None:
    assert load_profile(ROOT / "examples" / "lab.yaml").required_secrets() == ()


@pytest.mark.slow
def test_the_lab_example_runs_its_paths_in_the_lab(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = lab("--profile", "examples/lab.yaml", "--json", str(report))
    # 0 or 1: whether the measured verdict matches the scenario's depends on the machine's load
    # (quality grades); what matters here is that the profile ran, with no secret.
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr
    assert "Profile \u201cLab practice\u201d" in result.stdout
    assert "Verdict against the scenario's expected outcome" in result.stdout
    ran = [path["id"] for path in json.loads(report.read_text(encoding="utf-8"))["paths"]]
    assert ran == list(load_profile(ROOT / "examples" / "lab.yaml").paths)


def test_a_profile_path_the_lab_cannot_run_is_one_line_of_advice(tmp_path: Path) -> None:
    profile = tmp_path / "http.yaml"
    text = (ROOT / "examples" / "lab.yaml").read_text(encoding="utf-8")
    text = text.replace("  - url: socks5://127.0.0.1:1080", "  - url: http://127.0.0.1:3128")
    profile.write_text(text.replace("paths: [direct,", "paths: [http-turn, direct,"))
    result = lab("--profile", str(profile))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"callpath: {profile}: the lab has no server for path http-turn; it runs direct, "
        "turn-udp, turn-tcp, turn-tls, masque, socks5-udp, socks5-turn"
    ]
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("timeouts:\n  ice: 8", "timeouts:\n  ice: 0"))
    result = lab("--profile", str(broken))
    assert result.returncode == 2
    assert "timeouts.ice must be a positive number" in result.stderr
