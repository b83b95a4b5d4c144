"""The error funnel: user messages, details only in the expander, Cancelled never shown."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QMessageBox, QWidget
from quantpress.app.errors import hub, install_excepthook, show_error
from quantpress.core.errors import Cancelled, InvalidModel


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def test_user_error_shown_as_is_without_traceback(qtbot) -> None:  # type: ignore[no-untyped-def]
    parent = QWidget()
    qtbot.addWidget(parent)
    exc = _raise(InvalidModel("/models/x: no config.json; this is not a Hugging Face model folder"))
    box = show_error(parent, exc, title="Cannot open the model")
    assert isinstance(box, QMessageBox)
    assert box.text().startswith("/models/x: no config.json")
    assert "Traceback" not in box.text()
    assert box.detailedText() == ""  # a user error needs no details
    box.close()


def test_bug_gets_short_text_and_details_expander(qtbot) -> None:  # type: ignore[no-untyped-def]
    parent = QWidget()
    qtbot.addWidget(parent)
    exc = _raise(ZeroDivisionError("division by zero"))
    box = show_error(parent, exc)
    assert box is not None
    assert "Traceback" not in box.text()
    assert "ZeroDivisionError" in box.text()
    assert "Traceback" in box.detailedText()
    box.close()


def test_cancelled_is_never_shown(qtbot) -> None:  # type: ignore[no-untyped-def]
    with qtbot.assertNotEmitted(hub().shown):
        assert show_error(None, Cancelled()) is None


def test_excepthook_routes_to_the_funnel(qtbot) -> None:  # type: ignore[no-untyped-def]
    old = sys.excepthook
    install_excepthook()
    try:
        with qtbot.waitSignal(hub().shown, timeout=2000) as blocker:
            exc = _raise(RuntimeError("boom"))
            sys.__excepthook__, saved = (lambda *a: None), sys.__excepthook__  # keep the test output quiet
            try:
                sys.excepthook(type(exc), exc, exc.__traceback__)
            finally:
                sys.__excepthook__ = saved
        assert "RuntimeError: boom" in blocker.args[1]
    finally:
        sys.excepthook = old
    from PySide6.QtWidgets import QApplication

    for w in QApplication.topLevelWidgets():
        if isinstance(w, QMessageBox):
            w.close()
