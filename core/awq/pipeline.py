"""``awq_convert``: plan, run the AWQ pass, write the chosen format, atomically.

Formats: "compressed-tensors" (pack-quantized), "autoawq" (GEMM), "fp" (the scaled and clipped
full-precision HF folder), and "gguf:<TYPE>" (AWQ for GGUF: the "fp" folder converted by
quantpress's GGUF converter with the importance matrix measured in the same pass, on the scaled
model's inputs).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from quantpress.core.awq.export import (
    SIDECAR,
    ShardWriter,
    autoawq_config,
    compressed_tensors_config,
    copy_model_files,
    publish,
    temp_folder,
    write_config,
)
from quantpress.core.awq.run import DEFAULT_SETTINGS, AwqPlan, AwqRun, AwqSettings, plan_awq, run_awq
from quantpress.core.errors import InvalidInput
from quantpress.core.jobs import NEVER, CancelToken, Report, ignore
from quantpress.core.outputs import check_output_folder, output_folder

OUTPUT_FORMATS = ("compressed-tensors", "autoawq", "fp", "gguf:<TYPE>")


@dataclass(frozen=True)
class AwqResult:
    output: str
    format: str
    seconds: float  # wall time of the whole job
    peak_rss_bytes: int
    n_tokens: int  # calibration tokens
    calibration: str
    notes: tuple[str, ...]
    gguf_files: tuple[str, ...] = ()
    device: str = ""  # the torch device the AWQ pass ran on ("cpu", "cuda")


def peak_rss_bytes() -> int:
    import resource
    import sys

    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(ru if sys.platform == "darwin" else ru * 1024)


# Measured on the demo model (BENCHMARKS.md, "AWQ for GGUF"; KLD to the F32 GGUF, 4x512 held-out tokens,
# llama.cpp): Q4_K_M with an imatrix from the same 2048 calibration tokens 0.0337; AWQ scales + that pass's
# imatrix 0.0257 (-24%); AWQ scales and clips 0.0400 (+19%, worse than no AWQ).
AWQ_FOR_GGUF_FINDING = (
    "On the demo model (SmolLM2-135M, BENCHMARKS.md 'AWQ for GGUF'), Q4_K_M made from AWQ-scaled weights with "
    "this pass's importance matrix had a KL-divergence to the F32 GGUF of 0.0257, against 0.0337 for "
    "calibration-aware Q4_K_M without AWQ scales on the same 2048 calibration tokens (24% lower). Applying AWQ's "
    "clips as well made it worse (0.0400, 19% higher than without AWQ): the clips are fitted to int4 "
    "round-to-nearest with AWQ's groups, while the GGUF types search their own scales and many of that model's "
    "tensors are 5-8 bit (its 576-wide rows make Q4_K_M fall back to Q5_0), so the clip search is off by default "
    "for GGUF outputs (--clip-search turns it on). This was measured on one small model only; for this model it "
    "has not been measured: compare this GGUF with a calibrated k-quant of the same type using `quantpress eval` "
    "before choosing.")


def default_clip_search(fmt: str) -> bool:
    """Clip search on for the int4 outputs, off for AWQ for GGUF (see AWQ_FOR_GGUF_FINDING)."""
    return not fmt.startswith("gguf:")


def _check_format(fmt: str) -> None:
    if fmt in ("compressed-tensors", "autoawq", "fp") or (fmt.startswith("gguf:") and len(fmt) > 5):
        return
    raise InvalidInput(f"unknown AWQ format '{fmt}'; use one of: {', '.join(OUTPUT_FORMATS)}")


def awq_convert(model_dir: str | Path, out: str | Path, *, format: str = "compressed-tensors",
                settings: AwqSettings | None = None, text: str | None = None, calibration_label: str = "default",
                report: Report = ignore, cancel: CancelToken = NEVER) -> AwqResult:
    """Run AWQ on ``model_dir`` and write ``out`` (a folder; for gguf:* a folder holding the GGUF).
    ``settings`` None: the defaults, with the clip search as ``default_clip_search(format)``."""
    _check_format(format)
    if settings is None:
        settings = replace(DEFAULT_SETTINGS, clip_search=default_clip_search(format))
    model_dir, out = Path(model_dir), Path(out)
    check_output_folder(out, [model_dir], what="AWQ")
    if out.exists() and not (out / SIDECAR).is_file():
        raise InvalidInput(f"output folder '{out}' exists and was not written by quantpress awq; "
                           f"choose another --out or remove it")
    # Packed formats get one group size for the whole model: AutoAWQ's format has a single one, and
    # transformers/compressed-tensors refuse a checkpoint whose config groups give different sizes
    # to layers of different widths (e.g. 576-wide rows at 64 beside 1536-wide ones at 128).
    plan = plan_awq(model_dir, settings, uniform=format in ("autoawq", "compressed-tensors"))
    start = time.monotonic()
    with output_folder(out.parent):
        tmp = temp_folder(out)
        try:
            fmt = "fp" if format.startswith("gguf:") else format
            run = _write_hf(plan, model_dir, tmp, fmt, text, report, cancel)
            gguf_files: tuple[str, ...] = ()
            if format.startswith("gguf:"):
                gguf_files = _to_gguf(tmp, run, format[5:], out, report, cancel)
            _write_sidecar(tmp, plan, run, format, calibration_label, gguf_files, start)
            publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return AwqResult(str(out), format, time.monotonic() - start, peak_rss_bytes(), run.n_tokens, calibration_label,
                     plan.notes, tuple(str(out / Path(g).name) for g in gguf_files), run.device)


def _write_hf(plan: AwqPlan, model_dir: Path, tmp: Path, fmt: str, text: str | None, report: Report,
              cancel: CancelToken) -> AwqRun:
    import torch
    from quantpress.core.calibration.layerwise import LayerwiseModel

    lw = LayerwiseModel(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    src_dtype_name = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    src_dtype = getattr(torch, src_dtype_name, torch.float32)
    writer = ShardWriter(tmp, fmt, plan.n_layers, src_dtype)
    run = run_awq(plan, writer.write_layer, text, report=report, cancel=cancel)
    writer.write_rest(lw.weights, lw.layer_prefix)
    writer.finish_index()
    gs = plan.group_sizes()
    if fmt == "compressed-tensors":
        qc: dict[str, Any] | None = compressed_tensors_config(gs, _ct_version())
        dtype = src_dtype_name
    elif fmt == "autoawq":
        sizes = {g for g in gs.values() if g is not None}
        if len(sizes) > 1:
            raise InvalidInput("internal: AutoAWQ format needs one group size")  # plan_for_format prevents it
        qc, dtype = autoawq_config(sizes.pop(), [n for n, g in gs.items() if g is None]), "float16"
    else:
        qc, dtype = None, src_dtype_name
    write_config(model_dir, tmp, qc, dtype)
    copy_model_files(model_dir, tmp)
    return run


def _ct_version() -> str:
    try:
        from importlib.metadata import version

        return version("compressed-tensors")
    except Exception:  # noqa: BLE001 - the package is optional; the field is informational
        return "0.20.0"


def _to_gguf(folder: Path, run: AwqRun, gguf_type: str, out: Path, report: Report,
             cancel: CancelToken) -> tuple[str, ...]:
    """Convert the scaled folder with the converter, importance from this pass; GGUF lands in ``folder``."""
    from quantpress.core.calibration.imatrix import save_imatrix
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.inspect import open_model

    imatrix_path = save_imatrix(run.imatrix, folder / "awq.imatrix.gguf")
    model = open_model(folder)
    target = folder / f"{out.name}.{gguf_type}.gguf"
    conv_plan = plan_conversion(model, [gguf_type], target, imatrix=imatrix_path)
    results = convert(conv_plan, report=report, cancel=cancel)
    return tuple(str(getattr(r, "output", getattr(r, "path", target))) for r in results)


def _write_sidecar(folder: Path, plan: AwqPlan, run: AwqRun, fmt: str, calibration: str,
                   gguf_files: tuple[str, ...], start: float) -> None:
    data = {
        "tool": "quantpress awq",
        "format": fmt,
        "source": plan.model_dir,
        "architecture": plan.hf_class,
        "settings": asdict(plan.settings),
        "calibration": {"source": calibration, "dataset": run.dataset, "n_tokens": run.n_tokens},
        "notes": list(plan.notes),
        "group_sizes": {lp.name: lp.group_size for lp in plan.linears},
        "layers": [asdict(r) for r in run.layers],
        "seconds": round(time.monotonic() - start, 2),
        "peak_rss_bytes": peak_rss_bytes(),
        "gguf_files": [Path(g).name for g in gguf_files],
    }
    if fmt.startswith("gguf:"):
        applied = "scaled and clipped" if plan.settings.clip_search else "scaled (not clipped)"
        data["awq_for_gguf"] = (f"The GGUF was made from AWQ-{applied} weights with an importance matrix from the "
                                f"same calibration pass. {AWQ_FOR_GGUF_FINDING}")
    (folder / SIDECAR).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
