"""Which format of a model fits this machine, and how: per format weights, KV cache, compute,
overhead, the fit verdict (gpu / partial N layers / cpu / no), the largest context that fits on the
GPU, and recommendations.

    est = estimate(open_model("demo"), detect_hardware(), RuntimeConfig(n_ctx=8192))
    est.formats[0].fit, est.recommendations

GGUF sizes are exact: per-tensor types and file sizes come from the converter's
``plan_conversion`` (one source of truth for llama.cpp's mixing rules). Runtime terms come from
``quantpress.core.memory`` (each formula cites its source). Non-GGUF formats (AWQ, GPTQ, NF4, FP8,
INT8) are approximate: 2-D layer weights at the format's rate, embeddings/head/norms in 16 bits.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import Keys
from quantpress.core import memory as mem
from quantpress.core.errors import QuantpressError
from quantpress.core.formats import FORMATS, Format, FormatKind, all_formats
from quantpress.core.hardware import Hardware
from quantpress.core.model import ModelInfo, SourceKind

_LAYER = re.compile(r"(?:^|\.)(?:blk|layers|h|block)\.(\d+)\.")


@dataclass(frozen=True)
class Weights:
    """Weight bytes of one format split the way llama.cpp places them."""

    layers: tuple[int, ...]  # per repeating block
    input_bytes: int  # token_embd (always on the CPU in llama.cpp)
    output_bytes: int  # output.weight (or the tied token_embd duplicate) + output_norm etc.
    file_bytes: int | None
    metadata_bytes: int
    exact: bool  # from the converter's plan (True) or approximated here (False)
    # (name, numpy-order shape, GGML type, bytes) of every tensor, for the CPU repack term
    tensors: tuple[tuple[str, tuple[int, ...], str, int], ...] = dataclasses.field(default=(), compare=False, repr=False)
    # bytes of the routed-expert tensors (ffn_*_exps) per block: what --n-cpu-moe keeps in RAM
    expert_layers: tuple[int, ...] = ()
    # the vision projector (mmproj file beside the model) and clip.cpp's compute buffer for it
    mmproj_bytes: int = 0
    mmproj_compute_bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.layers) + self.input_bytes + self.output_bytes


@dataclass(frozen=True)
class Placement:
    ram_bytes: int
    vram_bytes: int


@dataclass(frozen=True)
class FormatEstimate:
    format: str
    kind: str
    bits_per_weight: float  # effective: weight bytes * 8 / parameters
    weights_bytes: int
    file_bytes: int | None  # GGUF only
    file_bytes_exact: bool
    kv_cache_bytes: int
    compute_bytes: int  # on the device that decides the fit (reserved on GPU, resident on CPU)
    overhead_bytes: int
    total_bytes: int  # RAM + VRAM of the chosen placement (CPU-only need when fit is 'no')
    cpu_only_bytes: int  # RAM needed with no GPU at all
    ram_bytes: int
    vram_bytes: int
    fit: str  # 'gpu' | 'partial' | 'cpu' | 'no'
    gpu_layers: int
    max_context_on_gpu: int
    runtime: str
    quality: str
    note: str = ""
    # the vision projector: its file and compute buffer, counted in the totals (on the GPU when layers
    # are offloaded, as the chat loads it; in RAM otherwise); 0 without an mmproj planned or beside the file
    mmproj_bytes: int = 0
    mmproj_compute_bytes: int = 0
    # Mixture-of-experts models: the "GPU + experts in RAM" placement, llama.cpp's --n-cpu-moe N
    # (every layer offloaded, the routed experts of the first N layers kept in RAM) with the
    # smallest N that fits, and its RAM/VRAM. -1: not a MoE model, no GPU, or no N fits.
    cpu_moe_layers: int = -1
    cpu_moe_ram_bytes: int = 0
    cpu_moe_vram_bytes: int = 0


@dataclass(frozen=True)
class ModelSummary:
    name: str
    source: str
    kind: str
    architecture: str
    gguf_arch: str | None
    params: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    context_length: int
    sliding_window: int | None
    n_swa_layers: int
    dtype: str
    convertible: bool
    not_convertible_reason: str
    n_experts: int = 0  # routed experts per MoE layer (0: dense)
    n_experts_used: int = 0  # experts each token is routed to
    active_params: int = 0  # parameters one token runs through (= params for a dense model)


@dataclass(frozen=True)
class Recommendation:
    goal: str
    format: str | None
    reason: str


@dataclass(frozen=True)
class MemoryEstimate:
    model: ModelSummary
    hardware: Hardware
    runtime: mem.RuntimeConfig
    formats: tuple[FormatEstimate, ...]
    recommendations: tuple[Recommendation, ...]
    warnings: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- weights


def _split(model: ModelInfo, sizes: dict[str, int]) -> tuple[tuple[int, ...], int, int]:
    layers = [0] * max(model.n_layers, 1)
    input_b = output_b = 0
    for name, n in sizes.items():
        m = _LAYER.search(name)
        if m and int(m.group(1)) < len(layers):
            layers[int(m.group(1))] += n
        elif "token_embd" in name or "embed_tokens" in name or name.endswith("wte.weight"):
            input_b += n
        else:
            output_b += n
    if model.tied_embeddings:
        output_b += input_b  # llama.cpp loads the tied matrix again as the output layer (TENSOR_DUPLICATED)
    return tuple(layers), input_b, output_b


def _expert_layers(model: ModelInfo, sizes: dict[str, int]) -> tuple[int, ...]:
    """Routed-expert bytes per block (empty for a dense model)."""
    from quantpress.core.gguf.moe import is_routed_expert

    layers = [0] * max(model.n_layers, 1)
    for name, n in sizes.items():
        m = _LAYER.search(name)
        if m and int(m.group(1)) < len(layers) and is_routed_expert(name):
            layers[int(m.group(1))] += n
    return tuple(layers) if any(layers) else ()


def _plan_weights(model: ModelInfo, names: Sequence[str]) -> tuple[dict[str, Weights], list[str]]:
    """Exact GGUF weights from the converter's plan; formats it cannot plan are left out."""
    from quantpress.core.gguf.plan import plan_conversion

    out: dict[str, Weights] = {}
    warnings: list[str] = []
    try:
        plans = [plan_conversion(model, list(names))]
    except QuantpressError:
        plans = []
        for n in names:
            try:
                plans.append(plan_conversion(model, [n]))
            except QuantpressError as exc:
                warnings.append(f"{n}: {exc}")
    for plan in plans:
        # the plan's cautions (an already quantized source, ...) are the estimate's too: the Fit pane shows them
        warnings += [w for w in plan.warnings if w not in warnings]
        shapes = {t.name: t.shape for t in plan.tensors}
        vision = _planned_vision(plan)
        for o in plan.outputs:
            w = _output_weights(model, shapes, o.tensor_types, o.file_bytes, o.metadata_bytes)
            out[o.format] = dataclasses.replace(w, mmproj_bytes=vision[0], mmproj_compute_bytes=vision[1])
    return out, warnings


