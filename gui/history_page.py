"""History: past tests on this computer, newest first; opening one shows its Verdict page."""

from __future__ import annotations

from callpath.core.i18n import _
from callpath.gui.history import HistoryEntry, history_dir, list_history
from callpath.gui.qt import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.report_view import source_title, verdict_text, when
from callpath.gui.widgets import wrapping_label


class HistoryPage(QWidget):
    openRequested = Signal(object)  # HistoryEntry
    homeRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entries: list[HistoryEntry] = []
        title = wrapping_label(_("Past tests"), bold=True, size_delta=4)
        self.where = wrapping_label()
        self.table = QTableWidget(0, 3)
        self.table.setAccessibleName(_("Past tests"))
        self.table.setHorizontalHeaderLabels([_("When"), _("Profile"), _("Result")])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.cellActivated.connect(lambda row, _column: self._open(row))
        self.table.cellDoubleClicked.connect(lambda row, _column: self._open(row))

        self.open_button = QPushButton(_("&Open"))
        self.open_button.setAccessibleName(_("Open the selected test"))
        self.open_button.clicked.connect(lambda: self._open(self.table.currentRow()))
        self.back_button = QPushButton(_("&Back"))
        self.back_button.setAccessibleName(_("Back to the start page"))
        self.back_button.clicked.connect(self.homeRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.back_button)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.where)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def reload(self) -> None:
        self.entries = list_history()
        self.where.setText(_("Kept in {folder}").format(folder=history_dir()))
        self.table.setRowCount(len(self.entries))
        for row, entry in enumerate(self.entries):
            report = entry.report
            result = verdict_text(report)
            for column, text in enumerate((when(report), source_title(report), result)):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self.table.resizeRowsToContents()
        self.open_button.setEnabled(bool(self.entries))
        if self.entries:
            self.table.setCurrentCell(0, 0)

    def _open(self, row: int) -> None:
        if 0 <= row < len(self.entries):
            self.openRequested.emit(self.entries[row])
