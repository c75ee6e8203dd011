"""``callpath-gui``: the desktop app's entry point.

Flags: ``--lang CODE``, ``--profile FILE`` (preselect a profile), ``--demo`` (preselect the
local demo), ``--lab SCENARIO`` (preselect a lab preset or scenario file), ``--screenshot DIR``
(run the selected source in the real window, save PNGs of the pages, exit 0).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from callpath.core.i18n import LANGUAGES, _, is_rtl, set_language, system_language
from callpath.core.lab.scenario import ScenarioError, find_scenario
from callpath.gui.bridge import RunBridge
from callpath.gui.dialogs import Dialogs, UnattendedDialogs
from callpath.gui.home_page import Choice
from callpath.gui.main_window import MainWindow, WindowState
from callpath.gui.platform_check import missing_platform_advice
from callpath.gui.qt import QApplication, QObject, QPlainTextEdit, Qt, QTimer

SCREENSHOT_SIZE = (1000, 760)
PRESENTER_SIZE = (1280, 720)  # a common projector
SCREENSHOT_TIMEOUT_MS = 180_000
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def apply_layout_direction() -> None:
    """Right to left for Persian (mirrors every layout), left to right otherwise."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        app.setLayoutDirection(
            Qt.LayoutDirection.RightToLeft if is_rtl() else Qt.LayoutDirection.LeftToRight
        )


class AppController(QObject):
    """Owns the bridge's window; rebuilds the window when the language changes."""

    def __init__(self, bridge: RunBridge, dialogs: Dialogs, state: WindowState | None = None):
        super().__init__()
        self.bridge = bridge
        self.dialogs = dialogs
        self.window = self._make_window(state)

    def _make_window(self, state: WindowState | None) -> MainWindow:
        window = MainWindow(self.bridge, self.dialogs, state)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.languageRequested.connect(self.switch_language)
        return window

    def switch_language(self, code: str) -> None:
        """Every text is translated when a widget is built, so rebuild the window."""
        if self.bridge.busy:
            return
        old = self.window
        state = old.state()
        geometry = old.saveGeometry()
        visible = old.isVisible()
        set_language(code)
        apply_layout_direction()
        self.window = self._make_window(state)
        self.window.restoreGeometry(geometry)
        if visible:
            self.window.show()
        old.close()


class ScreenshotDirector(QObject):
    """Drives the real window through a run and saves home, running and verdict PNGs.

    After a lab run it goes on: a workshop run of the same scenario with two rules changed
    (``workshop.png``, ``workshop-presenter.png``), the two reports compared in the support view
    (``support.png``) and the profile editor on the example profile with a mistake in it
    (``profile-editor.png``)."""

    def __init__(self, app: QApplication, controller: AppController, folder: Path) -> None:
        super().__init__()
        self.app = app
        self.controller = controller
        self.folder = folder
        self.saved: list[Path] = []
        self._running_grabbed = False
        self._finished_paths = 0
        window = controller.window
        window.resize(*SCREENSHOT_SIZE)
        controller.bridge.sampleTaken.connect(self._sample)
        controller.bridge.pathFinished.connect(self._path_finished)
        controller.bridge.runFailed.connect(lambda _message: self.app.exit(EXIT_FAILED))
        controller.bridge.runCompleted.connect(self._run_completed)
        self._phase = "run"
        window.pageChanged.connect(self._page_changed)
        QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, lambda: self.app.exit(EXIT_FAILED))
        QTimer.singleShot(500, self._begin)

    def _grab(self, name: str) -> None:
        self.app.processEvents()
        path = self.folder / f"{name}.png"
        if not self.controller.window.grab().save(str(path)):
            raise OSError(f"cannot write {path}")
        self.saved.append(path)

    def _begin(self) -> None:
        self._grab("home")
        self.controller.window.start_run()

    def _sample(self, event: object) -> None:
        t = getattr(getattr(event, "sample", None), "t", 0.0)
        if not self._running_grabbed and t >= 3:
            self._running_grabbed = True
            QTimer.singleShot(200, self._grab_running)

    def _grab_running(self) -> None:
        for card in self.controller.window.running.charts.values():
            card.chart.redraw()  # the latest samples, not the last scheduled redraw
        self._grab("running")

    def _path_finished(self, event: object) -> None:
        # The picture is of live charts: taken after three seconds of samples (above), or, in
        # a run where no path carries media that long, when the last path has finished.
        self._finished_paths += 1
        rows = len(self.controller.window.running.rows)
        if not self._running_grabbed and self._finished_paths >= rows:
            self._running_grabbed = True
            self._grab_running()

    def _page_changed(self, page: str) -> None:
        if page == "verdict":
            QTimer.singleShot(300, self._verdict)

    def _verdict(self) -> None:
        window = self.controller.window
        self._grab("verdict")
        window.verdict.details_toggle.setChecked(True)
        self.app.processEvents()
        # Scroll the details to the top of the view: they are what this picture is for.
        bar = window.verdict.scroll_area.verticalScrollBar()
        bar.setValue(window.verdict.details_toggle.y())
        self._grab("verdict-details")
        window.verdict.details_toggle.setChecked(False)
        window.show_history()
        self._grab("history")
        if window.home.choice() == Choice.LAB:
            self._workshop()
        else:
            self.app.exit(EXIT_OK)

    def _workshop(self) -> None:
        window = self.controller.window
        workshop = window.workshop
        shown = window.verdict.shown
        scenario = window.home.lab_scenario
        window.show_page("workshop")
        if scenario is not None:
            workshop.select_scenario(scenario.id)
        if shown is not None:
            workshop.last_report = shown.report  # "since the last run" compares with it
        for key in ("drop_stun", "drop_quic"):
            index = [row.item.key for row in workshop.rows].index(key)
            workshop.toggle_rule(index)
        self._phase = "workshop"
        workshop.request_run()

    def _run_completed(self, run: object) -> None:
        if self._phase == "workshop":
            self._phase = "after-workshop"
            QTimer.singleShot(300, self._after_workshop)

    def _after_workshop(self) -> None:
        window = self.controller.window
        workshop = window.workshop
        self._grab("workshop")
        workshop.set_presenter(True)
        # Full screen on the offscreen platform is its small virtual screen: show a projector's.
        window.showNormal()
        window.resize(*PRESENTER_SIZE)
        self.app.processEvents()
        # The live charts, as the room sees them during a run.
        bar = workshop.result_scroll.verticalScrollBar()
        bar.setValue(workshop.legend.y())
        self._grab("workshop-presenter")
        workshop.set_presenter(False)
        self.app.processEvents()  # the large presenter type still sets the minimum size until now
        window.resize(*SCREENSHOT_SIZE)
        if workshop.previous_report is not None and workshop.last_report is not None:
            window.support.set_report(0, dict(workshop.previous_report))
            window.support.set_report(1, dict(workshop.last_report))
        window.show_page("support")
        self._grab("support")
        example = examples_dir() / "profile.yaml"
        if example.is_file() and window.profiles.load(example):
            window.show_page("profiles")
            urls = window.profiles.fields.get("servers[1].urls")
            if urls is not None and isinstance(urls[0], QPlainTextEdit):
                urls[0].setPlainText("turns:turn.example.org:443?transport=udp")
            self.app.processEvents()
            window.profiles.show_problem()
            self._grab("profile-editor")
        self.app.exit(EXIT_OK)


