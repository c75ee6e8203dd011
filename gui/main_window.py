"""The main window: pages in a stack, menus, and the glue between pages, bridge and files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.i18n import LANGUAGES, _, current_language
from core.profile import ProfileError
from core.report import ReportError, load_report
from core.results import RunResult
from gui.bridge import RunBridge
from gui.dialogs import Dialogs
from gui.history import HistoryEntry, save_run
from gui.history_page import HistoryPage
from gui.home_page import HomePage
from gui.qt import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QGuiApplication,
    QKeySequence,
    QMainWindow,
    QStackedWidget,
    QWidget,
    Signal,
)
from gui.report_files import ShownReport, export_html, save_json
from gui.report_view import summary_text
from gui.running_page import RunningPage
from gui.sources import ProfileSource
from gui.verdict_page import VerdictPage

logger = logging.getLogger(__name__)

LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}  # each in its own language, never translated


@dataclass(frozen=True)
class WindowState:
    """What survives rebuilding the window (after a language switch)."""

    page: str = "home"
    shown: ShownReport | None = None
    profile: ProfileSource | None = None
    use_profile: bool = False


class MainWindow(QMainWindow):
    languageRequested = Signal(str)
    pageChanged = Signal(str)

    def __init__(
        self, bridge: RunBridge, dialogs: Dialogs, state: WindowState | None = None
    ) -> None:
        super().__init__()
        self.bridge = bridge
        self.dialogs = dialogs
        self.last_history_file: Path | None = None
        self.setWindowTitle(_("CallPath \u2014 which path restores your calls"))

        self.home = HomePage()
        self.running = RunningPage()
        self.verdict = VerdictPage()
        self.history = HistoryPage()
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {
            "home": self.home,
            "running": self.running,
            "verdict": self.verdict,
            "history": self.history,
        }
        for page in self.pages.values():
            self.stack.addWidget(page)
        self.setCentralWidget(self.stack)
        self._build_menus()

        self.home.startRequested.connect(self.start_run)
        self.home.chooseProfileRequested.connect(self.choose_profile)
        self.home.openReportRequested.connect(self.choose_report)
        self.home.historyRequested.connect(self.show_history)
        self.running.stopRequested.connect(self.bridge.stop)
        self.verdict.saveRequested.connect(self.save_report)
        self.verdict.exportRequested.connect(self.export_report)
        self.verdict.copyRequested.connect(self.copy_summary)
        self.verdict.homeRequested.connect(lambda: self.show_page("home"))
        self.history.openRequested.connect(self.open_history_entry)
        self.history.homeRequested.connect(lambda: self.show_page("home"))
        self._connections = [
            (bridge.runStarted, self.running.on_run_started),
            (bridge.stageStarted, self.running.on_stage_started),
            (bridge.stageFinished, self.running.on_stage_finished),
            (bridge.sampleTaken, self.running.on_sample),
            (bridge.pathFinished, self.running.on_path_finished),
            (bridge.runCompleted, self.on_run_completed),
            (bridge.runFailed, self.on_run_failed),
            (bridge.busyChanged, self._busy_changed),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self._restore(state or WindowState())
        self._busy_changed(bridge.busy)

    # --- menus ------------------------------------------------------------------------------

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu(_("&File"))
        open_profile = QAction(_("Open &profile\u2026"), self)
        open_profile.setShortcut(QKeySequence.StandardKey.Open)
        open_profile.triggered.connect(self.choose_profile)
        open_report = QAction(_("Open &report file\u2026"), self)
        open_report.setShortcut(QKeySequence("Ctrl+Shift+O"))
        open_report.triggered.connect(self.choose_report)
        history = QAction(_("Past &tests"), self)
        history.setShortcut(QKeySequence("Ctrl+H"))
        history.triggered.connect(self.show_history)
        quit_action = QAction(_("&Quit"), self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        self.file_actions = [open_profile, open_report, history]
        for action in (*self.file_actions, quit_action):
            file_menu.addAction(action)

        self.language_menu = self.menuBar().addMenu(_("&Language"))
        group = QActionGroup(self)
        group.setExclusive(True)
        self.language_actions: dict[str, QAction] = {}
        for code in LANGUAGES:
            action = QAction(LANGUAGE_NAMES.get(code, code), self)
            action.setCheckable(True)
            action.setChecked(code == current_language())
            action.triggered.connect(lambda _checked=False, c=code: self._language_chosen(c))
            group.addAction(action)
            self.language_menu.addAction(action)
            self.language_actions[code] = action

    def _language_chosen(self, code: str) -> None:
        if code != current_language():
            self.languageRequested.emit(code)

    # --- state ------------------------------------------------------------------------------

    def state(self) -> WindowState:
        page = self.current_page()
        if page == "running":
            page = "home"
        return WindowState(
            page=page,
            shown=self.verdict.shown,
            profile=self.home.profile_source,
            use_profile=self.home.profile_choice.isChecked(),
        )

    def _restore(self, state: WindowState) -> None:
        if state.profile is not None:
            self.home.set_profile(state.profile)
        if not state.use_profile:
            self.home.select_demo()
        if state.shown is not None:
            self.verdict.show_report(state.shown)
        page = state.page
        if page == "verdict" and state.shown is None:
            page = "home"
        if page == "history":
            self.history.reload()
        self.show_page(page)

    def current_page(self) -> str:
        current = self.stack.currentWidget()
        return next(name for name, page in self.pages.items() if page is current)

    def show_page(self, name: str) -> None:
        self.stack.setCurrentWidget(self.pages[name])
        if name == "home":
            self.home.start_button.setFocus()
        elif name == "running":
            self.running.stop_button.setFocus()
        elif name == "verdict":
            self.verdict.home_button.setFocus()
        self.pageChanged.emit(name)

    def _busy_changed(self, busy: bool) -> None:
        self.language_menu.setEnabled(not busy)
        for action in self.file_actions:
            action.setEnabled(not busy)

    # --- runs -------------------------------------------------------------------------------

    def start_run(self) -> None:
        source = self.home.selected_source()
        if source is None or self.bridge.busy:
            return
        self.running.begin(source.title, source.path_ids, source.expected_seconds())
        self.show_page("running")
        self.bridge.start(source)

    def on_run_completed(self, run: RunResult) -> None:
        file = None
        try:
            file = save_run(run)
        except OSError as error:
            logger.warning("cannot keep the run in history: %s", error)
            self.statusBar().showMessage(
                _("This test could not be kept in history: {error}").format(error=error)
            )
        self.last_history_file = file
        self.show_report(ShownReport.from_run(run, file))

    def on_run_failed(self, message: str) -> None:
        self.show_page("home")
        self.dialogs.show_error(self, _("The test did not run"), message)

    def show_report(self, shown: ShownReport) -> None:
        self.verdict.show_report(shown)
        self.show_page("verdict")

    # --- files ------------------------------------------------------------------------------

    def choose_profile(self) -> None:
        file = self.dialogs.choose_profile(self)
        if file is not None:
            self.open_profile(file)

    def open_profile(self, file: Path) -> bool:
        try:
            source = ProfileSource.from_file(file)
        except ProfileError as error:
            self.dialogs.show_error(self, _("This profile cannot be used"), str(error))
            return False
        self.home.set_profile(source)
        self.show_page("home")
        return True

    def choose_report(self) -> None:
        file = self.dialogs.choose_report(self)
        if file is not None:
            self.open_report(file)

    def open_report(self, file: Path) -> bool:
        try:
            report = load_report(file)
        except ReportError as error:
            self.dialogs.show_error(self, _("This is not a CallPath report"), str(error))
            return False
        self.show_report(ShownReport(report, None, file))
        return True

    def show_history(self) -> None:
        self.history.reload()
        self.show_page("history")

    def open_history_entry(self, entry: HistoryEntry) -> None:
        self.show_report(ShownReport(entry.report, None, entry.file))

    def _suggested_name(self, extension: str) -> str:
        stamp = datetime.now().strftime("%Y-%m-%d-%H%M")
        if self.verdict.shown is not None:
            started = str(self.verdict.shown.report.get("started_at", ""))
            stamp = started[:16].replace("T", "-").replace(":", "") or stamp
        return f"callpath-report-{stamp}.{extension}"

    def save_report(self) -> None:
        shown = self.verdict.shown
        if shown is None:
            return
        file = self.dialogs.choose_save_path(
            self,
            _("Save report"),
            self._suggested_name("json"),
            _("CallPath reports (*.json)"),
        )
        if file is None:
            return
        try:
            save_json(file, shown, include_addresses=self.verdict.include_addresses.isChecked())
        except OSError as error:
            self.dialogs.show_error(self, _("The report was not saved"), str(error))
            return
        self.verdict.share_status.setText(_("Report saved to {file}").format(file=file))

    def export_report(self) -> None:
        shown = self.verdict.shown
        if shown is None:
            return
        file = self.dialogs.choose_save_path(
            self,
            _("Export report as a web page"),
            self._suggested_name("html"),
            _("Web pages (*.html)"),
        )
        if file is None:
            return
        try:
            export_html(file, shown, include_addresses=self.verdict.include_addresses.isChecked())
        except OSError as error:
            self.dialogs.show_error(self, _("The report was not exported"), str(error))
            return
        self.verdict.share_status.setText(_("Web page saved to {file}").format(file=file))

    def copy_summary(self) -> None:
        shown = self.verdict.shown
        if shown is None:
            return
        report = shown.shared(include_addresses=self.verdict.include_addresses.isChecked())
        QGuiApplication.clipboard().setText(summary_text(report))
        self.verdict.share_status.setText(_("Summary copied; paste it into a message."))

    # --- closing ----------------------------------------------------------------------------

    def detach(self) -> None:
        """Stop listening to the bridge (the window is being replaced or closed)."""
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.bridge.busy:
            self.bridge.stop()
        self.detach()
        super().closeEvent(event)
