"""The app's "Test my network (no set-up)": the default choice on Home, a real messenger check
through the bridge against the built-in lab, the table of messengers with traffic lights (direct
and through each proxy), the findings, the fixes, and the saved JSON and HTML. Offscreen; every
Qt warning fails the test; nothing reaches a real messenger (the lab's stand-ins answer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from callpath.core.checkup.document import validate_check_report
from callpath.core.lab.scenario import find_scenario
from callpath.gui.app import AppController
from callpath.gui.check_source import CheckSource
from callpath.gui.check_view import COLOURS, render_check_html
from callpath.gui.home_page import Choice
from callpath.gui.report_view import Light
from tests.gui_helpers import dialogs_of, wait_for_page

FIXTURE = Path(__file__).parent / "fixtures" / "check" / "russia-2025.json"  # a lab check
pytest_plugins = ["tests.gui_support"]  # fixtures: app, data_dir, english, qt_warnings_fail
pytestmark = pytest.mark.timeout(150)


def test_test_my_network_is_the_default_first_choice(app: AppController) -> None:
    home = app.window.home
    assert home.choice() == Choice.CHECK
    assert home.check_choice.isChecked()
    assert isinstance(home.selected_source(), CheckSource)
    assert "connection tests" in home.plan_line.text()
    assert home.start_button.isEnabled()


def _cell(app: AppController, row_name: str, header: str) -> Any:
    table = app.window.check.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    names = [table.item(r, 0).text() for r in range(table.rowCount())]
    return table.item(names.index(row_name), headers.index(header))


@pytest.mark.slow
def test_a_lab_check_fills_the_messenger_table_with_lights(
    qtbot: Any, app: AppController, tmp_path: Path
) -> None:
    window = app.window
    window.start_source(CheckSource(find_scenario("russia-2025")))
    assert window.current_page() == "check"
    qtbot.waitUntil(lambda: window.check.report is not None, timeout=60_000)
    wait_for_page(qtbot, window, "check")
    table = window.check.table
    report = window.check.report
    assert report is not None
    proxy_url = report["proxies"][0]["url"]
    assert table.rowCount() == 7
    assert table.columnCount() == 1 + 2 * 2  # direct and the lab's SOCKS5 proxy
    calls_direct = _cell(app, "Telegram", "Calls (Direct)")
    assert calls_direct.data(256) == "blocked"
    assert calls_direct.foreground().color().name() == COLOURS[Light.RED]
    assert _cell(app, "Telegram", "Messages (Direct)").data(256) == "works"
    through = _cell(app, "Telegram", f"Calls (Via {proxy_url})")
    assert through.data(256) == "works"
    assert through.foreground().color().name() == COLOURS[Light.GREEN]
    assert _cell(app, "WhatsApp", "Calls (Direct)").data(256) == "blocked"
    assert "carries UDP: yes" in window.check.findings.text()
    assert "Telegram" in window.check.fixes.text() and "source:" in window.check.fixes.text()
    # Saved as JSON (valid against the check schema) and as a stand-alone web page.
    saved, page = tmp_path / "check.json", tmp_path / "check.html"
    dialogs_of(app).paths.extend([saved, page])
    window.check.save_button.click()
    window.check.export_button.click()
    validate_check_report(json.loads(saved.read_text(encoding="utf-8")))
    html = page.read_text(encoding="utf-8")
    assert html == render_check_html(report)
    assert "Telegram" in html and "src=" not in html and "<script" not in html
    # A saved check report opens on the same page (Open report file…), table and all.
    window.show_page("home")
    window.check.begin()
    assert window.check.table.rowCount() == 0
    dialogs_of(app).paths.append(saved)
    window.home.open_report_button.click()
    assert window.current_page() == "check"
    assert window.check.table.rowCount() == 7
    assert _cell(app, "Telegram", "Calls (Direct)").data(256) == "blocked"


def test_a_run_report_with_the_messenger_check_shows_it_in_html_and_support_view() -> None:
    from callpath.core.report.document import validate_report
    from callpath.gui.html_report import render_html
    from callpath.gui.support_view import report_sections

    check = json.loads(FIXTURE.read_text(encoding="utf-8"))
    run: dict[str, Any] = {
        "schema_version": 1,
        "software": {"name": "callpath", "version": "0"},
        "started_at": "2026-03-20T10:00:00.000Z",
        "finished_at": "2026-03-20T10:00:30.000Z",
        "profile": "lab",
        "target": "lab",
        "scenario": "russia-2025",
        "cancelled": False,
        "redacted": True,
        "paths": [],
        "verdict": {
            "voice": {"restored_by": []},
            "video": {"restored_by": []},
            "headline": "No path restores voice.",
        },
        "probes": [],
        "findings": [],
        "messenger_check": check,
    }
    validate_report(run)
    html = render_html(run)
    assert "Messengers on this network" in html and "Telegram" in html
    sections = {s.key: s for s in report_sections(run)}
    text = sections["messengers"].text
    assert "- Telegram: Direct: messages work, calls blocked" in text
    assert "carries UDP: yes" in text