def _planned_vision(plan: Any) -> tuple[int, int]:
    """(file bytes, compute bytes) of a plan's vision projector, (0, 0) without one."""
    mm = getattr(plan, "mmproj", None)
    if mm is None:
        return 0, 0
    return mm.file_bytes, mem.vision_compute_bytes({k: v for k, v, _ in mm.metadata})


def _vision_beside(path: Path) -> tuple[int, int]:
    """(file bytes, compute bytes) of the mmproj file the chat would load beside a GGUF, (0, 0) without one."""
    from quantpress.core.chat.vision import find_mmproj
    from quantpress.core.gguf.reader import open_gguf

    mm = find_mmproj(path)
    if mm is None:
        return 0, 0
    with open_gguf(mm) as g:
        return mm.stat().st_size, mem.vision_compute_bytes(g.metadata)


def _output_weights(model: ModelInfo, shapes: dict[str, tuple[int, ...]], types: dict[str, str], file_bytes: int,
                    metadata_bytes: int) -> Weights:
    from quantpress.core.gguf import layout

    sizes = {name: layout.tensor_nbytes(shapes[name], t) for name, t in types.items()}
    layers, inp, outb = _split(model, sizes)
    typed = tuple((n, tuple(shapes[n]), t, sizes[n]) for n, t in types.items())
    return Weights(layers, inp, outb, file_bytes, metadata_bytes, True, typed, _expert_layers(model, sizes))


