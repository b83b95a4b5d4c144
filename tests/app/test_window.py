"""The main window without any model: navigation, shortcuts, theme, status bar, empty states, charts."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication
from quantpress.app import settings
from quantpress.app.widgets.charts import Bar, Line, MemoryBarChart, Point, ScatterChart


def test_window_has_the_flow_and_status_bar(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    labels = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert labels == ["Model", "Fit", "Convert", "Evaluate", "Chat"]
    qtbot.waitUntil(lambda: window.jobs_label.text() == "No jobs running", timeout=30000)
    qtbot.waitUntil(lambda: "RAM" in window.memory_label.text(), timeout=5000)
    for i in range(5):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + i), Qt.KeyboardModifier.ControlModifier)
        assert window.stack.currentIndex() == i
    assert window.sidebar.item(1).toolTip()  # every step explains itself


def test_empty_states_say_what_to_do(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    assert "Open a model" in window.fit_pane.summary.text()
    assert "Open a model first" in window.convert_pane.banner.text() or not window.convert_pane.isVisible()
    assert not window.convert_pane.queue_button.isEnabled()
    assert window.model_pane.card_title.text() == "No model open"
    assert not window.model_pane.continue_button.isEnabled()
    assert window.evaluate_pane.table.rowCount() == 0
    assert not window.chat_pane.load_button.isEnabled()


def test_theme_toggle_persists(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    before = QApplication.palette().window().color().lightness()
    window.toggle_theme()
    after = QApplication.palette().window().color().lightness()
    assert settings.get("theme") in ("light", "dark")
    assert (before > 128) != (after > 128)
    window.toggle_theme()


def test_drop_a_file_opens_it(qtbot, window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "model.gguf"
    target.write_bytes(b"not a gguf")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(target))])
    pane = window.model_pane
    event = QDropEvent(QPointF(QPoint(10, 10)), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    pane.dropEvent(event)
    task = pane._task
    assert task is not None and "model.gguf" in task.name
    with qtbot.waitSignal(task.finished, timeout=60000):
        pass
    assert window.state.model is None  # a bad file: an error was shown, nothing opened


def test_close_without_jobs_closes(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    window.close()
    assert not window.isVisible()


def test_charts_paint_with_data_and_empty(qtbot) -> None:  # type: ignore[no-untyped-def]
    bars = MemoryBarChart()
    qtbot.addWidget(bars)
    bars.resize(600, 300)
    bars.grab()  # empty state
    gib = 1024 ** 3
    bars.set_data([Bar("Q8_0", (8 * gib, 1 * gib, 0.5 * gib)), Bar("Q4_K_M", (4.6 * gib, 1 * gib, 0.5 * gib), True)],
                  [Line("VRAM", 8 * gib, "#3ccf7a"), Line("RAM", 16 * gib, "#d64545")])
    assert not bars.grab().isNull()
    scatter = ScatterChart()
    qtbot.addWidget(scatter)
    scatter.resize(500, 300)
    scatter.grab()
    scatter.set_points([Point("Q8_0", 145e6, 0.0004), Point("Q4_K_M", 105e6, 0.03), Point("Q2_K", 88e6, 0.4)])
    assert len(scatter.points) == 3
    assert not scatter.grab().isNull()
