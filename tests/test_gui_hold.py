"""The app's "Keep the call going": from the verdict, the hold on the Running page's live charts,
how it ended on the Verdict page and in the HTML export, and Stop keeping the partial result."""

from __future__ import annotations

from typing import Any

import pytest

from callpath.gui import main_window
from callpath.gui.app import AppController
from callpath.gui.html_report import render_html
from callpath.gui.qt import QGroupBox, QLabel
from tests.gui_helpers import (  # sets the offscreen platform before Qt starts
    RUN_TIMEOUT_MS,
    wait_for_page,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
pytest_plugins = ["tests.gui_support"]  # fixtures: app, data_dir, english, qt_warnings_fail


def hold_box_lines(window: Any) -> list[str]:
    boxes = [
        box
        for box in window.verdict.scroll_area.widget().findChildren(QGroupBox)
        if box.objectName() == "hold"
    ]
    return [label.text() for box in boxes for label in box.findChildren(QLabel)]


def run_demo(qtbot: Any, window: Any) -> None:
    window.home.select_demo()
    window.home.start_button.click()
    wait_for_page(qtbot, window, "verdict")


def test_keeping_the_demo_call_going_shows_it_live_and_then_held(
    qtbot: Any, app: AppController, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = app.window
    bridge = app.bridge
    assert not window.verdict.hold_button.isEnabled()  # nothing to keep going yet
    run_demo(qtbot, window)
    assert window.verdict.hold_button.isEnabled()
    assert hold_box_lines(window) == []

    monkeypatch.setattr(main_window, "APP_HOLD_S", 3.0)
    with qtbot.waitSignal(bridge.holdStarted, timeout=RUN_TIMEOUT_MS):
        window.verdict.hold_button.click()
        assert window.current_page() == "running"
    assert window.running.title.text() == "Keeping the call going"
    with qtbot.waitSignal(bridge.holdSampleTaken, timeout=5_000):
        pass
    assert window.running.rows["direct"].status.text().startswith("Held ")
    wait_for_page(qtbot, window, "verdict")

    shown = window.verdict.shown
    assert shown is not None
    assert shown.report["paths"][0]["hold"]["ended"] == "held"
    assert hold_box_lines(window) == ["direct UDP: held 3 s"]
    assert "direct UDP: held 3 s" in render_html(shown.report)


def test_stopping_the_hold_keeps_and_shows_the_partial_result(
    qtbot: Any, app: AppController, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = app.window
    bridge = app.bridge
    run_demo(qtbot, window)
    monkeypatch.setattr(main_window, "APP_HOLD_S", 60.0)
    with qtbot.waitSignal(bridge.holdStarted, timeout=RUN_TIMEOUT_MS):
        window.verdict.hold_button.click()
    for _second in range(2):
        with qtbot.waitSignals([bridge.holdSampleTaken] * 4, timeout=5_000):
            pass
    window.running.stop_button.click()
    wait_for_page(qtbot, window, "verdict")

    shown = window.verdict.shown
    assert shown is not None and shown.run is not None
    assert not shown.run.cancelled  # the verdict was whole before the hold began
    hold = shown.report["paths"][0]["hold"]
    assert hold["ended"] == "stopped_by_user"
    assert hold["series"]["bytes"]
    (line,) = hold_box_lines(window)
    assert line.startswith("direct UDP: held ") and line.endswith("of 1 min, then stopped by you")
    qtbot.waitUntil(lambda: bridge.pending_tasks() == 0, timeout=10_000)