def estimate_output(model: ModelInfo, hardware: Hardware, runtime: mem.RuntimeConfig,
                    shapes: dict[str, tuple[int, ...]], types: dict[str, str], file_bytes: int, metadata_bytes: int,
                    label: str = "MIXED") -> FormatEstimate:
    """The estimate of one GGUF file given by its per-tensor ``types`` (e.g. a plan's output whose
    types were chosen for a target, core/gguf/best_fit.py): the same terms as every catalogue row."""
    c = _Ctx(model, runtime, _n_merges(model), hardware.cpu_flags, mem.gpu_runtime_bytes(hardware.gpus))
    w = _output_weights(model, shapes, types, file_bytes, metadata_bytes)
    return _gguf_estimate(c, label, None, w, hardware, "per-tensor types chosen for a target")


def _approx_gguf(model: ModelInfo, fmt: Format) -> Weights:
    """Base type for quantizable 2-D weights, F32 for the rest (used only when the converter cannot
    plan the model, e.g. unknown architectures): not llama.cpp's mix, so flagged inexact."""
    from quantpress.core.gguf import layout

    sizes, typed = {}, []
    for t in model.tensors:
        gtype = fmt.gguf_type or "F16"
        quantizable = len(t.shape) >= 2 and t.name.endswith("weight") and "norm" not in t.name
        if not quantizable or t.shape[-1] % layout.block_size(gtype):
            gtype = "F32" if not quantizable else "F16"
        sizes[t.name] = layout.tensor_nbytes(t.shape, gtype)
        typed.append((t.name, t.shape, gtype, sizes[t.name]))
    layers, inp, outb = _split(model, sizes)
    return Weights(layers, inp, outb, None, 0, False, tuple(typed), _expert_layers(model, sizes))


def _file_weights(model: ModelInfo) -> Weights:
    """The GGUF file as it is (the source's own tensors)."""
    sizes = {t.name: t.n_bytes for t in model.tensors}
    layers, inp, outb = _split(model, sizes)
    path = Path(model.local_path or model.source)
    file_bytes = path.stat().st_size
    data = sum(sizes.values())
    typed = tuple((t.name, t.shape, t.dtype, t.n_bytes) for t in model.tensors)
    vision = _vision_beside(path)
    return Weights(layers, inp, outb, file_bytes, max(0, file_bytes - data), True, typed,
                   _expert_layers(model, sizes), *vision)


def _other_weights(model: ModelInfo, fmt: Format) -> Weights:
    """AWQ/GPTQ/NF4/FP8/INT8: linear layers at the format's rate; embeddings, head, norms in 16 bits."""
    sizes = {}
    for t in model.tensors:
        n = 1
        for d in t.shape:
            n *= d
        linear = len(t.shape) == 2 and _LAYER.search(t.name) is not None and t.name.endswith("weight")
        sizes[t.name] = int(n * fmt.bits_per_weight / 8) if linear else n * 2
    layers, inp, outb = _split(model, sizes)
    if model.tied_embeddings:
        outb -= inp  # transformers shares the tied matrix
    return Weights(layers, inp, outb, None, 0, False)


# ----------------------------------------------------------------------------- placement


def _repack(model: ModelInfo, w: Weights, flags: tuple[str, ...]) -> tuple[tuple[int, ...], int]:
    """Bytes of the CPU backend's repacked weight copies: per block, and for the output layer."""
    types = mem.repacked_types(flags)
    sizes = {n: b for n, shape, t, b in w.tensors if mem.is_repacked(n, shape, t, types)}
    layers = [0] * max(model.n_layers, 1)
    out = 0
    for name, n in sizes.items():
        m = _LAYER.search(name)
        if m and int(m.group(1)) < len(layers):
            layers[int(m.group(1))] += n
        else:
            out += n
    return tuple(layers), out


