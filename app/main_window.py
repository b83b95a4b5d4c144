"""The main window: a sidebar with the flow Model -> Fit -> Convert -> Evaluate -> Chat, the panes,
and a status bar with hardware (RAM, GPU, VRAM) and running jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QWidget,
)
from quantpress.app import settings
from quantpress.app.icons import icon
from quantpress.app.panes.chat_pane import ChatPane
from quantpress.app.panes.convert_pane import ConvertPane
from quantpress.app.panes.evaluate_pane import EvaluatePane
from quantpress.app.panes.fit_pane import FitPane
from quantpress.app.panes.model_pane import ModelPane
from quantpress.app.state import AppState
from quantpress.app.theme import apply_theme
from quantpress.app.widgets.common import ask_yes_no, format_bytes
from quantpress.core.hardware import detect_hardware

if TYPE_CHECKING:
    from quantpress.app.best_fit_jobs import BestFitRequest

FLOW = (  # (key, label, icon, tooltip)
    ("model", "Model", "model", "Pick a model: a folder, a GGUF file, a Hub repo id or the demo model"),
    ("fit", "Fit", "fit", "Which format fits your GPU and RAM, and how much quality each keeps"),
    ("convert", "Convert", "convert", "Write GGUF files, one job after another"),
    ("evaluate", "Evaluate", "evaluate", "Measure what each format lost: KL-divergence and perplexity"),
    ("chat", "Chat", "chat", "Talk to a converted model, or compare two side by side"),
)


class MainWindow(QMainWindow):
    """The app window. Owns the AppState (and through it the two runners)."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("quantpress")
        self.setObjectName("mainWindow")
        self.resize(1180, 760)
        self.setMinimumSize(QSize(900, 600))
        self.state = AppState(self)
        self._closing = False
        self._build()
        self._build_actions()
        self._build_status()
        self.state.heavy.changed.connect(self._update_jobs)
        self.state.chat.changed.connect(self._update_jobs)
        self.state.chat_b.changed.connect(self._update_jobs)
        self.state.model_changed.connect(self._on_model_changed)
        QTimer.singleShot(0, self._detect_hardware)

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(168)
        self.sidebar.setIconSize(QSize(22, 22))
        self.sidebar.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # reachable by Tab; arrows change page
        self.stack = QStackedWidget()
        self.model_pane = ModelPane(self.state)
        self.fit_pane = FitPane(self.state)
        self.convert_pane = ConvertPane(self.state)
        self.evaluate_pane = EvaluatePane(self.state)
        self.chat_pane = ChatPane(self.state)
        self.panes = {
            "model": self.model_pane, "fit": self.fit_pane, "convert": self.convert_pane,
            "evaluate": self.evaluate_pane, "chat": self.chat_pane,
        }
        for i, (key, label, icon_name, tip) in enumerate(FLOW):
            item = QListWidgetItem(icon(icon_name), f"{label}")
            item.setToolTip(f"{tip}  (Ctrl+{i + 1})")
            item.setSizeHint(QSize(150, 42))
            self.sidebar.addItem(item)
            self.stack.addWidget(self.panes[key])
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(0)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.model_pane.continue_requested.connect(self.go_fit)
        self.fit_pane.best_fit_requested.connect(self.queue_best_fit)

    def _build_actions(self) -> None:
        """Every action lives in the menu bar (File, View, Help), so each shortcut can be found there."""
        menus = self.menuBar()
        file_menu, view_menu, help_menu = menus.addMenu("&File"), menus.addMenu("&View"), menus.addMenu("&Help")
        self.menus = [file_menu, view_menu, help_menu]
        open_action = QAction("Open model…", self)
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.model_pane.browse_folder)
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))  # StandardKey.Quit is empty on some Linux platforms
        quit_action.triggered.connect(self.close)
        file_menu.addActions([open_action, quit_action])
        for i, (_key, label, _icon, _tip) in enumerate(FLOW):
            action = QAction(f"Go to {label}", self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.setData(i)
            action.triggered.connect(self._go_to_action)
            view_menu.addAction(action)
        view_menu.addSeparator()
        self.theme_action = QAction("Toggle light/dark theme", self)
        self.theme_action.setShortcut(QKeySequence("Ctrl+Shift+T"))
        self.theme_action.triggered.connect(self.toggle_theme)
        view_menu.addAction(self.theme_action)
        shortcuts_action = QAction("Keyboard shortcuts", self)
        shortcuts_action.setShortcut(QKeySequence.StandardKey.HelpContents)
        shortcuts_action.triggered.connect(self.show_shortcuts)
        about_action = QAction("About quantpress", self)
        about_action.triggered.connect(self.show_about)
        help_menu.addActions([shortcuts_action, about_action])

    def shortcuts_text(self) -> str:
        """Every menu action with a shortcut, as the menus list them (plus the Convert pane's own)."""
        lines = []
        for menu in self.menus:
            for action in menu.actions():
                if not action.shortcut().isEmpty():
                    key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
                    lines.append(f"{key}\t{action.text()}")
        lines.append("Ctrl+Return\tAdd the ticked formats to the queue (Convert)")
        return "\n".join(lines)

    @Slot()
    def show_shortcuts(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", self.shortcuts_text(),
                          QMessageBox.StandardButton.Close, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # not exec(): the window keeps running its jobs
        return box

    @Slot()
    def show_about(self) -> QMessageBox:
        from quantpress import __version__

        box = QMessageBox(QMessageBox.Icon.Information, "About quantpress",
                          f"quantpress {__version__}\n\nQuantize a local language model to GGUF or AWQ, see what fits "
                          "your hardware, measure what each format loses, and chat with the result.",
                          QMessageBox.StandardButton.Close, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def _build_status(self) -> None:
        bar = self.statusBar()
        self.hardware_label = QLabel("Detecting hardware…")
        self.memory_label = QLabel("")
        self.jobs_label = QLabel("No jobs running")
        for label in (self.hardware_label, self.memory_label, self.jobs_label):
            label.setContentsMargins(8, 0, 8, 0)
        bar.addWidget(self.hardware_label)
        bar.addPermanentWidget(self.memory_label)
        bar.addPermanentWidget(self.jobs_label)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(3000)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start()
        QTimer.singleShot(0, self._update_memory)  # after the first paint: psutil's import is not free

    # -- navigation --------------------------------------------------------------------------------
    def go_to(self, key: str) -> None:
        self.sidebar.setCurrentRow([k for k, *_ in FLOW].index(key))

    @Slot()
    def go_fit(self) -> None:
        self.go_to("fit")

    @Slot(object)
    def queue_best_fit(self, request: BestFitRequest) -> None:
        """Fit's "Best quality that fits" goes straight into the Convert queue, shown there."""
        self.convert_pane.enqueue_best_fit(request)
        self.go_to("convert")

    @Slot()
    def _go_to_action(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.sidebar.setCurrentRow(int(action.data()))

    def open_source(self, source: str) -> None:
        """Open a model given on the command line: a path, a Hub repo id, or 'demo'."""
        from quantpress.core.inspect import is_demo_alias

        if is_demo_alias(source):
            self.model_pane.use_demo()
        else:
            self.model_pane.open_source(source)

    @Slot()
    def toggle_theme(self) -> None:
        current = str(settings.get("theme"))
        new = "light" if current == "dark" else "dark"
        settings.put("theme", new)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, new)
        for i, (_k, _l, icon_name, _t) in enumerate(FLOW):
            self.sidebar.item(i).setIcon(icon(icon_name))
        self.fit_pane.restyle()
        for pane in self.panes.values():
            pane.update()

    # -- status bar --------------------------------------------------------------------------------
    def _detect_hardware(self) -> None:
        task = self.state.quick_runner().submit("detect hardware", _call_plain(detect_hardware), background=True)
        task.succeeded.connect(self._on_hardware)
        task.failed.connect(self._on_hardware_failed)

    @Slot(object)
    def _on_hardware(self, hardware: Any) -> None:
        self.state.set_hardware(hardware)
        self.hardware_label.setText(hardware_summary(hardware))
        self.hardware_label.setToolTip(hardware_tooltip(hardware))

    @Slot(object)
    def _on_hardware_failed(self, exc: BaseException) -> None:
        self.hardware_label.setText("Hardware detection failed")
        self.hardware_label.setToolTip(str(exc))

    @Slot()
    def _update_memory(self) -> None:
        try:
            import psutil

            vm = psutil.virtual_memory()
            rss = psutil.Process().memory_info().rss
        except Exception:  # noqa: BLE001 - the status bar must never break the window
            return
        self.memory_label.setText(
            f"RAM free {format_bytes(vm.available)} of {format_bytes(vm.total)} · app {format_bytes(rss)}"
        )

    @Slot()
    def _update_jobs(self) -> None:
        parts = []
        for runner, label in ((self.state.heavy, "job"), (self.state.chat, "chat"), (self.state.chat_b, "chat")):
            active = runner.user_tasks()
            running = runner.running()
            if running is not None and running.background:
                running = None
            if running is not None:
                parts.append(f"{running.name}")
            queued = len(active) - (1 if running is not None else 0)
            if queued > 0:
                parts.append(f"{queued} {label}{'s' if queued > 1 else ''} queued")
        self.jobs_label.setText("Running: " + ", ".join(parts) if parts else "No jobs running")

    @Slot(object)
    def _on_model_changed(self, model: Any) -> None:
        name = getattr(model, "name", "") or getattr(model, "source", "")
        self.setWindowTitle(f"quantpress — {name}" if name else "quantpress")

    # -- closing -----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(any(r.user_tasks() for r in self.state.runners()) or self.convert_pane.queue.active())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt name
        if self._closing or not self.busy():
            self.shutdown()
            event.accept()
            return
        event.ignore()
        n = len({t for r in self.state.runners() for t in r.user_tasks()}) + sum(
            1 for j in self.convert_pane.queue.active() if j.task is None)
        box = ask_yes_no(self, "confirmClose", "Jobs are running",
                         f"{n} job(s) are still running or queued. Cancel them and quit?",
                         "Cancelled conversions leave no partial files behind.", self._confirmed_close)
        box.accepted.connect(self._confirmed_close)

    @Slot()
    def quit_now(self) -> None:
        """Close without asking: cancel every job, wait for them to stop, then close (a signal, app/main.py)."""
        self._confirmed_close()
        self._close_when_idle()

    @Slot()
    def noop(self) -> None:
        """A slot for the timer that lets Python's signal handlers run (app/main.py)."""

    @Slot()
    def _confirmed_close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.statusBar().showMessage("Cancelling jobs…")
        self.convert_pane.queue.cancel_all()  # queued conversions must not start while we wait
        for runner in self.state.runners():
            runner.cancel_all()
        self._close_timer = QTimer(self)
        self._close_timer.setInterval(50)
        self._close_timer.timeout.connect(self._close_when_idle)
        self._close_timer.start()

    @Slot()
    def _close_when_idle(self) -> None:
        # Cancelled jobs stop at their next check (between or within tensors); the GUI stays live meanwhile.
        if not self.busy():
            self._close_timer.stop()
            self.close()

    def shutdown(self) -> None:
        """Cancel every job, free the chat models, stop the runner threads (idempotent)."""
        self._memory_timer.stop()
        self.convert_pane.queue.cancel_all()
        self.chat_pane.unload()
        self.state.shutdown()
        from quantpress.app.isolated import shutdown_helper

        shutdown_helper()


def _call_plain(fn: Any) -> Any:
    """Adapt a no-argument core function to the runner's ``fn(report=, cancel=)`` call."""

    def call(*, report: Any, cancel: Any) -> Any:
        return fn()

    return call


def hardware_summary(hw: Any) -> str:
    gpus = getattr(hw, "gpus", ()) or ()
    ram = f"RAM {format_bytes(getattr(hw, 'ram_total_bytes', 0))}"
    cores = f"{getattr(hw, 'cpu_cores', '?')} cores"
    if not gpus:
        return f"{ram} · {cores} · no GPU (CPU only)"
    gpu = gpus[0]
    more = f" +{len(gpus) - 1}" if len(gpus) > 1 else ""
    return (f"{ram} · {gpu.name}{more}: VRAM {format_bytes(gpu.vram_free_bytes)} free of "
            f"{format_bytes(gpu.vram_total_bytes)}")


def hardware_tooltip(hw: Any) -> str:
    lines = [
        f"RAM: {format_bytes(hw.ram_available_bytes)} available of {format_bytes(hw.ram_total_bytes)}",
        f"CPU cores: {hw.cpu_cores}",
    ]
    flags = getattr(hw, "cpu_flags", ())
    if flags:
        lines.append("CPU features: " + ", ".join(sorted(flags)[:12]))
    for gpu in getattr(hw, "gpus", ()) or ():
        lines.append(f"GPU: {gpu.name} ({gpu.backend}), VRAM {format_bytes(gpu.vram_total_bytes)}")
    if getattr(hw, "unified_memory", False):
        lines.append("Unified memory (GPU shares RAM)")
    return "\n".join(lines)
