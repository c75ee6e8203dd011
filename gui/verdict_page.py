"""Verdict: what works, what does not and why, what to do; details for support staff.

Rendered from the report dict only, so a live run, a past run and someone else's report look
the same.
"""

from __future__ import annotations

from typing import Any

from callpath.core.i18n import N_, _
from callpath.gui.html_report import details_html, hold_lines
from callpath.gui.qt import (
    QCheckBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    Qt,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.report_files import ShownReport
from callpath.gui.report_view import (
    LIGHT_NAMES,
    FindingKind,
    FindingView,
    PathView,
    finding_views,
    next_steps,
    path_view,
    source_title,
    stopped_notice,
    verdict_lines,
    when,
)
from callpath.gui.widgets import TrafficLight, set_browser_html, wrapping_label


class PathCard(QFrame):
    """One path: traffic light, name, what happened, and the failure in plain words."""

    def __init__(self, view: PathView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName(f"path-{view.path_id}")
        self.light = TrafficLight(view.light, view.label)
        self.name = wrapping_label(
            _("{path}: {state}").format(path=view.label, state=_(LIGHT_NAMES[view.light])),
            bold=True,
        )
        self.status = wrapping_label(view.status)
        text = QVBoxLayout()
        text.addWidget(self.name)
        text.addWidget(self.status)
        self.explanation: QLabel | None = None
        if view.explanation:
            self.explanation = wrapping_label(
                _("{explanation} (technical name: {failure})").format(
                    explanation=view.explanation, failure=view.failure
                )
            )
            text.addWidget(self.explanation)
        layout = QHBoxLayout(self)
        layout.addWidget(self.light, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(text, 1)
        self.setAccessibleName(f"{self.name.text()} {view.status}")


FINDING_COLOURS = {
    FindingKind.CENSORSHIP: "#c62828",
    FindingKind.NETWORK: "#f9a825",
    FindingKind.INCONCLUSIVE: "#9e9e9e",
}
FINDING_KIND_NAMES = {
    FindingKind.CENSORSHIP: N_("Blocking"),
    FindingKind.NETWORK: N_("Network problem"),
    FindingKind.INCONCLUSIVE: N_("Unexplained"),
}


class FindingCard(QFrame):
    """One finding of the diagnosis: the mechanism in plain words, what to do, how sure."""

    def __init__(self, view: FindingView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.setObjectName(f"finding-{view.mechanism}")
        # A coloured bar at the start of the card: red blocking, amber network, grey unexplained
        # (the words say it too).
        self.bar = QFrame()
        self.bar.setFixedWidth(5)
        self.bar.setStyleSheet(f"background: {FINDING_COLOURS[view.kind]};")
        kind = _(FINDING_KIND_NAMES[view.kind])
        self.summary = wrapping_label(
            _("{kind}: {summary}").format(kind=kind, summary=view.summary), bold=True
        )
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 4, 4, 4)
        outer.addWidget(self.bar)
        layout = QVBoxLayout()
        outer.addLayout(layout, 1)
        layout.addWidget(self.summary)
        self.recommendation: QLabel | None = None
        if view.recommendation:
            self.recommendation = wrapping_label(
                _("What to do: {advice}").format(advice=view.recommendation)
            )
            layout.addWidget(self.recommendation)
        where = f"{view.path_labels} \u00b7 " if view.path_labels else ""
        self.meta = wrapping_label(where + view.confidence)
        self.meta.setStyleSheet("color: #616161;")
        layout.addWidget(self.meta)
        self.setAccessibleName(f"{self.summary.text()} {self.meta.text()}")


class VerdictPage(QWidget):
    saveRequested = Signal()
    exportRequested = Signal()
    copyRequested = Signal()
    supportRequested = Signal()
    homeRequested = Signal()
    holdRequested = Signal()  # "Keep the call going for 2 minutes" (APP_HOLD_S)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shown: ShownReport | None = None
        self.cards: dict[str, PathCard] = {}
        self.findings: list[FindingCard] = []
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.voice_label = wrapping_label(bold=True, size_delta=4)
        self.video_label = wrapping_label(bold=True, size_delta=4)
        self.details_toggle = QToolButton()
        self.details_browser = QTextBrowser()
        self._details_report: dict[str, Any] | None = None  # not laid out yet

        self.include_addresses = QCheckBox(_("Include &addresses"))
        self.include_addresses.setToolTip(
            _("Reports leave out IP addresses and server names unless you tick this.")
        )
        self.save_button = QPushButton(_("&Save report\u2026"))
        self.save_button.setAccessibleName(_("Save report as JSON"))
        self.save_button.clicked.connect(self.saveRequested)
        self.export_button = QPushButton(_("&Export HTML\u2026"))
        self.export_button.setAccessibleName(_("Export report as a web page"))
        self.export_button.clicked.connect(self.exportRequested)
        self.copy_button = QPushButton(_("&Copy summary"))
        self.copy_button.setAccessibleName(_("Copy summary to the clipboard"))
        self.copy_button.clicked.connect(self.copyRequested)
        self.support_button = QPushButton(_("Support &view"))
        self.support_button.setAccessibleName(_("Open in the support view"))
        self.support_button.setToolTip(
            _("Every stage in full, and a comparison with another report.")
        )
        self.support_button.clicked.connect(self.supportRequested)
        self.home_button = QPushButton(_("&New test"))
        self.home_button.setAccessibleName(_("New test"))
        self.home_button.clicked.connect(self.homeRequested)
        self.hold_button = QPushButton(_("&Keep the call going for 2 minutes"))
        self.hold_button.setAccessibleName(_("Keep the call going for 2 minutes"))
        self.hold_button.setToolTip(
            _(
                "Tests again, then keeps the best call for voice and for video going for two "
                "minutes and says when and how it ended. Stop keeps what was measured."
            )
        )
        self.hold_button.clicked.connect(self.holdRequested)
        self.hold_button.setEnabled(False)
        self.share_status = wrapping_label()

        share = QHBoxLayout()
        share.addWidget(self.include_addresses)
        share.addWidget(self.save_button)
        share.addWidget(self.export_button)
        share.addWidget(self.copy_button)
        share.addWidget(self.support_button)
        share.addStretch(1)
        share.addWidget(self.hold_button)
        share.addWidget(self.home_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.share_status)
        layout.addLayout(share)

    def show_report(self, shown: ShownReport) -> None:
        self.shown = shown
        report = shown.report
        self.share_status.clear()
        self.include_addresses.setChecked(False)
        # Someone else's redacted report has no addresses to include.
        self.include_addresses.setEnabled(shown.run is not None or not report.get("redacted"))
        self.hold_button.setEnabled(shown.run is not None)

        content = QWidget()
        layout = QVBoxLayout(content)
        meta = wrapping_label(f"{when(report)} \u00b7 {source_title(report)}")
        layout.addWidget(meta)
        notice = stopped_notice(report)
        if notice:
            notice_label = wrapping_label(notice)
            notice_label.setObjectName("stopped-notice")
            notice_label.setStyleSheet(
                "background: #fff3e0; border-left: 4px solid #f9a825; padding: 6px;"
            )
            layout.addWidget(notice_label)
        # One sentence when paths carry voice and video alike, else one per kind.
        lines = verdict_lines(report)
        self.voice_label = wrapping_label(lines[0], bold=True, size_delta=4)
        self.voice_label.setAccessibleName(_("Voice result"))
        self.video_label = wrapping_label(
            lines[1] if len(lines) > 1 else "", bold=True, size_delta=4
        )
        self.video_label.setAccessibleName(_("Video result"))
        self.video_label.setVisible(len(lines) > 1)
        layout.addWidget(self.voice_label)
        layout.addWidget(self.video_label)

        self.findings = [FindingCard(view) for view in finding_views(report)]
        if self.findings:
            findings_box = QGroupBox(_("What CallPath found"))
            findings_box.setObjectName("findings")
            findings_layout = QVBoxLayout(findings_box)
            for finding_card in self.findings:
                findings_layout.addWidget(finding_card)
            layout.addWidget(findings_box)

        paths_box = QGroupBox(_("Paths"))
        paths_layout = QVBoxLayout(paths_box)
        self.cards = {}
        for path in report.get("paths", []):
            card = PathCard(path_view(path))
            self.cards[card.view.path_id] = card
            paths_layout.addWidget(card)
        if not self.cards:
            paths_layout.addWidget(wrapping_label(_("No path was tested.")))
        layout.addWidget(paths_box)
        held = hold_lines(report)
        if held:
            hold_box = QGroupBox(_("Keeping the call going"))
            hold_box.setObjectName("hold")
            hold_layout = QVBoxLayout(hold_box)
            for line in held:
                hold_layout.addWidget(wrapping_label(line))
            layout.addWidget(hold_box)

        steps_box = QGroupBox(_("What to do"))
        steps_layout = QVBoxLayout(steps_box)
        for step in next_steps(report):
            steps_layout.addWidget(wrapping_label(f"\u2022 {step}"))
        layout.addWidget(steps_box)

        self.details_toggle = QToolButton()
        self.details_toggle.setText(_("&Details for support staff"))
        self.details_toggle.setAccessibleName(_("Details for support staff"))
        self.details_toggle.setCheckable(True)
        self.details_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.details_toggle.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.details_browser = QTextBrowser()
        self.details_browser.setOpenLinks(False)
        self.details_browser.setAccessibleName(_("Details for support staff"))
        # Laid out when first opened: the details of a run with many paths are a long document,
        # and laying it out with the page stalled the window for tens of milliseconds.
        self._details_report = report
        self.details_browser.setMinimumHeight(self.fontMetrics().height() * 20)
        self.details_browser.setVisible(False)
        self.details_toggle.toggled.connect(self._show_details)
        layout.addWidget(self.details_toggle)
        layout.addWidget(self.details_browser)
        layout.addStretch(1)
        self.scroll_area.setWidget(content)

        self.setTabOrder(self.details_toggle, self.include_addresses)
        self.setTabOrder(self.include_addresses, self.save_button)
        self.setTabOrder(self.save_button, self.export_button)
        self.setTabOrder(self.export_button, self.copy_button)
        self.setTabOrder(self.copy_button, self.support_button)
        self.setTabOrder(self.support_button, self.home_button)

    def _show_details(self, shown: bool) -> None:
        if shown and self._details_report is not None:
            set_browser_html(self.details_browser, details_html(self._details_report))
            self._details_report = None
        self.details_browser.setVisible(shown)
        self.details_toggle.setArrowType(
            Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        )


APP_HOLD_S = 120.0  # "Keep the call going for 2 minutes"
