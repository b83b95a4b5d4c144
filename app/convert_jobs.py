"""Glue between the panes and core's planner, converter and evaluator: the jobs the runners run (the
heavy ones in a child process, app/isolated.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantpress.app.isolated import run_in_helper, run_isolated
from quantpress.core.choices import CalibrationKind
from quantpress.core.errors import InvalidInput
from quantpress.core.formats import FORMATS
from quantpress.core.jobs import CancelToken, Report
from quantpress.core.model import ModelInfo, SourceKind
from quantpress.core.outputs import default_output_dir
from quantpress.core.paths import models_dir

if TYPE_CHECKING:  # the planner imports numpy and gguf: only inside the jobs (the window opens without them)
    from quantpress.core.gguf.plan import ConversionPlan
    from quantpress.core.gguf.request import ConversionRequest

RunnerJob = Callable[..., Any]  # what a Runner runs: fn(*, report, cancel) -> result

CALIBRATION_CHOICES = (  # (CalibrationKind value, label, tooltip)
    (CalibrationKind.WEIGHTS.value, "From the weights (no text)",
     "Estimates which weights matter from the model's own weights: no text needed, one extra read of the "
     "model; lower error than plain rounding for most formats (equal for Q8_0)"),
    (CalibrationKind.NONE.value, "None (plain rounding)",
     "Rounds every weight alike, as llama-quantize does without an imatrix"),
    (CalibrationKind.DEFAULT.value, "Built-in text (recommended for ≤ 4 bits)",
     "Runs the model over quantpress's mixed prose/code/dialogue text to learn which weights matter"),
    (CalibrationKind.FILE.value, "My text file…",
     "Your own .txt or .jsonl, e.g. text like what you will use the model for"),
    (CalibrationKind.IMATRIX.value, "llama.cpp imatrix file…",
     "An importance matrix computed elsewhere (.gguf or legacy .dat)"),
)


@dataclass(frozen=True)
class OutputView:
    path: Path
    format: str
    file_bytes: int
    tensor_types: dict[str, str]


def available_formats(model: ModelInfo) -> list[tuple[str, str, str]]:
    """(format key, label, description) for the formats the converter offers for ``model``."""
    # When a model opens, not at startup: the planner (numpy, gguf, tokenizers: ~0.5 s) is imported here
    # so that the pane's request() and preview never import it while a job's progress is on screen.
    import quantpress.core.gguf.request  # noqa: F401
    from quantpress.core.gguf.mixes import MIXES

    order = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_K_S", "Q5_K_S", "IQ4_XS", "IQ4_NL", "Q3_K_L", "Q3_K_M",
             "Q3_K_S", "Q2_K", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS",
             "IQ1_M", "IQ1_S", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "F16", "BF16", "F32"]
    names = [m for m in order if m in MIXES] + [m for m in MIXES if m not in order]
    out = []
    for m in names:
        fmt = FORMATS.get(m)  # sizes are on the Fit page and in the plan preview (exact, per model)
        if fmt is not None and fmt.moe_only and model.n_experts <= 1:
            continue  # MXFP4_MOE on a dense model would be Q8_0 under another name
        out.append((m, f"GGUF {m}", fmt.explanation if fmt else ""))
    if model.kind == SourceKind.HF_FOLDER:
        out.extend((c.key, c.label, c.explanation) for c in AWQ_CHOICES)
        out.extend((c.key, c.label, c.explanation) for c in FOLDER_CHOICES
                   if c.kind != "nf4" or module_exists("bitsandbytes"))
    return out


def unavailable_formats(model: ModelInfo) -> dict[str, str]:
    """Format keys ``available_formats`` lists that this model cannot take -> why (shown, not ticked):
    AWQ for a class without an AWQ scaling map, mixture-of-experts families included (core/awq/groups.py)."""
    if model.kind != SourceKind.HF_FOLDER:
        return {}
    from quantpress.core.awq.groups import unsupported_reason

    reason = unsupported_reason(model.architecture)
    return {c.key: reason for c in AWQ_CHOICES} if reason else {}


@dataclass(frozen=True)
class AwqChoice:
    """One AWQ output the Convert pane offers: an AWQ format (core.awq.pipeline) and group size."""

    format: str
    group_size: int
    label: str
    explanation: str

    @property
    def key(self) -> str:  # what the formats list (and the saved default formats) store
        return f"AWQ:{self.format}:{self.group_size}"


AWQ_CHOICES = (
    AwqChoice("compressed-tensors", 128, "AWQ int4 g128  ·  compressed-tensors",
              "Activation-aware 4-bit for GPUs: loads in vLLM and transformers (needs calibration, minutes on CPU)"),
    AwqChoice("autoawq", 128, "AWQ int4 g128  ·  AutoAWQ GEMM",
              "The same AWQ weights in the older AutoAWQ layout, for loaders that only read that"),
    AwqChoice("compressed-tensors", 64, "AWQ int4 g64  ·  compressed-tensors",
              "Smaller groups: a little more accurate and a little larger than g128"),
    AwqChoice("gguf:Q4_K_M", 128, "AWQ → GGUF Q4_K_M",
              "AWQ's scales applied to the weights, then a calibrated GGUF Q4_K_M for llama.cpp "
              "(on the demo model it beat calibrated Q4_K_M; see BENCHMARKS.md)"),
)
AWQ_BY_KEY = {c.key: c for c in AWQ_CHOICES}


@dataclass(frozen=True)
class FolderChoice:
    """One GPTQ/FP8/NF4 output the Convert pane offers (core/hfquant writes them as a folder)."""

    kind: str  # "gptq", "fp8" or "nf4"
    layout: str  # GPTQ's checkpoint layout ("compressed-tensors" or "gptq"); "" for the others
    label: str
    explanation: str

    @property
    def key(self) -> str:  # what the formats list (and the saved default formats) store
        return f"HFQ:{self.kind}" + (f":{self.layout}" if self.layout else "")


FOLDER_CHOICES = (
    FolderChoice("gptq", "compressed-tensors", "GPTQ int4 g128  ·  compressed-tensors",
                 "Error-compensating 4-bit for GPUs (vLLM, transformers): calibrated layer by layer on the built-in "
                 "or your text (minutes on CPU)"),
    FolderChoice("gptq", "gptq", "GPTQ int4 g128  ·  GPTQ v1",
                 "The same GPTQ weights in the GPTQ v1 layout (qweight/qzeros/scales/g_idx) for GPTQModel and vLLM"),
    FolderChoice("fp8", "", "FP8 W8A8 dynamic  ·  compressed-tensors",
                 "8-bit float weights with one scale per channel, activations quantized at run time: near-lossless "
                 "on Ada/Hopper GPUs (vLLM); no calibration"),
    FolderChoice("nf4", "", "NF4 4-bit  ·  bitsandbytes",
                 "NormalFloat-4 with double-quantized scales, as transformers saves a bitsandbytes model; no "
                 "calibration"),
)
FOLDER_BY_KEY = {c.key: c for c in FOLDER_CHOICES}


def module_exists(name: str) -> bool:
    """Whether an optional library is installed (find_spec only: nothing is imported)."""
    from importlib.util import find_spec

    return find_spec(name) is not None


def _calibration_text(request: ConversionRequest, what: str) -> str | None:
    """The request's calibration text for AWQ/GPTQ (None: the built-in text)."""
    if request.calibration == CalibrationKind.IMATRIX:
        raise InvalidInput(f"{what} computes its own statistics from text; choose the built-in text or a text file.")
    if request.calibration != CalibrationKind.FILE:
        return None
    from quantpress.core.calibration import load_calibration_text

    if request.calibration_path is None:
        raise InvalidInput("Choose the calibration text file (or pick another calibration).")
    return load_calibration_text(request.calibration_path)


