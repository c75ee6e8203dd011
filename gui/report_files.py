"""The report the Verdict page shows, and how it is saved and shared.

A live run has its ``RunResult``: saving goes through
``callpath.core.report.document.write_report``. A report opened from history or from someone
else's file is a dict; saving writes that dict atomically and, unless the user asked to include
addresses, redacts it by reading it back (``report_from_dict``) and encoding it again with the
core's redaction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callpath.core.model.results import RunResult
from callpath.core.report.decode import report_from_dict
from callpath.core.report.document import (
    report_to_dict,
    write_report,
    write_report_dict,
    write_text_atomically,
)
from callpath.gui.html_report import render_html


@dataclass(frozen=True)
class ShownReport:
    """What the Verdict page renders: always the dict; the RunResult when the run was live."""

    report: dict[str, Any]
    run: RunResult | None = None
    file: Path | None = field(default=None)  # where it was read from, if anywhere

    @staticmethod
    def from_run(run: RunResult, file: Path | None = None) -> ShownReport:
        return ShownReport(report_to_dict(run, redact=False), run, file)

    def shared(self, *, include_addresses: bool) -> dict[str, Any]:
        """The report as it should leave the computer."""
        if self.run is not None:
            return report_to_dict(self.run, redact=not include_addresses)
        if include_addresses or self.report.get("redacted"):
            return self.report
        return redacted_copy(self.report)


def redacted_copy(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of an unredacted report dict with addresses replaced: read back into a
    ``RunResult`` and encoded again by the core, so one redactor covers one set of fields."""
    data = report_to_dict(report_from_dict(report), redact=True)
    data["software"] = copy.deepcopy(report.get("software", data["software"]))
    return data


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    write_report_dict(path, data)


def save_json(path: Path, shown: ShownReport, *, include_addresses: bool) -> None:
    if shown.run is not None:
        write_report(path, shown.run, redact=not include_addresses)
    else:
        write_json_atomically(path, shown.shared(include_addresses=include_addresses))


def export_html(path: Path, shown: ShownReport, *, include_addresses: bool) -> None:
    write_text_atomically(path, render_html(shown.shared(include_addresses=include_addresses)))