def _n_merges(model: ModelInfo) -> int:
    """BPE vocabularies carry about one merge per token; SentencePiece none."""
    folder = Path(model.local_path) if model.local_path else None
    if model.kind == SourceKind.GGUF:
        from quantpress.core.gguf.reader import open_gguf

        with open_gguf(Path(model.local_path or model.source)) as g:
            return model.vocab_size if g.get(Keys.Tokenizer.MODEL) == "gpt2" else 0
    if folder is not None and (folder / "tokenizer.model").is_file() and not (folder / "tokenizer.json").is_file():
        return 0
    return model.vocab_size


@dataclass(frozen=True)
class _Ctx:
    model: ModelInfo
    cfg: mem.RuntimeConfig
    n_merges: int
    cpu_flags: tuple[str, ...] = ()
    gpu_runtime_bytes: int = 0  # measured or default overhead of the GPU (memory.gpu_runtime_bytes)


def _cpu_only(c: _Ctx, w: Weights) -> tuple[int, int, int]:
    """(total RAM, resident compute, overhead) of a CPU-only run: mmapped weights are all read,
    the KV cache is cleared at creation (every page touched), compute as touched."""
    comp = mem.compute_bytes(c.model, c.cfg).resident
    over = mem.cpu_overhead_bytes(c.model, w.metadata_bytes, c.n_merges)
    rl, ro = _repack(c.model, w, c.cpu_flags)
    over += sum(rl) + ro
    vision = w.mmproj_bytes + w.mmproj_compute_bytes
    return _unique(c.model, w) + mem.kv_cache_bytes(c.model, c.cfg) + comp + over + vision, comp, over


def _unique(model: ModelInfo, w: Weights) -> int:
    """Weight bytes stored once (the tied output duplicate is the same data)."""
    return w.total - (w.output_bytes - _untied_output(model, w))


def _untied_output(model: ModelInfo, w: Weights) -> int:
    # On a CPU-only run the tied output is the same mapped pages as token_embd: count it once.
    return w.output_bytes - w.input_bytes if model.tied_embeddings else w.output_bytes


def _gpu_layers(c: _Ctx, w: Weights, n_gpu: int) -> Placement:
    """llama.cpp offloads the LAST n_gpu blocks (i_gpu_start = n_layer - n_gpu); the output layer
    goes to the GPU only when every block does (gguf-parser-go does the same)."""
    model, cfg, n = c.model, c.cfg, c.model.n_layers
    n_gpu = max(0, min(n_gpu, n))
    gpu_range = range(n - n_gpu, n)
    cpu_range = range(0, n - n_gpu)
    comp = mem.compute_bytes(model, cfg)
    full = n_gpu == n
    vram = sum(w.layers[i] for i in gpu_range) + mem.kv_cache_bytes(model, cfg, gpu_range)
    vram += (w.output_bytes if full else 0) + comp.reserved + c.gpu_runtime_bytes
    ram = sum(w.layers[i] for i in cpu_range) + mem.kv_cache_bytes(model, cfg, cpu_range) + w.input_bytes
    ram += 0 if full else _untied_output(model, w)
    rl, ro = _repack(model, w, c.cpu_flags)
    ram += sum(rl[i] for i in cpu_range) + (0 if full else ro)
    ram += mem.cpu_overhead_bytes(model, w.metadata_bytes, c.n_merges)
    ram += (model.hidden_size * cfg.ubatch * 4) if full else comp.resident  # CPU-side graph (inputs; CPU layers)
    vision = w.mmproj_bytes + w.mmproj_compute_bytes  # the chat puts it on the GPU when layers are offloaded
    return Placement(ram + (0 if n_gpu else vision), vram + (vision if n_gpu else 0))


