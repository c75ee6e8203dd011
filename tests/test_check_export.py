"""`callpath check --export-rules`: the messengers the check found blocked become routing rules
(offline, against the lab)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_blocked_messengers_become_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.nft"
    result = subprocess.run(
        [
            sys.executable, "-m", "callpath.core.cli.main", "--lang", "en", "check",
            "--lab", "russia-2025", "--no-discover",
            "--export-rules", "nftables", "--rules-out", str(rules), "--outbound-has-udp", "no",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # some messengers' calls are blocked there
    text = rules.read_text("utf-8")
    assert "Telegram" in text and "WhatsApp" in text
    assert "91.108.4.0/22" in text  # Telegram's calls range, from the catalogue
    assert "carries no UDP" in result.stderr  # the outbound named cannot carry calls


def test_a_bad_format_is_refused_before_the_check_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", "check", "--export-rules", "pf"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr
