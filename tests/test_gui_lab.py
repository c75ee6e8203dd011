"""The built-in lab as a run source in the desktop app: a real lab run through the real window.

The lab is the same as ``callpath lab``: TURN relay, echo peer, resolvers and the censor's
middlebox on 127.0.0.0/8, in the test process. Every Qt warning fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from callpath.core.lab.scenario import list_presets
from callpath.core.lab.source import LabSource
from callpath.core.report.document import load_report
from callpath.gui.app import AppController, main
from callpath.gui.history import history_dir
from callpath.gui.home_page import DEFAULT_SCENARIO
from callpath.gui.qt import QApplication
from callpath.gui.report_view import Light
from tests.gui_helpers import wait_for_page

pytest_plugins = ["tests.gui_support"]  # fixtures: app, data_dir, english, qt_warnings_fail
pytestmark = pytest.mark.timeout(150)


def test_the_lab_offers_russia_2025_first(app: AppController) -> None:
    home = app.window.home
    # First-time users start on "Test my network" (tests/test_gui_check.py); the lab's
    # preset behind it is Russia 2025.
    assert home.select_lab()
    assert home.lab_choice.isChecked()
    assert home.lab_scenario is not None and home.lab_scenario.id == DEFAULT_SCENARIO
    source = home.selected_source()
    assert isinstance(source, LabSource)
    assert source.path_ids == ("direct", "turn-udp", "turn-tcp", "turn-tls", "masque")
    assert "WhatsApp" in home.scenario_explanation.text()
    assert "Sources: " in home.scenario_explanation.text() and "FOCI 2026" in (
        home.scenario_explanation.text()
    )
    assert "offline" in home.plan_line.text()
    titles = [home.scenario_box.itemText(i) for i in range(home.scenario_box.count())]
    assert titles == [scenario.labelled_title() for scenario in list_presets()]
    # Every preset says when its behaviour was observed.
    assert all("(observed 20" in title for title in titles)


def test_preset_titles_and_explanations_follow_the_language(qtbot: Any, app: AppController) -> None:
    app.window.home.select_lab()
    app.window.language_actions["ru"].trigger()
    home = app.window.home
    assert home.lab_choice.isChecked()
    assert home.scenario_box.currentText().startswith("Россия, 2025")
    assert re.search("[А-Яа-я]{5}", home.scenario_explanation.text())


def test_a_lab_run_shows_the_verdict_lights_and_the_blocking_mechanism(
    qtbot: Any, app: AppController
) -> None:
    window = app.window
    window.home.select_lab("russia-2025")
    window.home.start_button.click()
    assert window.current_page() == "running"
    assert set(window.running.rows) == {"direct", "turn-udp", "turn-tcp", "turn-tls", "masque"}
    wait_for_page(qtbot, window, "verdict")

    verdict = window.verdict
    assert re.fullmatch(
        r"Voice and video calls work via (TURN over TLS|MASQUE \(HTTP/3\))"
        r"( and (TURN over TLS|MASQUE \(HTTP/3\)))?\."
        r"|Voice calls work via (TURN over TLS|MASQUE \(HTTP/3\)) \(quality \d\.\d of 4\.5\)\.",
        verdict.voice_label.text(),
    ), verdict.voice_label.text()
    assert verdict.cards["turn-tls"].light.light == Light.GREEN
    assert verdict.cards["turn-tls"].light.accessibleName() == "TURN over TLS: works"
    assert verdict.cards["turn-udp"].light.light == Light.RED
    assert verdict.cards["direct"].light.light == Light.RED
    assert verdict.cards["masque"].light.light == Light.RED  # QUIC to foreign servers dropped

    # The diagnosis names STUN filtering, in plain words, on the page itself.
    mechanisms = [card.view.mechanism for card in verdict.findings]
    assert "stun_signature_blocked" in mechanisms, mechanisms
    card = verdict.findings[mechanisms.index("stun_signature_blocked")]
    assert card.isVisible() and card.summary.isVisible()
    assert "STUN" in card.summary.text() and card.summary.text().startswith("Blocking: ")
    assert card.recommendation is not None and card.recommendation.isVisible()
    assert "high confidence" in card.meta.text() or "medium confidence" in card.meta.text()
    # Technical text is in the support-staff details, laid out when they are first opened.
    assert verdict.details_browser.toPlainText() == ""
    verdict.details_toggle.setChecked(True)
    assert verdict.details_browser.isVisible()
    details = verdict.details_browser.toPlainText()
    assert "Findings of the diagnosis" in details and "stun_signature_blocked" in details

    # The run is kept; reopening it from history shows the same findings.
    files = list(history_dir().glob("run-*.json"))
    assert len(files) == 1
    report = load_report(files[0])
    assert report["scenario"] == "russia-2025"
    assert window.open_report(files[0])
    assert [c.view.mechanism for c in window.verdict.findings] == mechanisms

    window.verdict.copy_button.click()
    clipboard = QApplication.clipboard().text()
    assert "What CallPath found:" in clipboard and card.view.summary in clipboard


def test_an_unknown_lab_scenario_on_the_command_line_exits_2(
    qapp: QApplication, english: None, data_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    assert main(["--lab", "no-such-scenario", "--screenshot", str(tmp_path)]) == 2
    assert "no lab scenario named 'no-such-scenario'" in capsys.readouterr().err


def test_screenshot_mode_with_a_lab_preset_saves_every_page(
    qapp: QApplication, english: None, data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    assert main(["--lang", "en", "--lab", "russia-2025", "--screenshot", str(folder)]) == 0
    names = sorted(file.name for file in folder.glob("*.png"))
    assert names == [
        "history.png",
        "home.png",
        "profile-editor.png",
        "running.png",
        "support.png",
        "verdict-details.png",
        "verdict.png",
        "workshop-presenter.png",
        "workshop.png",
    ]
    assert all(file.stat().st_size > 1000 for file in folder.glob("*.png"))
    reports = [load_report(file) for file in history_dir().glob("run-*.json")]
    assert sorted(r["scenario"] for r in reports) == ["russia-2025", "russia-2025-workshop"]
