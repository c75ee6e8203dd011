"""The desktop app driven like a user would: real widgets, real bridge, real local-demo runs.

Runs on Qt's offscreen platform. Every test fails on any Qt warning. Modal dialogs are
answered by ``AnsweringDialogs`` (a modal dialog would block the test).
"""

from __future__ import annotations

import ast
import gc
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callpath.core.call.verdict import decide
from callpath.core.i18n import _
from callpath.core.model.results import (
    Direction,
    Grade,
    MediaKind,
    MediaQuality,
    PathResult,
    QualitySample,
    RunResult,
    SelectedPair,
    Stage,
    StageResult,
)
from callpath.core.report.document import load_report, write_report
from callpath.gui.app import AppController
from callpath.gui.bridge import DEFERRED_FULL_COLLECTION, FullCollections
from callpath.gui.history import history_dir
from callpath.gui.qt import QApplication, QLabel, Qt
from callpath.gui.report_view import Light
from callpath.gui.widgets import StageState
from tests.gui_helpers import (  # sets the offscreen platform before Qt starts
    RUN_TIMEOUT_MS,
    dialogs_of,
    wait_for_page,
)

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["tests.gui_support"]  # fixtures: app, data_dir, english, qt_warnings_fail


# --- a made-up run, for the file tests (no call needed to render or save a report) ---------


def samples(kind: MediaKind, bitrate: float) -> tuple[QualitySample, ...]:
    return tuple(
        QualitySample(float(t), kind, direction, 40.0 + t, 3.0, 0.5 * t, bitrate + 5 * t)
        for t in range(1, 5)
        for direction in Direction
    )


def made_up_run(profile_name: str = "Helpdesk relays") -> RunResult:
    good_voice = MediaQuality(
        MediaKind.AUDIO,
        Grade.GOOD,
        mos=4.3,
        rtt_ms=40,
        loss_pct=0.0,
        samples=samples(MediaKind.AUDIO, 40),
    )
    poor_video = MediaQuality(
        MediaKind.VIDEO,
        Grade.DEGRADED,
        bitrate_kbps=90,
        reasons=("bitrate_below_187.5kbps",),
        samples=samples(MediaKind.VIDEO, 90),
    )
    paths = (
        PathResult(
            path_id="turn-udp",
            exercised=True,
            failure=None,
            stages=(
                StageResult(Stage.TURN_ALLOCATE, 0.1, 0.05),
                StageResult(Stage.ICE, 0.2, 0.3),
                StageResult(Stage.DTLS, 0.5, 0.1),
                StageResult(Stage.MEDIA_UP, 0.6, 0.2),
                StageResult(Stage.QUALITY, 0.8, 4.0),
            ),
            server="turn:203.0.113.5:3478?transport=udp",
            selected_pair=SelectedPair(
                "relay",
                "203.0.113.5",
                50000,
                "host",
                "198.51.100.7",
                40000,
                "udp",
                "203.0.113.5:3478",
            ),
            voice=good_voice,
            video=poor_video,
            duration=5.0,
        ),
        PathResult(
            path_id="turn-tls",
            exercised=False,
            failure="ssl_unknown_authority",
            stages=(
                StageResult(
                    Stage.CONNECT, 0.1, 0.2, "ssl_unknown_authority", {"sni": "relay.example.org"}
                ),
            ),
            server="turns:relay.example.org:443",
        ),
        PathResult(
            path_id="direct",
            exercised=False,
            failure="ice_failed",
            stages=(StageResult(Stage.ICE, 0.1, 8.0, "ice_failed", {"local_candidates": 1}),),
            server=None,
        ),
    )
    start = datetime(2025, 8, 14, 10, 0, tzinfo=UTC)
    return RunResult(
        started_at=start,
        finished_at=start + timedelta(seconds=9),
        profile_name=profile_name,
        target="echo",
        paths=paths,
        verdict=decide(paths),
    )


# --- real runs ------------------------------------------------------------------------------


