"""``callpath proxies`` and the proxies ``run --discover-proxies`` adds, with a real Dante."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callpath.core.cli.proxies import with_discovered_proxies
from callpath.core.discovery.proxies import discover_local_proxies
from callpath.core.profile.document import parse_profile
from tests.proxy_servers import DanteServer

pytestmark = [pytest.mark.servers]
ROOT = Path(__file__).parents[1]


def test_proxies_command_lists_a_running_proxy_and_its_udp(dante: DanteServer) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "callpath.core.cli.main",
            "--lang",
            "en",
            "proxies",
            "--port",
            str(dante.port),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},  # one table row per line
    )
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{dante.port}" in result.stdout
    row = next(line for line in result.stdout.splitlines() if str(dante.port) in line)
    assert "socks5" in row and "yes" in row


async def test_discovered_proxies_become_candidate_paths(dante: DanteServer) -> None:
    found = await discover_local_proxies((dante.port,), environ={})
    profile = parse_profile(
        "version: 1\nname: p\ntarget: {kind: echo, url: 'https://echo.example.org'}\n"
        "ice_servers:\n  - urls: ['turns:turn.example.org:443']\n"
        "    username: u\n    credential: ${env:P}\n"
        "paths: [turn-tls]\n",
        Path("p.yaml"),
    )
    extended = with_discovered_proxies(profile, found)
    assert [str(entry.url) for entry in extended.proxies] == [f"socks5://127.0.0.1:{dante.port}"]
    assert extended.paths == ("turn-tls", "socks5-udp", "socks5-turn")
    assert with_discovered_proxies(profile, []) == profile