def folder_in_child(model: ModelInfo, choice: FolderChoice, request: ConversionRequest, *, report: Report,
                    cancel: CancelToken) -> Any:
    """Run one of FOLDER_CHOICES with the request's calibration and folder. Runs in a child process."""
    if model.local_path is None:
        raise InvalidInput(f"{model.source}: {choice.kind.upper()} needs the model's files on disk; download it first.")
    name = model.name or Path(str(model.local_path)).name
    out_dir = request.out or default_output_dir(model) or Path.cwd()
    if choice.kind == "gptq":
        from quantpress.core.hfquant.gptq_run import GptqSettings, gptq_convert

        text = _calibration_text(request, "GPTQ")
        label = Path(request.calibration_path).name if text is not None and request.calibration_path else "default"
        return gptq_convert(model.local_path, out_dir / f"{name}-GPTQ-{choice.layout}",
                            settings=GptqSettings(format=choice.layout), text=text, calibration_label=label,
                            report=report, cancel=cancel)
    from quantpress.core.hfquant import weights_only
    from quantpress.core.hfquant.write import convert_weights_only

    scheme, quantize_module = weights_only(choice.kind, model.local_path)
    return convert_weights_only(model.local_path, out_dir / f"{name}-{choice.kind.upper()}", scheme, quantize_module,
                                report=report, cancel=cancel)


