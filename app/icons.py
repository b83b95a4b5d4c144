"""Icons from resources/icons/*.svg, tinted to the current palette and rendered for high-DPI screens."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32)  # with 2x versions; QIcon scales between them


def svg_text(name: str) -> str:
    return (resources.files("quantpress.resources") / "icons" / f"{name}.svg").read_text(encoding="utf-8")


def _text_color() -> str:
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        return app.palette().color(QPalette.ColorRole.WindowText).name()
    return "#333333"


@lru_cache(maxsize=128)
def _icon(name: str, color: str) -> QIcon:
    data = QByteArray(svg_text(name).replace("currentColor", color).encode("utf-8"))
    renderer = QSvgRenderer(data)
    icon = QIcon()
    for size in SIZES:
        for ratio in (1.0, 2.0):
            pixmap = QPixmap(int(size * ratio), int(size * ratio))
            pixmap.setDevicePixelRatio(ratio)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            renderer.render(painter, QRectF(0, 0, size, size))
            painter.end()
            icon.addPixmap(pixmap)
    return icon


def icon(name: str, color: str | QColor | None = None) -> QIcon:
    """The icon ``name`` (file stem in resources/icons), drawn in ``color`` or the palette's text colour."""
    if isinstance(color, QColor):
        color = color.name()
    return _icon(name, color or _text_color())


def clear_cache() -> None:
    """Forget tinted icons (after a theme change)."""
    _icon.cache_clear()
