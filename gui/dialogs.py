"""Every modal question the app asks the user, in one replaceable object.

Windows call these methods instead of QFileDialog/QMessageBox directly, so the same code path
runs in tests with an object that answers like a user would (modal dialogs block a test).
"""

from __future__ import annotations

import sys
from pathlib import Path

from callpath.core.i18n import _
from callpath.gui.qt import QFileDialog, QInputDialog, QLineEdit, QMessageBox, QWidget


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

    def ask_secret(self, parent: QWidget, title: str, label: str) -> str | None:
        """A password typed without echo; None when cancelled."""
        text, accepted = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Password)
        return str(text) if accepted and text else None

    def confirm(self, parent: QWidget, title: str, text: str, accept: str) -> bool:
        """Ask before doing something the user should agree to; ``accept`` names the action."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
        yes = box.addButton(accept, QMessageBox.ButtonRole.AcceptRole)
        box.addButton(_("Cancel"), QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(yes)
        box.exec()
        return box.clickedButton() is yes

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

    def ask_secret(self, parent: QWidget, title: str, label: str) -> str | None:
        return None

    def confirm(self, parent: QWidget, title: str, text: str, accept: str) -> bool:
        # Whoever started an unattended run named the file on the command line: that is consent.
        print(f"callpath-gui: {title}: {text}", file=sys.stderr)
        return True

    def show_error(self, parent: QWidget, title: str, text: str) -> None:
        print(f"callpath-gui: {title}: {text}", file=sys.stderr)

    def show_info(self, parent: QWidget, title: str, text: str) -> None:
        print(f"callpath-gui: {title}: {text}", file=sys.stderr)
