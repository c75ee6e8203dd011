"""Hostile input files (issue 21): every case exits 2 with one ``callpath:`` line, no traceback,
within a few seconds and bounded memory.

The corpus is committed under ``tests/fixtures/hostile/`` (profiles for ``callpath run``,
scenarios for ``callpath lab``); cases that cannot be committed (a FIFO, a device, an oversized
file) are made here. All corpus cases run in one CLI process under an address-space limit (one
process per case would spend minutes importing); a few run as separate ``callpath`` processes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "fixtures" / "hostile"
ADDRESS_SPACE_LIMIT = 2 * 1024**3  # bytes of virtual memory for the whole CLI process
PER_CASE_SECONDS = 3.0
MAX_RSS_KB = 400 * 1024

# Runs each (argv) through callpath's CLI entry point, one after the other, and prints per case
# the exit status, what went to stderr, the time taken and whether the process grew.
DRIVER = r"""
import contextlib, io, json, resource, sys, time
from callpath.core.cli.main import main
results = []
for argv in json.loads(sys.stdin.read()):
    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as leaving:
            status = leaving.code
        except BaseException as error:  # what the CLI let through is the finding
            import traceback
            traceback.print_exc(file=err)
            status = "exception: " + type(error).__name__
    results.append({
        "argv": argv, "status": status, "stderr": err.getvalue(),
        "seconds": time.monotonic() - started,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    })
print(json.dumps(results))
"""


def _limits() -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    return apply


def _environment() -> dict[str, str]:
    return {**os.environ, "LANGUAGE": "en", "LC_ALL": "C.UTF-8", "CALLPATH_LANG": "en"}


def _cases(tmp_path: Path) -> list[list[str]]:
    cases = [["run", "--profile", str(path)] for path in sorted(HOSTILE.glob("profiles/*.yaml"))]
    cases += [["lab", "--scenario", str(path)] for path in sorted(HOSTILE.glob("scenarios/*.yaml"))]
    fifo = tmp_path / "profile-fifo.yaml"
    os.mkfifo(fifo)
    oversized = tmp_path / "oversized.yaml"
    oversized.write_bytes(b"# " + b"x" * (1024 * 1024 + 10) + b"\n")
    scenario_fifo = tmp_path / "scenario-fifo.yaml"
    os.mkfifo(scenario_fifo)
    cases += [
        ["run", "--profile", str(fifo)],
        ["run", "--profile", "/dev/zero"],
        ["run", "--profile", str(oversized)],
        ["run", "--profile", str(tmp_path)],
        ["lab", "--scenario", str(scenario_fifo)],
        ["lab", "--scenario", str(oversized)],
    ]
    return cases


def _check_one_line_error(status: object, stderr: str, what: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 2, f"{what}: exit {status!r}\n{stderr}"
    assert "Traceback" not in stderr, f"{what}:\n{stderr}"
    assert len(lines) == 1 and lines[0].startswith("callpath: "), f"{what}:\n{stderr}"


def test_the_corpus_covers_the_issue() -> None:
    names = {path.stem for path in HOSTILE.glob("*/*.yaml")}
    for expected in (
        "deep-lists-900",
        "deep-lists-5000",
        "version-hex",
        "timeout-sexagesimal",
        "timeout-5000-digits",
        "timeout-1e400-int",
        "quality-1e400-int",
        "control-port-1e400",
        "ice-servers-25000-aliases",
        "ice-uris-100000-aliases",
        "target-url-nul",
        "target-url-crlf",
        "target-url-long-label",
    ):
        assert expected in names


def test_every_hostile_case_gets_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_environment(),
        preexec_fn=_limits(),
        timeout=60 + PER_CASE_SECONDS * len(cases),
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(finished.stdout)
    assert len(results) == len(cases)
    for result in results:
        what = " ".join(result["argv"])
        _check_one_line_error(result["status"], result["stderr"], what)
        assert result["seconds"] < PER_CASE_SECONDS, f"{what}: {result['seconds']:.1f} s"
    assert results[-1]["max_rss_kb"] < MAX_RSS_KB, results[-1]["max_rss_kb"]
    assert time.monotonic() - started < 60 + PER_CASE_SECONDS * len(cases)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--profile", "profiles/deep-lists-5000.yaml"],
        ["run", "--profile", "profiles/timeout-1e400-int.yaml"],
        ["lab", "--scenario", "scenarios/rules-many-aliases.yaml"],
    ],
)
def test_the_callpath_command_itself(argv: list[str]) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", *argv],
        capture_output=True,
        text=True,
        cwd=HOSTILE,
        env=_environment(),
        preexec_fn=_limits(),
        timeout=60,
        check=False,
    )
    _check_one_line_error(finished.returncode, finished.stderr, " ".join(argv))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "profile.yaml"
    os.mkfifo(fifo)
    finished = subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", "run", "--profile", str(fifo)],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=60,  # an open() of the FIFO for reading would block forever: no writer
        check=False,
    )
    _check_one_line_error(finished.returncode, finished.stderr, "fifo")
    assert "not a regular file" in finished.stderr


# --- reports opened in the app and the support view -------------------------------------------


def test_hostile_reports_are_refused_in_one_line(tmp_path: Path) -> None:
    from callpath.core.report.document import ReportError, load_report

    assert load_report(HOSTILE / "reports" / "valid.json")["paths"]  # the base loads
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    oversized = tmp_path / "big.json"
    oversized.write_bytes(b" " * (16 * 1024 * 1024 + 1))
    files = [p for p in sorted(HOSTILE.glob("reports/*.json")) if p.name != "valid.json"]
    for path in [*files, fifo, oversized, Path("/dev/zero")]:
        started = time.monotonic()
        with pytest.raises(ReportError) as caught:
            load_report(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        assert time.monotonic() - started < PER_CASE_SECONDS, path
