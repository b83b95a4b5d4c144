"""Fit: the estimator as a table (one row per format) with fit badges and quality hints, controls for
context, KV cache type and batch, a "what if" hardware override, and a memory bar chart."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)
from quantpress.app import settings
from quantpress.app.convert_jobs import estimate_job, gpu_probe_job
from quantpress.app.errors import show_error
from quantpress.app.format_tips import tip
from quantpress.app.panes.model_pane import human_count
from quantpress.app.state import AppState
from quantpress.app.tasks import Task
from quantpress.app.theme import colors
from quantpress.app.widgets.charts import Bar, Line, MemoryBarChart
from quantpress.app.widgets.common import Pane, format_bytes, hint
from quantpress.core.formats import FORMATS

GIB = 1024 ** 3
# "Quality" is the published figure (its header's tooltip and the footer say whose); the longer
# "Quality (published)" did not fit its column at 1024x640.
COLUMNS = ("Format", "Bits/weight", "File size", "Weights", "KV cache", "Total", "Fit", "Quality")
FIT_TEXT = {  # fit code -> (badge text, colour attribute of theme.Colors, tooltip)
    "gpu": ("Fully on GPU", "good", "All layers and the KV cache fit in free VRAM: fastest."),
    "partial": ("Partial: {n} of {m} layers", "warn", "Some layers run on the GPU, the rest on the CPU from RAM."),
    "cpu": ("CPU only", "neutral", "Runs from RAM on the CPU (no GPU, or not even one layer fits in VRAM)."),
    "no": ("Won't fit", "bad", "Needs more memory than the RAM (and VRAM) available."),
}
# A GGUF row this much above its format's nominal bits/weight gets the fallback note.
FALLBACK_RATIO = 1.15
# What a format needs, said in the Fit cell itself (not only in a tooltip), keyed by (kind, fit).
RUNTIME_TEXT = {
    ("awq", "cpu"): ("Runs on CPU with quantpress", "neutral",
                     "vLLM and transformers need a CUDA GPU for AWQ; quantpress's own backend runs it from RAM "
                     "on the CPU (slower than a GGUF of the same size)."),
}
NEEDS_GPU_TEXT = ("Needs a CUDA GPU for vLLM", "neutral",
                  "This format runs in vLLM / transformers on a CUDA GPU; none is detected (or set in What if).")


def format_explanation(name: str) -> str:
    fmt = FORMATS.get(name)
    return fmt.explanation if fmt else ""


class FitPane(Pane):
    """Signals:
    estimated(object): a new estimate (MemoryEstimate) is on screen.
    best_fit_requested(object): "Best quality that fits" was pressed (an app.best_fit_jobs.BestFitRequest
        for the current model, hardware, context and KV type); the main window queues it in Convert.
    """

    estimated = Signal(object)
    best_fit_requested = Signal(object)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(
            "Fit",
            "How much memory each format needs at your context length, and whether it runs fully on the "
            "GPU, partly, or on the CPU. File sizes are exact; runtime memory is an estimate.",
            parent,
        )
        self.state = state
        self.result: Any = None
        self._task: Task | None = None
        self._task_hardware: Any = None
        self._probe: Task | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(150)
        self._debounce.timeout.connect(self.refresh)
        self._build()
        state.model_changed.connect(self._schedule)
        state.hardware_changed.connect(self._on_hardware)
        self._show_empty()

    def _build(self) -> None:
        row = QHBoxLayout()
        self.ctx_spin = QSpinBox()
        self.ctx_spin.setRange(256, 1_048_576)
        self.ctx_spin.setSingleStep(1024)
        self.ctx_spin.setValue(int(settings.get("context_tokens")))
        self.ctx_spin.setSuffix(" tokens")
        self.ctx_spin.setToolTip("How many tokens of conversation the model keeps in memory (the KV cache grows with it)")
        self.kv_combo = QComboBox()
        for kv, label in (("f16", "f16 (default)"), ("q8_0", "q8_0 (half)"), ("q4_0", "q4_0 (quarter)")):
            self.kv_combo.addItem(label, kv)
        self.kv_combo.setCurrentIndex(max(0, self.kv_combo.findData(str(settings.get("kv_type")))))
        self.kv_combo.setToolTip("KV cache precision: q8_0 halves the cache memory for a small quality cost")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 8192)
        self.batch_spin.setValue(512)
        self.batch_spin.setToolTip("Prompt batch size: larger batches need a larger compute buffer")
        for label, w in (("Context", self.ctx_spin), ("KV cache", self.kv_combo), ("Batch", self.batch_spin)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
            row.addSpacing(8)
        row.addStretch(1)
        self.whatif_check = QCheckBox("What if I had")
        self.whatif_check.setToolTip("Plan for other hardware: override the detected VRAM and RAM")
        self.vram_spin = QDoubleSpinBox()
        self.vram_spin.setRange(0, 1024)
        self.vram_spin.setDecimals(1)
        self.vram_spin.setValue(0.0)  # set from the detected GPU; 0 = none
        self.vram_spin.setSuffix(" GiB VRAM")
        self.ram_spin = QDoubleSpinBox()
        self.ram_spin.setRange(1, 4096)
        self.ram_spin.setDecimals(1)
        self.ram_spin.setValue(32.0)
        self.ram_spin.setSuffix(" GiB RAM")
        self.vram_spin.setSpecialValueText("no GPU")  # 0 GiB: plan for a machine without one
        for override in (self.vram_spin, self.ram_spin):  # they only count while the box is ticked
            override.setEnabled(False)
            self.whatif_check.toggled.connect(override.setEnabled)
        self.measure_button = QPushButton("Measure my GPU")
        self.measure_button.setToolTip(
            "Load the demo model with every layer on this NVIDIA GPU and measure llama.cpp's runtime overhead "
            "(CUDA context, libraries, memory pools). Once per GPU, driver and llama.cpp version; every VRAM "
            "figure then uses the measured value instead of a conservative default.")
        self.measure_button.setEnabled(False)
        self.measure_button.clicked.connect(self.measure_gpu)
        self.body.addLayout(row)
        best_row = QHBoxLayout()  # a second row: one row clipped the boxes to "24.0 GiB VRAI" at 1024 px
        self.best_fit_button = QPushButton("Best quality that fits")
        self.best_fit_button.setToolTip(
            "Let quantpress choose every tensor's type: the most accurate GGUF whose estimated memory at this "
            "context and KV cache fits the GPU (or, without one, the RAM). It measures each tensor's error "
            "under each type first (about as long as a conversion), then converts; see the Convert queue.")
        self.best_fit_button.setEnabled(False)
        self.best_fit_button.clicked.connect(self.request_best_fit)
        best_row.addWidget(self.best_fit_button)
        best_row.addStretch(1)
        for widget in (self.whatif_check, self.vram_spin, self.ram_spin, self.measure_button):
            best_row.addWidget(widget)
        self.body.addLayout(best_row)
        for spin in (self.ctx_spin, self.batch_spin, self.vram_spin, self.ram_spin):
            spin.valueChanged.connect(self._schedule)
        self.kv_combo.currentIndexChanged.connect(self._schedule)
        self.whatif_check.toggled.connect(self._schedule)

        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)
        self.gpu_note = hint("")
        self.body.addWidget(self.gpu_note)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setTabKeyNavigation(False)  # Tab leaves the table; arrow keys move between cells
        self.table.setWordWrap(False)  # one line per format; the full quality note is in the tooltip
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        for i, tip_text in enumerate((
            "Format name; hover a row for a one-sentence explanation",
            "Average bits per weight in the file",
            "Exact size of the GGUF file quantpress writes",
            "Weights in memory at run time",
            "Key/value cache at the chosen context and KV type",
            "Weights + KV cache + compute buffer + runtime overhead",
            "Where it runs with the detected (or what-if) hardware",
            "Published KL-divergence for Llama-3-8B (llama.cpp); your model will differ: measure it in Evaluate",
        )):
            self.table.horizontalHeaderItem(i).setToolTip(tip_text)
        self.chart = MemoryBarChart()
        splitter.addWidget(self.table)
        splitter.addWidget(self.chart)
        splitter.setSizes([330, 250])
        self.body.addWidget(splitter, 1)
        self.footer = hint("")
        self.body.addWidget(self.footer)

    # -- data --------------------------------------------------------------------------------------
    def _schedule(self, *_: Any) -> None:  # plain method: connected to signals of any signature
        self._debounce.start()

    @Slot()
    def request_best_fit(self) -> Any:
        """Emit best_fit_requested for the current model and controls; returns the request (or None)."""
        from quantpress.app.best_fit_jobs import BestFitRequest

        model, hardware = self.state.model, self.hardware()
        if model is None or hardware is None:
            return None
        device = "gpu" if getattr(hardware, "gpus", ()) else "ram"
        request = BestFitRequest(model, hardware, device, self.ctx_spin.value(), str(self.kv_combo.currentData()))
        self.best_fit_requested.emit(request)
        return request

    def _update_best_fit_button(self) -> None:
        model = self.state.model
        self.best_fit_button.setEnabled(model is not None and bool(getattr(model, "convertible", True))
                                        and self.state.hardware is not None)

    @Slot(object)
    def _on_hardware(self, hw: Any) -> None:
        gpus = getattr(hw, "gpus", ()) or ()
        # The what-if fields start from this machine: no made-up 24 GiB GPU on a machine without one.
        self.vram_spin.setValue(round(gpus[0].vram_total_bytes / GIB, 1) if gpus else 0.0)
        self.ram_spin.setValue(round(hw.ram_total_bytes / GIB, 1))
        measurable = any(g.backend == "cuda" for g in gpus)
        self.measure_button.setEnabled(measurable and self._probe is None)
        if not measurable:
            self.measure_button.setToolTip("Measuring needs an NVIDIA GPU (read through NVML); other GPUs use "
                                           "a conservative default.")
        self.gpu_note.setText(gpu_overhead_text(gpus))
        self._schedule()

    @Slot()
    def measure_gpu(self) -> Task | None:
        """Run the GPU probe on the heavy runner (in a child process); the new hardware re-estimates."""
        if self._probe is not None or self.state.heavy.closed:
            return None
        task = self.state.heavy.submit("measure GPU", gpu_probe_job)
        self._probe = task
        self.measure_button.setEnabled(False)
        self.gpu_note.setText("Measuring the GPU: loading the demo model with every layer on it…")
        task.succeeded.connect(self._on_measured)
        task.failed.connect(self._on_probe_failed)
        task.finished.connect(self._on_probe_finished)
        return task

    @Slot(object)
    def _on_measured(self, value: Any) -> None:
        result, hardware = value
        self.banner.show_message(
            f"Measured {result.gpu_name}: llama.cpp's runtime overhead is {format_bytes(result.overhead_bytes)} "
            f"(NVML saw {format_bytes(result.measured_bytes)} in use for {format_bytes(result.buffers_bytes)} of "
            "buffers). VRAM figures now use it.", "info")
        self.state.set_hardware(hardware)

    @Slot(object)
    def _on_probe_failed(self, exc: BaseException) -> None:
        task = self.sender()
        self.gpu_note.setText(gpu_overhead_text(getattr(self.state.hardware, "gpus", ()) or ()))
        show_error(self, exc, title="Cannot measure the GPU",
                   details=task.error_details if isinstance(task, Task) else "")

    @Slot()
    def _on_probe_finished(self) -> None:
        self._probe = None
        gpus = getattr(self.state.hardware, "gpus", ()) or ()
        self.measure_button.setEnabled(any(g.backend == "cuda" for g in gpus))

    def hardware(self) -> Any:
        hw = self.state.hardware
        if hw is None or not self.whatif_check.isChecked():
            return hw
        return hw.with_overrides(vram_gib=self.vram_spin.value(), ram_gib=self.ram_spin.value())

    @Slot()
    def refresh(self) -> Task | None:
        """Re-estimate with the current controls (on a runner); returns the task, or None."""
        model = self.state.model
        if self.state.heavy.closed:  # the window is closing
            return None
        if model is None:
            self._show_empty()
            return None
        if not self.beyond_training(self.ctx_spin.value()):  # a typo like 1,048,576 is not remembered
            settings.put("context_tokens", self.ctx_spin.value())
        settings.put("kv_type", self.kv_combo.currentData())
        self._update_best_fit_button()
        hardware = self.hardware()
        if hardware is None:
            self.summary.setText("Waiting for hardware detection…")
            return None
        if self._task is not None:
            self._task.cancel()  # a newer request supersedes it
        task = self.state.quick_runner().submit("estimate", background=True, fn=estimate_job(
            model, hardware, self.ctx_spin.value(), self.batch_spin.value(), str(self.kv_combo.currentData())))
        self._task = task
        self._task_hardware = hardware
        task.succeeded.connect(self._on_estimate)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_finished)
        self.summary.setText("Estimating…")
        if not self.chart.bars:
            self.chart.empty_text = "Estimating…"
            self.chart.update()
        return task

    def beyond_training(self, ctx_tokens: int) -> int | None:
        """The model's trained context when ``ctx_tokens`` exceeds it, else None."""
        trained = int(getattr(self.state.model, "context_length", 0) or 0)
        return trained if trained and ctx_tokens > trained else None

    @Slot(object)
    def _on_estimate(self, result: Any) -> None:
        if self.sender() is self._task:
            self.banner.clear()
            self.show_result(result, self._task_hardware)
            self.estimated.emit(result)

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        task = self.sender()
        if task is not self._task:
            return
        self.summary.setText("The estimate failed (see the message).")
        show_error(self, exc, title="Cannot estimate this model",
                   details=task.error_details if isinstance(task, Task) else "")

    @Slot()
    def _on_finished(self) -> None:
        if self.sender() is self._task:
            self._task = None

    def restyle(self) -> None:
        """Redraw the last estimate in the current theme's colours (after a theme change)."""
        if self.result is not None and self._task_hardware is not None:
            self.show_result(self.result, self._task_hardware)
        self.chart.update()

    def _show_empty(self) -> None:
        self.best_fit_button.setEnabled(False)
        self.table.setRowCount(0)
        self.chart.set_data([], [])
        self.summary.setText("Open a model on the Model page (Ctrl+1) to see which formats fit.")

    def show_result(self, result: Any, hardware: Any) -> None:
        self.result = result
        rows = list(getattr(result, "formats", result))
        recommended = recommended_format(result)
        self.table.setRowCount(len(rows))
        c = colors()
        bars: list[Bar] = []
        fallbacks: list[str] = []  # formats far above their nominal size on this model
        for r, row in enumerate(rows):
            fmt = str(row.format)
            fit = str(getattr(row.fit, "value", row.fit))
            badge, color_name, fit_tip = FIT_TEXT.get(fit, (fit, "neutral", ""))
            if (str(row.kind), fit) in RUNTIME_TEXT:
                badge, color_name, fit_tip = RUNTIME_TEXT[(str(row.kind), fit)]
            elif fit == "no" and _needs_gpu(fmt) and not _has_cuda(hardware):
                badge, color_name, fit_tip = NEEDS_GPU_TEXT
            badge = badge.format(n=getattr(row, "gpu_layers", "?"), m=getattr(self.state.model, "n_layers", "?"))
            if fit == "gpu" and row.max_context_on_gpu:
                fit_tip += f" Largest context fully on the GPU: {row.max_context_on_gpu:,} tokens."
            moe = experts_in_ram_text(row)
            total = row.total_bytes
            if moe:
                total = row.cpu_moe_ram_bytes + row.cpu_moe_vram_bytes  # the placement the badge names  # what the Chat page loads for such a row (core/chat/placement.py placement_from_estimate)
                fit_tip = f"Instead of: {badge}. {fit_tip}\n{moe}"
                badge = f"GPU + experts in RAM (N={row.cpu_moe_layers})"
            quality = quality_hint(row)
            explanation = tip(fmt, format_explanation(fmt))
            if getattr(row, "note", ""):
                explanation += f"\n{row.note}"
            nominal = FORMATS[fmt].bits_per_weight if fmt in FORMATS and str(row.kind) == "gguf" else None
            fell_back = nominal is not None and row.bits_per_weight > nominal * FALLBACK_RATIO
            if fell_back:
                fallbacks.append(fmt)
            values = (
                fmt, f"{row.bits_per_weight:.2f}" + (" *" if fell_back else ""), _bytes_or_dash(getattr(row, "file_bytes", None)),
                format_bytes(row.weights_bytes), format_bytes(row.kv_cache_bytes), format_bytes(total),
                badge, quality,
            )
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip(explanation)
                if col in (1, 2, 3, 4, 5):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, col, item)
            self.table.item(r, 7).setToolTip(quality)
            fit_item = self.table.item(r, 6)
            fit_item.setForeground(QBrush(QColor(getattr(c, color_name))))
            fit_item.setToolTip(fit_tip)
            font = QFont(fit_item.font())
            font.setBold(True)
            fit_item.setFont(font)
            if fmt == recommended:
                for col in range(len(COLUMNS)):
                    self.table.item(r, col).setBackground(QBrush(_blend(c.warn, c.base, 0.22)))
                self.table.item(r, 0).setText(f"★ {fmt}")
            other = max(0, total - row.weights_bytes - row.kv_cache_bytes)
            bars.append(Bar(fmt, (row.weights_bytes, row.kv_cache_bytes, other), fmt == recommended))
        lines = []
        for gpu in getattr(hardware, "gpus", ()) or ():
            lines.append(Line("VRAM", gpu.vram_total_bytes, c.good))
            break
        lines.append(Line("RAM", hardware.ram_total_bytes, c.bad))
        self.chart.set_data(bars, lines)
        summary = summary_text(result, recommended, self.ctx_spin.value())
        trained = self.beyond_training(self.ctx_spin.value())
        if trained:
            summary += (f"<br><i>Note: {self.ctx_spin.value():,} tokens of context is more than this model was "
                        f"trained for ({trained:,}); this value is not remembered for next time.</i>")
        self.summary.setText(summary)
        self.footer.setText(
            "★ = recommended. Quality column: llama.cpp's published KL-divergence on Llama-3-8B (lower is better), "
            "a guide only. Hover a format for what it means."
            + (f"<br>* {', '.join(fallbacks)}: larger than the format's nominal bits on this model. llama.cpp's "
               "k-quants need rows of a multiple of 256 values: other tensors fall back to a larger type, and "
               "the embedding and output tensors keep more bits: a big share of a small model. A lower format can "
               "then be no smaller (compare the File size column)." if fallbacks else "")
        )