def _experts_in_ram(c: _Ctx, w: Weights, n_cpu_moe: int) -> Placement:
    """llama.cpp's ``--n-cpu-moe N``: n_gpu_layers = all, and a tensor buffer override sends the
    routed experts of blocks 0..N-1 to the CPU buffer type (common/common.h llm_add_n_cpu_ffn_overrides:
    pattern ``blk\\.<i>\\.ffn_(up|down|gate|gate_up)_(ch|)exps``). Those bytes move from the full
    offload's VRAM to RAM (mmapped pages, read as used). An override to the CPU buffer type takes the
    CPU's extra buffer types too (llama-model-loader.cpp: select_weight_buft over buft_list_cpu), so
    experts of a repackable type also get the repacked copy (logged "overridden to CPU_REPACK";
    tests/core/chat/test_cpu_moe.py checks which). The CPU computes their matmuls: the CPU-side
    graph is then the resident compute of a CPU run, as for layers kept on the CPU in ``_gpu_layers``."""
    full = _gpu_layers(c, w, c.model.n_layers)
    n = max(0, min(n_cpu_moe, c.model.n_layers))
    if n == 0:
        return full
    moved = sum(w.expert_layers[:n])
    cpu_graph = mem.compute_bytes(c.model, c.cfg).resident - c.model.hidden_size * c.cfg.ubatch * 4
    ram = full.ram_bytes + moved + _expert_repack_bytes(c, w, n) + max(0, cpu_graph)
    return Placement(ram, full.vram_bytes - moved)


def _expert_repack_bytes(c: _Ctx, w: Weights, n_blocks: int) -> int:
    """The CPU backend's repacked copy of the routed experts of blocks 0..n_blocks-1."""
    from quantpress.core.gguf.moe import is_routed_expert

    types = mem.repacked_types(c.cpu_flags)
    total = 0
    for name, shape, ggml_type, n_bytes in w.tensors:
        m = _LAYER.search(name)
        if m and int(m.group(1)) < n_blocks and is_routed_expert(name) and mem.is_repacked(name, shape, ggml_type, types):
            total += n_bytes
    return total


def _smallest_cpu_moe(c: _Ctx, w: Weights, hw: Hardware) -> tuple[int, Placement] | None:
    """The smallest N for which ``--n-cpu-moe N`` fits (N = 0: everything on the GPU), or None."""
    if not w.expert_layers or not hw.gpus or hw.unified_memory:
        return None
    budget = _vram_budget(hw)
    for n in range(0, c.model.n_layers + 1):
        p = _experts_in_ram(c, w, n)
        if _fits(p, hw, budget):
            return n, p
    return None


def _fits(p: Placement, hw: Hardware, vram_budget: int) -> bool:
    if hw.unified_memory:
        return p.vram_bytes <= vram_budget and p.ram_bytes + p.vram_bytes <= hw.ram_available_bytes
    return p.vram_bytes <= vram_budget and p.ram_bytes <= hw.ram_available_bytes


def _vram_budget(hw: Hardware) -> int:
    # One GPU: llama.cpp can split layers across GPUs, but we plan for the largest single device
    # plus the others' free memory only for layers (close enough for a verdict).
    return hw.vram_free_bytes


def _max_context(c: _Ctx, w: Weights, hw: Hardware) -> int:
    """Largest n_ctx (multiple of 256, up to the model's trained context) with every layer on the GPU."""
    if not hw.gpus:
        return 0
    budget = _vram_budget(hw)

    def ok(n_ctx: int) -> bool:
        cc = dataclasses.replace(c, cfg=dataclasses.replace(c.cfg, n_ctx=n_ctx))
        return _fits(_gpu_layers(cc, w, c.model.n_layers), hw, budget)

    lo, hi = 0, max(1, (c.model.context_length or 131072) // mem.KV_PAD)
    if not ok(mem.KV_PAD):
        return 0
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid * mem.KV_PAD):
            lo = mid
        else:
            hi = mid - 1
    return lo * mem.KV_PAD