def awq_in_child(model: ModelInfo, choice: AwqChoice, request: ConversionRequest, *, report: Report,
                 cancel: CancelToken) -> Any:
    """Run AWQ for one of AWQ_CHOICES, with the request's calibration and folder. Runs in a child process."""
    from quantpress.core.awq.pipeline import awq_convert, default_clip_search
    from quantpress.core.awq.run import AwqSettings

    text = _calibration_text(request, "AWQ")
    name = model.name or Path(str(model.local_path)).name
    out_dir = request.out or default_output_dir(model) or models_dir()
    # awq_convert creates (and cleans up) its folders
    out = out_dir / f"{name}-AWQ-{choice.format.replace(':', '-')}-g{choice.group_size}"
    settings = AwqSettings(group_size=choice.group_size, clip_search=default_clip_search(choice.format))
    label = Path(request.calibration_path).name if text is not None and request.calibration_path else "default"
    if model.local_path is None:
        raise InvalidInput(f"{model.source}: AWQ needs the model's files on disk; download it first.")
    return awq_convert(model.local_path, out, format=choice.format, settings=settings, text=text,
                       calibration_label=label, report=report, cancel=cancel)


def describe_plan(plan: ConversionPlan) -> tuple[list[OutputView], int]:
    outputs = [OutputView(Path(o.path), o.format, int(o.file_bytes), dict(o.tensor_types)) for o in plan.outputs]
    if plan.mmproj is not None:  # the vision projector written beside the model (multimodal wrappers)
        mm = plan.mmproj
        outputs.append(OutputView(Path(mm.path), f"mmproj {mm.format}", int(mm.file_bytes), dict(mm.tensor_types)))
    return outputs, sum(o.file_bytes for o in outputs)


def plan_in_helper(model: ModelInfo, request: ConversionRequest) -> ConversionPlan:
    return request.plan(model)


def plan_job(model: ModelInfo, request: ConversionRequest) -> RunnerJob:
    """A runner job returning the plan (for the preview)."""

    def job(*, report: Report, cancel: CancelToken) -> Any:
        return run_in_helper(plan_in_helper, model, request)

    return job


def convert_in_child(model: ModelInfo, request: ConversionRequest, plan: ConversionPlan | None = None, *,
                     report: Report, cancel: CancelToken) -> Any:
    """Convert every GGUF format of ``request`` in one pass: the previewed ``plan`` when given (the
    writer re-checks the outputs and the source's files), else a fresh plan. Runs in a child process."""
    from quantpress.core.gguf.convert import check_outputs, convert
    from quantpress.core.outputs import output_folder

    plan = plan or request.plan(model)
    check_outputs(plan)  # before the folder exists: a refused job creates nothing
    with ExitStack() as folders:  # a failed or cancelled job leaves nothing, not even its folders
        for folder in sorted({Path(o.path).parent for o in plan.outputs}):
            folders.enter_context(output_folder(folder))
        return convert(plan, report=report, cancel=cancel)