# The chat loads this placement itself (core/chat/placement.py: llama.cpp's tensor buffer overrides through
# llama_model_params), with the same N, when the estimate says the model does not fit the GPU whole.
CPU_MOE_CHAT_NOTE = ("The Chat page loads this placement for this file on this machine. With llama.cpp itself: "
                     "llama-server -m MODEL.gguf -ngl 999 --n-cpu-moe {n}")


def experts_in_ram_text(row: Any) -> str:
    """For a MoE row whose experts must partly stay in RAM: the --n-cpu-moe placement and its memory."""
    n = int(getattr(row, "cpu_moe_layers", -1) or -1)
    if n <= 0:
        return ""
    return (f"GPU + experts in RAM: every layer on the GPU except the routed experts of the first {n} layers "
            f"(llama.cpp --n-cpu-moe {n}): VRAM {format_bytes(row.cpu_moe_vram_bytes)}, "
            f"RAM {format_bytes(row.cpu_moe_ram_bytes)}. " + CPU_MOE_CHAT_NOTE.format(n=n))


def gpu_overhead_text(gpus: Any) -> str:
    """Which GPU runtime overhead the VRAM figures include: measured on this GPU, or the default."""
    if not gpus:
        return ""
    from quantpress.core.memory import gpu_runtime_bytes  # numpy/gguf: not at the window's first paint

    gpu, n = gpus[0], gpu_runtime_bytes(tuple(gpus))
    if gpu.runtime_bytes is not None:
        return (f"VRAM figures include llama.cpp's runtime overhead of {format_bytes(n)}, measured on this GPU "
                f"(driver {gpu.driver or '?'}).")
    how = ("press Measure my GPU to measure it" if gpu.backend == "cuda"
           else "measuring needs an NVIDIA GPU")
    return (f"VRAM figures include a runtime overhead of {format_bytes(n)}: a conservative default for "
            f"{gpu.backend.upper()}, not measured on this GPU ({how}).")


