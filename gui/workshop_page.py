"""Workshop: pick a lab scenario, switch censor rules on and off, re-run, watch the verdict change.

For trainers, offline. The rules become lab ``RuleSpec``s (``gui/workshop.py``); each run is a
real lab run of the composed scenario. Presenter mode is for projectors: full screen, large
type, high contrast, and the keyboard drives it (Space or Enter runs, the number keys toggle
the rules, Esc leaves).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callpath.core.i18n import _
from callpath.core.lab.scenario import Scenario, ScenarioError, list_presets
from callpath.core.model.events import SampleTaken
from callpath.core.model.results import MediaKind
from callpath.core.paths.registry import path_label
from callpath.core.report.diff import diff_reports
from callpath.core.report.document import path_to_dict
from callpath.gui.qt import (
    QCheckBox,
    QColor,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequence,
    QLabel,
    QPushButton,
    QScrollArea,
    QShortcut,
    QSizePolicy,
    QSlider,
    Qt,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.report_view import (
    LIGHT_NAMES,
    Light,
    finding_views,
    path_light,
    verdict_lines,
)
from callpath.gui.running_page import ChartFeed, chart_card, path_colour
from callpath.gui.support_view import path_change_lines
from callpath.gui.widgets import ChartLegend, TrafficLight, wrapping_label
from callpath.gui.workshop import CONTROLS, PRESENTER_KEYS, Composer, RuleControl, RuleState, Slider

DEFAULT_SCENARIO = "russia-2025"
PRESENTER_STYLE = """
QWidget#workshop, QWidget#workshop QWidget { background: #000000; color: #ffffff; font-size: 20pt; }
QWidget#workshop QPushButton { background: #ffd600; color: #000000; border: 3px solid #ffffff;
    padding: 6px 14px; font-weight: bold; }
QWidget#workshop QPushButton:disabled { background: #616161; color: #e0e0e0; }
QWidget#workshop QCheckBox::indicator { width: 26px; height: 26px; border: 3px solid #ffffff;
    background: #000000; }
QWidget#workshop QCheckBox::indicator:checked { background: #ffd600; }
QWidget#workshop QCheckBox:focus, QWidget#workshop QPushButton:focus { outline: 3px solid #00e5ff; }
QWidget#workshop QComboBox { background: #212121; color: #ffffff; border: 2px solid #ffffff; }
QWidget#workshop QGroupBox { border: 2px solid #ffffff; margin-top: 1.2em; }
"""


@dataclass(frozen=True)
class WorkshopState:
    """What a rebuilt window (after a language switch) keeps of the workshop."""

    scenario_id: str | None
    rules: dict[str, RuleState]
    last_report: Mapping[str, Any] | None
    previous_report: Mapping[str, Any] | None


class _RuleRow(QFrame):
    """One censor rule: a switch with its number key, what it does, and its sliders."""

    def __init__(self, item: RuleControl, shortcut: str, composer: Composer) -> None:
        super().__init__()
        self.item = item
        self.composer = composer
        self.check = QCheckBox(f"{shortcut}  {_(item.title)}")
        self.check.setAccessibleName(_(item.title))
        self.check.setToolTip(_("Key {key} in presenter mode").format(key=shortcut))
        self.hint = wrapping_label(_(item.hint))
        self.sliders: dict[str, QSlider] = {}
        self.values: dict[str, QLabel] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.check)
        layout.addWidget(self.hint)
        for slider_spec in item.sliders:
            layout.addLayout(self._slider_row(slider_spec))
        self.check.toggled.connect(self._toggled)

    def _slider_row(self, spec: Slider) -> QHBoxLayout:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(spec.minimum, spec.maximum)
        slider.setSingleStep(spec.step)
        slider.setPageStep(spec.step * 10)
        slider.setAccessibleName(f"{_(self.item.title)}: {_(spec.label)}")
        value = QLabel()
        value.setMinimumWidth(value.fontMetrics().horizontalAdvance("00000 kbit/s"))
        self.sliders[spec.param] = slider
        self.values[spec.param] = value
        slider.valueChanged.connect(lambda number, s=spec: self._moved(s, number))
        row = QHBoxLayout()
        row.setContentsMargins(24, 0, 0, 0)
        row.addWidget(QLabel(_(spec.label)))
        row.addWidget(slider, 1)
        row.addWidget(value)
        return row

    def _toggled(self, enabled: bool) -> None:
        self.composer.set_enabled(self.item.key, enabled)
        for slider in self.sliders.values():
            slider.setEnabled(enabled)

    def _moved(self, spec: Slider, number: int) -> None:
        self.composer.set_value(self.item.key, spec.param, number)
        unit = _(spec.unit) if spec.unit else ""
        self.values[spec.param].setText(f"{number} {unit}".strip())

    def sync(self) -> None:
        """Show the composer's state (after loading a scenario)."""
        state = self.composer.states[self.item.key]
        self.check.setChecked(state.enabled)
        self._toggled(state.enabled)
        for spec in self.item.sliders:
            value = state.params.get(spec.param, spec.default)
            number = round(float(value)) if isinstance(value, int | float) else spec.default
            slider = self.sliders[spec.param]
            slider.setValue(max(spec.minimum, min(spec.maximum, number)))
            self._moved(spec, slider.value())


