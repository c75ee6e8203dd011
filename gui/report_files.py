"""The report the Verdict page shows, and how it is saved and shared.

A live run has its ``RunResult``: saving goes through
``callpath.core.report.document.write_report``. A report
opened from history or from someone else's file is only a dict; saving writes that dict
atomically (same rename-over technique as the core) and, unless the user asked to include
addresses, redacts it with the core's ``Redactor`` over the same fields the core redacts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callpath.core.model.results import RunResult
from callpath.core.report.document import (
    Redactor,
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
    """A copy of an unredacted report dict with addresses replaced, as ``report_to_dict`` does."""
    redactor = Redactor()
    data = copy.deepcopy(report)
    for path in data.get("paths", []):
        for key in ("failure", "server"):
            if isinstance(path.get(key), str):
                path[key] = redactor.text(path[key])
        pair = path.get("selected_pair")
        if isinstance(pair, dict):
            for key in ("local_address", "remote_address", "relay_server"):
                if isinstance(pair.get(key), str):
                    pair[key] = redactor.text(pair[key])
        for stage in path.get("stages", []):
            if isinstance(stage.get("failure"), str):
                stage["failure"] = redactor.text(stage["failure"])
            stage["evidence"] = redactor.value(stage.get("evidence", {}))
    # The diagnosis quotes addresses in its evidence and texts, the probes in their targets
    # (the same fields callpath.core.report.document redacts).
    for finding in data.get("findings") or []:
        for key in ("summary", "recommendation", "technical"):
            if isinstance(finding.get(key), str):
                finding[key] = redactor.text(finding[key])
        finding["evidence"] = redactor.value(finding.get("evidence", {}))
    for probe in data.get("probes") or []:
        for key in ("target", "failure"):
            if isinstance(probe.get(key), str):
                probe[key] = redactor.text(probe[key])
        probe["evidence"] = redactor.value(probe.get("evidence", {}))
    data["redacted"] = True
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
