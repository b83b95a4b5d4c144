"""A label and a combo box that shorten their text to the width they get, with "…", instead of cutting
it off mid-letter (issue 18, point 11: at 1024x640 Chat's "Model A: SmolLM2-135M-Instruct-Q4_K_M" and
its file combos were cut). The whole text stays in the tooltip, and ``text()``/``currentText()`` are
unchanged, so code and tests read the full value.

File names keep their end (``Qt.ElideMiddle``): "SmolLM2-…-Q4_K_M.gguf" still says which format it is.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QPaintEvent, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QWidget,
)

__all__ = ["ElidedLabel", "ElidingComboBox"]


class ElidedLabel(QLabel):
    """A one-line label showing as much of its text as fits; the rest becomes "…" and the whole text
    its tooltip. ``text()`` is the whole text, ``shown_text()`` what is drawn."""

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        # Any width will do: the text adapts. Without this the label's size hint (the whole text)
        # would widen the window or push its neighbours out.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().sizeHint()
        width = self.fontMetrics().horizontalAdvance(self._full) + 2 * self.margin() + 2
        return QSize(width, hint.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self.fontMetrics().horizontalAdvance("…") * 4, super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._elide()

    def _elide(self) -> None:
        width = max(0, self.contentsRect().width() - 2 * self.margin())
        shown = self.fontMetrics().elidedText(self._full, self._mode, width)
        if super().text() != shown:
            super().setText(shown)
        self.setToolTip(self._full if shown != self._full else "")


class ElidingComboBox(QComboBox):
    """A combo box whose current text is elided to its width (its list shows items whole), so it can
    shrink with the window; the tooltip says the whole current text after the given description."""

    def __init__(self, parent: QWidget | None = None, *, description: str = "", min_chars: int = 14,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle) -> None:
        super().__init__(parent)
        self._mode = mode
        self._description = description
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(min_chars)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.view().setTextElideMode(mode)
        self.currentTextChanged.connect(self._update_tooltip)
        self._update_tooltip()

    def setToolTip(self, text: str) -> None:  # noqa: N802 - Qt's name
        """The description part of the tooltip (the current item's whole text follows it)."""
        self._description = text
        self._update_tooltip()

    def label_width(self) -> int:
        """Pixels available to the current text."""
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        rect = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                           QStyle.SubControl.SC_ComboBoxEditField, self)
        icon = 0 if opt.currentIcon.isNull() else opt.iconSize.width() + 4
        return max(0, rect.width() - icon - 4)

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(self.currentText(), self._mode, self.label_width())

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QStylePainter(self)
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
        opt.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)

    def showPopup(self) -> None:  # noqa: N802 - Qt's name
        # The list as wide as its longest item (within the screen), so each file shows whole there.
        fm = self.view().fontMetrics()
        widest = max((fm.horizontalAdvance(self.itemText(i)) for i in range(self.count())), default=0)
        screen = self.screen().availableGeometry().width() if self.screen() else 1024
        self.view().setMinimumWidth(min(screen - 40, widest + 48))
        super().showPopup()

    def _update_tooltip(self, *_: object) -> None:
        text = self.currentText()
        super().setToolTip("\n".join(t for t in (self._description, text) if t))
