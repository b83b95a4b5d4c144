"""What a new user trips on (issue 18), each driven through the real window: where outputs go,
output folders that cannot be written, stale Chat text, Fit verdicts, the CPU recommendation, and
small polish in the Convert and Chat panes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from quantpress.app.jobqueue import JobState


@pytest.fixture
def demo_link(tmp_path: Path) -> Path:
    """The demo model reached through a link in a temporary folder: outputs "beside the model" land
    in tmp_path, never in the shared cache."""
    from quantpress.core.demo import ensure_demo_model

    link = tmp_path / "models" / "tiny"
    link.parent.mkdir()
    link.symlink_to(ensure_demo_model(), target_is_directory=True)
    return link


def open_model(qtbot, window, source: Path):  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.state.model_changed, timeout=300000):
        window.model_pane.open_source(str(source))
    assert window.state.model is not None
    return window.state.model


def test_empty_output_folder_means_the_models_default_folder(qtbot, window, demo_link: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 2: an empty Output folder writes beside the model (core.outputs), not into the CWD."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a desktop launcher's working directory: $HOME or /
    open_model(qtbot, window, demo_link)
    pane = window.convert_pane
    window.go_to("convert")
    expected = demo_link.parent / "tiny-gguf"
    pane.out_edit.clear()
    assert str(expected) in pane.out_edit.placeholderText()
    pane.set_selected_formats(["Q8_0"])
    with qtbot.waitSignal(pane.preview().finished, timeout=120000):
        pass
    top = pane.plan_tree.topLevelItem(0)
    assert Path(top.toolTip(0)).parent == expected
    assert str(expected) in pane.plan_summary.text()
    (job,) = pane.enqueue()
    assert job.out_dir == expected
    with qtbot.waitSignal(pane.queue.job_changed, timeout=600000,
                          check_params_cb=lambda j: j is job and not j.active):
        pass
    assert job.state is JobState.DONE, job.log
    assert [p.parent for p in job.outputs] == [expected]
    assert list(cwd.iterdir()) == []
    # a relative name is taken beside the model too, never under the working directory
    pane.out_edit.setText("mine")
    assert pane.out_dir() == demo_link.parent / "mine"


@pytest.fixture
def unwritable_folder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder where files cannot be created: a read-only folder, or (as root, whom permissions do not
    stop) a kernel folder that refuses writes."""
    import os

    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder / "out"
        folder.chmod(0o755)
        return
    folder = Path("/proc/sys")
    if os.access(folder, os.W_OK):
        pytest.skip("no folder here refuses writes to root")
    yield folder / "quantpress-out"


