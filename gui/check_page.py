"""The messenger check's page: progress while it runs, then the table of messengers (direct and
through each proxy) with traffic lights, the findings and the fitting fixes."""

from __future__ import annotations

from typing import Any

from callpath.core.i18n import _
from callpath.gui.check_view import COLOURS, check_section_html, columns, findings, fixes, rows
from callpath.gui.qt import (
    QAbstractItemView,
    QColor,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.widgets import wrapping_label


class CheckPage(QWidget):
    homeRequested = Signal()
    saveRequested = Signal()
    exportRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report: dict[str, Any] | None = None
        self.title = wrapping_label(_("Test my network"), bold=True, size_delta=4)
        self.progress = wrapping_label()
        self.progress.setAccessibleName(_("Progress"))
        self.table = QTableWidget()
        self.table.setAccessibleName(_("Messengers on this network"))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.findings = wrapping_label()
        self.findings.setAccessibleName(_("Findings"))
        self.fixes = wrapping_label()
        self.fixes.setAccessibleName(_("What can fix it"))
        self.status = wrapping_label()
        self.stop_button = QPushButton(_("S&top"))
        self.stop_button.clicked.connect(self.stopRequested)
        self.save_button = QPushButton(_("&Save report\u2026"))
        self.save_button.clicked.connect(self.saveRequested)
        self.export_button = QPushButton(_("E&xport as web page\u2026"))
        self.export_button.clicked.connect(self.exportRequested)
        self.home_button = QPushButton(_("&Home"))
        self.home_button.clicked.connect(self.homeRequested)
        buttons = QHBoxLayout()
        for button in (self.stop_button, self.save_button, self.export_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.home_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.findings)
        layout.addWidget(self.fixes)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.begin()

    def begin(self) -> None:
        self.report = None
        self._lines: list[str] = []
        self.progress.setText(_("Checking your network and messengers; this takes about 20 s."))
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self.findings.setText("")
        self.fixes.setText("")
        self.status.setText("")
        self._set_running(True)

    def _set_running(self, running: bool) -> None:
        self.stop_button.setVisible(running)
        self.save_button.setEnabled(not running)
        self.export_button.setEnabled(not running)

    def on_progress(self, text: str) -> None:
        self._lines.append(text)
        self.progress.setText("\n".join(self._lines[-6:]))

    def on_failed(self, message: str) -> None:
        self._set_running(False)
        self.save_button.setEnabled(False)
        self.export_button.setEnabled(False)
        self.progress.setText(message)

    def show_report(self, report: dict[str, Any]) -> None:
        self.report = report
        self._set_running(False)
        self.progress.setText("")
        routes = columns(report)
        self.table.clear()
        self.table.setColumnCount(1 + 2 * len(routes))
        headers = [_("Messenger")]
        for route in routes:
            headers += [
                _("Messages ({route})").format(route=route.title),
                _("Calls ({route})").format(route=route.title),
            ]
        self.table.setHorizontalHeaderLabels(headers)
        found = rows(report)
        self.table.setRowCount(len(found))
        for index, row in enumerate(found):
            self.table.setItem(index, 0, QTableWidgetItem(row.name))
            column = 1
            for pair in row.cells:
                for cell in pair:
                    item = QTableWidgetItem(f"● {cell.text}")
                    item.setForeground(QColor(COLOURS[cell.light]))
                    item.setData(256, cell.value)  # Qt.UserRole: the machine value, for tests
                    if cell.reason:
                        item.setToolTip(cell.reason)
                    self.table.setItem(index, column, item)
                    column += 1
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.findings.setText("\n".join(findings(report)))
        self.fixes.setText(
            "\n".join(
                _("• {messenger}: {text} (source: {source}, {date})").format(
                    messenger=name, text=text, source=source, date=date
                )
                for name, text, source, date in fixes(report)
            )
        )

    def section_html(self) -> str:
        return "" if self.report is None else check_section_html(self.report)
