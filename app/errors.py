"""The one error funnel of the app: every failure a user sees goes through :func:`show_error`.

- ``Cancelled`` is not an error: nothing is shown.
- ``QuantpressError`` messages are written for the user (core/errors.py) and shown as they are.
- Anything else is a bug: a short sentence, the exception's one-line summary, and the traceback
  only inside the dialog's "Show Details..." expander, never in the main text.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from quantpress.core.errors import Cancelled, QuantpressError


class ErrorHub(QObject):
    """Application-wide notifications of shown errors (the status bar and tests listen).

    Signals:
        shown(str, str): title, message of an error that was shown to the user.
    """

    shown = Signal(str, str)


_hub: ErrorHub | None = None


def hub() -> ErrorHub:
    global _hub
    if _hub is None:
        _hub = ErrorHub(QApplication.instance())
    return _hub


def user_message(exc: BaseException) -> str:
    """What to tell the user about ``exc`` in one or two sentences."""
    if isinstance(exc, QuantpressError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory. Close other programs or pick a smaller format or context."
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"A file operation failed: {exc.strerror}{where}."
    summary = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"An unexpected error happened. This is a bug in quantpress; the details help to report it.\n\n{summary}"


def details_of(exc: BaseException, details: str = "") -> str:
    if details:
        return details
    if exc.__traceback__ is not None:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}"


def show_error(
    parent: QWidget | None, exc: BaseException, *, title: str = "", details: str = ""
) -> QMessageBox | None:
    """Show ``exc`` to the user (non-blocking, window-modal). Returns the dialog, or None for ``Cancelled``."""
    if isinstance(exc, Cancelled):
        return None
    title = title or "quantpress"
    message = user_message(exc)
    box = QMessageBox(parent)
    box.setObjectName("errorDialog")
    box.setIcon(QMessageBox.Icon.Warning if isinstance(exc, QuantpressError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(message)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if not isinstance(exc, QuantpressError) or details:
        box.setDetailedText(details_of(exc, details))
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.show()
    hub().shown.emit(title, message)
    return box


def install_excepthook() -> None:
    """Route uncaught exceptions on the GUI thread to the funnel instead of killing the app."""

    busy = False

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        nonlocal busy
        sys.__excepthook__(exc_type, exc, tb)  # keep the terminal trace for bug reports
        if issubclass(exc_type, KeyboardInterrupt):
            QApplication.quit()
            return
        if busy:  # an error while showing an error: the terminal trace above must do
            return
        busy = True
        try:
            app = QApplication.instance()
            parent = app.activeWindow() if isinstance(app, QApplication) else None
            details = "".join(traceback.format_exception(exc_type, exc, tb))
            show_error(parent, exc, title="Unexpected error", details=details)
        finally:
            busy = False

    sys.excepthook = hook