def test_demo_run_started_with_enter_ends_on_a_green_verdict_kept_in_history(
    qtbot: Any, app: AppController
) -> None:
    window = app.window
    assert window.current_page() == "home"
    window.home.select_demo()  # first-time users start with the lab selected
    assert "no microphone or camera" in window.home.plan_line.text()
    thresholds = gc.get_threshold()
    qtbot.keyClick(window.home.start_button, Qt.Key.Key_Return)
    built = window.running.rows["direct"]
    # Full collections wait while the run goes (they stop every thread, the window's too).
    assert gc.get_threshold()[2] == DEFERRED_FULL_COLLECTION
    wait_for_page(qtbot, window, "verdict")
    assert gc.get_threshold() == thresholds
    # RunStarted named the paths ``begin`` had already laid out: the rows were kept, not
    # rebuilt (rebuilding relaid out the whole window and stalled it ~200 ms at the start).
    assert window.running.rows["direct"] is built

    verdict = window.verdict
    # One path carries voice and video: one sentence names it (issue 17's headline rule).
    assert verdict.voice_label.text() == "Voice and video calls work via direct UDP."
    assert verdict.video_label.isHidden()
    assert list(verdict.cards) == ["direct"]
    card = verdict.cards["direct"]
    assert card.light.light == Light.GREEN
    assert card.light.accessibleName() == "direct UDP: works"
    assert card.explanation is None

    # The Running page saw every stage of the direct path pass.
    row = window.running.rows["direct"]
    for stage in ("ice", "dtls", "media_up", "quality"):
        assert row.stages[stage].state == StageState.OK, stage
    assert row.stages["turn_allocate"].state == StageState.PENDING
    chart = window.running.charts[("video", "bitrate_kbps")].chart
    assert chart.series["direct"], "no live bitrate points were drawn"

    # The run is in history, and reopening it shows the same verdict.
    files = list(history_dir().glob("run-*.json"))
    assert len(files) == 1
    assert load_report(files[0])["paths"][0]["id"] == "direct"
    headline = verdict.voice_label.text()
    window.show_history()
    assert window.history.table.rowCount() == 1
    assert "direct UDP" in window.history.table.item(0, 2).text()
    window.history.open_button.click()
    assert window.current_page() == "verdict"
    assert window.verdict.voice_label.text() == headline
    assert window.verdict.shown is not None and window.verdict.shown.run is None
    assert not dialogs_of(app).errors


def test_full_collections_wait_for_the_run_and_start_up_objects_are_frozen_once() -> None:
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    collections = FullCollections()
    try:
        collections.run_started()
        frozen = gc.get_freeze_count()
        assert frozen >= before_frozen
        assert gc.get_threshold() == (*before_threshold[:2], DEFERRED_FULL_COLLECTION)
        collections.run_ended()
        assert gc.get_threshold() == before_threshold
        collections.run_ended()  # twice (stop, then shutdown) changes nothing
        assert gc.get_threshold() == before_threshold
        collections.run_started()
        assert gc.get_freeze_count() == frozen  # what later runs make is never frozen
    finally:
        collections.run_ended()
    assert gc.get_threshold() == before_threshold


def test_stop_during_the_run_keeps_and_shows_the_partial_report(
    qtbot: Any, app: AppController
) -> None:
    window = app.window
    bridge = app.bridge
    window.home.select_demo()
    with qtbot.waitSignal(bridge.sampleTaken, timeout=RUN_TIMEOUT_MS):
        window.home.start_button.click()
    assert window.current_page() == "running"
    window.running.stop_button.click()
    assert not window.running.stop_button.isEnabled()
    wait_for_page(qtbot, window, "verdict")

    shown = window.verdict.shown
    assert shown is not None and shown.run is not None
    assert shown.run.cancelled and shown.report["cancelled"] is True
    assert shown.report["paths"][0]["failure"] == "interrupted"
    assert window.verdict.cards["direct"].light.light == Light.GREY
    labels = window.verdict.scroll_area.widget().findChildren(QLabel)
    notices = [label.text() for label in labels if label.objectName() == "stopped-notice"]
    assert notices == ["The test was stopped before it finished; the results are partial."]
    assert len(list(history_dir().glob("run-*.json"))) == 1

    # The loop thread is still there for the next run, and idle.
    assert not bridge.busy
    assert bridge.loop_thread.is_alive()
    qtbot.waitUntil(lambda: bridge.pending_tasks() == 0, timeout=10_000)


# --- files, sharing, language ---------------------------------------------------------------


def test_opening_a_report_file_renders_lights_and_explanations(
    qtbot: Any, app: AppController, tmp_path: Path
) -> None:
    report_file = tmp_path / "from-a-user.json"
    write_report(report_file, made_up_run(), redact=True)
    dialogs_of(app).paths.append(report_file)
    app.window.file_actions[1].trigger()  # File → Open report file…

    window = app.window
    assert window.current_page() == "verdict"
    assert window.verdict.voice_label.text() == (
        "Voice calls work via TURN over UDP (quality 4.3 of 4.5)."
    )
    assert window.verdict.video_label.text() == (
        "Video calls work poorly at best (via TURN over UDP)."
    )
    lights = {path_id: card.light.light for path_id, card in window.verdict.cards.items()}
    assert lights == {"turn-udp": Light.AMBER, "turn-tls": Light.RED, "direct": Light.RED}
    tls = window.verdict.cards["turn-tls"]
    assert tls.explanation is not None
    assert "not issued by an authority this computer trusts" in tls.explanation.text()
    assert "ssl_unknown_authority" in tls.explanation.text()
    assert "connection to the server" in tls.status.text()
    # Someone else's redacted report has no addresses left to include.
    assert not window.verdict.include_addresses.isEnabled()
    window.verdict.details_toggle.setChecked(True)
    assert "host-1" in window.verdict.details_browser.toPlainText()


