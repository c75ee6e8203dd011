"""The kernel lab: namespaces, veth, nftables, real coturn and Janus, the real ``callpath run``.

As root (CI), one lab serves the whole module and every expressible preset runs through it;
each run swaps the client namespace's nftables table. Without root the lab tests skip, and only
the checks that need no namespace run.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callpath.core.lab import kernel
from callpath.core.lab.comparison import Comparison
from callpath.core.lab.kernel import (
    CLIENT_ADDRESS,
    CLIENT_INTERFACE,
    CONTROL_ADDRESS,
    JANUS_ADDRESS,
    KERNEL_PATHS,
    NAMESPACE_PREFIX,
    OUTSIDE_INTERFACE,
    SUBNET,
    TURN_ADDRESS,
    TURN_PORT,
    KernelLab,
    KernelLabError,
    ScenarioNotExpressible,
    foreign_routes,
    interfaces,
    kernel_paths,
    remove_stale_namespaces,
    ruleset_for,
    run_kernel_scenario,
)
from callpath.core.lab.nft import Unexpressible
from callpath.core.lab.scenario import Scenario, find_scenario, list_presets, parse_scenario
from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.results import RunResult, Verdict
from callpath.core.report.document import report_to_dict

pytestmark = [pytest.mark.root, pytest.mark.servers]

PRESETS = sorted(scenario.id for scenario in list_presets())
PROBE_TIMEOUT_S = 30


def scenario_text(rules: str, *, voice: str = "[]", paths: str | None = None) -> Scenario:
    return parse_scenario(
        "version: 1\nid: probe\ntitle: Probe\nexplanation: Probe\n"
        f"rules:\n{rules}\n"
        + (f"paths: {paths}\n" if paths else "")
        + f"expect: {{voice: {voice}, video: {voice}}}\n"
    )


# --- without root ---------------------------------------------------------------------------


def test_the_lab_refuses_to_start_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(KernelLabError, match="needs root"):
        kernel.check_requirements()
    with pytest.raises(KernelLabError, match="needs root"), KernelLab():
        pass


def test_the_lab_names_a_missing_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real = kernel.find_binary
    monkeypatch.setattr(kernel, "find_binary", lambda n: None if n == "janus" else real(n))
    if any(real(name) is None for name in ("ip", "nft", "turnserver")):
        pytest.skip("ip, nft or turnserver is missing too")
    with pytest.raises(KernelLabError, match=r"needs janus \(Debian package janus\)"):
        kernel.check_requirements()


def test_inexpressible_scenarios_are_refused_before_anything_starts() -> None:
    with pytest.raises(ScenarioNotExpressible, match="max_seconds") as caught:
        run_kernel_scenario(find_scenario("udp-cutoff"))
    assert isinstance(caught.value.reason, Unexpressible)
    assert caught.value.reason.rule == "cut_udp_flow"
    only_proxies = scenario_text("  - drop_udp: {}", paths="[socks5-udp, socks5-turn]")
    with pytest.raises(ScenarioNotExpressible, match="no server for the paths socks5-udp"):
        ruleset_for(only_proxies)


def _report(voice: list[str], video: list[str], *findings: tuple[str, list[str]]) -> dict[str, Any]:
    """A report as callpath run writes it, with only a verdict and findings."""
    now = datetime.now(UTC)
    made = tuple(
        Finding(mechanism, tuple(paths), {}, Confidence.HIGH, "", "", "")
        for mechanism, paths in findings
    )
    verdict = Verdict(tuple(voice), tuple(video), "")
    return report_to_dict(RunResult(now, now, "", "janus", (), verdict, findings=made))


def test_paths_without_a_server_here_are_left_out_of_the_run_and_the_expectation() -> None:
    scenario = find_scenario("open-network")
    assert kernel_paths(scenario) == tuple(p for p in scenario.paths if p in KERNEL_PATHS)
    report = _report(["turn-tls"], [])
    comparison = kernel._compare(scenario, report)
    assert comparison.voice_expected == scenario.expect.voice & set(KERNEL_PATHS)
    assert comparison.voice_found == {"turn-tls"}
    assert not comparison.agrees


def test_the_kernel_comparison_reads_the_reports_findings_by_the_userspace_rule() -> None:
    scenario = find_scenario("russia-2025")
    restored = sorted(scenario.expect.voice & set(KERNEL_PATHS))

    def finding(mechanism: str, paths: list[str]) -> tuple[str, list[str]]:
        return (mechanism, paths)

    def compare(*findings: tuple[str, list[str]]) -> Comparison:
        return kernel._compare(scenario, _report(restored, restored, *findings))

    named = [
        finding("stun_signature_blocked", ["direct"]),
        finding("tcp_connect_blocked", []),
        finding("quic_blocked", ["masque"]),
    ]
    assert compare(*named).agrees
    assert compare(*named[:2]).missing == {"quic_blocked"}
    assert compare(named[0], named[2]).missing == {"tcp_connect_blocked"}
    assert compare(*named, finding("udp_blocked", ["direct"])).unexpected == {"udp_blocked"}
    # Inconclusive about a path the scenario expects to restore calls: a disagreement.
    assert not compare(*named, finding("inconclusive", ["turn-tls"])).agrees
    assert compare(*named, finding("inconclusive", ["turn-udp"])).agrees


def test_the_generated_profile_uses_addresses_and_an_env_secret(tmp_path: Path) -> None:
    from callpath.core.profile.document import parse_profile

    ca = tmp_path / "ca.pem"
    kernel.write_certificates(tmp_path)
    text = kernel.client_profile(find_scenario("russia-2025"), ca)
    profile = parse_profile(text, tmp_path / "profile.yaml")
    assert profile.paths == kernel_paths(find_scenario("russia-2025"))
    assert profile.target.url == f"http://{JANUS_ADDRESS}:8088/janus"
    assert f"${{env:{kernel.PASSWORD_VARIABLE}}}" in text
    for path_id in ("turn-udp", "turn-tcp", "turn-tls"):
        chosen = profile.server_for(path_id)
        assert chosen is not None and chosen[1].host == TURN_ADDRESS


# --- the lab (root) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[KernelLab]:
    if os.geteuid() != 0:
        pytest.skip("the kernel lab needs root (network namespaces and nftables)")
    try:
        kernel.check_requirements()
    except KernelLabError as error:
        # As root, scripts/setup.sh installs every server: a missing one is a broken set-up.
        pytest.fail(str(error))
    with KernelLab() as started:
        yield started


def in_client(lab: KernelLab, code: str) -> object:
    """Run Python ``code`` in the client namespace; it prints one JSON value, returned here."""
    result = subprocess.run(
        ["ip", "netns", "exec", lab.client_namespace, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nothing_can_leave_the_lab_namespaces(lab: KernelLab) -> None:
    assert lab.isolation_problems() == []
    assert sorted(interfaces(lab.client_namespace)) == sorted(["lo", CLIENT_INTERFACE])
    assert sorted(interfaces(lab.outside_namespace)) == sorted(["lo", OUTSIDE_INTERFACE])
    assert foreign_routes(lab.client_namespace) == []
    routes = subprocess.run(
        ["ip", "-n", lab.client_namespace, "-4", "route", "show"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.splitlines()
    assert [line.split()[0] for line in routes] == [str(SUBNET)]
    # The root namespace never sees the veth pair or the lab's addresses.
    root_links = subprocess.run(
        ["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    for name in (CLIENT_INTERFACE, OUTSIDE_INTERFACE, f" {CLIENT_ADDRESS}/", f" {TURN_ADDRESS}/"):
        assert name not in root_links
    # From the client, an address beyond the subnet is unreachable (no route), not just silent.
    unreachable = in_client(
        lab,
        "import json, socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        "    s.sendto(b'x', ('198.51.100.7', 9)); print(json.dumps('sent'))\n"
        "except OSError as e:\n"
        "    print(json.dumps(e.errno))\n",
    )
    assert unreachable == 101  # ENETUNREACH


def test_the_censor_acts_on_real_packets(lab: KernelLab) -> None:
    """Rules that the presets do not exercise, checked packet by packet against coturn.

    Losses are silent: the client's ``sendto`` never fails (a rule on the sender's own output
    hook would make it fail with EPERM, which no real censor can cause).
    """
    stun_series = (
        "import json, socket, struct, secrets\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)\n"
        "answers = []\n"
        "for _ in range(4):\n"
        "    t = secrets.token_bytes(12)\n"
        "    s.sendto(struct.pack('!HHI', 1, 0, 0x2112A442) + t, "
        f"('{TURN_ADDRESS}', {TURN_PORT}))\n"
        "    try:\n"
        "        answers.append(s.recv(2048)[8:20] == t)\n"
        "    except OSError:\n"
        "        answers.append(False)\n"
        "print(json.dumps(answers))\n"
    )
    connect = (
        "import json, socket\n"
        "try:\n"
        f"    socket.create_connection(('{TURN_ADDRESS}', {TURN_PORT}), timeout=1).close()\n"
        "    print(json.dumps('connected'))\n"
        "except ConnectionRefusedError:\n"
        "    print(json.dumps('reset'))\n"
        "except OSError:\n"
        "    print(json.dumps('timeout'))\n"
    )
    lab.apply(scenario_text("  - random_loss: {percent: 0}"))
    assert in_client(lab, stun_series) == [True] * 4
    assert in_client(lab, connect) == "connected"
    # Two round trips are four packets of the flow; the fifth and later are lost.
    lab.apply(scenario_text("  - cut_udp_flow: {max_packets: 4}"))
    assert in_client(lab, stun_series) == [True, True, False, False]
    lab.apply(scenario_text("  - random_loss: {percent: 100}"))
    assert in_client(lab, stun_series) == [False] * 4
    lab.apply(scenario_text("  - block_tcp_connect: {services: [turn-tcp], mode: reset}"))
    assert in_client(lab, connect) == "reset"
    lab.apply(scenario_text("  - block_tcp_connect: {services: [turn-tcp], mode: drop}"))
    assert in_client(lab, connect) == "timeout"
    assert "tcp dport 3478 drop" in lab.ruleset().outbound
    lab.apply(find_scenario("open-network"))
    assert "tcp dport 3478" not in lab.ruleset().outbound
    assert in_client(lab, connect) == "connected"


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_every_expressible_preset_gives_its_verdict_and_mechanisms(
    lab: KernelLab, name: str
) -> None:
    scenario = find_scenario(name)
    try:
        ruleset_for(scenario)
    except ScenarioNotExpressible as refused:
        pytest.skip(str(refused))
    result = lab.run(scenario)
    logs = "\n".join(f"--- {k} ---\n{v}" for k, v in result.log_tails.items())
    assert result.comparison.verdict_agrees, (result.comparison, result.path_summary(), logs)
    findings = [(f["mechanism"], f["paths"], f["evidence"]) for f in result.report["findings"]]
    assert result.comparison.mechanisms_agree, (result.comparison, findings, logs)
    # The diagnosis compared against the control server beyond the censor, as users' runs do.
    control = [p for p in result.report["probes"] if p["control"]]
    assert {p["probe"] for p in control} >= {"tcp_connect", "tcp_bulk", "stun", "udp_flow"}
    assert all(p["target"].startswith(f"{CONTROL_ADDRESS}:") for p in control)
    assert [path["id"] for path in result.report["paths"]] == list(kernel_paths(scenario))
    assert result.exit_code == (0 if result.comparison.voice_found else 1)
    for path in result.report["paths"]:
        if path["id"] in result.comparison.voice_found and path["id"] != "direct":
            # A TURN path counts only over a relay candidate on its own transport.
            pair = path["selected_pair"]
            assert pair["local_type"] == "relay"
            assert pair["relay_server"].startswith(TURN_ADDRESS)


# --- start and stop (root) ------------------------------------------------------------------


@pytest.mark.slow
def test_closing_the_lab_removes_its_namespaces_and_servers(lab: KernelLab) -> None:
    # A second, short-lived lab beside the module's one: they must not collide either.
    with KernelLab() as other:
        names = (other.client_namespace, other.outside_namespace)
        pids = [daemon.process.pid for daemon in other._daemons]
        assert len(pids) == 4  # coturn, Janus, CallPath's MASQUE endpoint and control server
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    assert not any(name in listing for name in names)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert lab.isolation_problems() == []  # the module's lab is untouched


def test_stale_namespaces_of_dead_processes_are_removed(lab: KernelLab) -> None:
    child = subprocess.Popen(["true"])
    child.wait(10)
    dead_pid = child.pid  # reaped: no process has this id now
    stale = f"{NAMESPACE_PREFIX}-{dead_pid}-{secrets.token_hex(3)}-client"
    subprocess.run(["ip", "netns", "add", stale], check=True, capture_output=True, timeout=10)
    try:
        removed = remove_stale_namespaces()
        assert stale in removed
        assert lab.client_namespace not in removed  # alive: this process owns it
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=10, check=False)


# --- the command (root) -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_kernel_backend_prints_the_userspace_labs_results_and_diagnosis() -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel lab needs root (network namespaces and nftables)")
    command = [sys.executable, "-m", "callpath.core.cli.main", "--lang", "en", "lab"]
    result = subprocess.run(
        [*command, "--backend", "kernel", "--scenario", "udp-blocked"],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    output = result.stdout
    # The per-path table, each failed path's failure and explanation, the headline, the
    # diagnosis, then the comparison with the scenario: as the userspace lab prints them.
    for heading in ("Results", "Why paths failed", "Diagnosis", "Verdict against the scenario"):
        assert heading in output, (heading, output)
    assert output.index("Results") < output.index("Diagnosis") < output.index("Verdict against")
    for label in ("direct UDP", "TURN over UDP", "TURN over TCP", "TURN over TLS"):
        assert label in output
    assert "did not" in output or "stalled" in output  # "did not connect" wraps in its cell
