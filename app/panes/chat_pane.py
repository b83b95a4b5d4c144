"""Chat: talk to a converted model (or two side by side for A/B), streaming, stop, regenerate, clear,
system prompt and sampling settings, tokens/s and memory.

Each loaded model lives in its own child process (``app/chat_process.py``); the chat runner's thread
waits on it and relays the streamed tokens. A crash in native code there (llama.cpp on a GPU) ends
that process only: the pane says so and the model can be loaded again."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)
from quantpress.app import settings
from quantpress.app.errors import show_error
from quantpress.app.icons import icon
from quantpress.app.state import AppState
from quantpress.app.tasks import Runner, Task
from quantpress.app.widgets.common import Pane, ask_yes_no, format_bytes
from quantpress.app.widgets.elide import ElidedLabel, ElidingComboBox

if TYPE_CHECKING:
    from quantpress.core.chat.types import ChatSettings

EMPTY_CONVERSATION = "The conversation appears here."
PLACEHOLDER = "Ask something, then press Ctrl+Return. Esc stops the answer."


def _load_job(path: Path, chat_settings: Any) -> Any:
    def job(*, report: Any, cancel: Any) -> Any:
        from quantpress.app.chat_process import ChatProcess

        session = ChatProcess.start(path, chat_settings, cancel=cancel)
        return session, session.memory(), session.uses_fallback_template

    return job


def _send_job(session: Any, text: str, rewind: bool, images: tuple[str, ...] = ()) -> Any:
    def job(*, report: Any, cancel: Any, stream: Any) -> Any:
        if rewind:
            session.rewind()
        if images:  # only a session that takes images is given any (_ask checks)
            return session.send(text, on_token=stream, cancel=cancel, images=images)
        return session.send(text, on_token=stream, cancel=cancel)

    return job


def _configure_job(session: Any, chat_settings: Any) -> Any:
    def job(*, report: Any, cancel: Any) -> Any:
        session.configure(chat_settings)
        return session.memory()

    return job


def _clear_job(session: Any) -> Any:
    def job(*, report: Any, cancel: Any) -> Any:
        session.clear()

    return job


def _close_job(sessions: list[Any]) -> Any:
    def job(*, report: Any, cancel: Any) -> Any:
        for s in sessions:
            s.close()

    return job


class ChatSide:
    """One model of the chat (A, or B in A/B mode): its session, transcript view and stats."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.session: Any = None
        self.path: Path | None = None
        self.turns: list[tuple[str, str]] = []  # (role, text) as shown
        self.streaming = ""
        self.memory_line = ""
        self.view = QTextBrowser()
        self.view.setOpenExternalLinks(True)
        self.view.setPlaceholderText(EMPTY_CONVERSATION)
        self.title = ElidedLabel(f"Model {name}: not loaded")  # a long file name is elided, whole in its tooltip
        self.title.setStyleSheet("font-weight: 600;")
        self.stats = QLabel("")
        self.stats.setWordWrap(True)
        self.widget = QWidget()
        layout = QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.stats)

    def render(self) -> None:
        parts = []
        for role, text in self.turns:
            who = "You" if role == "user" else "Assistant"
            parts.append(f"**{who}:**\n\n{text}\n")
        if self.streaming or (self.turns and self.turns[-1][0] == "user"):
            parts.append(f"**Assistant:**\n\n{self.streaming or '…'}\n")
        self.view.setMarkdown("\n\n---\n\n".join(parts))
        bar = self.view.verticalScrollBar()
        bar.setValue(bar.maximum())


