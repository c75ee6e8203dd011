"""scripts/setup.sh never stops, disables or reconfigures a service it did not start (issue 21).

The set-up's functions are sourced into bash and run with ``apt-get`` replaced by a shell
function, so no Debian package is installed or removed here; everything else (the policy-rc.d
guard, what runs after the install) is the real script.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.servers import http_get_json, run_coturn, run_janus, stun_binding_ok

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def _bash(script: str, policy: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CALLPATH_POLICY_RC_D": str(policy)}
    return subprocess.run(
        ["bash", "-c", f"source {SETUP}\n{script}"],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_guard_restores_an_existing_policy_exactly(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    original = b"#!/bin/sh\n# the operator's own policy\nexit 0\n"
    policy.write_bytes(original)
    policy.chmod(0o700)
    seen = tmp_path / "seen"
    result = _bash(
        f'with_services_held sh -c \'cat "$0" > {seen}; exit 7\' "{policy}"', policy, REPO
    )
    assert result.returncode == 7, result.stderr  # the command's status comes through
    assert seen.read_text() == "#!/bin/sh\nexit 101\n"  # the install ran under the guard
    assert policy.read_bytes() == original
    assert policy.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy-rc.d", "seen"]


def test_guard_removes_only_the_file_it_created(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    seen = tmp_path / "seen"
    result = _bash(f'with_services_held sh -c \'cat "$0" > {seen}\' "{policy}"', policy, REPO)
    assert result.returncode == 0, result.stderr
    assert seen.read_text() == "#!/bin/sh\nexit 101\n"
    assert not policy.exists()


def _rc_links() -> list[str]:
    return sorted(str(path) for path in Path("/etc").glob("rc?.d/*"))


@pytest.mark.servers
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the set-up installs packages only as root")
def test_install_leaves_running_coturn_and_janus_running_and_enablement_alone(
    tmp_path: Path,
) -> None:
    """The old set-up ran `service coturn stop`, `service janus stop`, … after installing, whose
    init scripts stop every /usr/bin/turnserver and /usr/bin/janus on the machine; the coturn
    and Janus started here are such processes."""
    links_before = _rc_links()
    apt_log = tmp_path / "apt.log"
    with run_coturn(tmp_path / "coturn") as coturn, run_janus(tmp_path / "janus") as janus:
        result = _bash(
            f'apt-get() {{ echo "$*" >> {apt_log}; }}\n'
            'is_installed() { [ "$1" != coturn ] && [ "$1" != janus ]; }\n'
            "install_packages\n",
            tmp_path / "policy-rc.d",
            REPO,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert coturn.process.process.poll() is None, "coturn was stopped by the set-up"
        assert janus.process.process.poll() is None, "Janus was stopped by the set-up"
        assert stun_binding_ok(coturn.host, coturn.port)
        assert http_get_json(f"{janus.base_url}/info") is not None
    assert "install -y -q --no-install-recommends coturn janus" in apt_log.read_text()
    assert "installed Debian packages: coturn janus" in result.stdout
    assert _rc_links() == links_before
    assert not (tmp_path / "policy-rc.d").exists()
