"""The desktop app: ``quantpress`` / ``quantpress gui [MODEL]`` (app/entry.py, app/cmd_gui.py) call :func:`run_gui`.

Startup stays light: no torch, transformers or llama_cpp here (benchmarks/startup.py checks it);
panes import core like any library, and core imports those heavy libraries only inside the functions
that need them.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication
from quantpress.app import settings
from quantpress.app.errors import install_excepthook
from quantpress.app.theme import apply_theme


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
    app = make_app()
    install_excepthook()
    from quantpress.app.main_window import MainWindow

    window = MainWindow()
    window.show()
    if model:
        window.open_source(model)
    return int(app.exec())