class ChatPane(Pane):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(
            "Chat",
            "Check that a converted model still talks sensibly. Tick Compare to send the same prompt to two "
            "files (e.g. F16 and Q4_K_M) and see answers and speed side by side.",
            parent,
        )
        self.state = state
        self.a = ChatSide("A")
        self.b = ChatSide("B")
        self.tasks: dict[Task, ChatSide] = {}
        self.last_prompt = ""
        self.last_images: tuple[str, ...] = ()
        self.images: tuple[str, ...] = ()  # attached to the next message
        self._build()
        state.outputs_changed.connect(self.refresh_models)
        state.model_changed.connect(self._on_model)
        self.refresh_models()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        row = QHBoxLayout()
        # Both file lists share the row's free width and elide a long name in the middle (its format stays).
        self.model_a = ElidingComboBox(description="A converted model to chat with: a GGUF file or an AWQ folder")
        self.compare_check = QCheckBox("Compare with")
        self.compare_check.setToolTip("A/B: the same prompt to a second model; both stay loaded (memory for two)")
        self.model_b = ElidingComboBox(description="The second model of an A/B comparison")
        self.compare_check.toggled.connect(self._on_compare)
        browse = QPushButton(icon("file"), "GGUF…")
        browse.setToolTip("Chat with any GGUF file")
        browse.clicked.connect(self._browse)
        self.load_button = QPushButton(icon("play"), "Load")
        self.load_button.setToolTip("Load the chosen model(s) with the settings on the right")
        self.load_button.clicked.connect(self.load)
        for w in (QLabel("Model"), self.model_a, browse, self.compare_check, self.model_b, self.load_button):
            row.addWidget(w)
        self.body.addLayout(row)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(0, 0, 6, 0)
        self.views = QSplitter(Qt.Orientation.Horizontal)
        self.views.addWidget(self.a.widget)
        self.views.addWidget(self.b.widget)
        self.b.widget.hide()
        cl.addWidget(self.views, 1)
        self.input = QPlainTextEdit()
        self.input.setTabChangesFocus(True)  # Tab moves on (a tab character is no use in a prompt)
        self.input.setPlaceholderText(PLACEHOLDER)
        self.input.setMaximumHeight(90)
        cl.addWidget(self.input)
        buttons = QHBoxLayout()
        self.send_button = QPushButton(icon("send"), "Send")
        self.send_button.setToolTip("Send the message (Ctrl+Return)")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton(icon("stop"), "Stop")
        self.stop_button.setToolTip("Stop the answer now (Esc); what was written is kept")
        self.stop_button.clicked.connect(self.stop)
        self.regen_button = QPushButton(icon("refresh"), "Regenerate")
        self.regen_button.setToolTip("Forget the last answer and ask again")
        self.regen_button.clicked.connect(self.regenerate)
        self.clear_button = QPushButton(icon("clear"), "Clear")
        self.clear_button.setToolTip("Start a new conversation")
        self.clear_button.clicked.connect(self.clear)
        self.image_button = QPushButton(icon("file"), "Image…")
        self.image_button.clicked.connect(self._attach_image)
        self.image_label = QLabel("")
        for b in (self.send_button, self.stop_button, self.regen_button, self.clear_button, self.image_button):
            buttons.addWidget(b)
        buttons.addWidget(self.image_label)
        buttons.addStretch(1)
        cl.addLayout(buttons)
        splitter.addWidget(center)
        splitter.addWidget(self._settings_box())
        splitter.setSizes([720, 270])
        self.body.addWidget(splitter, 1)
        send_shortcut = QShortcut(QKeySequence("Ctrl+Return"), self.input)
        send_shortcut.activated.connect(self.send)
        stop_shortcut = QShortcut(QKeySequence("Escape"), self)
        stop_shortcut.activated.connect(self.stop)
        self._update_buttons()

    def _settings_box(self) -> QGroupBox:
        box = QGroupBox("Settings")
        outer = QVBoxLayout(box)
        form = QFormLayout()
        outer.addLayout(form)
        outer.addStretch(1)
        self.system_edit = QPlainTextEdit("You are a helpful assistant.")
        self.system_edit.setTabChangesFocus(True)
        self.system_edit.setMaximumHeight(70)
        self.system_edit.setToolTip("Instructions the model sees before the conversation")
        self.temperature = _dspin(0.0, 2.0, 0.7, 0.05, "Randomness: 0 always picks the most likely token")
        self.top_p = _dspin(0.05, 1.0, 0.9, 0.05, "Sample only from the most likely tokens covering this probability")
        self.top_k = _ispin(0, 200, 40, "Sample only from the k most likely tokens (0 = no limit)")
        self.repeat = _dspin(1.0, 2.0, 1.1, 0.05, "Penalty for repeating recent tokens")
        self.max_tokens = _ispin(1, 8192, 512, "Longest answer, in tokens")
        self.seed = _ispin(-1, 2**31 - 1, -1, "Fixed seed for reproducible answers")
        self.seed.setSpecialValueText("random")
        self.ctx = _ispin(256, 131072, 2048, "Context length: how much conversation is kept (needs memory)")
        self.kv = QComboBox()
        for k in ("f16", "q8_0", "q4_0"):
            self.kv.addItem(k, k)
        self.kv.setToolTip("KV cache type: q8_0 halves the cache memory (flash attention is turned on for it)")
        form.addRow("System prompt", self.system_edit)
        for label, w in (("Temperature", self.temperature), ("Top-p", self.top_p), ("Top-k", self.top_k),
                         ("Repeat penalty", self.repeat), ("Max tokens", self.max_tokens), ("Seed", self.seed),
                         ("Context", self.ctx), ("KV cache", self.kv)):
            form.addRow(label, w)
        apply = QPushButton("Apply to loaded model")
        apply.setToolTip("Sampling changes apply at once; context or KV cache changes reload the model")
        apply.clicked.connect(self.apply_settings)
        form.addRow(apply)
        return box

    # -- models ------------------------------------------------------------------------------------
    @Slot(object)
    def _on_model(self, _model: Any) -> None:
        self.refresh_models()

    @Slot()
    def refresh_models(self) -> None:
        for combo in (self.model_a, self.model_b):
            current = combo.currentData()
            combo.clear()
            for path in self.state.outputs:
                combo.addItem(path.name, str(path))
            if current and combo.findData(current) < 0:
                combo.addItem(Path(current).name, current)
            if current:
                combo.setCurrentIndex(combo.findData(current))
            elif combo.count():  # a first fill: the best-quality file, not the first name (Q2_K) alphabetically
                combo.setCurrentIndex(combo.findData(str(min(self.state.outputs, key=quality_order))))
        if self.model_b.count() > 1 and self.model_b.currentIndex() == self.model_a.currentIndex():
            self.model_b.setCurrentIndex(1)
        if self.model_a.count() == 0:
            self.banner.show_message("No converted model yet: convert the model first, or pick any GGUF with the button.",
                                     "info")
        else:
            self.banner.clear()
        self.load_button.setEnabled(self.model_a.count() > 0)
        self.model_b.setEnabled(self.compare_check.isChecked())

    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Chat with a GGUF", str(settings.get("last_file_dir")),
                                              "GGUF files (*.gguf)")
        if path:
            settings.put("last_file_dir", str(Path(path).parent))
            self.state.add_outputs([Path(path)])
            self.model_a.setCurrentIndex(self.model_a.findData(path))

    @Slot(bool)
    def _on_compare(self, on: bool) -> None:
        self.model_b.setEnabled(on)
        self.b.widget.setVisible(on)

    def chat_settings(self) -> ChatSettings:
        from quantpress.core.chat.types import ChatSettings, KVCacheType  # core.chat: gguf, numpy

        seed = self.seed.value()
        kv = KVCacheType(self.kv.currentData())
        return ChatSettings(system_prompt=self.system_edit.toPlainText().strip(), temperature=self.temperature.value(),
                     top_p=self.top_p.value(), top_k=self.top_k.value(), repeat_penalty=self.repeat.value(),
                     max_tokens=self.max_tokens.value(), seed=None if seed < 0 else seed, ctx_tokens=self.ctx.value(),
                     threads=int(settings.get("threads")) or None, kv_type_k=kv, kv_type_v=kv)

    def sides(self) -> list[ChatSide]:
        return [self.a, self.b] if self.compare_check.isChecked() else [self.a]

    def runner(self, side: ChatSide) -> Runner:
        """The runner of one side: A and B each have their own thread, so A/B answers stream at once."""
        return self.state.chat_b if side is self.b else self.state.chat

    def _targets(self) -> list[tuple[ChatSide, Path]]:
        """The sides Load would (re)load: those without their chosen file loaded. A side already running
        its chosen file keeps its process and its conversation (ticking Compare, then Load, adds B
        without wiping A)."""
        chosen = [(self.a, self.model_a.currentData())]
        if self.compare_check.isChecked():
            chosen.append((self.b, self.model_b.currentData()))
        return [(side, Path(data)) for side, data in chosen
                if data and (side.session is None or side.path != Path(data))]

    @Slot()
    def load(self, confirmed: bool = False) -> list[Task]:
        """Load the chosen model(s). Replacing a model that has a conversation asks first (the
        conversation goes with it); the question is a window-modal box whose Yes loads."""
        targets = self._targets()
        if not targets:
            self.banner.show_message("Already loaded: the chosen model(s) are ready.", "info")
            return []
        # Ask only when a working model's conversation would go (after a crash "press Load" just loads).
        losing = [side for side, _ in targets if side.turns and side.session is not None]
        if losing and not confirmed:
            self._confirm_load(losing)
            return []
        try:
            chat_settings = self.chat_settings()
        except Exception as exc:  # noqa: BLE001 - e.g. chat core missing
            show_error(self, exc, title="Cannot load the model")
            return []
        tasks = []
        for side, path in targets:
            self._unload_side(side)
            side.path = path
            side.turns.clear()
            side.streaming = ""
            side.render()
            side.title.setText(f"Model {side.name}: loading {side.path.name}…")
            task = self.runner(side).submit(f"load {side.path.name}", _load_job(side.path, chat_settings))
            self._track(task, side)
            task.succeeded.connect(self._on_loaded)
            tasks.append(task)
        kept = [s for s in self.sides() if s not in [t[0] for t in targets] and s.turns]
        if kept:  # a side that joins later has not seen the earlier turns: say so
            for side, _ in targets:
                side.view.setPlaceholderText(f"Model {side.name} joins here: it has not seen the conversation "
                                             f"with {kept[0].name} so far (Clear to start both afresh).")
        self._update_buttons()
        return tasks

    def _confirm_load(self, losing: list[ChatSide]) -> None:
        names = " and ".join(s.name for s in losing)
        ask_yes_no(self, "confirmLoad", "Start a new conversation?",
                   f"Loading another file for model {names} clears its conversation.", "Load and clear it?",
                   self._load_confirmed)

    @Slot()
    def _load_confirmed(self) -> None:
        self.load(confirmed=True)

    @Slot(object)
    def _on_loaded(self, value: Any) -> None:
        side = self.tasks.get(self.sender())  # type: ignore[call-overload]
        if side is None:
            return
        session, memory, fallback = value
        side.session = session
        note = " · plain chat template (the model has none)" if fallback else ""
        side.title.setText(f"Model {side.name}: {side.path.name if side.path else ''}{note}")
        side.memory_line = memory_text(memory)
        side.stats.setText(side.memory_line)
        self.banner.clear()  # a stale "Load a model first" no longer applies
        self._update_buttons()

    def image_problem(self) -> str:
        """Why no image can be attached now ("" when every loaded model takes images: a GGUF with an
        mmproj file beside it that llama.cpp loaded)."""
        sides = [s for s in self.sides() if s.session is not None]
        if not sides:
            return "load a model first"
        return "; ".join(f"model {s.name}: {s.session.image_problem}" for s in sides
                         if getattr(s.session, "image_problem", "this runtime takes no images"))

    @Slot()
    def _attach_image(self) -> None:
        if self.images:  # the button removes an attached image
            self.images = ()
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Attach an image", str(settings.get("last_file_dir")),
                                                  "Images (*.png *.jpg *.jpeg *.bmp *.gif)")
            if path:
                self.images = (path,)
        self._update_buttons()

    def _unload_side(self, side: ChatSide) -> None:
        session, side.session = side.session, None
        if session is not None:
            self.runner(side).submit("unload", _close_job([session]))

    def unload_sessions(self) -> None:
        for side in (self.a, self.b):
            self._unload_side(side)

    def unload(self) -> None:
        """Stop generation and free the models on their chat threads (window closing)."""
        self.stop()
        for side in (self.a, self.b):
            self.runner(side).cancel_all()
        for side in (self.a, self.b):
            if side.session is not None:
                self.runner(side).wait(10000)
                self._unload_side(side)
                self.runner(side).wait(10000)

    @Slot()
    def apply_settings(self) -> None:
        chat_settings = self.chat_settings()
        for side in self.sides():
            if side.session is not None:
                task = self.runner(side).submit("apply settings", _configure_job(side.session, chat_settings))
                self._track(task, side)
                task.succeeded.connect(self._on_memory)

    @Slot(object)
    def _on_memory(self, memory: Any) -> None:
        side = self.tasks.get(self.sender())  # type: ignore[call-overload]
        if side is not None:
            side.memory_line = memory_text(memory)
            side.stats.setText(side.memory_line)

    # -- talking -----------------------------------------------------------------------------------
    @Slot()
    def send(self) -> list[Task]:
        text = self.input.toPlainText().strip()
        if not text:
            return []
        tasks = self._ask(text, rewind=False, images=self.images)
        if tasks:
            self.input.clear()
            self.images = ()
            self._update_buttons()
        return tasks

    @Slot()
    def regenerate(self) -> list[Task]:
        if not self.last_prompt:
            return []
        for side in self.sides():
            if len(side.turns) >= 2 and side.turns[-1][0] == "assistant":
                side.turns = side.turns[:-2]
        return self._ask(self.last_prompt, rewind=True, images=self.last_images)

    def _ask(self, text: str, rewind: bool, images: tuple[str, ...] = ()) -> list[Task]:
        sides = [s for s in self.sides() if s.session is not None]
        if not sides:
            self.banner.show_message("Load a model first (pick a file above and press Load).", "info")
            return []
        if len(sides) < len(self.sides()):  # Compare is on: answering with A alone is not a comparison
            missing = ", ".join(s.name for s in self.sides() if s.session is None)
            self.banner.show_message(f"Model {missing} is not loaded: press Load to compare both "
                                     "(or untick Compare).", "info")
            return []
        if self.busy():
            return []
        if images and self.image_problem():
            self.banner.show_message(f"Images cannot be sent: {self.image_problem()}.", "info")
            return []
        self.last_prompt, self.last_images = text, images
        shown = "".join(f"[image: {Path(p).name}]\n\n" for p in images) + text
        tasks = []
        for side in sides:
            side.turns.append(("user", shown))
            side.streaming = ""
            side.render()
            task = self.runner(side).submit(f"chat {side.name}", _send_job(side.session, text, rewind, images),
                                            streaming=True)
            self._track(task, side)
            task.streamed.connect(self._on_stream)
            task.succeeded.connect(self._on_reply)
            tasks.append(task)
        self._update_buttons()
        return tasks

    @Slot(str)
    def _on_stream(self, text: str) -> None:
        side = self.tasks.get(self.sender())  # type: ignore[call-overload]
        if side is not None:
            side.streaming += text
            side.render()

    @Slot(object)
    def _on_reply(self, reply: Any) -> None:
        side = self.tasks.get(self.sender())  # type: ignore[call-overload]
        if side is None:
            return
        side.turns.append(("assistant", reply.text))
        side.streaming = ""
        side.render()
        self.banner.clear()  # a stale "Load a model first" no longer applies
        side.stats.setText(reply_text(reply) + ("\n" + side.memory_line if side.memory_line else ""))

    @Slot()
    def stop(self) -> None:
        for side in (self.a, self.b):
            if side.session is not None:
                side.session.stop()  # thread-safe by contract
        for task in list(self.tasks):
            if task.name.startswith("chat"):
                task.cancel()

    @Slot()
    def clear(self) -> None:
        self.stop()
        for side in (self.a, self.b):
            side.turns.clear()
            side.streaming = ""
            side.view.setPlaceholderText(EMPTY_CONVERSATION)
            side.render()
            if side.session is not None:
                self._track(self.runner(side).submit("clear chat", _clear_job(side.session)), side)
        self.last_prompt = ""

    def busy(self) -> bool:
        return any(t.name.startswith(("chat", "load")) for t in self.tasks)

    # -- task bookkeeping --------------------------------------------------------------------------
    def _track(self, task: Task, side: ChatSide) -> None:
        self.tasks[task] = side
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        task.finished.connect(self._on_finished)

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        task = self.sender()
        side = self.tasks.get(task)  # type: ignore[call-overload]
        if side is not None and side.streaming:
            side.turns.append(("assistant", side.streaming))
            side.streaming = ""
            side.render()
        if side is not None and side.session is not None and not getattr(side.session, "alive", True):
            self._lost(side)
        if side is not None and isinstance(task, Task) and task.name.startswith("load"):
            self._load_failed(side)
        show_error(self, exc, title="Chat", details=task.error_details if isinstance(task, Task) else "")

    def _load_failed(self, side: ChatSide) -> None:
        """A file that cannot be loaded: the title says so (not "loading…" forever) and the file leaves the
        Chat and Evaluate lists, so it is not picked again by accident (Browse can still add it back)."""
        broken, side.path = side.path, None
        side.title.setText(f"Model {side.name}: not loaded ({broken.name if broken else 'the file'} failed to load)")
        if broken is not None:
            for combo in (self.model_a, self.model_b):  # refresh_models keeps a combo's current file
                index = combo.findData(str(broken))
                if index >= 0:
                    combo.removeItem(index)
            self.state.remove_outputs([broken])
            self.refresh_models()

    def _lost(self, side: ChatSide) -> None:
        """The side's model process died: forget it (it cannot answer again) and say what to do."""
        session, side.session = side.session, None
        if session is not None:
            session.close()  # reaps the dead process; returns at once
        name = side.path.name if side.path else ""
        side.title.setText(f"Model {side.name}: {name} stopped (its process crashed). Press Load to chat again.")
        side.memory_line = ""
        side.stats.setText("")
        self.banner.show_message(f"The chat with {name} stopped: its process crashed. The window is fine; "
                                 "press Load to start a new chat.", "warn")

    @Slot()
    def _on_cancelled(self) -> None:
        side = self.tasks.get(self.sender())  # type: ignore[call-overload]
        if side is not None and side.streaming:
            side.turns.append(("assistant", side.streaming + " *(stopped)*"))
            side.streaming = ""
            side.render()
        elif side is not None and side.turns and side.turns[-1][0] == "user":
            side.turns.pop()  # stopped before it began: no unanswered "You:" and no "Assistant: …" forever
            side.render()

    @Slot()
    def _on_finished(self) -> None:
        self.tasks.pop(self.sender(), None)  # type: ignore[call-overload]
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.busy()
        self.send_button.setEnabled(not busy)
        self.regen_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        problem = self.image_problem()
        self.image_button.setEnabled(not busy and (not problem or bool(self.images)))
        self.image_button.setText("Remove image" if self.images else "Image…")
        self.image_button.setToolTip(
            "Attach an image to the next message (the model's mmproj vision projector file sits beside it)"
            if not problem else f"No images: {problem}")
        self.image_label.setText(", ".join(Path(p).name for p in self.images))