def recommended_format(result: Any) -> str | None:
    """The first recommendation that names a format: best fully on GPU, else best that runs here."""
    for rec in getattr(result, "recommendations", ()):
        if rec.format:
            return str(rec.format)
    return None


def quality_hint(row: Any) -> str:
    for attr in ("quality_hint", "quality", "hint"):
        value = getattr(row, attr, None)
        if value:
            return str(value)
    return "–"


def summary_text(result: Any, recommended: str | None, ctx_tokens: int) -> str:
    lines = []
    moe = moe_text(getattr(result, "model", None))
    if moe:
        lines.append(moe)
    for rec in getattr(result, "recommendations", ()):
        lines.append(f"{rec.goal[:1].upper() + rec.goal[1:]}: <b>{rec.format or 'none'}</b> — {rec.reason}")
    if not lines:
        lines.append(f"No format fits at {ctx_tokens:,} tokens of context; try a shorter context or a q8_0 KV cache.")
    for warning in getattr(result, "warnings", ()):
        lines.append(f"<i>Note: {warning}</i>")
    return "<br>".join(lines)


def moe_text(model: Any) -> str:
    """A mixture-of-experts model said as such: experts, and active against total parameters."""
    if model is None or not getattr(model, "n_experts", 0):
        return ""
    return (f"Mixture of experts: {model.n_experts} experts per layer, {model.n_experts_used} used per token; "
            f"{human_count(model.active_params)} of {human_count(model.params)} parameters active per token "
            "(memory follows the total: every expert is loaded).")


def _needs_gpu(name: str) -> bool:
    fmt = FORMATS.get(name)
    return bool(fmt and fmt.needs_gpu)


def _has_cuda(hardware: Any) -> bool:
    return any(g.backend in ("cuda", "override") for g in getattr(hardware, "gpus", ()) or ())


def _bytes_or_dash(n: Any) -> str:
    return format_bytes(n) if n else "–"


def _blend(a: str, b: str, t: float) -> QColor:
    ca, cb = QColor(a), QColor(b)
    return QColor(int(ca.red() * t + cb.red() * (1 - t)), int(ca.green() * t + cb.green() * (1 - t)),
                  int(ca.blue() * t + cb.blue() * (1 - t)))
