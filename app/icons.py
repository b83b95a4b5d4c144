"""Icons from resources/icons/*.svg, tinted to the current palette and rendered for high-DPI screens."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

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


# QIcon.cacheKey() -> name of every icon drawn in the palette's text colour, so that a theme change can
# draw them again in the new one (issue 18: dark icons stayed on dark buttons until a restart).
_palette_icons: dict[int, str] = {}


def icon(name: str, color: str | QColor | None = None) -> QIcon:
    """The icon ``name`` (file stem in resources/icons), drawn in ``color`` or the palette's text colour."""
    if isinstance(color, QColor):
        color = color.name()
    drawn = _icon(name, color or _text_color())
    if not color:
        _palette_icons[drawn.cacheKey()] = name
    return drawn


def palette_icon_name(drawn: QIcon) -> str | None:
    """The name of an icon :func:`icon` drew in the palette's colour (None for any other icon)."""
    return _palette_icons.get(drawn.cacheKey())


def retint(holders: Iterable[Any]) -> int:
    """Draw again, in the current palette's text colour, the palette-coloured icons of ``holders``
    (widgets, actions: anything with ``icon()``/``setIcon()``); returns how many changed."""
    changed = 0
    for holder in holders:
        get = getattr(holder, "icon", None)
        if not callable(get) or not hasattr(holder, "setIcon"):
            continue
        current = get()
        name = palette_icon_name(current) if isinstance(current, QIcon) else None
        if name is not None:
            holder.setIcon(icon(name))
            changed += 1
    return changed


def retint_all() -> int:
    """:func:`retint` every widget of the application and every action they hold."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return 0
    widgets = QApplication.allWidgets()
    actions = {id(a): a for w in widgets for a in w.actions()}
    return retint([*widgets, *actions.values()])


def clear_cache() -> None:
    """Forget tinted icons (after a theme change)."""
    _icon.cache_clear()
