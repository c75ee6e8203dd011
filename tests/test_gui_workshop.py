"""Workshop and support view with real lab runs: rules composed live flip the verdict, and the
support view compares the two real reports those runs wrote.

Every Qt warning fails the test. The lab runs on 127.0.0.0/8 inside the test process.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from callpath.core.lab.scenario import RULE_PARAMETERS, find_scenario, parse_scenario
from callpath.core.report.document import load_report
from callpath.gui.app import AppController
from callpath.gui.history import history_dir
from callpath.gui.qt import QApplication, Qt
from callpath.gui.report_view import Light
from callpath.gui.workshop import CONTROLS, PRESENTER_KEYS, Composer
from tests.gui_helpers import RUN_TIMEOUT_MS, dialogs_of

pytest_plugins = ["tests.gui_support"]
pytestmark = pytest.mark.timeout(200)


def lights(app: AppController) -> dict[str, Light]:
    return {path_id: line.light.light for path_id, line in app.window.workshop.path_lines.items()}


def test_presenter_keys_drive_a_rerun_that_flips_the_verdict_and_the_support_view_diffs_it(
    qtbot: Any, app: AppController
) -> None:
    window = app.window
    window.home.workshop_button.click()
    assert window.current_page() == "workshop"
    workshop = window.workshop
    assert workshop.select_scenario("open-network")
    assert workshop.explanation.text() == find_scenario("open-network").explanation_with_sources()
    assert "Sources: " in workshop.explanation.text()
    assert not any(row.check.isChecked() for row in workshop.rows)

    # Presenter mode: full screen, large type, keyboard only.
    workshop.presenter_button.click()
    assert workshop.presenting and window.isFullScreen() and not window.menuBar().isVisible()
    assert "font-size: 20pt" in workshop.styleSheet()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)

    qtbot.keyClick(workshop.run_button, Qt.Key.Key_Space)
    assert workshop.running and workshop.stop_button.isEnabled()
    assert not workshop.run_button.isEnabled()
    qtbot.waitUntil(lambda: not workshop.running, timeout=RUN_TIMEOUT_MS)
    assert not workshop.stop_button.isEnabled() and workshop.run_button.isEnabled()
    assert re.match(r"Voice (and video )?calls work via", workshop.voice_label.text())
    first = lights(app)
    assert first["direct"] == Light.GREEN and first["turn-tls"] == Light.GREEN
    assert workshop.changes_label.text() == "Nothing to compare yet: this is the first run."

    # Key 1 switches "Drop all UDP" on; Enter runs again.
    drop_udp = PRESENTER_KEYS[[c.key for c in CONTROLS].index("drop_udp")]
    qtbot.keyClicks(workshop.run_button, drop_udp)
    assert workshop.rows[0].check.isChecked() and workshop.composer.states["drop_udp"].enabled
    qtbot.keyClick(workshop.run_button, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not workshop.running, timeout=RUN_TIMEOUT_MS)
    second = lights(app)
    assert second["direct"] == Light.RED and second["turn-udp"] == Light.RED
    assert second["turn-tls"] == Light.GREEN
    assert re.match(
        r"Voice (and video )?calls work via TURN over (TLS|TCP)", workshop.voice_label.text()
    )
    changes = workshop.changes_label.text()
    assert "The verdict changed." in changes
    assert "direct UDP: failure appeared" in changes, changes

    # Esc leaves presenter mode.
    qtbot.keyClick(workshop.run_button, Qt.Key.Key_Escape)
    assert not workshop.presenting and not window.isFullScreen()
    assert window.menuBar().isVisible()

    # The two runs are real reports in history; the support view compares them.
    files = sorted(history_dir().glob("run-*.json"), key=lambda f: load_report(f)["started_at"])
    assert len(files) == 2
    assert load_report(files[1])["scenario"] == "open-network-workshop"
    window.tool_actions["support"].trigger()
    dialogs_of(app).paths.extend(files)
    window.support.first.open_button.click()
    window.support.second.open_button.click()
    assert window.support.diff_box.isVisible()
    diff = window.support.diff_browser.toHtml()
    assert "#ffcdd2" in diff  # a worse cell (direct UDP failing now) is highlighted in red
    titles = [s.title for s in window.support.sections]
    assert titles[0] == "Differences"
    window.support.copy_button.click()
    text = QApplication.clipboard().text()
    assert "direct UDP (worse):" in text and "failure appeared" in text


def test_composer_rules_are_scenario_rules_and_round_trip_through_the_file_reader() -> None:
    composer = Composer()
    russia = find_scenario("russia-2025")
    composer.load(russia)
    assert not composer.modified
    assert composer.scenario().rules == russia.rules
    for item in CONTROLS:
        composer.set_enabled(item.key, True)
    rules = composer.scenario().rules
    assert [r.kind for r in rules][-1] == "delay"  # delay is applied last
    assert {r.kind for r in rules} == {c.key for c in CONTROLS}
    for rule in rules:
        assert set(rule.params) <= set(RULE_PARAMETERS[rule.kind])
    composer.set_value("random_loss", "percent", 30)
    scenario = parse_scenario(composer.scenario_text())
    loss = next(r for r in scenario.rules if r.kind == "random_loss")
    assert loss.params["percent"] == 30
    assert scenario.id == "russia-2025-workshop" and composer.modified


def test_a_freeze_the_controls_cannot_show_stays_as_the_scenario_wrote_it() -> None:
    composer = Composer()
    mobile = find_scenario("russia-2025-mobile")
    composer.load(mobile)
    assert composer.scenario().rules == mobile.rules
    freeze = next(r for r in composer.extra if r.kind == "freeze_tcp")
    assert freeze.params["except_names"] and freeze.params["after_bytes_max"] == 34816
    assert not composer.states["freeze_tcp"].enabled  # the slider would misstate the range
