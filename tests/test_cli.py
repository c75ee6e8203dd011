"""The ``callpath`` command as a user runs it: real processes, real files, real servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callpath.core.report.document import validate_report
from tests.servers import CoturnServer, free_port, http_get_json

ROOT = Path(__file__).parents[1]


def callpath(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CALLPATH_LANG": "en", **(env or {})},
        check=False,
    )


@pytest.fixture
def echo_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callpath.core.cli.main",
            "echo-server",
            "--listen",
            f"127.0.0.1:{port}",
            "--ice-address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while http_get_json(url + "/health") is None:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "echo server did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_profile(path: Path, coturn: CoturnServer, echo_url: str, paths: str) -> Path:
    path.write_text(
        f"""version: 1
name: CLI test
target:
  kind: echo
  url: {echo_url}
ice_servers:
  - urls:
      - {coturn.turn_udp_uri}
      - {coturn.turn_tcp_uri}
      - {coturn.turn_tls_uri}
    username: {coturn.username}
    credential: ${{env:CALLPATH_TEST_TURN_PASSWORD}}
paths: [{paths}]
ca_bundle: {coturn.ca_path}
""",
        encoding="utf-8",
    )
    return path


def test_bad_profile_names_file_line_and_fix(tmp_path: Path) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text(
        "version: 1\nname: x\ntarget:\n  kind: echo\n  url: http://127.0.0.1:1\n"
        "timeouts:\n  ice: 5\n  speed: 3\n",
        encoding="utf-8",
    )
    result = callpath("run", "--profile", str(profile))
    assert result.returncode == 2
    assert f"{profile}:8:" in result.stderr
    assert "speed" in result.stderr


def test_missing_profile_and_missing_secret_exit_2(tmp_path: Path) -> None:
    result = callpath("run", "--profile", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr

    profile = tmp_path / "p.yaml"
    profile.write_text(
        "version: 1\nname: x\ntarget: {kind: echo, url: 'http://127.0.0.1:1'}\n"
        "ice_servers:\n  - urls: ['turn:127.0.0.1:3478?transport=udp']\n"
        "    username: u\n    credential: ${env:CALLPATH_UNSET_SECRET}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "CALLPATH_UNSET_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", "run", "--profile", str(profile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "CALLPATH_UNSET_SECRET" in result.stderr


@pytest.mark.servers
@pytest.mark.slow
def test_run_against_coturn_and_echo_server_writes_a_valid_report(
    tmp_path: Path, coturn: CoturnServer, echo_process: str
) -> None:
    profile = write_profile(tmp_path / "p.yaml", coturn, echo_process, "turn-udp, turn-tls")
    report_path = tmp_path / "report.json"
    result = callpath(
        "run",
        "--profile",
        str(profile),
        "--json",
        str(report_path),
        env={"CALLPATH_TEST_TURN_PASSWORD": coturn.password},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The headline names the paths that carry voice and video (or voice alone).
    assert re.search(r"Voice (and video )?calls work via TURN over", result.stdout)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    validate_report(report)
    assert {p["id"] for p in report["paths"]} == {"turn-udp", "turn-tls"}
    assert all(p["exercised"] for p in report["paths"])
    assert report["redacted"] is True
    assert coturn.password not in report_path.read_text(encoding="utf-8")
    assert coturn.password not in result.stdout + result.stderr


@pytest.mark.servers
@pytest.mark.slow
def test_jsonl_progress_and_no_voice_exit_code(
    tmp_path: Path, coturn: CoturnServer, echo_process: str
) -> None:
    profile = write_profile(tmp_path / "p.yaml", coturn, echo_process, "turn-tcp")
    result = callpath(
        "run",
        "--profile",
        str(profile),
        "--jsonl",
        env={"CALLPATH_TEST_TURN_PASSWORD": "wrong-password"},
    )
    assert result.returncode == 1, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "run_started"
    # The diagnosis, then the run's one run_finished; the bad password is not a blocking
    # mechanism.
    assert events[-2]["event"] == "diagnosis_finished"
    assert [f["mechanism"] for f in events[-2]["findings"]] == ["inconclusive"]
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["voice_restored_by"] == []
    assert sum(e["event"] == "run_finished" for e in events) == 1
    failures = [e["failure"] for e in events if e["event"] == "stage_finished" and e["failure"]]
    assert failures == ["turn_auth_failed"]


def test_echo_server_rejects_bad_options() -> None:
    assert callpath("echo-server", "--listen", "nonsense").returncode == 2
    result = callpath("echo-server", "--listen", "127.0.0.1:0", "--cert", "x.pem")
    assert result.returncode == 2
    assert "--key" in result.stderr
