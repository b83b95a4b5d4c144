"""Issue 18, the rest of what a new user trips on, driven through the real window: one progress bar
per job with elapsed time, ETA and a queue total (point 1), A/B chat answering at once (3), a theme
switch while running (9), Evaluate's batch ETA and reference perplexity (10), a 1024x640 window (11),
helper processes ending with the GUI, even killed (12), the X11 libraries named when Qt cannot start
(13), and a model given on the command line shown as opening at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QScrollArea,
    QStyle,
    QStyleOptionComboBox,
    QTreeWidget,
    QWidget,
)
from quantpress.app.jobqueue import Job, JobState
from quantpress.app.widgets.elide import ElidedLabel, ElidingComboBox

from tests.app.test_user_polish import demo_link, open_model  # noqa: F401 - the fixture is used by name


def test_one_progress_bar_per_job_with_elapsed_eta_and_queue_total(qtbot, window, demo_link: Path) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    """Point 1: a conversion with the default calibration (importance pass, then writing pass) fills
    its bar once, never going back; its row shows the elapsed time; the queue line counts the jobs."""
    open_model(qtbot, window, demo_link)
    pane = window.convert_pane
    window.go_to("convert")
    seen: list[tuple[object, float, str, str, str]] = []

    def record(job) -> None:  # type: ignore[no-untyped-def]
        seen.append((job, job.fraction, job.message, job.status_text(), pane.queue_total.text()))

    pane.queue.job_changed.connect(record)
    pane.set_selected_formats(["Q4_0"])  # a mix whose default uses the weights estimate (core/quant/auto.py)
    first, = pane.enqueue()
    pane.set_selected_formats(["Q8_0"])
    second, = pane.enqueue()
    assert pane.queue_total.isVisible() and pane.queue_total.text().startswith("Queue: 2 of 2 jobs left")
    with qtbot.waitSignal(pane.queue.job_changed, timeout=600000,
                          check_params_cb=lambda j: j is second and not j.active):
        pass
    pane.queue.job_changed.disconnect(record)
    assert first.state is JobState.DONE and second.state is JobState.DONE, (first.log, second.log)
    mine = [s for s in seen if s[0] is first]
    fractions = [f for _, f, *_ in mine]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # one bar: never back to 0 between passes
    importance = [f for _, f, m, *_ in mine if m.startswith("importance")]
    assert importance and max(importance) < 0.5  # the first pass fills only its share
    running = [t for _, f, m, t, _ in mine if m and 0 < f < 1]
    assert running and all("elapsed" in t for t in running)
    assert any("1 of 2 jobs left" in q for *_, q in seen)
    assert not pane.queue_total.isVisible()  # an idle queue shows no total


def load_ab(qtbot, pane, a: Path, b: Path) -> None:  # type: ignore[no-untyped-def]
    pane.compare_check.setChecked(True)
    pane.model_a.setCurrentIndex(pane.model_a.findData(str(a)))
    pane.model_b.setCurrentIndex(pane.model_b.findData(str(b)))
    tasks = pane.load()
    with qtbot.waitSignals([t.finished for t in tasks], timeout=180000):
        pass
    assert pane.a.session is not None and pane.b.session is not None


def test_ab_chat_streams_both_at_once_and_buttons_act_on_both(qtbot, window, demo_gguf: Path,
                                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 3: A and B answer at the same time (B's first tokens arrive before A has finished);
    Regenerate and Clear act on both; Stop stops both."""
    pane = window.chat_pane
    window.go_to("chat")
    copy = tmp_path / "copy-Q4_1.gguf"
    copy.symlink_to(demo_gguf)
    window.state.add_outputs([demo_gguf, copy])
    load_ab(qtbot, pane, demo_gguf, copy)
    # long enough that both answers overlap even when other work holds the CPU for a while (at 60 tokens
    # one side could finish before the other's first token on a loaded 2-core machine)
    pane.max_tokens.setValue(200)
    pane.seed.setValue(1)
    pane.apply_settings()
    qtbot.waitUntil(lambda: not pane.tasks, timeout=60000)
    events: list[tuple[str, str]] = []
    pane.input.setPlainText("Tell me about the sea.")
    tasks = pane.send()
    assert [pane.tasks[t].name for t in tasks] == ["A", "B"]
    for t, side in ((tasks[0], "A"), (tasks[1], "B")):
        t.streamed.connect(lambda _s, side=side: events.append((side, "token")))
        t.finished.connect(lambda side=side: events.append((side, "end")))
    qtbot.waitUntil(lambda: sum(1 for e in events if e[1] == "end") == 2, timeout=180000)
    first_end = next(i for i, e in enumerate(events) if e[1] == "end")
    streamed_before = {s for s, kind in events[:first_end] if kind == "token"}
    assert streamed_before == {"A", "B"}, "both sides streamed before either finished"
    for side in (pane.a, pane.b):
        assert [r for r, _ in side.turns] == ["user", "assistant"]
    answers = [side.turns[-1][1] for side in (pane.a, pane.b)]
    tasks = pane.regenerate()
    assert len(tasks) == 2
    qtbot.waitUntil(lambda: not pane.busy(), timeout=180000)
    for side in (pane.a, pane.b):
        assert [r for r, _ in side.turns] == ["user", "assistant"]
    assert answers  # the regenerated answers replaced the old ones in place (one turn each)
    # Stop during a long answer stops both sides
    pane.max_tokens.setValue(400)
    pane.apply_settings()
    qtbot.waitUntil(lambda: not pane.tasks, timeout=60000)
    pane.input.setPlainText("Write a long story about a robot.")
    tasks = pane.send()
    with qtbot.waitSignals([t.streamed for t in tasks], timeout=120000):
        pass
    pane.stop()
    qtbot.waitUntil(lambda: not pane.busy(), timeout=60000)
    for side in (pane.a, pane.b):  # both stopped: each keeps what it wrote, marked as stopped
        assert side.turns[-1][0] == "assistant", side.turns
        assert side.turns[-1][1].endswith("*(stopped)*") or "stopped" in side.stats.text(), side.stats.text()
    pane.clear()
    qtbot.waitUntil(lambda: not pane.tasks, timeout=60000)
    assert pane.a.turns == [] and pane.b.turns == []