class _PathLine(QWidget):
    def __init__(self, path_id: str) -> None:
        super().__init__()
        self.path_id = path_id
        self.light = TrafficLight(Light.GREY, path_label(path_id))
        self.label = wrapping_label(path_label(path_id))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.light)
        layout.addWidget(self.label, 1)

    def set_light(self, light: Light, text: str = "") -> None:
        layout = self.layout()
        replacement = TrafficLight(light, path_label(self.path_id))
        if layout is not None:
            layout.replaceWidget(self.light, replacement)
        self.light.deleteLater()
        self.light = replacement
        name = f"{path_label(self.path_id)}: {_(LIGHT_NAMES[light])}"
        self.label.setText(f"{name}. {text}".strip() if text else name)


class WorkshopPage(QWidget):
    runRequested = Signal(object)  # a callpath.core.lab.scenario.Scenario
    stopRequested = Signal()
    verdictRequested = Signal()
    presenterChanged = Signal(bool)
    homeRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("workshop")
        self.composer = Composer()
        self.presenting = False
        self.running = False
        self.last_report: Mapping[str, Any] | None = None
        self.previous_report: Mapping[str, Any] | None = None
        self.scenarios: list[Scenario] = []
        problem = ""
        try:
            self.scenarios = list_presets()
        except ScenarioError as error:
            problem = str(error)

        self.title = wrapping_label(_("Workshop"), bold=True, size_delta=4)
        self.scenario_box = QComboBox()
        self.scenario_box.setAccessibleName(_("Lab scenario"))
        for scenario in self.scenarios:
            self.scenario_box.addItem(scenario.labelled_title(), scenario.id)
        self.explanation = wrapping_label(problem)
        self.explanation.setAccessibleName(_("What the scenario shows"))

        self.rows: list[_RuleRow] = []
        rules_box = QGroupBox(_("The censor's rules"))
        rules_layout = QVBoxLayout(rules_box)
        for item, key in zip(CONTROLS, PRESENTER_KEYS, strict=True):
            row = _RuleRow(item, key, self.composer)
            self.rows.append(row)
            rules_layout.addWidget(row)
        self.extra_rules = wrapping_label()
        rules_layout.addWidget(self.extra_rules)
        rules_layout.addStretch(1)
        rules_scroll = QScrollArea()
        rules_scroll.setWidgetResizable(True)
        rules_scroll.setFrameShape(QFrame.Shape.NoFrame)
        rules_scroll.setWidget(rules_box)

        self.run_button = QPushButton(_("&Run the lab"))
        self.run_button.setAccessibleName(_("Run the lab with these rules"))
        self.run_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        font = self.run_button.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() + 3)
        self.run_button.setFont(font)
        self.run_button.clicked.connect(self.request_run)
        self.stop_button = QPushButton(_("S&top"))
        self.stop_button.setAccessibleName(_("Stop the test"))
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stopRequested)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.stop_button)
        self.status = wrapping_label()
        self.status.setAccessibleName(_("Workshop status"))
        self.voice_label = wrapping_label(bold=True, size_delta=2)
        self.video_label = wrapping_label(bold=True, size_delta=2)
        self.paths_box = QWidget()
        self.paths_layout = QVBoxLayout(self.paths_box)
        self.paths_layout.setContentsMargins(0, 0, 0, 0)
        self.path_lines: dict[str, _PathLine] = {}
        self.findings_label = wrapping_label()
        self.findings_label.setAccessibleName(_("What CallPath found"))
        self.changes_title = wrapping_label(_("Since the last run:"), bold=True)
        self.changes_label = wrapping_label()
        self.changes_label.setAccessibleName(_("Since the last run"))
        # Live charts of the two figures a censor's rules move most visibly: voice loss and
        # video bitrate, with the grade bands, readable from the back of the room.
        self.legend = ChartLegend()
        self.charts = {
            (kind.value, metric): chart_card(kind, metric, title)
            for kind, metric, title in (
                (MediaKind.AUDIO, "loss_pct", _("Voice: loss, %")),
                (MediaKind.VIDEO, "bitrate_kbps", _("Video: bitrate, kbit/s")),
            )
        }
        self.feed = ChartFeed(self.charts)
        self._colours: dict[str, QColor] = {}
        charts_column = QVBoxLayout()
        for card in self.charts.values():
            charts_column.addWidget(card)
        result_box = QGroupBox(_("Verdict"))
        result = QVBoxLayout(result_box)
        result.addLayout(run_row)
        result.addWidget(self.status)
        result.addWidget(self.voice_label)
        result.addWidget(self.video_label)
        result.addWidget(self.paths_box)
        result.addWidget(self.legend)
        result.addLayout(charts_column)
        result.addWidget(self.findings_label)
        result.addWidget(self.changes_title)
        result.addWidget(self.changes_label)
        result.addStretch(1)
        result_scroll = QScrollArea()
        result_scroll.setWidgetResizable(True)
        result_scroll.setFrameShape(QFrame.Shape.NoFrame)
        result_scroll.setWidget(result_box)
        self.result_scroll = result_scroll

        columns = QGridLayout()
        columns.addWidget(rules_scroll, 0, 0)
        columns.addWidget(result_scroll, 0, 1)
        columns.setColumnStretch(0, 1)
        columns.setColumnStretch(1, 1)

        self.presenter_button = QPushButton(_("&Presenter mode"))
        self.presenter_button.setToolTip(
            _(
                "Full screen, large type, high contrast. Space runs, number keys switch rules, "
                "Esc leaves."
            )
        )
        self.presenter_button.clicked.connect(self.toggle_presenter)
        self.verdict_button = QPushButton(_("Full &verdict"))
        self.verdict_button.setEnabled(False)
        self.verdict_button.clicked.connect(self.verdictRequested)
        self.home_button = QPushButton(_("&Back"))
        self.home_button.clicked.connect(self.homeRequested)
        self.keys_hint = wrapping_label(
            _(
                "Presenter keys: Space or Enter runs, 1\u20139, 0, \u2212 and = switch rules, "
                "Esc leaves."
            )
        )
        bottom = QHBoxLayout()
        bottom.addWidget(self.presenter_button)
        bottom.addWidget(self.verdict_button)
        bottom.addStretch(1)
        bottom.addWidget(self.home_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.scenario_box)
        layout.addWidget(self.explanation)
        layout.addLayout(columns, 1)
        layout.addWidget(self.keys_hint)
        layout.addLayout(bottom)

        # Presenter keys; off outside presenter mode, where Space belongs to the focused control.
        self.shortcuts: list[QShortcut] = []
        for sequence, slot in (
            (Qt.Key.Key_Space, self.request_run),
            (Qt.Key.Key_Return, self.request_run),
            (Qt.Key.Key_Enter, self.request_run),
            (Qt.Key.Key_Escape, self.leave_presenter),
        ):
            self._shortcut(QKeySequence(sequence), slot)
        for index, key in enumerate(PRESENTER_KEYS):
            self._shortcut(QKeySequence(key), lambda i=index: self.toggle_rule(i))
        toggle = QShortcut(QKeySequence(Qt.Key.Key_F11), self)
        toggle.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        toggle.activated.connect(self.toggle_presenter)

        self.scenario_box.currentIndexChanged.connect(self._scenario_chosen)
        index = self.scenario_box.findData(DEFAULT_SCENARIO)
        self.scenario_box.setCurrentIndex(max(0, index))
        self._scenario_chosen(self.scenario_box.currentIndex())

    def _shortcut(self, sequence: QKeySequence, slot: Any) -> None:
        shortcut = QShortcut(sequence, self)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.setEnabled(False)
        shortcut.activated.connect(slot)
        self.shortcuts.append(shortcut)

    # --- scenario and rules -----------------------------------------------------------------

    @property
    def scenario(self) -> Scenario | None:
        index = self.scenario_box.currentIndex()
        return self.scenarios[index] if 0 <= index < len(self.scenarios) else None

    def select_scenario(self, scenario_id: str) -> bool:
        index = self.scenario_box.findData(scenario_id)
        if index < 0:
            return False
        self.scenario_box.setCurrentIndex(index)
        return True

    def _scenario_chosen(self, index: int) -> None:
        scenario = self.scenario
        if scenario is None:
            return
        self.explanation.setText(scenario.explanation_with_sources())
        self.composer.load(scenario)
        for row in self.rows:
            row.sync()
        extra = ", ".join(spec.kind for spec in self.composer.extra)
        self.extra_rules.setText(
            _("Also from the scenario: {rules}").format(rules=extra) if extra else ""
        )
        self._build_paths(tuple(scenario.paths))

    def toggle_rule(self, index: int) -> None:
        if 0 <= index < len(self.rows) and not self.running:
            row = self.rows[index]
            row.check.setChecked(not row.check.isChecked())
            state = _("on") if row.check.isChecked() else _("off")
            self.status.setText(_("{rule}: {state}").format(rule=_(row.item.title), state=state))

    def _build_paths(self, path_ids: tuple[str, ...]) -> None:
        for line in self.path_lines.values():
            line.hide()
            line.deleteLater()
        self.path_lines = {}
        for path_id in path_ids:
            line = _PathLine(path_id)
            self.path_lines[path_id] = line
            self.paths_layout.addWidget(line)

    def state(self) -> WorkshopState:
        rules = {
            key: RuleState(value.enabled, dict(value.params))
            for key, value in self.composer.states.items()
        }
        scenario = self.scenario
        return WorkshopState(
            scenario.id if scenario else None, rules, self.last_report, self.previous_report
        )

    def restore(self, state: WorkshopState) -> None:
        if state.scenario_id is not None:
            self.select_scenario(state.scenario_id)
        self.composer.states = {
            key: RuleState(value.enabled, dict(value.params)) for key, value in state.rules.items()
        }
        for row in self.rows:
            row.sync()
        self.previous_report = state.previous_report
        if state.last_report is not None:
            # show_result moves the last report to "previous": put it back after.
            self.last_report = state.previous_report
            self.show_result(state.last_report)
            self.status.clear()

    # --- runs -------------------------------------------------------------------------------

    def request_run(self) -> None:
        if self.running or not self.run_button.isEnabled():
            return
        try:
            scenario = self.composer.scenario()
        except ScenarioError as error:  # the controls only make valid rules; say so if not
            self.status.setText(str(error))
            return
        self.runRequested.emit(scenario)

    def begin(self, seconds: int, path_ids: tuple[str, ...] = ()) -> None:
        """The window started the run (of ``path_ids``, which the charts' legend names)."""
        self.feed.clear()
        self._colours = {path_id: path_colour(i) for i, path_id in enumerate(path_ids)}
        self.legend.set_paths([(path_label(p), colour) for p, colour in self._colours.items()])
        self.running = True
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText(
            _("The lab is running with these rules (about {seconds} seconds)\u2026").format(
                seconds=seconds
            )
        )
        for line in self.path_lines.values():
            line.set_light(Light.GREY, _("waiting"))

    def on_sample(self, event: SampleTaken) -> None:
        if not self.running:
            return
        if event.path_id not in self._colours:
            self._colours[event.path_id] = path_colour(len(self._colours))
            self.legend.set_paths([(path_label(p), c) for p, c in self._colours.items()])
        self.feed.add(event, self._colours[event.path_id])

    def on_path_finished(self, event: Any) -> None:
        if not self.running:
            return
        path = path_to_dict(event.result)
        line = self.path_lines.get(str(path.get("id")))
        if line is not None:
            line.set_light(path_light(path))

    def show_result(self, report: Mapping[str, Any]) -> None:
        self.running = False
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.verdict_button.setEnabled(True)
        self.previous_report, self.last_report = self.last_report, report
        self.status.setText(_("Done. Change the rules and run again to compare."))
        lines = verdict_lines(report)
        self.voice_label.setText(lines[0])
        self.video_label.setText(lines[1] if len(lines) > 1 else "")
        self.video_label.setVisible(len(lines) > 1)
        self._build_paths(tuple(str(p.get("id")) for p in report.get("paths", [])))
        for path in report.get("paths", []):
            self.path_lines[str(path.get("id"))].set_light(path_light(path))
        findings = [f"\u2022 {view.summary}" for view in finding_views(report)]
        self.findings_label.setText("\n".join(findings))
        self.changes_label.setText(self._changes())

    def show_failure(self, message: str) -> None:
        self.running = False
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.status.setText(message)

    def set_busy(self, busy: bool) -> None:
        """Another run (from the Home page) is going: no second one."""
        self.run_button.setEnabled(not busy and not self.running)

    def _changes(self) -> str:
        if self.previous_report is None or self.last_report is None:
            return _("Nothing to compare yet: this is the first run.")
        diff = diff_reports(self.previous_report, self.last_report)
        lines = []
        if diff.verdict_changed:
            lines.append(_("The verdict changed."))
        for path in diff.paths:
            for change in path_change_lines(path):
                lines.append(f"{path_label(path.path_id)}: {change}")
        for finding in diff.findings_added:
            lines.append(_("New: {summary}").format(summary=finding.summary))
        for finding in diff.findings_removed:
            lines.append(_("Gone: {summary}").format(summary=finding.summary))
        return "\n".join(lines) if lines else _("Nothing changed.")

    # --- presenter mode ---------------------------------------------------------------------

    def toggle_presenter(self) -> None:
        self.set_presenter(not self.presenting)

    def leave_presenter(self) -> None:
        self.set_presenter(False)

    def set_presenter(self, on: bool) -> None:
        if on == self.presenting:
            return
        self.presenting = on
        self.setStyleSheet(PRESENTER_STYLE if on else "")
        self.legend.set_presenter(on)
        for card in self.charts.values():
            card.set_presenter(on, dark=on)
        for shortcut in self.shortcuts:
            shortcut.setEnabled(on)
        self.presenter_button.setText(_("Leave &presenter mode") if on else _("&Presenter mode"))
        if on:
            self.run_button.setFocus()
        self.presenterChanged.emit(on)
