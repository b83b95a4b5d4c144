"""Two small charts drawn with QPainter (PySide6-Essentials has no QtCharts):

- :class:`MemoryBarChart`: memory per format (stacked: weights, KV cache, compute) against the VRAM
  and RAM lines, the recommended format outlined;
- :class:`ScatterChart`: file size vs KL-divergence, one labelled point per format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget
from quantpress.app.theme import colors
from quantpress.core.cli.output import format_bytes


@dataclass(frozen=True)
class Bar:
    label: str
    segments: tuple[float, ...]  # stacked values (bytes), bottom first
    highlight: bool = False


@dataclass(frozen=True)
class Line:
    label: str
    value: float
    color: str


def _nice_step(span: float, n: int = 5) -> float:
    raw = span / max(n, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _gib_step(span: float) -> float:
    # Steps that read well in binary units: 64 MiB, 128 MiB, ..., 1 GiB, 2 GiB, ...
    step = 1024.0 ** 2
    while span / step > 6:
        step *= 2
    return step


class _Chart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.empty_text = "Nothing to show yet."

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(260, 180)

    def _begin(self) -> QPainter:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(colors().base))
        return p

    def _empty(self, p: QPainter) -> None:
        p.setPen(QColor(colors().muted))
        p.drawText(self.rect().adjusted(12, 12, -12, -12),
                   int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap), self.empty_text)


class MemoryBarChart(_Chart):
    """Stacked memory bars per format with horizontal reference lines (VRAM, RAM)."""

    SEGMENT_NAMES = ("weights", "KV cache", "compute + overhead")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bars: list[Bar] = []
        self.lines: list[Line] = []
        self.empty_text = "Open a model to see how much memory each format needs."

    def set_data(self, bars: list[Bar], lines: list[Line]) -> None:
        self.bars = bars
        self.lines = lines
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt name
        p = self._begin()
        if not self.bars:
            self._empty(p)
            p.end()
            return
        c = colors()
        fm = QFontMetrics(self.font())
        # Scale to the bars; a reference line far above them (RAM on a small model) is named, not drawn,
        # so the bars stay readable.
        top_value = max([sum(b.segments) for b in self.bars] + [1.0]) * 1.1
        for line in self.lines:
            if 0 < line.value <= top_value * 3:
                top_value = max(top_value, line.value * 1.05)
        step = _gib_step(top_value)
        top_value = math.ceil(top_value / step) * step
        left = fm.horizontalAdvance("000.00 GiB") + 14
        legend_h = fm.height() + 8
        small_fm = QFontMetrics(self._small_font())
        slot_guess = (self.width() - left - 14) / max(1, len(self.bars))
        widest = max(small_fm.horizontalAdvance(b.label) for b in self.bars)
        rotated = widest > slot_guess - 2
        bottom_pad = (int(widest * 0.6) + fm.height() + 6) if rotated else fm.height() * 2 + 10
        right_pad = 14.0
        if rotated:  # labels slope down to the right: the last bars' labels ran past the edge (cut at 1024x640)
            def overhang(slot: float) -> float:
                cos = math.cos(math.radians(35))
                n = len(self.bars)
                return max(small_fm.horizontalAdvance(b.label) * cos + fm.height() / 3 - (n - i - 0.5) * slot
                           for i, b in enumerate(self.bars))

            right_pad = max(right_pad, overhang(slot_guess))  # then again with the narrower slots it leaves
            right_pad = max(14.0, overhang((self.width() - left - right_pad) / len(self.bars)) + 4)
        plot = QRectF(left, 10 + legend_h, self.width() - left - right_pad,
                      self.height() - 20 - legend_h - bottom_pad)
        if plot.height() < 20 or plot.width() < 20:
            p.end()
            return

        def y_of(v: float) -> float:
            return plot.bottom() - plot.height() * v / top_value

        # grid + axis labels
        p.setPen(QPen(QColor(c.grid), 1))
        v = 0.0
        while v <= top_value + 1:
            y = y_of(v)
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(QColor(c.muted))
            p.drawText(QRectF(0, y - fm.height() / 2, left - 6, fm.height()),
                       int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), format_bytes(v))
            p.setPen(QPen(QColor(c.grid), 1))
            v += step

        seg_colors = [QColor(c.accent), QColor(c.good), QColor(c.neutral)]
        n = len(self.bars)
        slot = plot.width() / n
        width = max(4.0, min(46.0, slot * 0.62))
        small = self._small_font()
        for i, bar in enumerate(self.bars):
            x = plot.left() + slot * i + (slot - width) / 2
            base = 0.0
            for j, value in enumerate(bar.segments):
                if value <= 0:
                    continue
                rect = QRectF(QPointF(x, y_of(base + value)), QPointF(x + width, y_of(base)))
                p.fillRect(rect, seg_colors[j % len(seg_colors)])
                base += value
            if bar.highlight:
                p.setPen(QPen(QColor(c.warn), 2.5))
                p.drawRect(QRectF(QPointF(x - 2, y_of(base) - 2), QPointF(x + width + 2, plot.bottom())))
            # label under the bar (rotated when crowded)
            p.setFont(small)
            p.setPen(QColor(c.text))
            if not rotated:  # one rule for all labels: rotate them all when any is too wide
                p.drawText(QRectF(plot.left() + slot * i, plot.bottom() + 4, slot, fm.height()),
                           int(Qt.AlignmentFlag.AlignHCenter), bar.label)
            else:
                p.save()
                p.translate(x + width / 2 + fm.height() / 3, plot.bottom() + 4)
                p.rotate(35)
                p.drawText(QPointF(0, 0), bar.label)
                p.restore()
            p.setFont(self.font())

        off_scale = []
        for line in self.lines:
            if line.value <= 0:
                continue
            if line.value > top_value:
                off_scale.append(f"{line.label} {format_bytes(line.value)}")
                continue
            y = y_of(line.value)
            pen = QPen(QColor(line.color), 1.8, Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            text = f"{line.label} {format_bytes(line.value)}"
            tw = fm.horizontalAdvance(text)
            p.fillRect(QRectF(plot.right() - tw - 8, y - fm.height() - 2, tw + 6, fm.height()), QColor(c.base))
            p.drawText(QPointF(plot.right() - tw - 5, y - 5), text)

        # legend
        x = plot.left()
        for j, name in enumerate(self.SEGMENT_NAMES):
            p.fillRect(QRectF(x, 10, 12, 12), seg_colors[j])
            p.setPen(QColor(c.text))
            p.drawText(QPointF(x + 16, 10 + fm.ascent() - 1), name)
            x += 16 + fm.horizontalAdvance(name) + 16
        if any(b.highlight for b in self.bars):
            p.setPen(QPen(QColor(c.warn), 2.5))
            p.drawRect(QRectF(x, 10, 12, 12))
            p.setPen(QColor(c.text))
            p.drawText(QPointF(x + 16, 10 + fm.ascent() - 1), "recommended")
            x += 16 + fm.horizontalAdvance("recommended") + 16
        if off_scale:
            p.setPen(QColor(c.muted))
            p.drawText(QPointF(x, 10 + fm.ascent() - 1), "above the chart: " + ", ".join(off_scale))
        p.end()

    def _small_font(self) -> QFont:
        small = QFont(self.font())
        small.setPointSizeF(max(6.5, self.font().pointSizeF() * 0.85))
        return small


@dataclass(frozen=True)
class Point:
    label: str
    x: float  # bytes
    y: float  # KL-divergence


class ScatterChart(_Chart):
    """File size (x) vs KL-divergence (y, log scale when the values span decades)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[Point] = []
        self.x_title = "file size"
        self.y_title = "KL-divergence to the reference (lower is better)"
        self.empty_text = "Evaluate converted files to plot size against quality loss."

    def set_points(self, points: list[Point]) -> None:
        self.points = [pt for pt in points if pt.x > 0 and pt.y >= 0 and math.isfinite(pt.y)]
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt name
        p = self._begin()
        if not self.points:
            self._empty(p)
            p.end()
            return
        c = colors()
        fm = QFontMetrics(self.font())
        ys = [pt.y for pt in self.points]
        positive = [y for y in ys if y > 0]
        log = bool(positive) and max(positive) / min(positive) > 30
        floor = min(positive) / 2 if positive else 1e-6

        def ty(v: float) -> float:
            return math.log10(max(v, floor)) if log else v

        y_lo = ty(min(ys)) if log else 0.0
        y_hi = ty(max(ys))
        if y_hi <= y_lo:
            y_hi = y_lo + 1.0
        pad = (y_hi - y_lo) * 0.12
        y_lo, y_hi = (y_lo - pad if log else 0.0), y_hi + pad
        xs = [pt.x for pt in self.points]
        step_x = _gib_step(max(max(xs) - min(xs), max(xs) * 0.2))
        x_lo = max(0.0, math.floor(min(xs) * 0.92 / step_x) * step_x)
        x_hi = math.ceil(max(xs) * 1.08 / step_x) * step_x
        left = fm.horizontalAdvance("0.0000") + 18
        plot = QRectF(left, 12 + fm.height(), self.width() - left - 44, self.height() - 30 - fm.height() * 3)
        if plot.height() < 20 or plot.width() < 20:
            p.end()
            return

        def px(v: float) -> float:
            return plot.left() + plot.width() * (v - x_lo) / (x_hi - x_lo)

        def py(v: float) -> float:
            return plot.bottom() - plot.height() * (ty(v) - y_lo) / (y_hi - y_lo)

        p.setPen(QPen(QColor(c.grid), 1))
        p.drawRect(plot)
        # y ticks
        ticks: list[float] = []
        if log:
            e = math.floor(y_lo)
            while e <= y_hi:
                if e >= y_lo:
                    ticks.append(10 ** e)
                e += 1
        else:
            step = _nice_step(y_hi - y_lo)
            v = 0.0
            while v <= y_hi:
                ticks.append(v)
                v += step
        for v in ticks:
            y = py(v)
            p.setPen(QPen(QColor(c.grid), 1))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(QColor(c.muted))
            p.drawText(QRectF(0, y - fm.height() / 2, left - 6, fm.height()),
                       int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), f"{v:.3g}")
        # x ticks
        step = step_x
        v = x_lo
        while v <= x_hi + 1:
            x = px(v)
            p.setPen(QPen(QColor(c.grid), 1))
            p.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
            p.setPen(QColor(c.muted))
            p.drawText(QRectF(x - 50, plot.bottom() + 3, 100, fm.height()), int(Qt.AlignmentFlag.AlignHCenter),
                       format_bytes(v))
            v += step
        p.setPen(QColor(c.text))
        p.drawText(QRectF(plot.left(), plot.bottom() + fm.height() + 6, plot.width(), fm.height()),
                   int(Qt.AlignmentFlag.AlignHCenter), self.x_title)
        p.drawText(QPointF(plot.left(), 10 + fm.ascent() - 2), self.y_title + (" (log scale)" if log else ""))
        # points, joined in size order
        ordered = sorted(self.points, key=lambda pt: pt.x)
        p.setPen(QPen(QColor(c.neutral), 1.2, Qt.PenStyle.DotLine))
        for a, b in zip(ordered, ordered[1:], strict=False):
            p.drawLine(QPointF(px(a.x), py(a.y)), QPointF(px(b.x), py(b.y)))
        for pt in ordered:
            center = QPointF(px(pt.x), py(pt.y))
            p.setPen(QPen(QColor(c.base), 1.5))
            p.setBrush(QColor(c.accent))
            p.drawEllipse(center, 5, 5)
            p.setPen(QColor(c.text))
            tw = fm.horizontalAdvance(pt.label)
            tx = center.x() + 8 if center.x() + 8 + tw < plot.right() else center.x() - 8 - tw
            p.drawText(QPointF(tx, center.y() - 6), pt.label)
        p.end()
