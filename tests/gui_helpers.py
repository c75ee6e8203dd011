"""Helpers of the desktop app's tests: offscreen platform and dialogs that answer like a user.

The fixtures that use them are in ``tests/gui_support.py`` (loaded with ``pytest_plugins``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt creates the application

from callpath.gui.app import AppController
from callpath.gui.dialogs import Dialogs
from callpath.gui.main_window import MainWindow
from callpath.gui.qt import QWidget

RUN_TIMEOUT_MS = 90_000
# The offscreen platform plugin says this about every top-level window; it is the test
# platform's limitation, not the app's.
PLATFORM_NOISE = ("This plugin does not support propagateSizeHints()",)


class AnsweringDialogs(Dialogs):
    """Answers file dialogs and questions from queues; records messages instead of showing them."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.answers: list[bool] = []
        self.secrets: list[str] = []
        self.questions: list[tuple[str, str]] = []
        self.errors: list[tuple[str, str]] = []
        self.infos: list[tuple[str, str]] = []

    def _next(self) -> Path | None:
        return self.paths.pop(0) if self.paths else None

    def choose_profile(self, parent: QWidget) -> Path | None:
        return self._next()

    def choose_report(self, parent: QWidget) -> Path | None:
        return self._next()

    def choose_save_path(
        self, parent: QWidget, title: str, suggested: str, file_filter: str
    ) -> Path | None:
        return self._next()

    def ask_secret(self, parent: QWidget, title: str, label: str) -> str | None:
        self.questions.append((title, label))
        return self.secrets.pop(0) if self.secrets else None

    def confirm(self, parent: QWidget, title: str, text: str, accept: str) -> bool:
        self.questions.append((title, text))
        return self.answers.pop(0) if self.answers else False

    def show_error(self, parent: QWidget, title: str, text: str) -> None:
        self.errors.append((title, text))

    def show_info(self, parent: QWidget, title: str, text: str) -> None:
        self.infos.append((title, text))


def dialogs_of(app: AppController) -> AnsweringDialogs:
    assert isinstance(app.dialogs, AnsweringDialogs)
    return app.dialogs


def wait_for_page(qtbot: Any, window: MainWindow, page: str) -> None:
    qtbot.waitUntil(lambda: window.current_page() == page, timeout=RUN_TIMEOUT_MS)
