"""A far end that dies mid-run is named as such, never as censorship (issue 21)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from callpath.core.diagnosis.rules import FAR_END_CHECK, diagnose
from callpath.core.model.findings import Mechanism
from callpath.core.model.probe_results import ProbeResult
from callpath.core.model.results import PathResult, Stage, StageResult
from callpath.core.profile.document import parse_profile
from callpath.core.run.plan import plan_run
from callpath.core.run.source import ProfileSource, run_source
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]


def _stalled_direct() -> PathResult:
    return PathResult(
        path_id="direct",
        exercised=True,
        failure="media_stalled",
        server=None,
        stages=(
            StageResult(Stage.ICE, 0.0, 0.1),
            StageResult(Stage.DTLS, 0.1, 0.1),
            StageResult(Stage.MEDIA_UP, 0.2, 1.5, failure="media_stalled"),
        ),
    )


def _cut_flow() -> ProbeResult:
    return ProbeResult(
        probe="udp_flow",
        target="127.0.0.1:9",
        started_at=0.0,
        duration=5.0,
        failure="generic_timeout_error",
        evidence={"cut_off": True, "fresh_flow_answered": False, "packets_before_cut": 30},
        control=True,
    )


def _far_end(answered: bool, failure: str = "connection_refused") -> ProbeResult:
    return ProbeResult(
        probe="tcp_connect",
        target="127.0.0.1:9",
        started_at=9.0,
        duration=0.01,
        failure=None if answered else failure,
        evidence={"check": FAR_END_CHECK, "answered": answered},
        control=True,
    )


def test_a_dead_far_end_explains_the_stall_instead_of_a_cutoff() -> None:
    path = _stalled_direct()
    alive = diagnose([path], [_cut_flow(), _far_end(True)], control_available=True)
    assert Mechanism.UDP_FLOW_CUTOFF in [f.mechanism for f in alive]  # the rule still works
    dead = diagnose([path], [_cut_flow(), _far_end(False)], control_available=True)
    assert [f.mechanism for f in dead] == [Mechanism.FAR_END_GONE]
    assert dead[0].paths == ("direct",) and not dead[0].censorship
    assert "127.0.0.1:9 (connection_refused)" in dead[0].technical


def test_a_far_end_that_only_went_silent_is_left_to_the_other_rules() -> None:
    """A timeout after a cut-off is what a censor's residual block of the whole address looks
    like too: it is not enough to call the server gone."""
    path = _stalled_direct()
    silent = diagnose(
        [path], [_cut_flow(), _far_end(False, "generic_timeout_error")], control_available=True
    )
    assert Mechanism.FAR_END_GONE not in [f.mechanism for f in silent]
    assert Mechanism.UDP_FLOW_CUTOFF in [f.mechanism for f in silent]
    # A control server that never answered during the run proves nothing by refusing after it.
    never = diagnose([path], [_far_end(False)], control_available=False)
    assert Mechanism.FAR_END_GONE not in [f.mechanism for f in never]


@pytest.mark.slow
async def test_sigkill_of_the_echo_server_mid_run_is_not_called_censorship(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [
        sys.executable, "-m", "callpath.core.cli.main", "echo-server",
        "--listen", f"127.0.0.1:{port}", "--ice-address", "127.0.0.1",
        "--control-udp-port", "0", "--control-tcp-port", "0",
    ]  # fmt: skip
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                async with aiohttp.ClientSession() as client, client.get(url + "/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "no echo server"
            await asyncio.sleep(0.2)
        profile = parse_profile(
            f"version: 1\nname: dies\npaths: [direct]\ntarget: {{kind: echo, url: '{url}'}}\n"
        )
        loop = asyncio.get_running_loop()
        loop.call_later(1.5, os.kill, process.pid, signal.SIGKILL)
        run = await asyncio.wait_for(
            run_source(
                ProfileSource(plan_run(profile), tmp_path / "dies.yaml"), lambda event: None
            ),
            90,
        )
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    assert run.paths[0].failure is not None
    mechanisms = [f.mechanism for f in run.findings]
    assert not [f for f in run.findings if f.censorship], run.findings
    assert Mechanism.UDP_FLOW_CUTOFF not in mechanisms
    assert Mechanism.FAR_END_GONE in mechanisms, run.findings