def test_load_keeps_or_asks_before_wiping_a_conversation(qtbot, window, demo_gguf: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 3: Compare after a conversation with A, then Load, adds B and keeps A's conversation;
    loading another file for A asks before clearing it."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    pane = window.chat_pane
    window.go_to("chat")
    copy = tmp_path / "copy-Q4_1.gguf"
    copy.symlink_to(demo_gguf)
    window.state.add_outputs([demo_gguf, copy])
    pane.model_a.setCurrentIndex(pane.model_a.findData(str(demo_gguf)))
    pane.max_tokens.setValue(8)
    tasks = pane.load()
    with qtbot.waitSignals([t.finished for t in tasks], timeout=120000):
        pass
    pane.input.setPlainText("Hi")
    pane.send()
    qtbot.waitUntil(lambda: not pane.busy(), timeout=120000)
    assert len(pane.a.turns) == 2
    a_session = pane.a.session
    pane.compare_check.setChecked(True)
    pane.model_b.setCurrentIndex(pane.model_b.findData(str(copy)))
    tasks = pane.load()
    assert len(tasks) == 1 and pane.tasks[tasks[0]] is pane.b  # only B loads
    with qtbot.waitSignals([t.finished for t in tasks], timeout=120000):
        pass
    assert pane.a.session is a_session and len(pane.a.turns) == 2
    assert "has not seen" in pane.b.view.placeholderText()
    # another file for A: a question first, nothing cleared until Yes
    pane.model_a.setCurrentIndex(pane.model_a.findData(str(copy)))
    assert pane.load() == []
    box = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "confirmLoad" and w.isVisible())
    assert len(pane.a.turns) == 2 and "clears its conversation" in box.text()
    assert isinstance(box, QMessageBox)
    box.button(QMessageBox.StandardButton.Yes).click()
    assert pane.a.turns == [] and pane.a.path == copy
    qtbot.waitUntil(lambda: not pane.busy(), timeout=120000)
    assert pane.a.session is not None and pane.a.session is not a_session


