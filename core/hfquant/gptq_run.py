"""``gptq_convert``: the GPTQ pass and its output folder.

The pass is AWQ's layer-wise calibration pass (core/calibration: LayerwiseModel, run_layer, the same
calibration rows and defaults: 4 rows of 512 tokens of the built-in text): per decoder layer, forward
pre-hooks on its linears accumulate each one's Hessian Σ x xᵀ from the very inputs AWQ's hooks see;
then each linear is quantized by GPTQ (core/hfquant/gptq.py), the layer's weights are replaced by their
quantized values, and the layer runs again to give the next layer its inputs (so later layers compensate
for the error of earlier ones, as in GPTQ's reference code). One decoder layer in memory at a time; on
CUDA when torch sees a GPU (``device="auto"``). Each layer's shard is written as soon as it is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidInput, InvalidModel
from quantpress.core.hfquant.gptq import ACT_ORDERS, dequantize_sym, gptq, rtn
from quantpress.core.hfquant.gptq_export import FORMATS, gptq_scheme, model_group_size, pack
from quantpress.core.hfquant.plan import HfQuantPlan, plan_hf_quant
from quantpress.core.hfquant.write import (
    HfQuantResult,
    ShardWriter,
    SourceTensors,
    finish_output,
    layer_modules,
    written_aside,
)
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore

METHODS = ("gptq", "rtn")  # "rtn": the same int4 groups by plain rounding (the baseline)


@dataclass(frozen=True)
class GptqSettings:
    format: str = "compressed-tensors"
    group_size: int = 128  # the largest of 128/64/32 dividing every input width is used (gptq_export)
    act_order: str = "off"
    damp: float = 0.01
    samples: int = 4  # calibration rows of ``seqlen`` tokens: AWQ's defaults (core/awq/run.py)
    seqlen: int = 512
    batch_rows: int = 4
    device: str = "auto"
    method: str = "gptq"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidInput(f"unknown GPTQ format '{self.format}'; use one of {', '.join(FORMATS)}")
        if self.act_order not in ACT_ORDERS:
            raise InvalidInput(f"act-order '{self.act_order}' is not supported; use one of {', '.join(ACT_ORDERS)}")
        if self.method not in METHODS:
            raise InvalidInput(f"unknown method '{self.method}'; use one of {', '.join(METHODS)}")
        if self.samples < 1 or self.seqlen < 16:
            raise InvalidInput("GPTQ needs at least 1 calibration sample of at least 16 tokens")


def plan_gptq(model_dir: str | Path, settings: GptqSettings = GptqSettings()) -> tuple[HfQuantPlan, int]:
    """The output plan (exact sizes) and the group size used."""
    gs = model_group_size(model_dir, settings.group_size)
    return plan_hf_quant(model_dir, gptq_scheme(settings.format, gs, settings.act_order)), gs


class _Hessians:
    """Forward pre-hooks: Σ x xᵀ (float32, on the layer's device) and row counts per linear."""

    def __init__(self, layer: Any, names: list[str]) -> None:
        self.sums: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self._handles = [layer.get_submodule(n).register_forward_pre_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Any:
        def hook(_m: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            h = x.T @ x
            self.sums[name] = h if name not in self.sums else self.sums[name] + h
            self.rows[name] = self.rows.get(name, 0) + x.shape[0]
        return hook

    def hessian(self, name: str) -> Any:
        return self.sums[name] * (2.0 / max(1, self.rows[name]))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def gptq_convert(model_dir: str | Path, out: str | Path, *, settings: GptqSettings = GptqSettings(),
                 text: str | None = None, calibration_label: str = "default", report: Report = ignore,
                 cancel: CancelToken = NEVER) -> HfQuantResult:
    """Run GPTQ on ``model_dir`` and write ``out`` (see module docstring); ``text`` None = built-in text."""
    from quantpress.core.outputs import output_folder

    model_dir, out = Path(model_dir), Path(out)
    t0 = time.monotonic()
    plan, gs = plan_gptq(model_dir, settings)
    with output_folder(out.parent):
        with written_aside(model_dir, out, plan.file_bytes) as tmp:
            n_tokens, device = _run(plan, gs, settings, model_dir, tmp, text, Throttle(report), cancel)
            result = HfQuantResult(str(out), f"GPTQ_INT4_G{gs}", plan.file_bytes, time.monotonic() - t0,
                                   len(plan.quantized), plan.kept, calibration_label if settings.method == "gptq"
                                   else "none", n_tokens, device)
            finish_output(tmp, out, plan, gptq_scheme(settings.format, gs, settings.act_order), result,
                          {"method": settings.method, "layout": settings.format, "group_size": gs,
                           "act_order": settings.act_order, "damp": settings.damp})
    report(Progress("gptq", 1.0, "done"))
    return result


def _run(plan: HfQuantPlan, gs: int, s: GptqSettings, model_dir: Path, tmp: Path, text: str | None,
         report: Report, cancel: CancelToken) -> tuple[int, str]:
    import torch
    from quantpress.core.calibration.collect import calibration_chunks, resolve_device
    from quantpress.core.calibration.layerwise import LayerwiseModel, run_layer

    device = resolve_device(s.device)
    writer = ShardWriter(plan, tmp)
    src = SourceTensors(model_dir, plan.sources)
    by_layer = layer_modules(plan)
    calibrated = s.method == "gptq"  # round-to-nearest needs no text and no forward pass
    lw = LayerwiseModel(model_dir, device=device, dtype=torch.float32)
    n_tokens, hidden = 0, []
    with torch.no_grad():
        if calibrated:
            report(Progress("gptq", 0.0, "tokenizing calibration text"))
            chunks, _label = calibration_chunks(model_dir, text, n_ctx=s.seqlen, max_tokens=s.samples * s.seqlen)
            ids = torch.tensor(chunks.rows, dtype=torch.long)
            hidden = [lw.embed(ids[i:i + s.batch_rows]).to("cpu") for i in range(0, len(ids), s.batch_rows)]
            n_tokens = chunks.n_tokens

        def run_all(layer: Any, index: int) -> list[Any]:
            outs = []
            for h in hidden:
                cancel.raise_if_cancelled()
                kw = lw.layer_kwargs(h.shape[0], h.shape[1])[index]
                y = run_layer(layer, h.to(device), kw)
                if not torch.isfinite(y).all():
                    raise InvalidModel(f"decoder layer {index} produced NaN/Inf activations on the calibration "
                                       "text; the model weights may be damaged")
                outs.append(y.to("cpu"))
            return outs

        for index in range(lw.n_layers):
            cancel.raise_if_cancelled()
            layer = lw.load_layer(index)
            try:
                prefix = f"{lw.layer_prefix}.{index}."
                mine = [m[len(prefix):] for m in by_layer.get(index, [])]
                hooks = _Hessians(layer, mine) if calibrated else None
                try:
                    if hooks is not None:
                        run_all(layer, index)
                finally:
                    if hooks is not None:
                        hooks.remove()
                packed: dict[str, Any] = {}
                for j, name in enumerate(mine):
                    cancel.raise_if_cancelled()
                    lin = layer.get_submodule(name)
                    w = lin.weight.detach().float()
                    q, scale = (gptq(w, hooks.hessian(name), gs, act_order=s.act_order, damp=s.damp)
                                if hooks is not None else rtn(w, gs))
                    lin.weight.copy_(dequantize_sym(q, scale, gs).to(lin.weight.dtype))
                    packed.update({f"{prefix}{name}.{k}": v for k, v in pack(s.format, q.cpu(), scale.cpu()).items()})
                    report(Progress("gptq", (index + (j + 1) / (len(mine) + 1)) / lw.n_layers,
                                    f"layer {index + 1}/{lw.n_layers}: {name}", index, lw.n_layers))
                if calibrated:  # the next layer sees this layer's quantized output
                    hidden = run_all(layer, index)
            finally:
                lw.release(layer)
            tensors = {e.name: src.get(e.name) for e in plan.shards[index] if e.name in plan.sources}
            writer.write(index, {**tensors, **packed})
            report(Progress("gptq", (index + 1) / lw.n_layers, f"layer {index + 1}/{lw.n_layers}", index + 1,
                            lw.n_layers))
    last = len(plan.shards) - 1
    writer.write(last, {e.name: src.get(e.name) for e in plan.shards[last]})
    writer.finish()
    return n_tokens, device
