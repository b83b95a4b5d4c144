"""The desktop app: ``quantpress`` / ``quantpress gui [MODEL]`` (app/entry.py, app/cmd_gui.py) call :func:`run_gui`.

Startup stays light: no torch, transformers or llama_cpp here (benchmarks/startup.py checks it);
panes import core like any library, and core imports those heavy libraries only inside the functions
that need them.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication
from quantpress.app import settings
from quantpress.app.errors import install_excepthook
from quantpress.app.theme import apply_theme

if TYPE_CHECKING:
    from quantpress.app.main_window import MainWindow


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once), themed, with the organisation set for QSettings."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv[:1])
    QCoreApplication.setOrganizationName(settings.ORG)
    QCoreApplication.setApplicationName(settings.APP)
    app.setApplicationDisplayName("quantpress")
    apply_theme(app, str(settings.get("theme")))
    from quantpress.app.icons import icon

    app.setWindowIcon(icon("app"))
    return app


def run_gui(model: str | None = None) -> int:
    """Open the main window (with ``model`` preloaded: a folder, GGUF, Hub repo id or 'demo')."""
    from quantpress.core.desktop import missing_xcb_libraries, uses_xcb, xcb_problem

    # Qt aborts the process when its platform plugin cannot load, naming no package: check first.
    problem = xcb_problem(missing_xcb_libraries()) if uses_xcb() else ""
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    app = make_app()
    install_excepthook()
    from quantpress.app.main_window import MainWindow

    window = MainWindow()
    received = quit_on_signals(window)
    window.show()
    if model:
        window.open_source(model)
    code = int(app.exec())
    return 128 + received[0] if received else code


QUIT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def quit_on_signals(window: MainWindow) -> list[int]:
    """Ctrl+C in the launching terminal, SIGTERM and SIGHUP close the window the way "Quit" does once
    confirmed (jobs cancelled and their partial files removed, chat and helper processes ended).
    Returns a list that receives the signal's number (the exit code is then 128 + it).

    Python runs a signal handler only between bytecodes, and Qt's event loop is C++: a timer makes
    the interpreter run every 200 ms so the handler is not held off until the next mouse move."""
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            window.quit_now()

    for s in QUIT_SIGNALS:
        signal.signal(s, handler)
    wake = QTimer(window)
    wake.setObjectName("signalWake")
    wake.timeout.connect(window.noop)
    wake.start(200)
    return received
