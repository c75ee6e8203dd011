"""What ``callpath lab`` prints, read as a user in an 80-column terminal reads it: every failure's
name and plain explanation uncut, "did not connect" rather than "not tested", plurals and stage
names in the user's language; and the same summary printed from the report file.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from callpath.core.cli.console import print_summary
from callpath.core.i18n import set_language
from callpath.core.present.failures import STAGE_NAMES, explain_failure
from callpath.core.report.decode import report_from_dict as run_from_report

ROOT = Path(__file__).parents[1]
WIDTH = 80


def lab(*args: str, language: str = "en") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", "--lang", language, "lab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": str(WIDTH), "CALLPATH_LANG": language},
        check=False,
    )


def flat(text: str) -> str:
    """Text with line breaks and the indentation of wrapped lines folded into single spaces."""
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def russia(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    report = tmp_path_factory.mktemp("lab") / "report.json"
    result = lab("--scenario", "russia-2025", "--json", str(report))
    assert result.returncode in (0, 1), result.stderr
    return result.stdout, json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_failure_and_its_explanation_fit_80_columns_uncut(
    russia: tuple[str, dict[str, object]],
) -> None:
    output, report = russia
    assert all(len(line.rstrip()) <= WIDTH for line in output.splitlines()), output
    failed = [p for p in report["paths"] if p["failure"]]  # type: ignore[attr-defined]
    assert len(failed) >= 3, "russia-2025 blocks direct UDP, TURN over UDP and TURN over TCP"
    text = flat(output)
    for path in failed:
        failure = path["failure"]
        assert re.search(rf"(?<![\w…]){re.escape(failure)}(?![\w…])", output), failure
        explanation = explain_failure(failure)
        assert explanation is not None
        assert flat(explanation) in text, (failure, explanation)
    assert "…" not in "".join(line for line in output.splitlines() if "_" in line)
    assert "not tested" not in output
    assert "did not connect" in output
    count = len(report["findings"])  # type: ignore[arg-type]
    plural = "1 finding" if count == 1 else f"{count} findings"
    assert f"Diagnosis finished: {plural}\n" in output


@pytest.mark.slow
def test_the_summary_reads_the_same_from_the_report_file(
    russia: tuple[str, dict[str, object]],
) -> None:
    """What the kernel lab prints: the summary of a report another process wrote."""
    output, report = russia
    stream = io.StringIO()
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        print_summary(run_from_report(report), stream)
    finally:
        del os.environ["COLUMNS"]
    printed = stream.getvalue()
    assert "Why paths failed" in printed
    assert printed.strip() in output, printed


@pytest.mark.slow
def test_russian_output_names_stages_in_russian_with_the_technical_name_beside() -> None:
    result = lab("--scenario", "russia-2025", language="ru")
    assert result.returncode in (0, 1), result.stderr
    output = flat(result.stdout)
    english = [name for name in STAGE_NAMES.values() if name in output]
    assert not english, english
    set_language("ru")
    try:
        russian = {key: flat(explain_failure(key) or "") for key in ("ice_failed",)}
        relay = "«выделение ретранслятора» (turn_allocate)"
    finally:
        set_language("en")
    assert relay in output
    assert russian["ice_failed"] in output
    assert "Почему пути не сработали" in output
    assert "not connect" not in output and "not tested" not in output
    assert re.search(r"Диагностика завершена: \d+ вывод", output)


def test_the_command_line_never_loads_qt() -> None:
    code = (
        "import sys\n"
        "from callpath.gui.launcher import main\n"
        "code = main(['lab', '--list'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'shiboken6'))\n"
        "assert code == 0 and not bad, (code, bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "russia-2025" in result.stdout
