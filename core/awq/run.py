"""The AWQ pass: calibration text through the model one decoder layer at a time; per layer capture
the linears' inputs, search and fold the scales, search the clips, quantize, and hand the layer's
tensors to a writer (core/awq/export.py). The next layer's input comes from the full-precision
layer, as in AutoAWQ and llm-awq.

Memory: one decoder layer, the calibration hidden states (samples · seqlen · hidden · 4 bytes), the
inputs of the search rows for each linear, and the per-channel statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.awq.groups import NO_CLIP_SUBSTRINGS, arch_for, matching_width_ok
from quantpress.core.awq.quantizer import group_size_for, quantize
from quantpress.core.awq.search import apply_clip, apply_scale, search_clip, search_scale
from quantpress.core.calibration.collect import calibration_chunks, resolve_device
from quantpress.core.calibration.imatrix import Imatrix
from quantpress.core.calibration.layerwise import LayerwiseModel, run_layer
from quantpress.core.errors import InvalidInput, InvalidModel
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore


@dataclass(frozen=True)
class AwqSettings:
    group_size: int = 128
    samples: int = 4  # calibration rows of ``seqlen`` tokens (statistics and the next layer's inputs)
    seqlen: int = 512
    search_samples: int = 2  # rows the grid and clip searches score on (cost grows with this)
    n_grid: int = 10  # AutoAWQ uses 20; 10 halves the search time (measured in BENCHMARKS.md)
    duo_scaling: bool = True
    scale_search: bool = True  # False: no scales (ablation / round-to-nearest)
    clip_search: bool = True  # False: no clipping (ablation / round-to-nearest)
    batch_rows: int = 4
    device: str = "auto"  # "auto": CUDA when torch sees a GPU (issue 17: 14 s for a 1.2B model on an H200), else CPU

    def __post_init__(self) -> None:
        if self.group_size not in (128, 64, 32):
            raise InvalidInput(f"group size {self.group_size} is not supported; use 128, 64 or 32")
        if self.samples < 1 or self.seqlen < 16:
            raise InvalidInput("AWQ needs at least 1 calibration sample of at least 16 tokens")


DEFAULT_SETTINGS = AwqSettings()


@dataclass(frozen=True)
class LinearPlan:
    name: str  # HF module name, e.g. model.layers.3.mlp.down_proj
    in_features: int
    out_features: int
    group_size: int | None  # None: left unquantized (no allowed group size divides the width)


@dataclass(frozen=True)
class AwqPlan:
    model_dir: str
    hf_class: str
    n_layers: int  # decoder layers, calibrated one at a time
    settings: AwqSettings
    linears: tuple[LinearPlan, ...]
    notes: tuple[str, ...] = ()

    def group_sizes(self) -> dict[str, int | None]:
        return {lp.name: lp.group_size for lp in self.linears}


@dataclass
class LayerReport:
    index: int
    seconds: float
    scale_ratios: dict[str, float] = field(default_factory=dict)  # group -> best r
    scale_gain: dict[str, float] = field(default_factory=dict)  # group -> loss reduction vs r=0


@dataclass
class AwqRun:
    """What the pass produced besides the tensors the writer got."""

    plan: AwqPlan
    layers: list[LayerReport]
    imatrix: Imatrix  # mean x² of each linear's input in the *scaled* model (for AWQ-for-GGUF)
    n_tokens: int
    dataset: str
    seconds: float
    device: str = "cpu"  # the torch device the pass ran on


# writer(layer_index, quantized {module: (q, scale, zero, group_size)}, float tensors {name: tensor})
LayerWriter = Callable[[int, dict[str, tuple[Any, Any, Any, int]], dict[str, Any]], None]
# ablation(layer_index, {variant: (quantized, float tensors)})
AblationWriter = Callable[[int, dict[str, tuple[dict[str, tuple[Any, Any, Any, int]], dict[str, Any]]]], None]


def plan_awq(model_dir: str | Path, settings: AwqSettings = DEFAULT_SETTINGS, *, uniform: bool = False) -> AwqPlan:
    """Which linears get which group size (from the safetensors headers; no weights read). Each
    linear gets the largest allowed size <= the requested one dividing its input width; with
    ``uniform`` (AutoAWQ's format has one group size) one size that divides every width."""
    lw = LayerwiseModel(model_dir)
    arch_for(lw.hf_class)
    shapes = _linear_shapes(lw)
    linears, notes = [], []
    odd: dict[int, int] = {}
    common = settings.group_size
    if uniform:
        while common > 32 and any(n_in % common for _, n_in in shapes.values()):
            common //= 2
    for name, (n_out, n_in) in shapes.items():
        gs = group_size_for(n_in, common)
        if gs is not None and n_out % 8:
            gs = None
        linears.append(LinearPlan(name, n_in, n_out, gs))
        if gs != settings.group_size:
            odd[n_in] = gs or 0
    if uniform and common != settings.group_size:
        widths = sorted({n_in for _, n_in in shapes.values() if n_in % settings.group_size})
        notes.append(f"{', '.join(map(str, widths))}-wide inputs are not a multiple of {settings.group_size}: "
                     f"group size {common} used for every layer (one size for the whole checkpoint)")
        odd = {n_in: gs for n_in, gs in odd.items() if not gs}  # only the unquantized ones are left to say
    for n_in, gs in sorted(odd.items()):
        notes.append(f"{n_in}-wide inputs are not a multiple of {settings.group_size}: "
                     + (f"group size {gs} used there" if gs else "left unquantized"))
    return AwqPlan(str(model_dir), lw.hf_class, lw.n_layers, settings, tuple(linears), tuple(notes))


def _linear_shapes(lw: LayerwiseModel) -> dict[str, tuple[int, int]]:
    from safetensors import safe_open

    out: dict[str, tuple[int, int]] = {}
    for key, path in sorted(lw.weights.files.items()):
        if key.startswith(lw.layer_prefix + ".") and key.endswith(".weight"):
            module = key[: -len(".weight")]
            rel = module.split(".", 3)[3]
            if not isinstance(lw.layers[0].get_submodule(rel), __import__("torch").nn.Linear):
                continue
            with safe_open(str(path), framework="pt") as f:
                shape = f.get_slice(key).get_shape()
            out[module] = (int(shape[0]), int(shape[1]))
    return out


class _Capture:
    """Hooks on a layer's linears: mean |x| and Σ x² per column over all rows, inputs of search rows."""

    def __init__(self, layer: Any, names: list[str]) -> None:
        self.abs_sum: dict[str, Any] = {}
        self.sq_sum: dict[str, Any] = {}
        self.count: dict[str, int] = {}
        self.inputs: dict[str, list[Any]] = {n: [] for n in names}
        self.keep_rows = 0  # leading rows of the current batch to keep for the searches
        self._handles = [layer.get_submodule(n).register_forward_pre_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Any:
        def hook(_m: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            flat = x.reshape(-1, x.shape[-1])
            a, s = flat.abs().sum(0, dtype=flat.dtype), (flat.double() ** 2).sum(0)
            self.abs_sum[name] = a if name not in self.abs_sum else self.abs_sum[name] + a
            self.sq_sum[name] = s if name not in self.sq_sum else self.sq_sum[name] + s
            self.count[name] = self.count.get(name, 0) + flat.shape[0]
            if self.keep_rows:
                self.inputs[name].append(x[: self.keep_rows])

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def run_awq(plan: AwqPlan, write: LayerWriter, text: str | None = None, *, report: Report = ignore,
            cancel: CancelToken = NEVER, ablation: AblationWriter | None = None) -> AwqRun:
    """Run the pass (see module docstring); ``text`` None = the default calibration text. With
    ``ablation``, each layer also yields the "rtn", "awq-no-scale", "awq-no-clip" and "awq"
    variants (quantized tensors and float tensors) from the same capture and scale search."""
    import torch

    s = plan.settings
    device = resolve_device(s.device)
    model_dir = Path(plan.model_dir)
    spec = arch_for(plan.hf_class)
    throttle = Throttle(report)
    throttle(Progress("awq", 0.0, "tokenizing calibration text"))
    chunks, label = calibration_chunks(model_dir, text, n_ctx=s.seqlen, max_tokens=s.samples * s.seqlen,
                                       min_chunks=min(s.samples, 1))
    lw = LayerwiseModel(model_dir, device=device, dtype=torch.float32)
    ids = torch.tensor(chunks.rows, dtype=torch.long)
    batches = [ids[i:i + s.batch_rows] for i in range(0, len(ids), s.batch_rows)]
    n_search_rows = max(1, min(s.search_samples, len(ids)))
    group_sizes = plan.group_sizes()
    start = time.monotonic()
    layers: list[LayerReport] = []
    im_sums: dict[str, np.ndarray] = {}
    im_counts: dict[str, np.ndarray] = {}
    with torch.no_grad():
        hidden = [lw.embed(b).to("cpu") for b in batches]
        for index in range(lw.n_layers):
            cancel.raise_if_cancelled()
            t0 = time.monotonic()
            layer = lw.load_layer(index)
            try:
                def stage(msg: str, part: float, index: int = index) -> None:
                    f = (index + part) / lw.n_layers
                    throttle(Progress("awq", f, f"layer {index + 1}/{lw.n_layers}: {msg}", index, lw.n_layers))

                rep = _process_layer(lw, layer, index, hidden, n_search_rows, spec, group_sizes, s, device,
                                     write, im_sums, im_counts, cancel, stage, ablation)
            finally:
                lw.release(layer)
            rep.seconds = time.monotonic() - t0
            layers.append(rep)
            done = index + 1
            throttle(Progress("awq", done / lw.n_layers, f"layer {done}/{lw.n_layers} ({rep.seconds:.1f} s)",
                              done, lw.n_layers))
    imatrix = Imatrix(im_sums, im_counts, (label,), len(chunks.rows), s.seqlen, chunks.n_tokens, source=str(model_dir))
    return AwqRun(plan, layers, imatrix, chunks.n_tokens, label, time.monotonic() - start, device)


def _process_layer(lw: LayerwiseModel, layer: Any, index: int, hidden: list[Any], n_search: int, spec: Any,
                   group_sizes: dict[str, int | None], s: AwqSettings, device: str, write: LayerWriter,
                   im_sums: dict[str, np.ndarray], im_counts: dict[str, np.ndarray],
                   cancel: CancelToken, stage: Callable[[str, float], None],
                   ablation: AblationWriter | None = None) -> LayerReport:
    import torch

    prefix = f"{lw.layer_prefix}.{index}."
    names = [n for n, _ in lw.linear_names(index, layer)]
    cap = _Capture(layer, names)
    kwargs = lw.layer_kwargs(hidden[0].shape[0], hidden[0].shape[1])[index]
    try:
        for b in range(len(hidden)):
            cancel.raise_if_cancelled()
            stage("capturing inputs", 0.2 * b / len(hidden))
            cap.keep_rows = max(0, min(hidden[b].shape[0], n_search - b * hidden[0].shape[0]))
            kw = kwargs if hidden[b].shape[0] == hidden[0].shape[0] else \
                lw.layer_kwargs(hidden[b].shape[0], hidden[b].shape[1])[index]
            out = run_layer(layer, hidden[b].to(device), kw)
            if not torch.isfinite(out).all():
                raise InvalidModel(f"decoder layer {index} produced NaN/Inf activations on the calibration text; "
                                   f"the model weights may be damaged")
            hidden[b] = out.to("cpu")
    finally:
        cap.remove()
    # The searches run on one batch of the first ``n_search`` rows, with kwargs (masks) for that shape.
    inputs = {n: [torch.cat(v, dim=0)] for n, v in cap.inputs.items()}
    first = next(iter(inputs.values()))[0]
    kwargs = lw.layer_kwargs(first.shape[0], first.shape[1])[index]
    rep = LayerReport(index, 0.0)
    sq = {n: cap.sq_sum[n] for n in names}
    gsz = {n: group_sizes.get(prefix + n) for n in names}
    searchable = {n: g for n, g in gsz.items() if g is not None}
    ctx = _Finish(layer, names, gsz, prefix, stage, cancel)
    if ablation is not None:  # RTN and clip-only variants from the unscaled weights, then restore them
        original = {k: v.clone() for k, v in layer.state_dict().items()}
        variants = {"rtn": (ctx.quantize_all(), ctx.floats())}
        ctx.clip_all(dict(inputs))
        variants["awq-no-scale"] = (ctx.quantize_all(), ctx.floats())
        layer.load_state_dict(original)
    # 1. scales: all groups searched on the original weights, then folded (AutoAWQ order)
    found: list[tuple[Any, Any]] = []
    for group in spec.groups if s.scale_search else ():
        cancel.raise_if_cancelled()
        if any(n not in searchable for n in group.linears):
            continue
        prev, first = layer.get_submodule(group.prev), layer.get_submodule(group.linears[0])
        prev_out = prev.weight.shape[0]
        if not matching_width_ok(group, prev_out, first.weight.shape[1]):
            continue
        stage(f"searching scales ({group.inspect})", 0.2 + 0.6 * len(found) / len(spec.groups))
        x_mean = cap.abs_sum[group.linears[0]] / cap.count[group.linears[0]]
        try:
            scale, ratio, gain = search_scale(layer, group, inputs[group.linears[0]], x_mean, _attn_kwargs(kwargs),
                                              searchable, n_grid=s.n_grid, duo=s.duo_scaling)
        except FloatingPointError as exc:  # every candidate overflowed: the weights are out of any sane range
            raise InvalidModel(f"decoder layer {index}: {exc} (its outputs overflow to NaN/Inf); the checkpoint's "
                               "weights are damaged or out of range") from None
        found.append((group, scale))
        rep.scale_ratios[group.prev] = ratio
        rep.scale_gain[group.prev] = gain
    for group, scale in found:
        apply_scale(layer, group, scale, spec.norm_offset)
        scaled = [x / scale for x in inputs[group.linears[0]]]
        for n in group.linears:
            inputs[n] = scaled
            sq[n] = sq[n] / scale.double() ** 2
    if ablation is not None:
        variants["awq-no-clip"] = (ctx.quantize_all(), ctx.floats())
    # 2. clips, 3. quantize
    if s.clip_search:
        ctx.clip_all(inputs)
    quantized = ctx.quantize_all()
    for n in names:
        gname = lw.gguf_name(prefix + n + ".weight")
        if gname is not None:
            im_sums[gname] = sq[n].float().cpu().numpy().reshape(1, -1)
            im_counts[gname] = np.array([cap.count[n]], np.float32)
    write(index, quantized, ctx.floats())
    if ablation is not None:
        variants["awq"] = (quantized, ctx.floats())
        ablation(index, variants)
    return rep


class _Finish:
    """Clip search and quantization of a layer's linears (in place on the layer's weights)."""

    def __init__(self, layer: Any, names: list[str], gsz: dict[str, int | None], prefix: str,
                 stage: Callable[[str, float], None], cancel: CancelToken) -> None:
        self.layer, self.names, self.gsz, self.prefix = layer, names, gsz, prefix
        self.stage, self.cancel = stage, cancel

    def clip_all(self, inputs: dict[str, list[Any]]) -> None:
        import torch

        for i, n in enumerate(self.names):
            self.cancel.raise_if_cancelled()
            self.stage(f"clipping {n}", 0.8 + 0.2 * i / len(self.names))
            gs = self.gsz[n]
            if gs is None or any(t in n for t in NO_CLIP_SUBSTRINGS):
                continue
            lin = self.layer.get_submodule(n)
            x = torch.cat([t.reshape(-1, t.shape[-1]) for t in inputs[n]], dim=0)
            lin.weight.copy_(apply_clip(lin.weight, search_clip(lin.weight, x, gs), gs))

    def quantize_all(self) -> dict[str, tuple[Any, Any, Any, int]]:
        out: dict[str, tuple[Any, Any, Any, int]] = {}
        for n in self.names:
            gs = self.gsz[n]
            if gs is not None:
                q, scale, zero = quantize(self.layer.get_submodule(n).weight.float().cpu(), gs)
                out[self.prefix + n] = (q, scale, zero, gs)
        return out

    def floats(self) -> dict[str, Any]:
        return {self.prefix + k: v.detach().cpu().clone() for k, v in self.layer.state_dict().items()}


def _attn_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "use_cache"}