def conversion_job(model: ModelInfo, request: ConversionRequest, plan: ConversionPlan | None = None) -> RunnerJob:
    """A runner job converting all GGUF formats of ``request`` in a child process (app/isolated.py: why)."""

    def job(*, report: Report, cancel: CancelToken) -> Any:
        return run_isolated(convert_in_child, model, request, plan, report=report, cancel=cancel)

    return job


def awq_job(model: ModelInfo, choice: AwqChoice, request: ConversionRequest) -> RunnerJob:
    def job(*, report: Report, cancel: CancelToken) -> Any:
        return run_isolated(awq_in_child, model, choice, request, report=report, cancel=cancel)

    return job


def folder_job(model: ModelInfo, choice: FolderChoice, request: ConversionRequest) -> RunnerJob:
    def job(*, report: Report, cancel: CancelToken) -> Any:
        return run_isolated(folder_in_child, model, choice, request, report=report, cancel=cancel)

    return job


def evaluate_in_child(model: Path, reference: Path | None, text_path: str | None, max_tokens: int, *,
                      report: Any, cancel: Any) -> Any:
    """core.evaluate.evaluate with an optional user text. Runs in a child process."""
    from quantpress.core.evaluate.evaluate import evaluate

    kwargs: dict[str, Any] = {"max_tokens": max_tokens, "report": report, "cancel": cancel}
    if text_path:
        from quantpress.core.evaluate.text import read_eval_text

        kwargs["text"] = read_eval_text(text_path)
    return evaluate(model, reference, **kwargs)


def evaluation_job(model: Path, reference: Path | None, text_path: str | None, max_tokens: int) -> Callable[..., Any]:
    def job(*, report: Any, cancel: Any) -> Any:
        return run_isolated(evaluate_in_child, model, reference, text_path, max_tokens, report=report, cancel=cancel)

    return job


def estimate_in_helper(model: Any, hardware: Any, ctx_tokens: int, batch: int, kv_type: str) -> Any:
    """core.estimate.estimate with a RuntimeConfig. Runs in the helper process."""
    from quantpress.core.estimate import estimate
    from quantpress.core.memory import RuntimeConfig

    return estimate(model, hardware, RuntimeConfig(n_ctx=ctx_tokens, n_batch=batch, kv_type=kv_type))


def estimate_job(model: Any, hardware: Any, ctx_tokens: int, batch: int, kv_type: str) -> Callable[..., Any]:
    """A runner job for the Fit pane: the estimator plans every GGUF mix (about a second of tokenizer
    parsing that holds the GIL), so it runs in the helper process."""

    def job(*, report: Any, cancel: Any) -> Any:
        return run_in_helper(estimate_in_helper, model, hardware, ctx_tokens, batch, kv_type)

    return job


def gpu_probe_in_child(*, report: Any, cancel: Any) -> Any:
    """"Measure my GPU": core's probe (its own child loads the demo model on the GPU while this
    process reads NVML), then the hardware detected again, now carrying the measured overhead."""
    from quantpress.core.gpu_probe import probe_gpu
    from quantpress.core.hardware import detect_hardware
    from quantpress.core.jobs import Progress

    report(Progress("gpu probe", 0.0, "loading the demo model with every layer on the GPU"))
    cancel.raise_if_cancelled()
    return probe_gpu(), detect_hardware()


def gpu_probe_job(*, report: Any, cancel: Any) -> Any:
    """A heavy-runner job: the probe in a child process (NVML and the demo model stay out of the GUI)."""
    return run_isolated(gpu_probe_in_child, report=report, cancel=cancel)
