"""Render each screen of the app offscreen on the demo model into docs/screenshots/*.png, and each
screen again at 1024x640 (``<screen>-1024.png``: the smallest size the app is checked at, issue 18).

Run: .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--formats Q8_0,Q4_K_M,...]

Everything shown is computed by the real core on the demo model (SmolLM2-135M-Instruct): the fit
table, a conversion, evaluations against the demo's own Q4_1 GGUF (its weights are exactly those
values, so it is a true reference), and a chat answer. Converted files are kept in a work folder in
the quantpress cache so a second run is quick.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402,TID251 - a GUI script

SIZE = (1280, 820)
SMALL = (1024, 640)


def wait(signal: Any, timeout_s: float = 900.0, until: Any = None) -> None:
    """Run the event loop until ``signal`` fires (and ``until()`` holds, if given)."""
    loop = QEventLoop()
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)

    def fired(*_: Any) -> None:
        if until is None or until():
            loop.quit()

    signal.connect(fired)
    timer.start(int(timeout_s * 1000))
    loop.exec()
    signal.disconnect(fired)
    if not timer.isActive() and (until is not None and not until()):
        raise TimeoutError(f"timed out waiting for {signal}")


def wait_until(condition: Any, timeout_s: float = 3600.0) -> None:
    """Run the event loop until ``condition()`` holds (checked every 100 ms)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        settle(100)


def settle(ms: int = 150) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def shoot(window: Any, key: str, out: Path, name: str | None = None) -> Path:
    window.go_to(key)
    settle()
    path = out / f"{name or key}.png"
    window.grab().save(str(path))
    print(f"wrote {path}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "screenshots"))
    parser.add_argument("--formats", default="Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from quantpress.core.demo import demo_gguf_path
    from quantpress.core.paths import cache_dir

    # Settings of a fresh install (not the user's own), kept in the work folder.
    work = cache_dir() / "screenshots-work"
    work.mkdir(parents=True, exist_ok=True)
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(work / "settings"))
    from quantpress.app import settings
    from quantpress.app.main import make_app

    settings.put("theme", "light")
    app = make_app([sys.argv[0]])
    from quantpress.app.main_window import MainWindow

    window = MainWindow()
    window.resize(*SIZE)
    window.show()
    settle()

    # Model
    window.model_pane.use_demo()
    wait(window.state.model_changed)
    if window.state.hardware is None:
        wait(window.state.hardware_changed, 60)
    shoot(window, "model", out)

    # Fit
    window.fit_pane.ctx_spin.setValue(8192)
    window.fit_pane.refresh()
    wait_until(lambda: window.fit_pane._task is None, 300)
    shoot(window, "fit", out)

    # Convert: the formats not converted yet, one job after another
    formats = [f for f in args.formats.split(",") if f]
    conv = window.convert_pane
    conv.out_edit.setText(str(work))
    todo = [f for f in formats if not any(work.glob(f"*-{f}.gguf"))]
    if todo:
        conv.set_selected_formats(todo)
        jobs = conv.enqueue()
        wait_until(lambda: not conv.queue.active())
        failed = [j for j in jobs if j.state.value != "done"]
        if failed:
            print("conversion failed:", failed[0].log[-5:], file=sys.stderr)
            return 1
    else:  # show one real job in the queue anyway (quick: Q8_0 of a 135M model)
        redo = work / "redo"
        redo.mkdir(exist_ok=True)
        conv.out_edit.setText(str(redo))
        conv.set_selected_formats(["Q8_0"])
        conv.enqueue()
        wait_until(lambda: not conv.queue.active())
        conv.out_edit.setText(str(work))
        window.state.outputs = [p for p in window.state.outputs if p.parent != redo]  # a demo job, not a result
    window.state.add_outputs(sorted(work.glob("*.gguf")))
    conv.set_selected_formats(["Q4_K_M"])
    wait(conv.preview().finished, 300)
    shoot(window, "convert", out)

    # Evaluate against the demo's own Q4_1 GGUF
    ev = window.evaluate_pane
    ref = demo_gguf_path()
    window.state.add_outputs([ref])
    ev.reference_combo.setCurrentIndex(ev.reference_combo.findData(str(ref)))
    ev.tokens_spin.setValue(2048)
    ev.refresh_files()
    missing = [p for p in window.state.outputs if p != ref and str(p) not in ev.results]
    if missing:
        for i in range(ev.files_list.count()):
            item = ev.files_list.item(i)
            path = Path(item.data(Qt.ItemDataRole.UserRole))
            item.setCheckState(Qt.CheckState.Checked if path in missing else Qt.CheckState.Unchecked)
        tasks = ev.run_selected()
        if tasks:
            wait_until(lambda: not ev.tasks)
    for i in range(ev.files_list.count()):  # show every evaluated file ticked again
        item = ev.files_list.item(i)
        if item.flags() & Qt.ItemFlag.ItemIsEnabled:
            item.setCheckState(Qt.CheckState.Checked)
    shoot(window, "evaluate", out)

    # Chat: A/B of the Q8_0 and Q2_K files when both exist
    chat = window.chat_pane
    a = next(iter(sorted(work.glob("*-Q4_K_M.gguf"))), None)
    b = next(iter(sorted(work.glob("*-Q2_K.gguf"))), None)
    if a is not None:
        chat.model_a.setCurrentIndex(chat.model_a.findData(str(a)))
        if b is not None:
            chat.compare_check.setChecked(True)
            chat.model_b.setCurrentIndex(chat.model_b.findData(str(b)))
        chat.temperature.setValue(0.0)
        chat.seed.setValue(7)
        chat.max_tokens.setValue(120)
        tasks = chat.load()
        wait_until(lambda: not chat.tasks)
        chat.input.setPlainText("Explain in two sentences what quantization does to a language model.")
        chat.send()
        wait_until(lambda: not chat.tasks)
    shoot(window, "chat", out)

    # The fit screen in the dark theme
    window.toggle_theme()
    shoot(window, "fit", out, "fit-dark")
    window.toggle_theme()

    # Every screen at 1024x640: nothing may be cut off there (tests/app/test_user_flow.py checks it too)
    window.resize(*SMALL)
    settle(300)
    for key in ("model", "fit", "convert", "evaluate", "chat"):
        shoot(window, key, out, f"{key}-1024")

    window.shutdown()
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
