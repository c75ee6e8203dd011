"""Fixtures of the desktop app's tests, loaded as a plugin (``pytest_plugins``): any Qt
warning fails the test, English, a private data directory, and a real app window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from callpath.core.i18n import set_language
from callpath.gui.app import AppController
from callpath.gui.bridge import RunBridge
from callpath.gui.history import DATA_DIR_VARIABLE
from callpath.gui.qt import QApplication, QtMsgType, qInstallMessageHandler
from tests.gui_helpers import PLATFORM_NOISE, AnsweringDialogs


@pytest.fixture
def qt_warnings_fail(qapp: QApplication) -> Iterator[list[str]]:
    """Fail the test if Qt reports any warning, critical or fatal message."""
    messages: list[str] = []

    def handler(kind: QtMsgType, context: object, message: str) -> None:
        serious = kind not in (QtMsgType.QtDebugMsg, QtMsgType.QtInfoMsg)
        if serious and message not in PLATFORM_NOISE:
            messages.append(f"{kind.name}: {message}")

    previous = qInstallMessageHandler(handler)
    try:
        yield messages
    finally:
        qInstallMessageHandler(previous)
    assert not messages, messages


@pytest.fixture
def english() -> Iterator[None]:
    set_language("en")
    yield
    set_language("en")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(folder))
    return folder


@pytest.fixture
def app(
    qapp: QApplication, qt_warnings_fail: list[str], english: None, data_dir: Path
) -> Iterator[AppController]:
    threads_before = set(threading.enumerate())
    bridge = RunBridge()
    controller = AppController(bridge, AnsweringDialogs())
    controller.window.resize(1000, 760)
    controller.window.show()
    try:
        yield controller
    finally:
        controller.window.close()
        bridge.shutdown()
        qapp.processEvents()
    assert not bridge.loop_thread.is_alive()
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not leftover, leftover
