"""A report sent from the phone test page, exported with ``callpath reports export``, opens in
the app's support view like any other report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callpath.core.cli.main import main
from callpath.core.servers.report_inbox import ReportInbox
from callpath.gui.app import AppController
from tests.gui_helpers import dialogs_of

pytest_plugins = ["tests.gui_support"]
pytestmark = pytest.mark.timeout(60)

FIXTURE = Path(__file__).parent / "fixtures" / "phone" / "page-report.json"


def test_an_exported_phone_report_opens_in_the_support_view(
    app: AppController, tmp_path: Path
) -> None:
    report = json.loads(FIXTURE.read_text(encoding="utf-8"))
    code = ReportInbox(tmp_path / "data").store(report, "", "2026-12-07T12:00:00.000Z")
    out = tmp_path / "out"
    assert main(["reports", "--data-dir", str(tmp_path / "data"), "export", "--out", str(out)]) == 0
    window = app.window
    window.show_page("support")
    dialogs_of(app).paths.append(out / f"callpath-report-{code}.json")
    window.support.first.open_button.click()
    assert not dialogs_of(app).errors
    shown = window.support.reports[0]
    assert shown is not None and shown[0] == report
    full = window.support.first.browser.toPlainText()
    assert "TURN over TLS" in full and "direct UDP" in full
    titles = [section.title for section in window.support.sections]
    assert "TURN over UDP" in titles