def test_unwritable_output_folder_is_refused_before_queuing(qtbot, window, demo_link: Path,
                                                            unwritable_folder: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 7: Preview says "not writable" (not "not enough disk space"); Add to queue refuses with a
    message naming the folder, and no job is queued."""
    from quantpress.app.errors import hub

    open_model(qtbot, window, demo_link)
    pane = window.convert_pane
    window.go_to("convert")
    pane.out_edit.setText(str(unwritable_folder))
    pane.set_selected_formats(["Q8_0"])
    with qtbot.waitSignal(pane.preview().finished, timeout=120000):
        pass
    summary = pane.plan_summary.text()
    assert "Not writable" in summary and "disk space" not in summary
    with qtbot.waitSignal(hub().shown, timeout=10000) as blocker:
        jobs = pane.enqueue()
    assert jobs == [] and not pane.rows
    title, message = blocker.args
    assert "write" in title.lower() and str(unwritable_folder.parent) in message
    assert "Errno" not in message and "Traceback" not in message
    assert not unwritable_folder.exists()


def test_chat_text_is_never_stale(qtbot, window, demo_gguf: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 4: "Load a model first" goes once a model answers; a file that fails to load resets the
    title (not "loading…" forever) and leaves the Chat and Evaluate lists."""
    from quantpress.app.errors import hub

    pane = window.chat_pane
    window.go_to("chat")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file at all")
    window.state.add_outputs([demo_gguf, fake])
    pane.input.setPlainText("Hello")
    assert pane.send() == []
    assert "Load a model first" in pane.banner.text()

    pane.model_a.setCurrentIndex(pane.model_a.findData(str(fake)))
    with qtbot.waitSignal(hub().shown, timeout=120000):
        assert pane.load()
    qtbot.waitUntil(lambda: not pane.busy(), timeout=120000)  # the failed load's task has finished
    assert "loading" not in pane.a.title.text() and "not loaded" in pane.a.title.text()
    assert pane.model_a.findData(str(fake)) < 0 and pane.model_b.findData(str(fake)) < 0
    assert window.evaluate_pane.files_list.findItems("fake.gguf", Qt.MatchFlag.MatchExactly) == []
    assert fake not in window.state.outputs

    pane.model_a.setCurrentIndex(pane.model_a.findData(str(demo_gguf)))
    pane.max_tokens.setValue(8)
    tasks = pane.load()
    with qtbot.waitSignals([t.finished for t in tasks], timeout=120000):
        pass
    assert pane.a.session is not None, pane.a.title.text()
    pane.input.setPlainText("Hello")
    tasks = pane.send()
    with qtbot.waitSignal(tasks[0].finished, timeout=120000):
        pass
    assert pane.a.turns[-1][0] == "assistant"
    assert "Load a model first" not in pane.banner.text()


def fit_rows(pane) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Format name -> the text of its Fit cell."""
    return {pane.table.item(r, 0).text().lstrip("★ "): pane.table.item(r, 6).text() for r in range(pane.table.rowCount())}


def fit_pane_with_model(qtbot, window, source: Path):  # type: ignore[no-untyped-def]
    """The Fit pane on screen for ``source``, with the hardware detected."""
    open_model(qtbot, window, source)
    if window.state.hardware is None:
        with qtbot.waitSignal(window.state.hardware_changed, timeout=60000):
            pass
    window.go_to("fit")
    return window.fit_pane


def test_fit_verdicts_say_what_a_format_needs(qtbot, window, demo_link: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 5: without a CUDA GPU, AWQ runs on the CPU with quantpress and the GPU-only formats say
    "needs a CUDA GPU for vLLM" in the cell, not a red "Won't fit"; the What-if fields follow their box
    and start from this machine (no invented 24 GiB GPU)."""
    pane = fit_pane_with_model(qtbot, window, demo_link)
    assert not pane.vram_spin.isEnabled() and not pane.ram_spin.isEnabled()
    if not window.state.hardware.gpus:
        assert pane.vram_spin.value() == 0 and pane.vram_spin.text() == "no GPU"
    pane.whatif_check.click()
    assert pane.vram_spin.isEnabled() and pane.ram_spin.isEnabled()
    pane.vram_spin.setValue(0.0)  # plan for a machine without a GPU, whatever this one has
    pane.ram_spin.setValue(16.0)
    with qtbot.waitSignal(pane.estimated, timeout=120000):
        pane.refresh()
    rows = fit_rows(pane)
    assert rows["AWQ_INT4_G128"] == "Runs on CPU with quantpress"
    for name in ("GPTQ_INT4_G128", "NF4", "FP8_E4M3", "INT8"):
        assert rows[name] == "Needs a CUDA GPU for vLLM", (name, rows[name])
    assert "Won't fit" not in rows.values()
    pane.whatif_check.click()
    assert not pane.vram_spin.isEnabled()


def test_cpu_only_recommendation_is_balanced_and_in_words(qtbot, window, demo_link: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 6: on a machine without a GPU the star goes to the balanced pick (the smallest format
    whose published loss is small), explained in words, not "F16 — F16: cpu"."""
    from quantpress.core.estimate import BALANCED_MAX_KLD
    from quantpress.core.formats import FORMATS

    pane = fit_pane_with_model(qtbot, window, demo_link)
    pane.whatif_check.click()
    pane.vram_spin.setValue(0.0)
    pane.ram_spin.setValue(64.0)
    with qtbot.waitSignal(pane.estimated, timeout=120000) as blocker:
        pane.refresh()
    result = blocker.args[0]
    starred = [pane.table.item(r, 0).text()[2:] for r in range(pane.table.rowCount())
               if pane.table.item(r, 0).text().startswith("★")]
    assert len(starred) == 1
    pick = starred[0]
    assert pick not in ("F16", "BF16", "F32")
    kld = FORMATS[pick].kld
    assert kld is not None and kld <= BALANCED_MAX_KLD
    rows = {e.format: e for e in result.formats}
    for name, fmt in FORMATS.items():  # nothing smaller has a small published loss
        if name in rows and fmt.kld is not None and fmt.kld <= BALANCED_MAX_KLD and rows[name].fit == "cpu":
            assert rows[name].weights_bytes >= rows[pick].weights_bytes, name
    summary = pane.summary.text()
    assert ": cpu" not in summary and "on the CPU" in summary and "file size" in summary


def test_convert_and_chat_polish(qtbot, window, demo_link: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 14: a click on a format's name ticks it (a click on its box still toggles once); a fresh
    job says "Starting…", not "0% · "; Cancel shows "Cancelling…" until the job stops; the log has no
    doubled stage prefix; Chat's model A is the best-quality file, not the first name alphabetically."""
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest
    from quantpress.app.jobqueue import Job, log_line
    from quantpress.core.jobs import Progress

    open_model(qtbot, window, demo_link)
    pane = window.convert_pane
    window.go_to("convert")
    pane.set_selected_formats([])
    view = pane.formats_list
    item = next(view.item(i) for i in range(view.count()) if view.item(i).data(Qt.ItemDataRole.UserRole) == "Q8_0")
    view.scrollToItem(item)
    rect = view.visualItemRect(item)
    name_point = QPoint(rect.left() + rect.width() // 2, rect.center().y())
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=name_point)
    assert pane.selected_formats() == ["Q8_0"]
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=name_point)
    assert pane.selected_formats() == []
    box_point = QPoint(rect.left() + 10, rect.center().y())  # the check box at the row's left edge
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=box_point)
    assert pane.selected_formats() == ["Q8_0"]

    fresh = Job("fresh", lambda **_: [], state=JobState.RUNNING)
    assert fresh.status_text().startswith("Starting…") and "%" not in fresh.status_text()
    assert log_line(Progress("importance", 0.25, "importance: layer 1")) == "importance: layer 1"
    assert log_line(Progress("convert", 0.25, "blk.0.attn_q")) == "convert: blk.0.attn_q"

    pane.out_edit.setText(str(tmp_path / "out"))
    (job,) = pane.enqueue()
    with qtbot.waitSignal(job.task.progress, timeout=120000):
        pass
    row = pane.rows[id(job)]
    row.cancel_button.click()
    assert row.state_label.text() == "Cancelling…" and row.detail.text().startswith("Cancelling…")
    assert not row.cancel_button.isEnabled()
    with qtbot.waitSignal(pane.queue.job_changed, timeout=120000, check_params_cb=lambda j: j is job and not j.active):
        pass
    assert job.state is JobState.CANCELLED and row.state_label.text() == "Cancelled"

    chat = window.chat_pane
    files = [tmp_path / f"tiny-{fmt}.gguf" for fmt in ("Q2_K", "Q4_K_M", "Q8_0")]
    for f in files:
        f.write_bytes(b"")
    window.state.add_outputs(files)
    window.go_to("chat")
    assert chat.model_a.currentData() == str(files[2])  # Q8_0: the best quality of the three


