"""Every modal question the app asks the user, in one replaceable object.

Windows call these methods instead of QFileDialog/QMessageBox directly, so the same code path
runs in tests with an object that answers like a user would (modal dialogs block a test).
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.i18n import _
from gui.qt import QFileDialog, QMessageBox, QWidget


class Dialogs:
    def choose_profile(self, parent: QWidget) -> Path | None:
        name, _filter = QFileDialog.getOpenFileName(
            parent, _("Open profile"), "", _("CallPath profiles (*.yaml *.yml);;All files (*)")
        )
        return Path(name) if name else None

    def choose_report(self, parent: QWidget) -> Path | None:
        name, _filter = QFileDialog.getOpenFileName(
            parent, _("Open report file"), "", _("CallPath reports (*.json);;All files (*)")
        )
        return Path(name) if name else None

    def choose_save_path(
        self, parent: QWidget, title: str, suggested: str, file_filter: str
    ) -> Path | None:
        name, _filter = QFileDialog.getSaveFileName(parent, title, suggested, file_filter)
        return Path(name) if name else None

    def show_error(self, parent: QWidget, title: str, text: str) -> None:
        QMessageBox.critical(parent, title, text)

    def show_info(self, parent: QWidget, title: str, text: str) -> None:
        QMessageBox.information(parent, title, text)


class UnattendedDialogs(Dialogs):
    """For runs nobody watches (``--screenshot``): no questions, messages go to stderr."""

    def choose_profile(self, parent: QWidget) -> Path | None:
        return None

    def choose_report(self, parent: QWidget) -> Path | None:
        return None

    def choose_save_path(
        self, parent: QWidget, title: str, suggested: str, file_filter: str
    ) -> Path | None:
        return None

    def show_error(self, parent: QWidget, title: str, text: str) -> None:
        print(f"callpath-gui: {title}: {text}", file=sys.stderr)

    def show_info(self, parent: QWidget, title: str, text: str) -> None:
        print(f"callpath-gui: {title}: {text}", file=sys.stderr)
