"""GUI test fixtures: isolated QSettings, Qt warnings fail the test, runners always shut down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QtMsgType, qInstallMessageHandler

# Messages the offscreen platform prints for things it cannot do; they say nothing about our code.
IGNORED_QT_MESSAGES = (
    "This plugin does not support",  # offscreen: propagateSizeHints, raise(), grabbing the window
)


@pytest.fixture(autouse=True)
def fail_on_qt_warnings() -> Iterator[list[str]]:
    """Any Qt warning, critical or fatal message during a GUI test fails it."""
    messages: list[str] = []

    def handler(mode: QtMsgType, context: object, message: str) -> None:
        if mode in (QtMsgType.QtWarningMsg, QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
            if not any(s in message for s in IGNORED_QT_MESSAGES):
                messages.append(message)

    previous = qInstallMessageHandler(handler)
    yield messages
    qInstallMessageHandler(previous)
    assert not messages, f"Qt warnings: {messages}"


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """QSettings written to a temporary folder, never the user's real settings."""
    folder = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
    yield folder


@pytest.fixture
def window(qtbot):  # type: ignore[no-untyped-def]
    """The real main window (themed like the app), shut down after the test."""
    from PySide6.QtWidgets import QApplication
    from quantpress.app.main import make_app
    from quantpress.app.main_window import MainWindow

    app = make_app()
    assert app is QApplication.instance()
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()
    # Dismiss dialogs a test left open (error boxes are non-blocking).
    for w in QApplication.topLevelWidgets():
        if w is not win and w.isVisible():
            w.close()


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    """The demo model's original Q4_1 GGUF (for GGUF-side tests)."""
    from quantpress.core.demo import demo_gguf_path

    return demo_gguf_path()