def _gguf_estimate(c: _Ctx, fmt_name: str, fmt: Format | None, w: Weights, hw: Hardware, note: str) -> FormatEstimate:
    cpu_total, cpu_comp, over = _cpu_only(c, w)
    kv = mem.kv_cache_bytes(c.model, c.cfg)
    budget = _vram_budget(hw)
    fit, n_gpu, place = "no", 0, Placement(cpu_total, 0)
    if hw.gpus and _fits(full := _gpu_layers(c, w, c.model.n_layers), hw, budget):
        fit, n_gpu, place = "gpu", c.model.n_layers, full
    else:
        best = None
        if hw.gpus and not hw.unified_memory:
            for n in range(c.model.n_layers - 1, 0, -1):
                p = _gpu_layers(c, w, n)
                if _fits(p, hw, budget):
                    best = (n, p)
                    break
        if best:
            fit, n_gpu, place = "partial", best[0], best[1]
        elif cpu_total <= hw.ram_available_bytes:
            fit, place = "cpu", Placement(cpu_total, 0)
    comp = mem.compute_bytes(c.model, c.cfg)
    n_params = max(1, c.model.n_params)
    moe = _smallest_cpu_moe(c, w, hw)
    return FormatEstimate(
        format=fmt_name, kind=FormatKind.GGUF.value,
        bits_per_weight=round(_unique(c.model, w) * 8 / n_params, 4),
        weights_bytes=_unique(c.model, w), file_bytes=w.file_bytes,
        file_bytes_exact=w.exact, kv_cache_bytes=kv,
        compute_bytes=comp.reserved if fit in ("gpu", "partial") else cpu_comp, overhead_bytes=over,
        total_bytes=place.ram_bytes + place.vram_bytes, cpu_only_bytes=cpu_total, ram_bytes=place.ram_bytes,
        vram_bytes=place.vram_bytes, fit=fit, gpu_layers=n_gpu, max_context_on_gpu=_max_context(c, w, hw),
        runtime=fmt.runtime if fmt else "llama.cpp", quality=fmt.quality if fmt else "as stored in the file",
        note=note, cpu_moe_layers=moe[0] if moe else -1, cpu_moe_ram_bytes=moe[1].ram_bytes if moe else 0,
        cpu_moe_vram_bytes=moe[1].vram_bytes if moe else 0, mmproj_bytes=w.mmproj_bytes,
        mmproj_compute_bytes=w.mmproj_compute_bytes)


def _other_estimate(c: _Ctx, fmt: Format, hw: Hardware) -> FormatEstimate:
    """transformers-style runtime: KV in 16 bits, last-token logits, SDPA attention, CUDA context."""
    w = _other_weights(c.model, fmt)
    cfg16 = dataclasses.replace(c.cfg, kv_type="f16")
    kv = mem.kv_cache_bytes(c.model, cfg16)
    comp = mem.compute_bytes(c.model, dataclasses.replace(cfg16, flash_attn=True)).resident
    over = mem.TORCH_GPU_RUNTIME_BYTES
    vram = w.total + kv + comp + over
    gpu_ok = bool(hw.gpus) and any(g.backend in ("cuda", "override") for g in hw.gpus)
    fit = "gpu" if gpu_ok and vram <= _vram_budget(hw) else "no"
    max_ctx = 0
    if gpu_ok:
        per_token = kv / max(1, mem.pad(c.cfg.n_ctx, mem.KV_PAD))
        room = _vram_budget(hw) - (w.total + comp + over)
        max_ctx = int(min(room / per_token, c.model.context_length or 131072)) // mem.KV_PAD * mem.KV_PAD if room > 0 else 0
    note = "approximate (not calibrated); needs a CUDA GPU" if not gpu_ok else "approximate (not calibrated)"
    cpu_bytes = w.total + kv + comp  # no CUDA context: quantpress's own AWQ backend runs from RAM
    ram = 0
    if not gpu_ok and fmt.kind is FormatKind.AWQ:  # vLLM needs CUDA, but quantpress runs AWQ on the CPU
        fit, ram, vram, over = ("cpu" if cpu_bytes <= hw.ram_available_bytes else "no"), cpu_bytes, 0, 0
        note = "approximate (not calibrated); runs on the CPU with quantpress (vLLM needs a CUDA GPU)"
    exact = _hf_quant_bytes(c.model, fmt)  # the folder quantpress writes, planned to the byte (core/hfquant)
    return FormatEstimate(
        format=fmt.name, kind=fmt.kind.value, bits_per_weight=round(w.total * 8 / max(1, c.model.n_params), 4),
        weights_bytes=w.total, file_bytes=exact, file_bytes_exact=exact is not None, kv_cache_bytes=kv,
        compute_bytes=comp, overhead_bytes=over, total_bytes=vram + ram,
        cpu_only_bytes=cpu_bytes if fmt.kind is FormatKind.AWQ else 0, ram_bytes=ram, vram_bytes=vram, fit=fit,
        gpu_layers=c.model.n_layers if fit == "gpu" else 0, max_context_on_gpu=max_ctx, runtime=fmt.runtime,
        quality=fmt.quality, note=note)