def test_menu_bar_lists_every_action_and_shortcut(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """Point 8 (menus): File, View (theme) and Help (shortcuts, About); the shortcuts list names the
    page keys, Open, Quit and the theme key; the theme toggles from the View menu."""
    from quantpress.app import settings

    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "View", "Help"]
    texts = {name: [a.text() for a in menu.actions() if a.text()] for name, menu in menus.items()}
    assert "Open model…" in texts["File"] and "Quit" in texts["File"]
    assert "Go to Chat" in texts["View"] and "Toggle light/dark theme" in texts["View"]
    assert texts["Help"] == ["Keyboard shortcuts", "About quantpress"]
    box = window.show_shortcuts()
    for key in ("Ctrl+1", "Ctrl+5", "Ctrl+O", "Ctrl+Q", "Ctrl+Shift+T"):
        assert key in box.text(), key
    box.close()
    about = window.show_about()
    assert "quantpress" in about.text()
    about.close()
    before = str(settings.get("theme"))
    next(a for a in menus["View"].actions() if a.text() == "Toggle light/dark theme").trigger()
    assert str(settings.get("theme")) != before


def test_tab_moves_focus_out_of_text_and_tables(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """Point 8 (keyboard): Tab leaves the chat input, the system prompt and the Fit table instead of
    inserting a tab or walking cells; the sidebar takes focus and arrows change the page."""
    from PySide6.QtTest import QTest

    chat = window.chat_pane
    window.go_to("chat")
    for edit in (chat.input, chat.system_edit):
        edit.setFocus()
        qtbot.waitUntil(edit.hasFocus, timeout=5000)
        QTest.keyClick(edit, Qt.Key.Key_Tab)
        assert "\t" not in edit.toPlainText() and not edit.hasFocus()
    assert not window.fit_pane.table.tabKeyNavigation()
    window.sidebar.setFocus()
    qtbot.waitUntil(window.sidebar.hasFocus, timeout=5000)
    QTest.keyClick(window.sidebar, Qt.Key.Key_Up)
    assert window.stack.currentWidget() is window.evaluate_pane


def test_context_beyond_training_is_flagged_and_not_remembered(qtbot, window, demo_link: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 14: an absurd typed context is said to exceed the model's training and is not saved."""
    from quantpress.app import settings

    pane = fit_pane_with_model(qtbot, window, demo_link)
    trained = window.state.model.context_length
    saved = int(settings.get("context_tokens"))
    pane.ctx_spin.setValue(1_048_576)
    with qtbot.waitSignal(pane.estimated, timeout=120000):
        pane.refresh()
    assert f"trained for ({trained:,})" in pane.summary.text()
    assert int(settings.get("context_tokens")) == saved
    pane.ctx_spin.setValue(1024)
    with qtbot.waitSignal(pane.estimated, timeout=120000):
        pane.refresh()
    assert "trained for" not in pane.summary.text() and int(settings.get("context_tokens")) == 1024


def test_evaluate_never_says_done_over_a_failure(qtbot, window, demo_gguf: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 10 (part): a failed evaluation leaves "Failed: <file>", not "Done."; the token column says
    what it counts (scored tokens)."""
    from quantpress.app.errors import hub

    ev = window.evaluate_pane
    window.go_to("evaluate")
    fake = tmp_path / "fake-Q4_K_M.gguf"
    fake.write_bytes(b"not a gguf file at all")
    window.state.add_outputs([demo_gguf, fake])
    ev.reference_combo.setCurrentIndex(ev.reference_combo.findData(str(demo_gguf)))
    with qtbot.waitSignal(hub().shown, timeout=300000):
        tasks = ev.run_selected()
        assert len(tasks) == 1
        assert ev.progress.maximum() == 0  # busy, not an empty bar, until the first report
    qtbot.waitUntil(lambda: not ev.tasks, timeout=120000)
    assert ev.progress_label.text().startswith("Failed: fake-Q4_K_M.gguf")
    assert ev.table.horizontalHeaderItem(ev.table.columnCount() - 1).text() == "Scored tokens"


def test_fit_explains_formats_larger_than_nominal(qtbot, window, demo_link: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 6 (fallbacks): where a format is far above its nominal bits on this model (the demo's
    576-wide rows are no multiple of 256), the table marks it and the footer says why."""
    from quantpress.app.panes.fit_pane import FALLBACK_RATIO
    from quantpress.core.formats import FORMATS

    pane = fit_pane_with_model(qtbot, window, demo_link)
    with qtbot.waitSignal(pane.estimated, timeout=120000) as blocker:
        pane.refresh()
    above = {e.format for e in blocker.args[0].formats if e.kind == "gguf" and e.format in FORMATS
             and e.bits_per_weight > FORMATS[e.format].bits_per_weight * FALLBACK_RATIO}
    assert above, "the demo model has formats above their nominal size"
    marked = {pane.table.item(r, 0).text().lstrip("★ ") for r in range(pane.table.rowCount())
              if pane.table.item(r, 1).text().endswith(" *")}
    assert marked == above
    assert "multiple of 256" in pane.footer.text() and sorted(above)[0] in pane.footer.text()


def test_stop_in_ab_leaves_no_unanswered_turn(qtbot, window, demo_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 3 (part): Stop while A answers leaves neither side with an unanswered "You:" turn or an
    "Assistant: …" placeholder, whether B had started or was still waiting."""
    pane = window.chat_pane
    window.go_to("chat")
    pane.compare_check.setChecked(True)
    window.state.add_outputs([demo_gguf])
    for combo in (pane.model_a, pane.model_b):
        combo.setCurrentIndex(combo.findData(str(demo_gguf)))
    pane.max_tokens.setValue(400)
    tasks = pane.load()
    with qtbot.waitSignals([t.finished for t in tasks], timeout=120000):
        pass
    assert pane.a.session is not None and pane.b.session is not None
    pane.input.setPlainText("Write a long story about a robot.")
    tasks = pane.send()
    with qtbot.waitSignal(tasks[0].streamed, timeout=120000):
        pass
    pane.stop()
    qtbot.waitUntil(lambda: not pane.busy(), timeout=120000)
    for side in (pane.a, pane.b):
        assert not side.turns or side.turns[-1][0] == "assistant", side.turns
        assert not side.view.toPlainText().rstrip().endswith("…")


def test_compare_without_both_models_loaded_says_so(qtbot, window, demo_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """Point 3 (part): Compare + Send with only A loaded asks to load B instead of answering with A alone."""
    pane = window.chat_pane
    window.go_to("chat")
    window.state.add_outputs([demo_gguf])
    pane.model_a.setCurrentIndex(pane.model_a.findData(str(demo_gguf)))
    tasks = pane.load()
    with qtbot.waitSignals([t.finished for t in tasks], timeout=120000):
        pass
    assert pane.a.session is not None
    pane.compare_check.setChecked(True)
    pane.input.setPlainText("Hello")
    assert pane.send() == []
    assert "Model B is not loaded" in pane.banner.text() and pane.a.turns == []
