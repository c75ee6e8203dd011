"""Support view: any report in full, or two side by side with the differences highlighted.

For support staff reading what users send: the stage timeline of every path with failure
strings, evidence and samples; a comparison (before/after a change, or two users) that colours
what got better or worse; and any section copied as plain text for a ticket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callpath.core.i18n import _
from callpath.core.report.diff import diff_reports
from callpath.gui.html_report import details_html, findings_html
from callpath.gui.qt import (
    QComboBox,
    QGroupBox,
    QGuiApplication,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    Qt,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.report_view import source_title, verdict_text, when
from callpath.gui.support_view import Section, diff_html, diff_sections, report_sections
from callpath.gui.widgets import set_browser_html, wrapping_label

FIRST, SECOND = 0, 1


class _ReportColumn(QGroupBox):
    """One report: which one it is, and all of it (findings, every path's timeline)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.caption = wrapping_label(_("No report opened."))
        self.open_button = QPushButton()
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.setAccessibleName(title)
        row = QHBoxLayout()
        row.addWidget(self.caption, 1)
        row.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.browser, 1)

    def show_report(self, report: dict[str, Any], file: Path | None) -> None:
        name = f" \u00b7 {file.name}" if file is not None else ""
        self.caption.setText(
            f"{when(report)} \u00b7 {source_title(report)}{name}\n{verdict_text(report)}"
        )
        set_browser_html(self.browser, findings_html(report) + details_html(report))


class SupportPage(QWidget):
    openRequested = Signal(int)  # FIRST or SECOND: the window asks for a file and calls set_report
    homeRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reports: list[tuple[dict[str, Any], Path | None] | None] = [None, None]
        self.sections: list[Section] = []

        title = wrapping_label(_("Support view"), bold=True, size_delta=4)
        intro = wrapping_label(
            _(
                "Open a report to read every stage of every path, or two reports to compare "
                "them: before and after a change, or two users on different networks."
            )
        )
        self.first = _ReportColumn(_("1st report"))
        self.first.open_button.setText(_("Open &1st report\u2026"))
        self.first.open_button.clicked.connect(lambda: self.openRequested.emit(FIRST))
        self.second = _ReportColumn(_("2nd report"))
        self.second.open_button.setText(_("Open &2nd report\u2026"))
        self.second.open_button.clicked.connect(lambda: self.openRequested.emit(SECOND))
        self.swap_button = QPushButton(_("S&wap"))
        self.swap_button.setAccessibleName(_("Swap the two reports"))
        self.swap_button.clicked.connect(self.swap)

        self.diff_box = QGroupBox(_("Differences"))
        self.diff_browser = QTextBrowser()
        self.diff_browser.setOpenLinks(False)
        self.diff_browser.setAccessibleName(_("Differences"))
        self.diff_legend = wrapping_label(
            _("Green: better in the 2nd report. Red: worse. Yellow: changed.")
        )
        diff_layout = QVBoxLayout(self.diff_box)
        diff_layout.addWidget(self.diff_legend)
        diff_layout.addWidget(self.diff_browser)

        columns = QSplitter(Qt.Orientation.Horizontal)
        columns.setChildrenCollapsible(False)
        columns.addWidget(self.first)
        columns.addWidget(self.second)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.diff_box)
        self.splitter.addWidget(columns)

        self.section_box = QComboBox()
        self.section_box.setAccessibleName(_("Section to copy"))
        # Long section titles (translated) must not widen the window: the list shows them whole.
        self.section_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.section_box.setMinimumContentsLength(24)
        self.copy_button = QPushButton(_("&Copy as text"))
        self.copy_button.setAccessibleName(_("Copy the chosen section as text"))
        self.copy_button.clicked.connect(self.copy_section)
        self.status = QLabel()
        self.home_button = QPushButton(_("&Back"))
        self.home_button.clicked.connect(self.homeRequested)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel(_("Section:")))
        bottom.addWidget(self.section_box, 1)
        bottom.addWidget(self.copy_button)
        bottom.addWidget(self.swap_button)
        bottom.addStretch(0)
        bottom.addWidget(self.home_button)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.status)
        layout.addLayout(bottom)
        self._refresh()

    def set_report(self, slot: int, report: dict[str, Any], file: Path | None = None) -> None:
        self.reports[slot] = (report, file)
        self._refresh()

    def clear(self) -> None:
        self.reports = [None, None]
        self._refresh()

    def swap(self) -> None:
        self.reports.reverse()
        self._refresh()

    def copy_section(self) -> None:
        index = self.section_box.currentIndex()
        if 0 <= index < len(self.sections):
            section = self.sections[index]
            QGuiApplication.clipboard().setText(section.text)
            self.status.setText(
                _("\u201c{section}\u201d copied; paste it into the ticket.").format(
                    section=section.title
                )
            )

    def _refresh(self) -> None:
        first, second = self.reports
        for column, entry in ((self.first, first), (self.second, second)):
            if entry is None:
                column.caption.setText(_("No report opened."))
                column.browser.clear()
            else:
                column.show_report(*entry)
        self.second.setVisible(first is not None)
        both = first is not None and second is not None
        self.diff_box.setVisible(both)
        self.swap_button.setEnabled(both)
        if first is not None and second is not None:
            diff = diff_reports(first[0], second[0])
            set_browser_html(self.diff_browser, diff_html(first[0], second[0], diff))
            self.sections = diff_sections(first[0], second[0], diff)
        elif first is not None:
            self.sections = report_sections(first[0])
        else:
            self.sections = []
        self.section_box.clear()
        for section in self.sections:
            self.section_box.addItem(section.title, section.key)
        self.copy_button.setEnabled(bool(self.sections))
        self.status.clear()