def _hf_quant_bytes(model: ModelInfo, fmt: Format) -> int | None:
    if model.kind != SourceKind.HF_FOLDER or model.local_path is None:
        return None
    from quantpress.core.hfquant.plan import planned_file_bytes

    return planned_file_bytes(model.local_path, fmt.name)


def gpu_buffer_terms(model: ModelInfo, runtime: mem.RuntimeConfig) -> dict[str, int]:
    """llama.cpp's device buffers of ``model`` as it is (a GGUF file) with every layer on one GPU,
    named as its load log names them ("model", "KV", "compute"); the VRAM of a full offload is their
    sum plus the runtime overhead (``_gpu_layers``)."""
    w = _file_weights(model)
    return {"model": sum(w.layers) + w.output_bytes, "KV": mem.kv_cache_bytes(model, runtime),
            "compute": mem.compute_bytes(model, runtime).reserved}


def gpu_buffers_bytes(model: ModelInfo, runtime: mem.RuntimeConfig) -> int:
    """The sum of :func:`gpu_buffer_terms`: what the GPU probe subtracts from its measurement."""
    return sum(gpu_buffer_terms(model, runtime).values())


# ----------------------------------------------------------------------------- entry point

_FIT_ORDER = {"gpu": 0, "partial": 1, "cpu": 2, "no": 3}


_PLACE_TEXT = {"gpu": "fully on the GPU", "partial": "partly on the GPU, the rest on the CPU", "cpu": "on the CPU from RAM"}

# On a CPU, generation reads every weight for every token, so speed falls with file size; the best quality
# is rarely worth it. The balanced pick is the smallest file whose published loss stays small: llama.cpp's
# KLD table for Llama-3-8B (tools/perplexity/README.md) puts Q4_K_M at 0.031 and the next smaller mixes at
# 0.036 (IQ4_XS, with an imatrix) and 0.043 (Q4_K_S); Ollama and LM Studio default to Q4_K_M for the same reason.
BALANCED_MAX_KLD = 0.035


def _balanced_cpu_pick(runs: Sequence[FormatEstimate]) -> Recommendation:
    """The CPU-only recommendation: quality per byte, said in words a user can act on."""
    small_loss = [e for e in runs if (kld := FORMATS[e.format].kld) is not None and kld <= BALANCED_MAX_KLD]
    if not small_loss:  # only lossy formats fit: the best of them
        best = runs[0]
        return Recommendation("best that runs here", best.format,
                              f"{best.format} is the best quality that fits in RAM (runs on the CPU); it loses "
                              "noticeable quality: more RAM would allow a better format")
    pick = min(small_loss, key=lambda e: (e.weights_bytes, FORMATS[e.format].quality_rank))
    kld = FORMATS[pick.format].kld or 0.0
    return Recommendation(
        "best that runs here", pick.format,
        f"{pick.format} runs on the CPU from RAM ({pick.cpu_only_bytes / 1024**3:.2f} GiB): on a CPU speed falls "
        f"with file size, and it is the smallest file whose published quality loss is small (KLD {kld:.3f} on "
        "Llama-3-8B); larger formats are a little better but slower")


