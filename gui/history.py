"""Past runs, kept as report files in the user's data directory.

Each finished run is written with ``callpath.core.report.document.write_report`` (atomic) to
``<data dir>/history/run-<UTC time>-<random>.json``. The data directory is
``platformdirs.user_data_dir("callpath")`` unless ``CALLPATH_DATA_DIR`` names another one
(tests, portable installs on a USB stick). History files keep addresses: they never leave the
computer unless the user saves or exports a report, which is redacted by default.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from callpath.core.model.results import RunResult
from callpath.core.report.document import ReportError, load_report, write_report

DATA_DIR_VARIABLE = "CALLPATH_DATA_DIR"
MAX_LISTED = 200


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir("callpath", appauthor=False))


def history_dir() -> Path:
    return data_dir() / "history"


def save_run(run: RunResult) -> Path:
    """Write ``run`` to the history directory (created if needed) and return the file."""
    directory = history_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.strftime("%Y%m%dT%H%M%S")
    path = directory / f"run-{stamp}Z-{secrets.token_hex(3)}.json"
    write_report(path, run, redact=False)
    return path


@dataclass(frozen=True)
class HistoryEntry:
    file: Path
    report: dict[str, Any]


def list_history() -> list[HistoryEntry]:
    """Readable reports in the history directory, newest first; unreadable files are skipped."""
    directory = history_dir()
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("run-*.json"), reverse=True)[:MAX_LISTED]
    entries = []
    for file in files:
        try:
            entries.append(HistoryEntry(file, load_report(file)))
        except ReportError:
            continue
    entries.sort(key=lambda entry: str(entry.report.get("started_at", "")), reverse=True)
    return entries
