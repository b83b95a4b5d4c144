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
from dataclasses import asdict, dataclass
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

OUTPUT_FORMATS = ("compressed-tensors", "autoawq", "fp", "gguf:<TYPE>")


@dataclass(frozen=True)
class AwqResult:
    output: str
    format: str
    seconds: float
    peak_rss_bytes: int
    n_tokens: int
    calibration: str
    notes: tuple[str, ...]
    gguf_files: tuple[str, ...] = ()


def peak_rss_bytes() -> int:
    import resource
    import sys

    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(ru if sys.platform == "darwin" else ru * 1024)


def _check_format(fmt: str) -> None:
    if fmt in ("compressed-tensors", "autoawq", "fp") or (fmt.startswith("gguf:") and len(fmt) > 5):
        return
    raise InvalidInput(f"unknown AWQ format '{fmt}'; use one of: {', '.join(OUTPUT_FORMATS)}")


def awq_convert(model_dir: str | Path, out: str | Path, *, format: str = "compressed-tensors",
                settings: AwqSettings = DEFAULT_SETTINGS, text: str | None = None, calibration_label: str = "default",
                report: Report = ignore, cancel: CancelToken = NEVER) -> AwqResult:
    """Run AWQ on ``model_dir`` and write ``out`` (a folder; for gguf:* a folder holding the GGUF)."""
    _check_format(format)
    model_dir, out = Path(model_dir), Path(out)
    if out.exists() and not (out / SIDECAR).is_file():
        raise InvalidInput(f"output folder '{out}' exists and was not written by quantpress awq; "
                           f"choose another --out or remove it")
    plan = plan_awq(model_dir, settings, uniform=format == "autoawq")
    start = time.monotonic()
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
                     plan.notes, tuple(str(out / Path(g).name) for g in gguf_files))


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
        data["awq_for_gguf"] = (
            "The GGUF was made from AWQ-scaled and clipped weights with an importance matrix from the same "
            "calibration pass. quantpress has not measured, for this model, whether this lowers the KL-divergence "
            "against calibration-aware k-quants without AWQ scales; published results are mixed (gains of ~0.01 "
            "perplexity at 4 bits, losses in some cases). Compare both with `quantpress eval` before choosing.")
    (folder / SIDECAR).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