def examples_dir() -> Path:
    """The example profile of a source checkout (absent in installed bundles)."""
    return Path(__file__).resolve().parents[1] / "examples"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callpath-gui", description=_("Find the network path that restores your calls.")
    )
    parser.add_argument("--lang", choices=LANGUAGES, help=_("language of the app"))
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--profile", type=Path, help=_("profile file (YAML) to select"))
    chosen.add_argument("--demo", action="store_true", help=_("select the local demo"))
    chosen.add_argument(
        "--lab",
        metavar="SCENARIO",
        help=_("select a built-in lab scenario (preset name or scenario file)"),
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="DIR",
        help=_("run the selected test, save pictures of the pages in DIR, and exit"),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Language first: the parser's own help text is translated too.
    for index, value in enumerate(arguments):
        if value == "--lang" and index + 1 < len(arguments):
            set_language(arguments[index + 1])
            break
        if value.startswith("--lang="):
            set_language(value.split("=", 1)[1])
            break
    else:
        set_language(system_language())
    args = _parser().parse_args(arguments)
    if args.lang:
        set_language(args.lang)
    scenario = None
    if args.lab is not None:
        try:
            scenario = find_scenario(args.lab)
        except ScenarioError as error:
            print(f"callpath-gui: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT

    existing = QApplication.instance()
    if not isinstance(existing, QApplication):
        # Qt aborts the process when its platform plugin cannot load: say what to install.
        advice = missing_platform_advice()
        if advice is not None:
            print(f"callpath-gui: {advice}", file=sys.stderr)
            return EXIT_FAILED
    app = existing if isinstance(existing, QApplication) else QApplication(["callpath-gui"])
    app.setApplicationName("CallPath")
    apply_layout_direction()
    bridge = RunBridge()
    app.aboutToQuit.connect(bridge.shutdown)
    try:
        dialogs = UnattendedDialogs() if args.screenshot is not None else Dialogs()
        controller = AppController(bridge, dialogs)
        opened = args.profile is None or controller.window.open_profile(args.profile)
        if not opened and args.screenshot is not None:
            return EXIT_BAD_INPUT
        if args.demo:
            controller.window.home.select_demo()
        if scenario is not None:
            controller.window.open_lab(scenario)
        director = None
        if args.screenshot is not None and controller.window.home.choice() == Choice.CHECK:
            # Screenshots follow a call run; the messenger check would go to the real network.
            controller.window.home.select_demo()
        if args.screenshot is not None:
            args.screenshot.mkdir(parents=True, exist_ok=True)
            director = ScreenshotDirector(app, controller, args.screenshot)
        controller.window.show()
        code = app.exec()
        del director
        return int(code)
    finally:
        bridge.shutdown()


if __name__ == "__main__":
    sys.exit(main())
