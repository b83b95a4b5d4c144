"""Glue between the panes and core's planner, converter and evaluator (imported lazily: the window opens
without them and the pane says what is missing instead of pretending)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantpress.app.core_access import core_function, module_exists
from quantpress.app.isolated import run_in_helper, run_isolated

CALIBRATION_CHOICES = (  # (key, label, tooltip)
    ("weights", "From the weights (no text)",
     "Estimates which weights matter from the model's own weights: no text needed, one extra read of the "
     "model; lower error than plain rounding for most formats (equal for Q8_0)"),
    ("none", "None (plain rounding)", "Rounds every weight alike, as llama-quantize does without an imatrix"),
    ("default", "Built-in text (recommended for ≤ 4 bits)",
     "Runs the model over quantpress's mixed prose/code/dialogue text to learn which weights matter"),
    ("text", "My text file…", "Your own .txt or .jsonl, e.g. text like what you will use the model for"),
    ("imatrix", "llama.cpp imatrix file…", "An importance matrix computed elsewhere (.gguf or legacy .dat)"),
)


@dataclass(frozen=True)
class OutputView:
    path: Path
    format: str
    file_bytes: int
    tensor_types: dict[str, str]


def available_formats(model: Any) -> tuple[list[tuple[str, str, str]], str]:
    """(format, label, description) for the formats the converter offers, and a reason if none."""
    mixes = core_function("quantpress.core.gguf.mixes", "MIXES")
    plan = core_function("quantpress.core.gguf.plan", "plan_conversion")
    if not mixes or not plan:
        return [], f"GGUF conversion is not available yet: {mixes or plan}"
    order = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_K_S", "Q5_K_S", "IQ4_XS", "IQ4_NL", "Q3_K_L", "Q3_K_M",
             "Q3_K_S", "Q2_K", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS",
             "IQ1_M", "IQ1_S", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "F16", "BF16", "F32"]
    names = [m for m in order if m in mixes] + [m for m in mixes if m not in order]
    catalogue = core_function("quantpress.core.formats", "FORMATS") or {}
    out = []
    for m in names:
        fmt = catalogue.get(m)  # sizes are on the Fit page and in the plan preview (exact, per model)
        out.append((m, f"GGUF {m}", str(getattr(fmt, "explanation", "") or "")))
    if getattr(getattr(model, "kind", None), "value", "") == "hf_folder" and module_exists("quantpress.core.awq"):  # find_spec only: no torch
        out.extend(AWQ_CHOICES)
    if getattr(getattr(model, "kind", None), "value", "") == "hf_folder" and module_exists("quantpress.core.hfquant"):
        out.extend(c for c in FOLDER_CHOICES if c[0] != "HFQ:nf4" or module_exists("bitsandbytes"))
    return out, ""


AWQ_PREFIX = "AWQ:"
AWQ_CHOICES = (  # (key, label, explanation); key = AWQ:<awq format>:<group size>
    ("AWQ:compressed-tensors:128", "AWQ int4 g128  ·  compressed-tensors",
     "Activation-aware 4-bit for GPUs: loads in vLLM and transformers (needs calibration, minutes on CPU)"),
    ("AWQ:autoawq:128", "AWQ int4 g128  ·  AutoAWQ GEMM",
     "The same AWQ weights in the older AutoAWQ layout, for loaders that only read that"),
    ("AWQ:compressed-tensors:64", "AWQ int4 g64  ·  compressed-tensors",
     "Smaller groups: a little more accurate and a little larger than g128"),
    ("AWQ:gguf:Q4_K_M:128", "AWQ → GGUF Q4_K_M",
     "AWQ's scales applied to the weights, then a calibrated GGUF Q4_K_M for llama.cpp "
     "(on the demo model it beat calibrated Q4_K_M; see BENCHMARKS.md)"),
)


def is_awq(fmt: str) -> bool:
    return fmt.startswith(AWQ_PREFIX)


FOLDER_PREFIX = "HFQ:"
FOLDER_CHOICES = (  # (key, label, explanation); key = HFQ:<kind>[:<layout>]; core/hfquant writes them
    ("HFQ:gptq:compressed-tensors", "GPTQ int4 g128  ·  compressed-tensors",
     "Error-compensating 4-bit for GPUs (vLLM, transformers): calibrated layer by layer on the built-in or "
     "your text (minutes on CPU)"),
    ("HFQ:gptq:gptq", "GPTQ int4 g128  ·  GPTQ v1",
     "The same GPTQ weights in the GPTQ v1 layout (qweight/qzeros/scales/g_idx) for GPTQModel and vLLM"),
    ("HFQ:fp8", "FP8 W8A8 dynamic  ·  compressed-tensors",
     "8-bit float weights with one scale per channel, activations quantized at run time: near-lossless on "
     "Ada/Hopper GPUs (vLLM); no calibration"),
    ("HFQ:nf4", "NF4 4-bit  ·  bitsandbytes",
     "NormalFloat-4 with double-quantized scales, as transformers saves a bitsandbytes model; no calibration"),
)


def is_folder_job(fmt: str) -> bool:
    """A format written as a Hugging Face folder (AWQ, GPTQ, FP8, NF4), not a GGUF file."""
    return fmt.startswith((AWQ_PREFIX, FOLDER_PREFIX))


def job_label(fmt: str) -> str:
    if fmt.startswith(FOLDER_PREFIX):
        return next((label for key, label, _ in FOLDER_CHOICES if key == fmt), fmt)
    return fmt.replace("AWQ:", "AWQ ").replace(":", " ") if is_awq(fmt) else fmt


def folder_in_child(model: Any, key: str, out_dir: Path, options: dict[str, Any], *, report: Any,
                    cancel: Any) -> Any:
    """Run one choice of FOLDER_CHOICES. Runs in a child process."""
    from quantpress.core.errors import InvalidInput

    parts = key.split(":")
    name = getattr(model, "name", "") or Path(str(model.local_path)).name
    if parts[1] == "gptq":
        from quantpress.core.hfquant.gptq_run import GptqSettings, gptq_convert

        cal, path = options.get("calibration", "weights"), options.get("calibration_path")
        if cal == "imatrix":
            raise InvalidInput("GPTQ computes its own statistics from text; choose the built-in text or a text file.")
        text = None
        if cal == "text" and path:
            from quantpress.core.calibration import load_calibration_text

            text = load_calibration_text(path)
        out = out_dir / f"{name}-GPTQ-{parts[2]}"
        return gptq_convert(model.local_path, out, settings=GptqSettings(format=parts[2]), text=text,
                            calibration_label=Path(path).name if text else "default", report=report, cancel=cancel)
    from quantpress.core.hfquant import weights_only
    from quantpress.core.hfquant.write import convert_weights_only

    scheme, quantize_module = weights_only(parts[1], model.local_path)
    return convert_weights_only(model.local_path, out_dir / f"{name}-{parts[1].upper()}", scheme, quantize_module,
                                report=report, cancel=cancel)


def awq_in_child(model: Any, key: str, out_dir: Path, options: dict[str, Any], *, report: Any, cancel: Any) -> Any:
    """Run AWQ for one choice of AWQ_CHOICES. Runs in a child process."""
    from quantpress.core.awq.pipeline import awq_convert, default_clip_search
    from quantpress.core.awq.run import AwqSettings
    from quantpress.core.errors import InvalidInput

    _, rest = key.split(":", 1)
    fmt, group = rest.rsplit(":", 1)
    cal, path = options.get("calibration", "weights"), options.get("calibration_path")
    text = None
    if cal == "text" and path:
        from quantpress.core.calibration import load_calibration_text

        text = load_calibration_text(path)
    elif cal == "imatrix":
        raise InvalidInput("AWQ computes its own statistics from text; choose the built-in text or a text file.")
    name = getattr(model, "name", "") or Path(str(model.local_path)).name
    out = out_dir / f"{name}-AWQ-{fmt.replace(':', '-')}-g{group}"  # awq_convert creates (and cleans up) folders
    settings = AwqSettings(group_size=int(group), clip_search=default_clip_search(fmt))
    return awq_convert(model.local_path, out, format=fmt, settings=settings, text=text,
                       calibration_label=Path(path).name if text else "default", report=report, cancel=cancel)


def _plan_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    cal, path = options.get("calibration", "weights"), options.get("calibration_path")
    if cal in ("default", "weights", "none"):
        kwargs["calibration"] = cal
    elif cal == "text":
        if not path:
            from quantpress.core.errors import InvalidInput

            raise InvalidInput("Choose the calibration text file (or pick another calibration).")
        kwargs["calibration"] = path
    elif cal == "imatrix":
        if not path:
            from quantpress.core.errors import InvalidInput

            raise InvalidInput("Choose the imatrix file (or pick another calibration).")
        kwargs["imatrix"] = path
    if options.get("threads"):
        kwargs["threads"] = int(options["threads"])
    if options.get("output_type") or options.get("embedding_type"):
        overrides = core_function("quantpress.core.gguf.plan", "Overrides")
        kwargs["overrides"] = overrides(output_type=options.get("output_type"),
                                        token_embd_type=options.get("embedding_type"))
    return kwargs


def make_plan(model: Any, formats: list[str], out_dir: Path, options: dict[str, Any]) -> Any:
    plan_conversion = core_function("quantpress.core.gguf.plan", "plan_conversion")
    if not plan_conversion:
        raise LookupError(str(plan_conversion))
    return plan_conversion(model, formats, out_dir, **_plan_kwargs(options))


def describe_plan(plan: Any) -> tuple[list[OutputView], int]:
    outputs = [OutputView(Path(o.path), o.format, int(o.file_bytes), dict(o.tensor_types)) for o in plan.outputs]
    return outputs, sum(o.file_bytes for o in outputs)


def plan_job(model: Any, formats: list[str], out_dir: Path, options: dict[str, Any]) -> Callable[..., Any]:
    """A runner job returning the plan (for the preview)."""

    def job(*, report: Any, cancel: Any) -> Any:
        return run_in_helper(make_plan, model, formats, out_dir, options)

    return job


def convert_in_child(model: Any, formats: list[str], out_dir: Path, options: dict[str, Any], *,
                     report: Any, cancel: Any) -> Any:
    """Plan (again, so the plan matches the files on disk now) and convert. Runs in a child process."""
    convert = core_function("quantpress.core.gguf.convert", "convert")
    if not convert:
        raise LookupError(str(convert))
    from quantpress.core.gguf.convert import check_outputs
    from quantpress.core.outputs import output_folder

    plan = make_plan(model, formats, out_dir, options)
    check_outputs(plan)  # before the folder exists: a refused job creates nothing
    with output_folder(out_dir):  # a failed or cancelled job leaves nothing, not even its folder
        return convert(plan, report=report, cancel=cancel)


def conversion_job(model: Any, formats: list[str], out_dir: Path, options: dict[str, Any]) -> Callable[..., Any]:
    """A runner job converting in a child process (see app/isolated.py for why)."""

    def job(*, report: Any, cancel: Any) -> Any:
        if len(formats) == 1 and is_awq(formats[0]):
            return run_isolated(awq_in_child, model, formats[0], out_dir, options, report=report, cancel=cancel)
        if len(formats) == 1 and formats[0].startswith(FOLDER_PREFIX):
            return run_isolated(folder_in_child, model, formats[0], out_dir, options, report=report, cancel=cancel)
        return run_isolated(convert_in_child, model, formats, out_dir, options, report=report, cancel=cancel)

    return job


def evaluate_in_child(model: Path, reference: Path | None, text_path: str | None, max_tokens: int, *,
                      report: Any, cancel: Any) -> Any:
    """core.evaluate.evaluate with an optional user text. Runs in a child process."""
    evaluate = core_function("quantpress.core.evaluate.evaluate", "evaluate")
    if not evaluate:
        raise LookupError(str(evaluate))
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
    estimate = core_function("quantpress.core.estimate", "estimate")
    runtime_config = core_function("quantpress.core.memory", "RuntimeConfig")
    if not estimate or not runtime_config:
        raise LookupError(str(estimate or runtime_config))
    return estimate(model, hardware, runtime_config(n_ctx=ctx_tokens, n_batch=batch, kv_type=kv_type))


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
