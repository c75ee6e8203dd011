"""Home: choose what to test, see what will happen, start."""

from __future__ import annotations

from callpath.core.i18n import _
from callpath.core.lab.scenario import Scenario, ScenarioError, list_presets
from callpath.core.paths.registry import path_label
from callpath.gui.qt import (
    QAction,
    QButtonGroup,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QKeySequence,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    Qt,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.sources import DemoSource, LabSource, ProfileSource, RunSource
from callpath.gui.widgets import wrapping_label

# The preset first-time users see selected: the blocking most of our users live with.
DEFAULT_SCENARIO = "russia-2025"


class Choice:
    """What the Home page's radio buttons select."""

    DEMO = "demo"
    LAB = "lab"
    PROFILE = "profile"


class HomePage(QWidget):
    startRequested = Signal()
    chooseProfileRequested = Signal()
    openReportRequested = Signal()
    historyRequested = Signal()
    workshopRequested = Signal()
    editProfileRequested = Signal()
    supportRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._demo = DemoSource()
        self._profile: ProfileSource | None = None
        self.scenarios: list[Scenario] = []
        presets_problem = ""
        try:
            self.scenarios = list_presets()
        except ScenarioError as error:  # a damaged installation: the rest of the app still works
            presets_problem = str(error)

        title = wrapping_label(
            _("Find the network path that restores your calls"), bold=True, size_delta=5
        )
        intro = wrapping_label(
            _(
                "CallPath places a real test call (voice and video, both ways) over each network "
                "path and tells you which ones carry calls and how the others are blocked."
            )
        )

        choice = QGroupBox(_("What to test"))
        self.demo_choice = QRadioButton(_("Local &demo (this computer only)"))
        self.demo_choice.setAccessibleName(_("Local demo"))
        demo_hint = wrapping_label(
            _(
                "Shows how a test looks. Nothing leaves this computer, so it says nothing about "
                "your network."
            )
        )
        self.profile_choice = QRadioButton(_("&Profile from your support contact"))
        self.profile_choice.setAccessibleName(_("Profile from your support contact"))
        self.profile_hint = wrapping_label()
        self.choose_button = QPushButton(_("C&hoose profile file\u2026"))
        self.choose_button.setAccessibleName(_("Choose profile file"))
        self.choose_button.clicked.connect(self.chooseProfileRequested)
        self.edit_button = QPushButton(_("Make or &edit a profile\u2026"))
        self.edit_button.setAccessibleName(_("Make or edit a profile"))
        self.edit_button.clicked.connect(self.editProfileRequested)
        self.lab_choice = QRadioButton(_("Built-in &lab: a censored network on this computer"))
        self.lab_choice.setAccessibleName(_("Built-in lab"))
        self.scenario_box = QComboBox()
        self.scenario_box.setAccessibleName(_("Lab scenario"))
        self.scenario_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.scenario_box.setMinimumContentsLength(30)
        for scenario in self.scenarios:
            self.scenario_box.addItem(scenario.text("title"), scenario.id)
        self.scenario_explanation = wrapping_label(presets_problem)
        self.scenario_explanation.setAccessibleName(_("What the scenario shows"))
        self.scenario_box.currentIndexChanged.connect(self._scenario_chosen)
        if not self.scenarios:
            self.lab_choice.setEnabled(False)
            self.scenario_box.setEnabled(False)

        group = QButtonGroup(self)
        group.addButton(self.lab_choice)
        group.addButton(self.demo_choice)
        group.addButton(self.profile_choice)
        self.demo_choice.setChecked(True)
        self.demo_choice.toggled.connect(self._refresh)
        self.lab_choice.toggled.connect(self._refresh)

        choice_layout = QVBoxLayout(choice)
        choice_layout.addWidget(self.lab_choice)
        scenario_row = QHBoxLayout()
        scenario_row.addWidget(self.scenario_box, 1)
        choice_layout.addLayout(_indented_layout(scenario_row))
        choice_layout.addWidget(_indented(self.scenario_explanation))
        choice_layout.addWidget(self.demo_choice)
        choice_layout.addWidget(_indented(demo_hint))
        choice_layout.addWidget(self.profile_choice)
        profile_row = QHBoxLayout()
        profile_row.addWidget(self.profile_hint, 1)
        profile_row.addWidget(self.choose_button, 0, Qt.AlignmentFlag.AlignTop)
        profile_row.addWidget(self.edit_button, 0, Qt.AlignmentFlag.AlignTop)
        choice_layout.addLayout(_indented_layout(profile_row))

        self.plan_line = wrapping_label()
        self.plan_line.setAccessibleName(_("What will happen"))
        self.start_button = QPushButton(_("&Start test"))
        self.start_button.setAccessibleName(_("Start test"))
        self.start_button.setDefault(True)
        font = self.start_button.font()
        font.setPointSizeF(font.pointSizeF() + 4)
        font.setBold(True)
        self.start_button.setFont(font)
        self.start_button.setMinimumHeight(self.start_button.fontMetrics().height() * 2 + 8)
        self.start_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.start_button.clicked.connect(self.startRequested)
        # A main window has no default button: Enter anywhere on this page starts the test.
        start_action = QAction(self)
        start_action.setShortcuts([QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)])
        start_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        start_action.triggered.connect(self._start_if_ready)
        self.addAction(start_action)

        self.open_report_button = QPushButton(_("&Open report file\u2026"))
        self.open_report_button.setAccessibleName(_("Open report file"))
        self.open_report_button.clicked.connect(self.openReportRequested)
        self.history_button = QPushButton(_("Past &tests"))
        self.history_button.setAccessibleName(_("Past tests"))
        self.history_button.clicked.connect(self.historyRequested)
        self.workshop_button = QPushButton(_("&Workshop"))
        self.workshop_button.setAccessibleName(_("Workshop"))
        self.workshop_button.setToolTip(
            _("For trainers: switch censor rules on and off and watch the verdict change.")
        )
        self.workshop_button.clicked.connect(self.workshopRequested)
        self.support_button = QPushButton(_("Support &view"))
        self.support_button.setAccessibleName(_("Support view"))
        self.support_button.setToolTip(_("For support staff: read and compare reports."))
        self.support_button.clicked.connect(self.supportRequested)
        others = QHBoxLayout()
        others.addWidget(self.open_report_button)
        others.addWidget(self.history_button)
        others.addStretch(1)
        others.addWidget(self.support_button)
        others.addWidget(self.workshop_button)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(choice)
        layout.addWidget(self.plan_line)
        layout.addWidget(self.start_button)
        layout.addStretch(1)
        layout.addLayout(others)

        self.setTabOrder(self.lab_choice, self.scenario_box)
        self.setTabOrder(self.scenario_box, self.demo_choice)
        self.setTabOrder(self.demo_choice, self.profile_choice)
        self.setTabOrder(self.profile_choice, self.choose_button)
        self.setTabOrder(self.choose_button, self.edit_button)
        self.setTabOrder(self.edit_button, self.start_button)
        self.setTabOrder(self.start_button, self.open_report_button)
        self.setTabOrder(self.open_report_button, self.history_button)
        self.setTabOrder(self.history_button, self.support_button)
        self.setTabOrder(self.support_button, self.workshop_button)
        self.select_lab(DEFAULT_SCENARIO)
        self.select_demo()

    @property
    def profile_source(self) -> ProfileSource | None:
        return self._profile

    @property
    def lab_scenario(self) -> Scenario | None:
        index = self.scenario_box.currentIndex()
        return self.scenarios[index] if 0 <= index < len(self.scenarios) else None

    def choice(self) -> str:
        if self.lab_choice.isChecked():
            return Choice.LAB
        if self.profile_choice.isChecked():
            return Choice.PROFILE
        return Choice.DEMO

    def select_lab(self, scenario: str | Scenario | None = None) -> bool:
        """Select the lab with a preset id or a scenario (a file's is added to the list)."""
        if isinstance(scenario, Scenario):
            known = [s.id for s in self.scenarios]
            if scenario.id in known and self.scenarios[known.index(scenario.id)] != scenario:
                self.scenarios[known.index(scenario.id)] = scenario
            elif scenario.id not in known:
                self.scenarios.append(scenario)
                self.scenario_box.addItem(scenario.text("title"), scenario.id)
            self.lab_choice.setEnabled(True)
            self.scenario_box.setEnabled(True)
            scenario = scenario.id
        if not self.scenarios:
            return False
        if scenario is not None:
            index = self.scenario_box.findData(scenario)
            if index < 0:
                return False
            self.scenario_box.setCurrentIndex(index)
        self.lab_choice.setChecked(True)
        self._refresh()
        return True

    def set_profile(self, source: ProfileSource) -> None:
        self._profile = source
        self.profile_choice.setChecked(True)
        self._refresh()

    def select_demo(self) -> None:
        self.demo_choice.setChecked(True)
        self._refresh()

    def selected_source(self) -> RunSource | None:
        if self.demo_choice.isChecked():
            return self._demo
        if self.lab_choice.isChecked():
            scenario = self.lab_scenario
            return None if scenario is None else LabSource(scenario)
        return self._profile

    def _scenario_chosen(self, index: int) -> None:
        # Picking a scenario means "test this": select the lab too.
        if self.scenario_box.hasFocus() and self.lab_scenario is not None:
            self.lab_choice.setChecked(True)
        self._refresh()

    def _start_if_ready(self) -> None:
        if self.start_button.isEnabled():
            self.start_button.click()

    def _refresh(self) -> None:
        scenario = self.lab_scenario
        if scenario is not None:
            self.scenario_explanation.setText(scenario.text("explanation"))
        if self._profile is None:
            self.profile_hint.setText(_("No profile chosen yet."))
        else:
            paths = ", ".join(path_label(p) for p in self._profile.path_ids)
            self.profile_hint.setText(
                _("{name} ({file}): {paths}").format(
                    name=self._profile.title, file=self._profile.file.name, paths=paths
                )
            )
        source = self.selected_source()
        self.start_button.setEnabled(source is not None)
        if source is None:
            self.plan_line.setText(_("Choose a profile file to test its paths."))
            return
        if isinstance(source, LabSource):
            paths = ", ".join(path_label(p) for p in source.path_ids)
            self.plan_line.setText(
                _(
                    "The lab tests {paths} through the scenario's censor, offline, in about "
                    "{seconds} seconds; no microphone or camera is used."
                ).format(paths=paths, seconds=source.expected_seconds())
            )
            return
        self.plan_line.setText(
            _("The test takes about {seconds} seconds; no microphone or camera is used.").format(
                seconds=source.expected_seconds()
            )
        )


def _indented(widget: QWidget) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(24, 0, 0, 0)
    layout.addWidget(widget)
    return holder


def _indented_layout(inner: QHBoxLayout) -> QHBoxLayout:
    inner.setContentsMargins(24, 0, 0, 0)
    return inner
