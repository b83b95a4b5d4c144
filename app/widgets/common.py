"""Small building blocks shared by the panes."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QVBoxLayout, QWidget
from quantpress.app.theme import colors
from quantpress.core.cli.output import format_bytes

__all__ = ["Banner", "Pane", "format_bytes", "format_seconds", "hint", "title"]


def title(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "title")
    return label


def hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "hint")
    label.setWordWrap(True)
    return label


def format_seconds(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Banner(QFrame):
    """A one-line notice inside a pane (info or warning); hidden when empty."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self._label = QLabel()
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self._label)
        self.hide()

    def show_message(self, text: str, kind: str = "info") -> None:
        c = colors()
        color = {"info": c.accent, "warn": c.warn, "error": c.bad}.get(kind, c.accent)
        self.setStyleSheet(
            f"QFrame#banner {{ border: 1px solid {color}; border-left: 4px solid {color}; border-radius: 4px; }}"
        )
        self._label.setText(text)
        self.show()

    def text(self) -> str:
        return self._label.text() if self.isVisible() else ""

    def clear(self) -> None:
        self._label.clear()
        self.hide()


class Pane(QWidget):
    """A screen with a title, a one-line explanation, a banner, then the pane's own content."""

    def __init__(self, heading: str, explanation: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(18, 14, 18, 12)
        outer.setSpacing(8)
        outer.addWidget(title(heading))
        self.explanation = hint(explanation)
        outer.addWidget(self.explanation)
        self.banner = Banner()
        outer.addWidget(self.banner)
        self.body = QVBoxLayout()
        self.body.setSpacing(8)
        outer.addLayout(self.body, 1)


def ask_yes_no(parent: QWidget, name: str, title: str, text: str, informative: str,
               on_yes: Callable[[], None]) -> QMessageBox:
    """A window-modal Yes/No question that does not block (tests and the event loop go on); Yes calls
    ``on_yes`` (a bound slot), No is the default. ``name`` is the box's object name."""
    box = QMessageBox(parent)
    box.setObjectName(name)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    box.setInformativeText(informative)
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.button(QMessageBox.StandardButton.Yes).clicked.connect(on_yes)
    box.show()
    return box
