"""The main window: pages in a stack, menus, and the glue between pages, bridge and files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from callpath.core.i18n import LANGUAGES, _, current_language
from callpath.core.lab.scenario import Scenario
from callpath.core.lab.source import LabSource
from callpath.core.model.config import HoldConfig
from callpath.core.model.results import RunResult
from callpath.core.profile.document import Profile, ProfileError, load_profile
from callpath.core.report.document import (
    ReportError,
    load_report,
    write_report_dict,
    write_text_atomically,
)
from callpath.core.run.plan import plan_run
from callpath.core.run.source import ProfileSource, RunSource
from callpath.gui.bridge import RunBridge
from callpath.gui.check_page import CheckPage
from callpath.gui.check_source import CheckSource
from callpath.gui.check_view import render_check_html
from callpath.gui.dialogs import Dialogs
from callpath.gui.history import HistoryEntry, save_run
from callpath.gui.history_page import HistoryPage
from callpath.gui.home_page import Choice, HomePage
from callpath.gui.profile_form import ProfileForm, servers_contacted
from callpath.gui.profile_page import ProfilePage
from callpath.gui.qt import (
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
from callpath.gui.report_files import ShownReport, export_html, save_json
from callpath.gui.report_view import summary_text
from callpath.gui.running_page import RunningPage
from callpath.gui.support_page import FIRST, SupportPage
from callpath.gui.verdict_page import APP_HOLD_S, VerdictPage
from callpath.gui.workshop_page import WorkshopPage, WorkshopState

logger = logging.getLogger(__name__)

# Each in its own language, never translated.
LANGUAGE_NAMES = {
    "en": "English",
    "ru": "Русский",
    "fa": "فارسی",
    "zh": "简体中文",
    "tr": "Türkçe",
}


@dataclass(frozen=True)
class WindowState:
    """What survives rebuilding the window (after a language switch)."""

    page: str = "home"
    shown: ShownReport | None = None
    profile: ProfileSource | None = None
    choice: str | None = None  # a Choice; None: a fresh start, the window picks the default
    scenario: Scenario | None = None  # the lab scenario selected on the Home page
    support: tuple[tuple[dict[str, Any], Path | None] | None, ...] = (None, None)
    editor: tuple[ProfileForm, Path | None, str] | None = None  # form, file, origin line
    workshop: WorkshopState | None = None


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
        self.support = SupportPage()
        self.workshop = WorkshopPage()
        self.profiles = ProfilePage(dialogs)
        self.check = CheckPage()
        self.run_origin = "home"  # which page started the current run: home or workshop
        self.last_source: RunSource | None = None  # what "Keep the call going" tests again
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {
            "home": self.home,
            "running": self.running,
            "verdict": self.verdict,
            "history": self.history,
            "support": self.support,
            "workshop": self.workshop,
            "profiles": self.profiles,
            "check": self.check,
        }
        for page in self.pages.values():
            self.stack.addWidget(page)
        self.setCentralWidget(self.stack)
        self._build_menus()

        self.home.startRequested.connect(self.start_run)
        self.home.chooseProfileRequested.connect(self.choose_profile)
        self.home.openReportRequested.connect(self.choose_report)
        self.home.historyRequested.connect(self.show_history)
        self.home.workshopRequested.connect(lambda: self.show_page("workshop"))
        self.home.supportRequested.connect(lambda: self.show_page("support"))
        self.running.stopRequested.connect(self.bridge.stop)
        self.verdict.saveRequested.connect(self.save_report)
        self.verdict.exportRequested.connect(self.export_report)
        self.verdict.copyRequested.connect(self.copy_summary)
        self.verdict.homeRequested.connect(lambda: self.show_page("home"))
        self.verdict.holdRequested.connect(self.start_hold)
        self.check.homeRequested.connect(lambda: self.show_page("home"))
        self.check.stopRequested.connect(self.bridge.stop)
        self.check.saveRequested.connect(self.save_check_report)
        self.check.exportRequested.connect(self.export_check_report)
        self.history.openRequested.connect(self.open_history_entry)
        self.history.homeRequested.connect(lambda: self.show_page("home"))
        self.verdict.supportRequested.connect(self.show_in_support)
        self.support.openRequested.connect(self.choose_support_report)
        self.support.homeRequested.connect(lambda: self.show_page("home"))
        self.workshop.runRequested.connect(self.start_workshop_run)
        self.workshop.stopRequested.connect(self.bridge.stop)
        self.workshop.verdictRequested.connect(lambda: self.show_page("verdict"))
        self.workshop.presenterChanged.connect(self._presenter_changed)
        self.workshop.homeRequested.connect(lambda: self.show_page("home"))
        self.home.editProfileRequested.connect(self.edit_profiles)
        self.profiles.checkRequested.connect(self.start_source)
        self.profiles.useRequested.connect(lambda file: self.open_profile(file, confirm=False))
        self.profiles.homeRequested.connect(lambda: self.show_page("home"))
        self._connections = [
            (bridge.runStarted, self.running.on_run_started),
            (bridge.stageStarted, self.running.on_stage_started),
            (bridge.stageFinished, self.running.on_stage_finished),
            (bridge.sampleTaken, self.running.on_sample),
            (bridge.sampleTaken, self.workshop.on_sample),
            (bridge.pathFinished, self.running.on_path_finished),
            (bridge.pathFinished, self.workshop.on_path_finished),
            (bridge.runCompleted, self.on_run_completed),
            (bridge.runFailed, self.on_run_failed),
            (bridge.busyChanged, self._busy_changed),
            (bridge.checkProgress, self.check.on_progress),
            (bridge.checkCompleted, self.on_check_completed),
            (bridge.holdStarted, self.running.on_hold_started),
            (bridge.holdSampleTaken, self.running.on_hold_sample),
            (bridge.holdPathEnded, self.running.on_hold_path_ended),
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

        tools_menu = self.menuBar().addMenu(_("&Tools"))
        support = QAction(_("&Support view: read and compare reports"), self)
        support.setShortcut(QKeySequence("Ctrl+D"))
        support.triggered.connect(lambda: self.show_page("support"))
        workshop = QAction(_("&Workshop: compose a censor and watch the verdict"), self)
        workshop.setShortcut(QKeySequence("Ctrl+K"))
        workshop.triggered.connect(lambda: self.show_page("workshop"))
        profiles = QAction(_("&Profile editor"), self)
        profiles.setShortcut(QKeySequence("Ctrl+E"))
        profiles.triggered.connect(self.edit_profiles)
        self.tool_actions = {"support": support, "workshop": workshop, "profiles": profiles}
        for action in self.tool_actions.values():
            tools_menu.addAction(action)

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
            choice=self.home.choice(),
            scenario=self.home.lab_scenario,
            support=tuple(self.support.reports),
            editor=(self.profiles.form, self.profiles.file, self.profiles.origin.text()),
            workshop=self.workshop.state(),
        )

    def _restore(self, state: WindowState) -> None:
        if state.profile is not None:
            self.home.set_profile(state.profile)
        if state.scenario is not None:
            self.home.select_lab(state.scenario)
        choice = state.choice
        if choice is None:
            # First-time users see the lab's Russia 2025 preset: it shows what the app finds.
            # First-time users and everyone else: "Test my network" needs no set-up.
            choice = Choice.CHECK
        if choice == Choice.CHECK:
            self.home.select_check()
        elif choice == Choice.PROFILE and state.profile is not None:
            self.home.profile_choice.setChecked(True)
        elif not (choice == Choice.LAB and self.home.select_lab()):
            self.home.select_demo()
        for slot, entry in enumerate(state.support):
            if entry is not None:
                self.support.set_report(slot, *entry)
        if state.editor is not None:
            self.profiles.restore(*state.editor)
        if state.workshop is not None:
            self.workshop.restore(state.workshop)
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
        elif name == "profiles":
            self.profiles.refresh_keyring()  # a keyring may have been unlocked meanwhile
        self.pageChanged.emit(name)

    def _busy_changed(self, busy: bool) -> None:
        self.workshop.set_busy(busy)
        self.language_menu.setEnabled(not busy)
        for action in self.file_actions:
            action.setEnabled(not busy)

    # --- runs -------------------------------------------------------------------------------

    def start_run(self) -> None:
        source = self.home.selected_source()
        if source is not None:
            self.start_source(source)

    def start_source(self, source: RunSource | CheckSource) -> None:
        """Run ``source`` with the Running page, ending on the Verdict page (the messenger
        check: its own page, from progress to the table)."""
        if self.bridge.busy:
            return
        if isinstance(source, CheckSource):
            self.run_origin = "check"
            self.check.begin()
            self.show_page("check")
            self.bridge.start(source)
            return
        self.run_origin = "home"
        self.last_source = source
        self.running.begin(source.title, source.path_ids, source.expected_seconds())
        self.show_page("running")
        self.bridge.start(source)

    def start_hold(self) -> None:
        """Test the last source again, then keep its best calls going (APP_HOLD_S): the live
        charts show the hold, Stop keeps the partial result, the Verdict page says how it ended."""
        source = self.last_source
        if source is None or self.bridge.busy:
            return
        self.run_origin = "home"
        seconds = source.expected_seconds() + round(APP_HOLD_S)
        self.running.begin(source.title, source.path_ids, seconds)
        self.show_page("running")
        self.bridge.start(source, HoldConfig(duration_s=APP_HOLD_S))

    def start_workshop_run(self, scenario: Scenario) -> None:
        """A lab run of the workshop's rules; its verdict stays on the workshop page."""
        if self.bridge.busy:
            return
        source = LabSource(scenario)
        self.run_origin = "workshop"
        self.running.begin(source.title, source.path_ids, source.expected_seconds())
        self.workshop.begin(source.expected_seconds(), source.path_ids)
        self.bridge.start(source)

    def on_check_completed(self, report: dict[str, Any]) -> None:
        self.check.show_report(report)
        self.show_page("check")

    def save_check_report(self) -> None:
        self._write_check(
            _("Save report"), "json", _("CallPath reports (*.json)"), _("Report saved to {file}")
        )

    def export_check_report(self) -> None:
        self._write_check(
            _("Export report as a web page"),
            "html",
            _("Web pages (*.html)"),
            _("Web page saved to {file}"),
        )

    def _write_check(self, title: str, suffix: str, filter_text: str, done: str) -> None:
        report = self.check.report
        if report is None:
            return
        file = self.dialogs.choose_save_path(self, title, f"callpath-check.{suffix}", filter_text)
        if file is None:
            return
        try:
            if suffix == "json":
                write_report_dict(file, report)
            else:
                write_text_atomically(file, render_check_html(report))
        except OSError as error:
            self.dialogs.show_error(self, _("The report was not saved"), str(error))
            return
        self.check.status.setText(done.format(file=file))

    def _presenter_changed(self, on: bool) -> None:
        self.menuBar().setVisible(not on)
        self.running.set_presenter(on)
        if on:
            self.showFullScreen()
        else:
            self.showNormal()

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
        shown = ShownReport.from_run(run, file)
        if self.run_origin == "workshop":
            self.verdict.show_report(shown)
            self.workshop.show_result(shown.report)
            return
        self.show_report(shown)

    def on_run_failed(self, message: str) -> None:
        if self.run_origin == "workshop":
            self.workshop.show_failure(message)
            return
        self.show_page("home")
        self.dialogs.show_error(self, _("The test did not run"), message)

    def show_report(self, shown: ShownReport) -> None:
        self.verdict.show_report(shown)
        self.verdict.hold_button.setEnabled(shown.run is not None and self.last_source is not None)
        self.show_page("verdict")

    # --- files ------------------------------------------------------------------------------

    def choose_profile(self) -> None:
        file = self.dialogs.choose_profile(self)
        if file is not None:
            self.open_profile(file)

    def open_profile(self, file: Path, *, confirm: bool = True) -> bool:
        """Select a profile file for a test; a profile from someone else is confirmed first."""
        try:
            profile = load_profile(file)
            if confirm and not self.confirm_profile(profile, file):
                return False
            source = ProfileSource(plan_run(profile), file)
        except ProfileError as error:
            self.dialogs.show_error(self, _("This profile cannot be used"), str(error))
            return False
        self.home.set_profile(source)
        self.show_page("home")
        return True

    def confirm_profile(self, profile: Profile, file: Path) -> bool:
        """Who the profile says it is from and what it will contact, before anything runs."""
        sender = profile.sender or _("The profile does not say who made it.")
        servers = "\n".join(f"\u2022 {host}" for host in servers_contacted(profile))
        text = _(
            "{file} says it is from: {sender}\n\nA test with it contacts:\n{servers}\n\n"
            "Use it only if you trust whoever sent it: the test reveals your network to these "
            "servers."
        ).format(file=file.name, sender=sender, servers=servers or _("no server"))
        return self.dialogs.confirm(self, _("Use this profile?"), text, _("&Use this profile"))

    def edit_profiles(self) -> None:
        """The profile editor, with the profile chosen on the Home page if there is one."""
        chosen = self.home.profile_source
        if chosen is not None and self.profiles.file != chosen.file and chosen.file.is_file():
            self.profiles.load(chosen.file)
        self.show_page("profiles")

    def choose_report(self) -> None:
        file = self.dialogs.choose_report(self)
        if file is not None:
            self.open_report(file)

    def open_report(self, file: Path) -> bool:
        check = _check_report(file)
        if check is not None:  # a `callpath check` report: its own page
            if isinstance(check, str):
                self.dialogs.show_error(self, _("This is not a CallPath report"), check)
                return False
            self.check.show_report(check)
            self.show_page("check")
            return True
        try:
            report = load_report(file)
        except ReportError as error:
            self.dialogs.show_error(self, _("This is not a CallPath report"), str(error))
            return False
        self.show_report(ShownReport(report, None, file))
        return True

    def show_in_support(self) -> None:
        """The shown report as the support view's first report."""
        shown = self.verdict.shown
        if shown is not None:
            self.support.set_report(FIRST, shown.report, shown.file)
        self.show_page("support")

    def choose_support_report(self, slot: int) -> None:
        file = self.dialogs.choose_report(self)
        if file is None:
            return
        try:
            report = load_report(file)
        except ReportError as error:
            self.dialogs.show_error(self, _("This is not a CallPath report"), str(error))
            return
        self.support.set_report(slot, report, file)

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

    def open_lab(self, scenario: str | Scenario) -> bool:
        """Select a lab preset (by id) or a scenario read from a file on the Home page."""
        if not self.home.select_lab(scenario):
            self.dialogs.show_error(
                self,
                _("This lab scenario cannot be used"),
                _("There is no lab scenario named {name}.").format(name=scenario),
            )
            return False
        self.show_page("home")
        return True

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


def _check_report(file: Path) -> dict[str, Any] | str | None:
    """The messenger check report in ``file``, the reason it is unusable (str), or None when the
    file is not a check report at all (then it is read as a run report)."""
    import json

    from callpath.core.checkup.document import KIND, validate_check_report

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return None
    try:
        validate_check_report(data)
    except ReportError as error:
        return f"{file}: {error}"
    return data