def ink_color(image: QImage) -> QColor:
    """The mean colour of an icon's opaque pixels."""
    r = g = b = n = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            if c.alpha() > 200:
                r, g, b, n = r + c.red(), g + c.green(), b + c.blue(), n + 1
    assert n, "the icon has ink"
    return QColor(r // n, g // n, b // n)


def luminance(c: QColor) -> float:
    def lin(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c.red()) + 0.7152 * lin(c.green()) + 0.0722 * lin(c.blue())


def contrast(a: QColor, b: QColor) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_theme_switch_redraws_icons_and_checkboxes_stand_out(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """Point 9: after switching themes while running, icons on buttons take the new text colour (no
    dark icons on dark buttons), and a checkbox's square has >= 3:1 contrast with its background."""
    from quantpress.app import settings
    from quantpress.app.theme import colors

    send = window.chat_pane.send_button
    for _ in range(2):  # to the other theme and back: both directions
        window.toggle_theme()
        theme = colors()
        ink = ink_color(send.icon().pixmap(24, 24).toImage())
        assert contrast(ink, QColor(theme.window)) > 4.5, (settings.get("theme"), ink.name())
        want = QColor(theme.text)  # (antialiased edges shift the mean by a unit or two)
        assert max(abs(ink.red() - want.red()), abs(ink.green() - want.green()), abs(ink.blue() - want.blue())) <= 4
        box = window.chat_pane.compare_check
        image = box.grab().toImage()
        border = QColor(theme.muted)
        found = [image.pixelColor(x, y) for y in range(image.height()) for x in range(min(24, image.width()))]
        best = max(contrast(c, QColor(theme.window)) for c in found)
        assert best >= 3.0, (settings.get("theme"), border.name())


def test_evaluate_shows_batch_eta_and_reference_perplexity(qtbot, window, demo_gguf: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 10: during a batch the label gives elapsed time and time left over the batch; the
    reference's own perplexity is shown with the results."""
    ev = window.evaluate_pane
    window.go_to("evaluate")
    copy = tmp_path / "copy-Q4_1.gguf"
    copy.symlink_to(demo_gguf)
    window.state.add_outputs([demo_gguf, copy])
    ev.reference_combo.setCurrentIndex(ev.reference_combo.findData(str(demo_gguf)))
    ev.tokens_spin.setValue(1024)
    labels: list[str] = []
    tasks = ev.run_selected()
    assert len(tasks) == 1
    tasks[0].progress.connect(lambda _p: labels.append(ev.progress_label.text()))
    qtbot.waitUntil(lambda: not ev.tasks, timeout=300000)
    assert any("elapsed" in t and "left" in t for t in labels), labels
    assert ev.progress_label.text() == "Done."
    assert "Reference " + demo_gguf.name + ": perplexity" in ev.footer.text()


def clipped(widget: QWidget) -> bool:
    """Whether a widget shows less than its text needs, without saying so (a deliberately elided
    text, "…" with the whole text in its tooltip, is fine)."""
    if isinstance(widget, ElidedLabel):
        return widget.shown_text() != widget.text() and widget.toolTip() != widget.text()
    if isinstance(widget, ElidingComboBox):
        return widget.shown_text() != widget.currentText() and widget.currentText() not in widget.toolTip()
    if isinstance(widget, QComboBox):  # its current text in the box's label area
        opt = QStyleOptionComboBox()
        widget.initStyleOption(opt)
        field = widget.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                              QStyle.SubControl.SC_ComboBoxEditField, widget)
        icon_w = 0 if opt.currentIcon.isNull() else opt.iconSize.width() + 4
        return field.width() - icon_w < widget.fontMetrics().horizontalAdvance(widget.currentText())
    if isinstance(widget, QCheckBox):  # the tick box and its text: Qt's size hint
        return widget.width() < widget.sizeHint().width()
    if isinstance(widget, QAbstractButton):  # its text and icon, plus a little frame
        icon_w = widget.iconSize().width() + 4 if not widget.icon().isNull() else 0
        return widget.width() < widget.fontMetrics().horizontalAdvance(widget.text()) + icon_w + 8
    if isinstance(widget, QAbstractSpinBox):  # its longest value and suffix (Qt's size hint)
        return widget.width() < widget.sizeHint().width() - 2
    if isinstance(widget, QHeaderView):
        return bool(cut_titles(widget))
    if isinstance(widget, QLabel) and not widget.wordWrap() and widget.text() and not widget.pixmap():
        text = widget.text()
        if "<" in text or "\n" in text:
            return False
        return widget.width() + 1 < widget.fontMetrics().horizontalAdvance(text) + 2 * widget.margin()
    return False


def cut_titles(header: QHeaderView) -> list[str]:
    """The column titles wholly in view that do not fit their column."""
    cut = []
    for i in range(header.count()):
        pos, size = header.sectionViewportPosition(i), header.sectionSize(i)
        if header.isSectionHidden(i) or pos < 0 or pos + size > header.viewport().width():
            continue  # scrolled out of view (the table scrolls), not cut
        text = str(header.model().headerData(i, header.orientation()) or "")
        if header.fontMetrics().horizontalAdvance(text) + 4 > size:
            cut.append(f"{text!r} in {size} px")
    return cut


def sideways_scrolled(widget: QWidget) -> bool:
    """A list or a queue whose content is wider than itself: text cut behind a scroll bar."""
    return (isinstance(widget, (QListWidget, QTreeWidget, QScrollArea))
            and widget.horizontalScrollBar().isVisible())


def test_no_clipped_text_at_1024_by_640(qtbot, window, demo_link: Path, demo_gguf: Path,  # noqa: F811
                                        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 11: at 1024x640, with long file names and a job of six formats on screen, no pane cuts a
    button, spin box, combo box, label or column title short; lists and the queue do not hide text
    behind a sideways scroll bar; what is elided says so ("…") and has the whole text as tooltip."""
    open_model(qtbot, window, demo_link)
    window.resize(1024, 640)
    long_names = []
    for fmt in ("Q4_K_M", "Q2_K"):  # files named as converted files of a long-named model are
        link = tmp_path / f"SmolLM2-135M-Instruct-with-a-long-fine-tune-name-{fmt}.gguf"
        link.symlink_to(demo_gguf)
        long_names.append(link)
    window.state.add_outputs(long_names)
    conv = window.convert_pane
    conv.out_edit.setText(str(tmp_path / "out"))
    conv.set_selected_formats(["Q4_K_M"])
    with qtbot.waitSignal(conv.preview().finished, timeout=120000):
        pass
    job = conv.queue.add(Job("SmolLM2-135M-Instruct → Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q3_K_M, Q2_K",
                             finished_at_once, tmp_path))
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=30000)
    chat = window.chat_pane
    chat.model_a.setCurrentIndex(chat.model_a.findData(str(long_names[0])))
    chat.compare_check.setChecked(True)
    chat.model_b.setCurrentIndex(chat.model_b.findData(str(long_names[1])))
    for side, path in ((chat.a, long_names[0]), (chat.b, long_names[1])):
        side.title.setText(f"Model {side.name}: {path.name}")  # what a loaded model's title says
    for key in ("model", "fit", "convert", "evaluate", "chat"):
        window.go_to(key)
        qtbot.wait(50)
        pane = window.panes[key]
        shown = [w for w in pane.findChildren(QWidget) if w.isVisible()]
        bad = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r} {w.width()}<{w.sizeHint().width()}"
               + (f" {cut_titles(w)}" if isinstance(w, QHeaderView) else "") for w in shown if clipped(w)]
        bad += [f"{type(w).__name__} scrolls sideways" for w in shown if sideways_scrolled(w)]
        assert not bad, (key, bad)
    assert window.width() <= 1024 and window.height() <= 640
    # the elided ones really were elided: the check above looked at them
    assert chat.a.title.shown_text() != chat.a.title.text() and chat.a.title.toolTip() == chat.a.title.text()
    assert "…" in chat.model_a.shown_text() and chat.model_a.shown_text().endswith("Q4_K_M.gguf")
    fit = window.fit_pane
    fit.whatif_check.setChecked(True)
    assert fit.vram_spin.width() >= fit.vram_spin.sizeHint().width() - 2


def finished_at_once(*, report, cancel) -> list[Path]:  # type: ignore[no-untyped-def]
    return []


def test_evaluate_file_column_is_never_cut(qtbot, window, demo_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 11: a long file name in the results table is shown whole (the table scrolls instead)."""
    ev = window.evaluate_pane
    window.resize(1024, 640)
    window.go_to("evaluate")
    long_name = "SmolLM2-135M-Instruct-a-rather-long-name-Q4_K_M.gguf"
    ev.results[long_name] = {"model": long_name, "model_bytes": 1, "perplexity": 10.0, "tokens": 1020}
    ev.show_results()
    qtbot.wait(20)
    width = ev.table.columnWidth(0)
    assert width >= ev.table.fontMetrics().horizontalAdvance(long_name), width


CHILD_SCRIPT = r"""
import os, sys, time

def wait(seconds, *, report, cancel):
    # a job that runs until cancelled (a module-level function: the spawned child imports it)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cancel.raise_if_cancelled()
        time.sleep(0.05)

if __name__ == "__main__":
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QTimer
    from quantpress.app import main
    from quantpress.app.isolated import run_in_helper, run_isolated
    from quantpress.core.chat.types import ChatSettings
    from quantpress.core.demo import demo_gguf_path

    def announce():
        # the three kinds of child the GUI starts: the warm helper (estimates, plan previews), a job's
        # own process (a conversion) and a chat model's process
        from quantpress.app.chat_process import ChatProcess
        from quantpress.app.main_window import MainWindow
        window = next(w for w in main.QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        window.state.heavy.submit("helper", lambda report, cancel: print("HELPER", run_in_helper(os.getpid),
                                                                        flush=True))
        window.state.heavy.submit("job", lambda report, cancel: run_isolated(wait, 600, report=report,
                                                                             cancel=cancel))
        window.state.chat.submit("chat", lambda report, cancel: print(
            "CHAT", ChatProcess.start(demo_gguf_path(), ChatSettings(ctx_tokens=256)).pid, flush=True))
        print("READY", os.getpid(), flush=True)

    app = main.make_app()  # run_gui takes this one; a timer needs the application first
    QTimer.singleShot(500, announce)
    sys.exit(main.run_gui())
"""


def spawn_gui(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """The real GUI in a process of its own, once it has started its helper, a job's process and a
    chat process (and so multiprocessing's resource tracker); returns it and those children's PIDs."""
    from quantpress.core.demo import demo_gguf_path

    demo_gguf_path()  # built here, before the GUI's chat child looks for it
    script = tmp_path / "gui_with_children.py"
    script.write_text(CHILD_SCRIPT)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    said = {}
    while len(said) < 3:  # READY, HELPER (it answered) and CHAT (its model is loaded)
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        word, _, pid = line.partition(" ")
        said[word] = int(pid)
    gui = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    children = gui.children(recursive=True)
    while len(children) < 4 and time.monotonic() < deadline:  # tracker, helper, job and chat
        time.sleep(0.2)
        children = gui.children(recursive=True)
    pids = [c.pid for c in children]
    assert said["HELPER"] in pids and said["CHAT"] in pids, (said, pids)
    return proc, pids


def all_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_helpers_end_with_the_gui(tmp_path: Path, how: str) -> None:
    """Point 12: terminated or interrupted (Ctrl+C in the terminal), the GUI quits (exit 128 + the
    signal); killed outright (SIGKILL, as a crash), it cannot clean up, yet its helper, its job's
    process, its chat process and multiprocessing's resource tracker all end within seconds."""
    proc, children = spawn_gui(tmp_path)
    assert len(children) >= 4, children
    try:
        signum = getattr(signal, how)
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
        assert code == (-signum if how == "SIGKILL" else 128 + signum), code
        assert all_gone(children, 10 if how == "SIGKILL" else 45) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reap it and close its pipes
        for pid in children:
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()


def test_gui_names_missing_x11_libraries(tmp_path: Path) -> None:
    """Point 13: where Qt's X11 plugin lacks system libraries, `quantpress gui` says which and names
    the apt packages instead of Qt's abort ("Could not load the Qt platform plugin xcb")."""
    from quantpress.core.desktop import APT_PACKAGES, missing_xcb_libraries

    missing = missing_xcb_libraries()
    if not missing:
        pytest.skip("every library of Qt's X11 plugin is installed here")
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99"}
    done = subprocess.run([sys.executable, "-m", "quantpress.app.entry", "gui"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "sudo apt-get install" in done.stderr
    for lib in missing:
        assert lib in done.stderr and APT_PACKAGES[lib] in done.stderr
    assert "Could not load the Qt platform plugin" not in done.stderr


def test_ldd_output_is_read_right() -> None:
    from quantpress.core.desktop import parse_ldd, xcb_problem

    text = ("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibxcb-icccm.so.4 => not found\n"
            "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x7f)\n\tlibxcb-icccm.so.4 => not found\n"
            "\tlibxcb-keysyms.so.1 => not found\n")
    assert parse_ldd(text) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    message = xcb_problem(parse_ldd(text))
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in message
    assert xcb_problem([]) == ""


def test_doctor_reports_the_x11_plugin() -> None:
    from quantpress.core.cli.cmd_doctor import collect
    from quantpress.core.desktop import missing_xcb_libraries

    row = next(c for c in collect()["components"] if c["name"] == "Qt X11 plugin")
    assert bool(row["problem"]) == bool(missing_xcb_libraries())


def test_a_model_given_on_the_command_line_shows_opening_at_once(qtbot, window, demo_link: Path,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`quantpress gui MODEL` (app.main.run_gui calls window.open_source right after show): the card
    says "Opening <model>…" before the event loop has run once, the model is read on a worker thread
    (the GUI thread stays free: it keeps running timers meanwhile), and the card never says
    "No model open" on the way (issue 18: still so after 20 s under load)."""
    import threading

    from quantpress.app.panes.model_pane import NO_MODEL
    from quantpress.core import inspect

    real_open = inspect.open_model
    threads: list[str] = []
    release = threading.Event()

    def slow_open(source: str):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        release.wait(30)  # a machine under load: reading the model takes long
        return real_open(source)

    monkeypatch.setattr(inspect, "open_model", slow_open)
    card = window.model_pane.card_title
    titles: list[str] = []
    window.open_source(str(demo_link))
    assert card.text() == f"Opening {demo_link}…"
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: (ticks.append(1), titles.append(card.text())))
    timer.start(10)
    qtbot.waitUntil(lambda: bool(threads) and len(ticks) >= 20, timeout=30000)  # the GUI runs while it opens
    assert threads[0] != threading.main_thread().name
    with qtbot.waitSignal(window.state.model_changed, timeout=60000):
        release.set()
    timer.stop()
    assert card.text() == window.state.model.name
    assert NO_MODEL not in titles and all(t.startswith("Opening") or t == card.text() for t in titles)
