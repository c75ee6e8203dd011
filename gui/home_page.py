"""Home: choose what to test, see what will happen, start."""

from __future__ import annotations

from core.i18n import _
from core.verdict import path_label
from gui.qt import (
    QAction,
    QButtonGroup,
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
from gui.sources import DemoSource, ProfileSource, RunSource
from gui.widgets import wrapping_label


class HomePage(QWidget):
    startRequested = Signal()
    chooseProfileRequested = Signal()
    openReportRequested = Signal()
    historyRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._demo = DemoSource()
        self._profile: ProfileSource | None = None

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
        group = QButtonGroup(self)
        group.addButton(self.demo_choice)
        group.addButton(self.profile_choice)
        self.demo_choice.setChecked(True)
        self.demo_choice.toggled.connect(self._refresh)

        choice_layout = QVBoxLayout(choice)
        choice_layout.addWidget(self.demo_choice)
        choice_layout.addWidget(_indented(demo_hint))
        choice_layout.addWidget(self.profile_choice)
        profile_row = QHBoxLayout()
        profile_row.addWidget(self.profile_hint, 1)
        profile_row.addWidget(self.choose_button, 0, Qt.AlignmentFlag.AlignTop)
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
        others = QHBoxLayout()
        others.addWidget(self.open_report_button)
        others.addWidget(self.history_button)
        others.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(choice)
        layout.addWidget(self.plan_line)
        layout.addWidget(self.start_button)
        layout.addStretch(1)
        layout.addLayout(others)

        self.setTabOrder(self.demo_choice, self.profile_choice)
        self.setTabOrder(self.profile_choice, self.choose_button)
        self.setTabOrder(self.choose_button, self.start_button)
        self.setTabOrder(self.start_button, self.open_report_button)
        self.setTabOrder(self.open_report_button, self.history_button)
        self._refresh()

    @property
    def profile_source(self) -> ProfileSource | None:
        return self._profile

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
        return self._profile

    def _start_if_ready(self) -> None:
        if self.start_button.isEnabled():
            self.start_button.click()

    def _refresh(self) -> None:
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