def _recommend(est: Sequence[FormatEstimate], budget_bytes: int | None) -> tuple[Recommendation, ...]:
    gguf = [e for e in est if e.kind == FormatKind.GGUF.value and e.format in FORMATS and e.format != "F32"]
    rank: Callable[[FormatEstimate], int] = lambda e: FORMATS[e.format].quality_rank  # noqa: E731
    out = []
    on_gpu = sorted((e for e in gguf if e.fit == "gpu"), key=rank)
    out.append(Recommendation("best quality fully on GPU", on_gpu[0].format if on_gpu else None,
                              f"{on_gpu[0].format} fits entirely in VRAM at this context" if on_gpu
                              else "no GGUF format fits entirely on the GPU at this context"))
    runs = sorted((e for e in gguf if e.fit != "no"), key=lambda e: (_FIT_ORDER[e.fit], rank(e)))
    if runs and runs[0].fit == "cpu":
        out.append(_balanced_cpu_pick(runs))
    else:
        out.append(Recommendation("best that runs here", runs[0].format if runs else None,
                                  f"{runs[0].format} runs {_PLACE_TEXT[runs[0].fit]} at this context" if runs
                                  else "nothing fits in RAM + VRAM"))
    if budget_bytes is not None:
        # The model's own runtime memory (weights + KV + compute + overhead, no GPU runtime).
        under = sorted((e for e in gguf if e.cpu_only_bytes <= budget_bytes), key=rank)
        gib = budget_bytes / 1024**3
        out.append(Recommendation(f"best quality under {gib:g} GiB", under[0].format if under else None,
                                  f"{under[0].format} needs {under[0].cpu_only_bytes / 1024**3:.2f} GiB at this context"
                                  if under else f"no GGUF format needs less than {gib:g} GiB"))
    return tuple(out)


def summarize(model: ModelInfo) -> ModelSummary:
    from quantpress.core.gguf.moe import active_params

    active = active_params(((t.name, t.shape) for t in model.tensors), model.n_experts, model.n_experts_used)
    return ModelSummary(
        name=model.name, source=model.source, kind=model.kind.value, architecture=model.architecture,
        gguf_arch=model.gguf_arch, params=model.n_params, n_layers=model.n_layers, n_heads=model.n_heads,
        n_kv_heads=model.n_kv_heads, head_dim=model.head_dim, hidden_size=model.hidden_size,
        vocab_size=model.vocab_size, context_length=model.context_length, sliding_window=model.sliding_window,
        n_swa_layers=len(model.swa_layers), dtype=model.dtype, convertible=model.convertible,
        not_convertible_reason=model.not_convertible_reason, n_experts=model.n_experts,
        n_experts_used=model.n_experts_used, active_params=active if model.tensors else model.n_params)


def estimate(model: ModelInfo, hardware: Hardware, runtime: mem.RuntimeConfig | None = None, *,
             formats: Sequence[str] | None = None, budget_bytes: int | None = None) -> MemoryEstimate:
    """Estimate every catalogue format (or ``formats``) of ``model`` on ``hardware``."""
    runtime = runtime or mem.RuntimeConfig()
    rows = [f for f in all_formats() if (formats is None or f.name in {x.upper() for x in formats})
            and (model.n_experts > 1 or not f.moe_only)]  # MXFP4_MOE is Q8_0 on a dense model
    c = _Ctx(model, runtime, _n_merges(model), hardware.cpu_flags, mem.gpu_runtime_bytes(hardware.gpus))
    warnings: list[str] = []
    gguf_rows = [f for f in rows if f.kind == FormatKind.GGUF]
    planned: dict[str, Weights] = {}
    if model.convertible and gguf_rows:
        planned, warnings = _plan_weights(model, [f.name for f in gguf_rows])
    elif not model.convertible:
        warnings.append(f"not convertible: {model.not_convertible_reason}; GGUF sizes are approximate")
    out: list[FormatEstimate] = []
    if model.kind == SourceKind.GGUF:
        out.append(_gguf_estimate(c, f"FILE ({model.dtype})", None, _file_weights(model), hardware,
                                  "this file as it is"))
    for f in rows:
        if f.kind == FormatKind.GGUF:
            w = planned.get(f.name) or _approx_gguf(model, f)
            out.append(_gguf_estimate(c, f.name, f, w, hardware, "" if w.exact else "approximate file size"))
        elif model.tensors:
            out.append(_other_estimate(c, f, hardware))
    if runtime.n_ctx > (model.context_length or runtime.n_ctx):
        warnings.append(f"context {runtime.n_ctx} is beyond the model's trained {model.context_length} tokens")
    return MemoryEstimate(summarize(model), hardware, runtime, tuple(out), _recommend(out, budget_bytes),
                          tuple(warnings))