def test_an_invalid_report_file_gets_a_clear_error_and_changes_nothing(
    app: AppController, tmp_path: Path
) -> None:
    bad = tmp_path / "holiday.json"
    bad.write_text(json.dumps({"hello": "world"}), encoding="utf-8")
    assert not app.window.open_report(bad)
    title, text = dialogs_of(app).errors[-1]
    assert title == "This is not a CallPath report"
    assert str(bad) in text and "not a CallPath report" in text
    assert app.window.current_page() == "home"


def test_a_broken_profile_is_reported_with_file_and_line(
    app: AppController, tmp_path: Path
) -> None:
    profile = tmp_path / "relays.yaml"
    profile.write_text("version: 1\nname: x\ntarget: [\n", encoding="utf-8")
    dialogs_of(app).paths.append(profile)
    app.window.home.choose_button.click()
    title, text = dialogs_of(app).errors[-1]
    assert title == "This profile cannot be used"
    assert re.search(rf"{re.escape(str(profile))}:\d+: ", text), text
    assert app.window.home.profile_source is None
    assert not app.window.home.profile_choice.isChecked()


def test_saving_json_and_html_redacts_by_default_and_html_stands_alone(
    app: AppController, tmp_path: Path
) -> None:
    source = tmp_path / "mine.json"
    write_report(source, made_up_run("<script>alert(1)</script>"), redact=False)
    window = app.window
    assert window.open_report(source)
    assert window.verdict.include_addresses.isEnabled()

    saved = tmp_path / "out" / "shared.json"
    saved.parent.mkdir()
    html_file = tmp_path / "out" / "shared.html"
    dialogs_of(app).paths.extend([saved, html_file])
    window.verdict.save_button.click()
    window.verdict.export_button.click()
    assert not dialogs_of(app).errors
    assert str(saved) in window.verdict.share_status.text() or saved.exists()

    report = load_report(saved)
    assert report["redacted"] is True
    text = saved.read_text(encoding="utf-8")
    assert "203.0.113.5" not in text and "relay.example.org" not in text
    assert report["paths"][0]["server"].startswith("turn:host-")

    page = html_file.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "203.0.113.5" not in page and "relay.example.org" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, re.IGNORECASE)
    assert not [link for link in links if re.match(r"(?i)(https?:)?//", link)], links
    assert "<link" not in page.lower() and "@import" not in page
    assert page.count("<svg") >= 4  # voice and video charts of the path that carried a call
    assert "Voice calls work via TURN over UDP" in page

    # With "include addresses" ticked the saved report keeps them.
    window.verdict.include_addresses.setChecked(True)
    dialogs_of(app).paths.append(saved)
    window.verdict.save_button.click()
    assert "203.0.113.5" in saved.read_text(encoding="utf-8")

    window.verdict.copy_button.click()
    clipboard = QApplication.clipboard().text()
    assert "Voice calls work via TURN over UDP" in clipboard
    assert "ssl_unknown_authority" in clipboard


def test_switching_to_russian_rebuilds_the_window_in_russian(
    qtbot: Any, app: AppController, tmp_path: Path
) -> None:
    report_file = tmp_path / "r.json"
    write_report(report_file, made_up_run(), redact=True)
    old = app.window
    assert old.open_report(report_file)
    old.language_actions["ru"].trigger()

    window = app.window
    assert window is not old
    assert window.current_page() == "verdict"
    assert window.verdict.voice_label.text() == _(
        "Voice calls work via {path} (quality {mos} of 4.5)."
    ).format(path=_("TURN over UDP"), mos="4,3")
    assert re.search("[А-Яа-я]", window.verdict.voice_label.text())
    assert window.home.start_button.text() == _("&Start test")
    assert re.search("[А-Яа-я]", window.home.start_button.text())
    assert re.search("[А-Яа-я]", window.verdict.cards["turn-tls"].explanation.text())

    window.language_actions["en"].trigger()
    assert app.window.home.start_button.text() == "&Start test"


def test_gui_modules_import_qt_only_through_gui_qt() -> None:
    gui_dir = Path(__file__).parents[1] / "gui"
    offenders = []
    for file in sorted(gui_dir.rglob("*.py")):
        if file.name == "qt.py" and file.parent == gui_dir:
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("PySide6", "shiboken6", "PyQt5", "PyQt6"):
                    offenders.append(f"{file.name}:{node.lineno} imports {name}")
    assert not offenders, offenders
    assert len(list(gui_dir.glob("*.py"))) > 5


def test_screenshot_mode_runs_the_demo_in_the_real_window_and_exits_0(
    qapp: QApplication, qt_warnings_fail: list[str], english: None, data_dir: Path, tmp_path: Path
) -> None:
    from callpath.gui.app import main

    folder = tmp_path / "shots"
    assert main(["--lang", "en", "--demo", "--screenshot", str(folder)]) == 0
    names = sorted(file.name for file in folder.glob("*.png"))
    assert names == ["history.png", "home.png", "running.png", "verdict-details.png", "verdict.png"]
    assert all(file.stat().st_size > 1000 for file in folder.glob("*.png"))
    assert len(list(history_dir().glob("run-*.json"))) == 1