def quality_order(path: Path) -> tuple[int, str]:
    """Sort key of a model file by its format's quality (quantpress names outputs ``<model>-<FORMAT>.gguf``);
    files of unknown format come after every known one."""
    from quantpress.core.formats import FORMATS

    fmt = FORMATS.get(path.stem.rsplit("-", 1)[-1].upper())
    return (fmt.quality_rank if fmt else len(FORMATS) + 1, path.name)


def memory_text(memory: Any) -> str:
    """The loaded model's memory, and where its weights went (the estimator's placement for this file
    and machine, e.g. "GPU + experts of the first 3 of 48 layers in RAM", or "CPU (...)")."""
    text = (f"Memory: model {format_bytes(memory.model_bytes)} + KV cache {format_bytes(memory.kv_cache_bytes)}"
            f" (measured RSS growth {format_bytes(memory.rss_delta_bytes)})")
    return f"Runs on: {memory.placement}\n{text}" if getattr(memory, "placement", "") else text


def reply_text(reply: Any) -> str:
    s = reply.stats
    gen = s.generation_tokens_per_second
    pp = s.prompt_tokens_per_second
    parts = [f"{reply.tokens} tokens"]
    if gen:
        parts.append(f"{gen:.1f} tokens/s")
    if pp:
        parts.append(f"prompt {pp:.0f} tokens/s")
    if s.finish_reason != "stop":
        parts.append({"length": "hit the length limit", "cancelled": "stopped"}.get(s.finish_reason, s.finish_reason))
    if s.dropped_turns:
        parts.append(f"{s.dropped_turns} old turn(s) dropped to fit")
    return html.escape(" · ".join(parts))


def _dspin(lo: float, hi: float, value: float, step: float, tip: str) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _ispin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w
