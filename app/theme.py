"""Light and dark palettes (Fusion style) and the few colours the custom widgets draw with."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication
from quantpress.app import icons


@dataclass(frozen=True)
class Colors:
    window: str
    base: str
    alt_base: str
    text: str
    muted: str
    accent: str
    good: str
    warn: str
    bad: str
    neutral: str
    grid: str


LIGHT = Colors("#f4f5f7", "#ffffff", "#f0f2f5", "#1d2330", "#5d6675", "#2f6fde",
               "#1f9d55", "#c98a04", "#d64545", "#7a8699", "#dde1e7")
DARK = Colors("#1f2229", "#16181d", "#1b1e24", "#e6e9ef", "#9aa3b2", "#5b9bff",
              "#3ccf7a", "#f0b429", "#ff6b6b", "#8c96a8", "#343944")

_current = LIGHT


def colors() -> Colors:
    return _current


def _system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    try:
        from PySide6.QtCore import Qt

        return hints.colorScheme() == Qt.ColorScheme.Dark
    except AttributeError:  # Qt < 6.5
        return False


def palette_for(c: Colors) -> QPalette:
    p = QPalette()
    R = QPalette.ColorRole
    roles = {
        R.Window: c.window, R.WindowText: c.text, R.Base: c.base, R.AlternateBase: c.alt_base,
        R.Text: c.text, R.Button: c.window, R.ButtonText: c.text, R.ToolTipBase: c.base,
        R.ToolTipText: c.text, R.Highlight: c.accent, R.HighlightedText: "#ffffff",
        R.Link: c.accent, R.PlaceholderText: c.muted, R.BrightText: "#ffffff",
    }
    for role, color in roles.items():
        p.setColor(role, QColor(color))
    for role in (R.Text, R.WindowText, R.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(c.muted))
    return p


STYLE = """
QListWidget#sidebar { border: none; padding-top: 8px; font-size: 11pt; }
QListWidget#sidebar { background: palette(window); outline: 0; show-decoration-selected: 1; }
QListWidget#sidebar::item { padding: 8px 10px; border-radius: 6px; margin: 2px 6px; color: palette(window-text); }
QListWidget#sidebar::item:selected { background: palette(highlight); color: palette(highlighted-text); }
QListWidget#sidebar::item:hover:!selected { background: palette(alternate-base); }
QLabel[role="title"] { font-size: 15pt; font-weight: 600; }
QLabel[role="hint"] { color: palette(placeholder-text); }
QFrame[role="card"] { border: 1px solid palette(mid); border-radius: 8px; background: palette(base); }
"""

# Checkbox squares drawn by the style sheet: Fusion outlines them in the window colour darkened, which
# on the dark theme is nearly black on nearly black (issue 18). The muted text colour gives the border
# at least 3:1 contrast against the base on both themes (WCAG's figure for a control's boundary).
_INDICATORS = ("QCheckBox::indicator", "QListView::indicator", "QTreeView::indicator", "QGroupBox::indicator")


def indicator_style(c: Colors) -> str:
    from importlib import resources

    tick = str(resources.files("quantpress.resources") / "icons" / "tick.svg").replace("\\", "/")

    def rule(state: str, body: str) -> str:
        return ", ".join(f"{sel}{state}" for sel in _INDICATORS) + " { " + body + " }\n"

    return (rule("", f"width: 14px; height: 14px; border: 1px solid {c.muted}; border-radius: 3px; "
                     f"background: {c.base};")
            + rule(":hover", f"border-color: {c.accent};")
            + rule(":checked", f"background: {c.accent}; border-color: {c.accent}; image: url({tick});")
            + rule(":indeterminate", f"background: {c.muted}; border-color: {c.muted};")
            + rule(":disabled", f"border-color: {c.grid}; background: {c.alt_base};")
            + rule(":checked:disabled", f"background: {c.muted}; border-color: {c.muted};"))


def apply_theme(app: QApplication, name: str) -> str:
    """Apply 'light', 'dark' or 'system'; returns the one applied ('light' or 'dark')."""
    global _current
    resolved = name if name in ("light", "dark") else ("dark" if _system_is_dark() else "light")
    _current = DARK if resolved == "dark" else LIGHT
    app.setStyle("Fusion")
    app.setPalette(palette_for(_current))
    app.setStyleSheet(STYLE + indicator_style(_current))
    icons.clear_cache()
    icons.retint_all()  # buttons and actions already on screen take the new text colour
    return resolved
