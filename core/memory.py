"""Runtime memory of a GGUF model in llama.cpp (as llama-cpp-python 0.3.36 runs it), term by term.

Every term names its source. Two views of the same allocations:
- *reserved*: what llama.cpp allocates (what a GPU must hold; cudaMalloc commits it all);
- *resident*: what becomes RAM on a CPU-only run (Linux commits pages only when touched; weights
  are mmapped and become resident as they are read). The CPU numbers are calibrated against the
  peak RSS increase of a real load + full-context evaluation (benchmarks/estimate_memory.py).

Defaults follow llama-cpp-python's ``Llama()``: n_batch 512 (n_ubatch = n_batch), flash attention
off, logits for the last token only, one sequence, mmap on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from quantpress.core.errors import InvalidInput
from quantpress.core.hardware import Gpu
from quantpress.core.model import ModelInfo

MIB = 1024**2

# llama.cpp pads the KV cache to 256 cells (src/llama-kv-cache.cpp: kv_size = GGML_PAD(n_ctx, 256);
# llama-context.cpp pads n_ctx the same way).
KV_PAD = 256

# (block size, bytes per block) of the cache types llama.cpp allows (common/arg.cpp kv_cache_types),
# from gguf-py's table of ggml's block layouts.
KV_TYPES: dict[str, tuple[int, int]] = {
    name.lower(): GGML_QUANT_SIZES[GGMLQuantizationType[name]]
    for name in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL")
}

# --- Calibrated CPU constants (benchmarks/estimate_memory.py fits them; see BENCHMARKS.md) ---------
# Process-level cost of a loaded llama.cpp model + context besides the buffers below: ggml contexts,
# the scheduler, thread pool, llama-cpp-python's own arrays. Fitted on tiny (vocab 384) models.
CPU_FIXED_BYTES = 6 * MIB
# Tokenizer structures per vocab entry and per BPE merge: gguf-parser-go's footprint formula
# (file_estimate__llamacpp.go: tokens*(8+32+56) B + merges*104 B), times a fitted factor for the
# gguf_context's own copy of the token strings and the token-to-piece cache.
TOKEN_BYTES = 8 + 32 + 56
MERGE_BYTES = 104
TOKENIZER_FACTOR = 1.4  # fitted on the demo (49k-token BPE) at 512/2048 context
# GPU runtime overhead per device besides llama.cpp's model/KV/compute buffers: the CUDA context,
# cuBLAS handles and workspace, ggml's CUDA memory pool. No formula gives it: `quantpress doctor
# --gpu-probe` measures it once per GPU, driver and llama.cpp build (core/gpu_probe.py) and
# Gpu.runtime_bytes carries it. Unmeasured, these conservative defaults apply. CUDA: on an H200
# (driver 580, CUDA 13, llama-cpp-python 0.3.36) NVML's used peak of a full offload was a constant
# ~706 MiB above the buffers (issue 17: 406 MiB above the former 300 MiB guess, at 4k and 32k
# context, Q4_K_M and Q8_0), so 768 MiB. ROCm and Vulkan: not measured, taken as CUDA's. Metal:
# not measured; no separate device context, but kept at 512 MiB to stay on the safe side.
GPU_RUNTIME_DEFAULT_BYTES: dict[str, int] = {
    "cuda": 768 * MIB, "rocm": 768 * MIB, "vulkan": 768 * MIB, "metal": 512 * MIB, "override": 768 * MIB,
}
# transformers/torch (AWQ and the other non-GGUF rows): torch's CUDA context and caching allocator
# slack. A guess (gguf-parser-go's default platform footprint is 250 MiB); not measured.
TORCH_GPU_RUNTIME_BYTES = 300 * MIB
# Graph inputs (token ids, positions, output ids) and buffer alignment: the constant left between
# our compute formula and the logged "compute buffer size" (fitted, tiny and 135M models).
GRAPH_FIXED_BYTES = MIB // 2

# Weight types the CPU backend repacks into an interleaved copy (CPU_REPACK buffer) when the
# tensor feeds a matmul and its rows are a multiple of 8 (ggml-cpu/repack.cpp
# ggml_repack_get_optimal_repack_type). The copy is extra RAM on top of the mmapped file pages,
# which were read to make it and stay resident. Keyed by the CPU feature that enables it.
REPACK_TYPES: tuple[tuple[str, frozenset[str]], ...] = (
    ("avx2", frozenset({"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"})),
    ("avx512f", frozenset({"Q2_K"})),
    ("dotprod", frozenset({"Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "MXFP4"})),
    ("i8mm", frozenset({"Q8_0"})),
)


def repacked_types(cpu_flags: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for flag, types in REPACK_TYPES:
        if flag in cpu_flags:
            out |= types
    return frozenset(out)


def is_repacked(name: str, shape: tuple[int, ...], ggml_type: str, types: frozenset[str]) -> bool:
    """A matmul weight (not the token embedding, used by get_rows) of a repacked type, rows % 8 == 0
    (``shape`` in numpy order: rows = shape[-2] = ggml ne[1])."""
    return (ggml_type in types and len(shape) >= 2 and shape[-2] % 8 == 0 and "token_embd" not in name
            and "embed_tokens" not in name)


@dataclass(frozen=True)
class RuntimeConfig:
    """How the model will be run. ``flash_attn`` None: on only when the KV cache is quantized
    (llama.cpp requires flash attention for a quantized V cache)."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    kv_type: str = "f16"  # of K, and of V unless kv_type_v says otherwise
    flash_attn: bool | None = None
    n_seq: int = 1
    kv_type_v: str | None = None
    # Full-size cache on sliding-window layers: llama.cpp's llama_context_default_params sets
    # swa_full = true and llama-cpp-python 0.3.36's Llama() keeps it unless given swa_full (measured:
    # a Gemma-2-shaped model at 8192 tokens used the full cache on its SWA layers). False: the
    # windowed SWA cache (llama-server's default, --swa-full off).
    swa_full: bool = True

    def __post_init__(self) -> None:
        for t in (self.kv_type, self.kv_type_v or self.kv_type):
            if t not in KV_TYPES:
                raise InvalidInput(f"unknown KV cache type '{t}'; choose from {', '.join(KV_TYPES)}")
        if self.n_ctx < 1 or self.n_batch < 1 or self.n_ubatch < 1:
            raise InvalidInput("context and batch sizes must be positive")

    @property
    def fa(self) -> bool:
        quantized_v = (self.kv_type_v or self.kv_type) not in ("f16", "f32", "bf16")
        return quantized_v if self.flash_attn is None else self.flash_attn

    @property
    def ubatch(self) -> int:
        # llama.cpp: n_ubatch = min(n_batch, n_ubatch), and never more tokens than the context.
        return max(1, min(self.n_batch, self.n_ubatch, self.n_ctx))


def gpu_runtime_bytes(gpus: Sequence[Gpu]) -> int:
    """The runtime overhead to add per offloaded run: the measured value of the (first) GPU, else
    its backend's default (CUDA's for an unknown backend or no GPU at all)."""
    if not gpus:
        return GPU_RUNTIME_DEFAULT_BYTES["cuda"]
    if gpus[0].runtime_bytes is not None:
        return int(gpus[0].runtime_bytes)
    return GPU_RUNTIME_DEFAULT_BYTES.get(gpus[0].backend, GPU_RUNTIME_DEFAULT_BYTES["cuda"])


def pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def kv_row_bytes(kv_type: str, n: int) -> int:
    blck, size = KV_TYPES[kv_type]
    return -(-n // blck) * size  # ggml_row_size


@dataclass(frozen=True)
class KVShape:
    """What llama.cpp's KV cache size depends on, for a model known only from its GGUF header
    (the chat) as for a ModelInfo (the estimator): one formula for both."""

    n_layers: int
    n_embd_k_gqa: int  # key width per layer summed over KV heads
    n_embd_v_gqa: int
    sliding_window: int | None = None
    swa_layers: tuple[int, ...] = ()
    recurrent_layers: tuple[int, ...] = ()  # layers with a recurrent state instead of KV (hybrids)
    recurrent_state_bytes: int = 0  # that state, per layer and sequence
    n_nextn_layers: int = 0  # trailing MTP blocks: no cache at all
    kv_widths: tuple[tuple[int, int], ...] = ()  # per layer (K, V) widths where they differ (Gemma 4)
    n_kv_shared_layers: int = 0  # trailing layers reusing an earlier layer's cache (Gemma 4)

    @classmethod
    def of(cls, model: ModelInfo | KVShape) -> KVShape:
        if isinstance(model, KVShape):
            return model
        if model.mla_kv_width:  # MLA: one latent K row per token and layer, no V (ModelInfo.mla_kv_width)
            k_width, v_width = model.mla_kv_width, 0
        else:
            k_width, v_width = model.head_dim * model.n_kv_heads, model.head_dim_v * model.n_kv_heads
        return cls(model.n_layers, k_width, v_width, model.sliding_window, model.swa_layers, model.recurrent_layers,
                   model.recurrent_state_bytes, model.n_nextn_layers, model.kv_widths, model.n_kv_shared_layers)

    def has_cache(self, layer: int) -> bool:
        """Whether llama.cpp gives ``layer`` a cache of its own: not MTP blocks (n_layer() excludes
        them), not KV-shared layers (llama-hparams.cpp has_kv: il < n_layer_kv_from_start)."""
        return layer < self.n_layers - max(self.n_nextn_layers, self.n_kv_shared_layers)

    def widths(self, layer: int, fa: bool) -> tuple[int, int]:
        """(K, V) row widths of ``layer``'s cache. Without flash attention V is stored transposed and
        every layer's V is padded to the widest (llama-kv-cache.cpp, TAG_V_CACHE_VARIABLE:
        n_embd_v_gqa_max() when v_trans)."""
        if not self.kv_widths:
            return self.n_embd_k_gqa, self.n_embd_v_gqa
        k, v = self.kv_widths[layer]
        return k, (v if fa else max(w for _, w in self.kv_widths))


def recurrent_state_bytes(d_conv: int, d_inner: int, n_group: int, d_state: int) -> int:
    """One recurrent layer's state for one sequence, F32 (llama-memory-recurrent.cpp: r_l [n_embd_r]
    and s_l [n_embd_s] per sequence, n_rs_seq = 0 snapshots by default; llama-hparams.cpp:
    n_embd_r = (d_conv - 1) * (d_inner + 2 * n_group * d_state), the conv state; n_embd_s =
    d_state * d_inner, the Mamba / Gated DeltaNet state). Fixed: it does not grow with context."""
    n_embd_r = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
    return 4 * (n_embd_r + d_state * d_inner)


def kv_cells(model: ModelInfo | KVShape, cfg: RuntimeConfig, layer: int) -> int:
    """Cells of one layer's cache: kv_size, or without swa_full the SWA size for sliding-window layers
    (llama-kv-cache-iswa.cpp: size_swa = swa_full ? kv_size : GGML_PAD(min(kv_size, n_swa*n_seq + n_ubatch), 256))."""
    kv_size = pad(cfg.n_ctx, KV_PAD)
    if layer in model.swa_layers and model.sliding_window and not cfg.swa_full:
        return min(kv_size, pad(model.sliding_window * cfg.n_seq + cfg.ubatch, KV_PAD))
    return kv_size


def kv_layer_bytes(model: ModelInfo | KVShape, cfg: RuntimeConfig, layer: int) -> int:
    """K [n_embd_k_gqa, cells] + V [n_embd_v_gqa, cells] (llama-kv-cache.cpp:209-234; MLA models have
    n_embd_v_gqa 0 here, as llama.cpp allocates no V for them); on a hybrid's
    recurrent layer its fixed state per sequence instead, and nothing on MTP blocks (llama-model.cpp
    create_memory: hybrid filters take il < n_layer(), recurrent or not; n_layer() excludes nextn) or on
    KV-shared layers, which read an earlier layer's cache."""
    shape = KVShape.of(model)
    if not shape.has_cache(layer):
        return 0
    if layer in shape.recurrent_layers:
        return shape.recurrent_state_bytes * max(1, cfg.n_seq)
    cells = kv_cells(shape, cfg, layer) * cfg.n_seq
    k_width, v_width = shape.widths(layer, cfg.fa)
    k = kv_row_bytes(cfg.kv_type, k_width)
    v = kv_row_bytes(cfg.kv_type_v or cfg.kv_type, v_width)
    return cells * (k + v)


def kv_cache_bytes(model: ModelInfo | KVShape, cfg: RuntimeConfig, layers: range | None = None) -> int:
    """Bytes of llama.cpp's KV cache (all layers, or ``layers``), sliding-window layers included."""
    shape = KVShape.of(model)
    return sum(kv_layer_bytes(shape, cfg, i) for i in (layers if layers is not None else range(shape.n_layers)))


def _max_kv(model: ModelInfo, cfg: RuntimeConfig) -> int:
    return max((kv_cells(model, cfg, i) for i in range(model.n_layers)), default=pad(cfg.n_ctx, KV_PAD))


@dataclass(frozen=True)
class ComputeBytes:
    reserved: int  # the compute buffer llama.cpp allocates (sched_reserve's "compute buffer size")
    resident: int  # what a CPU run touches: attention phase + CPU work buffer + last-token logits


def compute_bytes(model: ModelInfo, cfg: RuntimeConfig) -> ComputeBytes:
    """The worst-case graph buffer, reserved for n_ubatch tokens and n_outputs = n_ubatch
    (llama-context.cpp graph_reserve; ggml-alloc reuses memory, so it is the peak of the live
    tensors, not their sum). Two phases compete (fitted on the logged sizes, ±0.5 MiB):
    - attention (no flash-attn): KQ F32 [n_kv, n_ub, n_head] + KQ mask F32 [n_kv, n_ub]
      + activations (Q/K/V/residual 3*n_embd and the FFN hidden size, F32 per token);
      with flash-attn KQ is never materialized (mask F16, Q F32 instead);
    - output: logits F32 [n_vocab, n_ub] + 2*n_embd per token (llama-context.cpp graph_reserve's output node).
    On CPU the mul_mat(V, KQ) also converts KQ to F16 in the backend's work buffer
    (ggml-cpu: src1 -> vec_dot_type), and only the last token's logits are computed."""
    n_ub, n_kv = cfg.ubatch, _max_kv(model, cfg)
    n_embd, n_ff = model.hidden_size, max(model.ffn_size, 1)
    act = (n_ff + 3 * n_embd) * n_ub * 4
    if cfg.fa:
        attn = n_kv * n_ub * 2 + model.n_heads * model.head_dim * n_ub * 4 + act
        work = 0
    else:
        attn = n_kv * n_ub * (model.n_heads + 1) * 4 + act
        work = n_kv * n_ub * model.n_heads * 2
    if model.swa_layers:
        attn += n_kv * n_ub * 4  # iSWA graphs keep a second KQ mask (measured on tiny gemma3: +4 B/cell/token)
    logits = (model.vocab_size + 2 * n_embd) * n_ub * 4
    resident = attn + work + (model.vocab_size + 2 * n_embd) * 4 + GRAPH_FIXED_BYTES
    return ComputeBytes(reserved=max(attn, logits) + GRAPH_FIXED_BYTES, resident=resident)


def output_buffer_bytes(model: ModelInfo) -> int:
    """Host output buffer: logits of the outputs kept (one, by default) (llama-context.cpp output_reserve)."""
    return model.vocab_size * 4


def tokenizer_bytes(model: ModelInfo, n_merges: int) -> int:
    """llama_vocab's structures (gguf-parser-go's formula)."""
    return int(TOKENIZER_FACTOR * (model.vocab_size * TOKEN_BYTES + n_merges * MERGE_BYTES))


def cpu_overhead_bytes(model: ModelInfo, metadata_bytes: int, n_merges: int) -> int:
    """Everything besides weights, KV and compute on a CPU run: the mapped GGUF header (tokens,
    merges, chat template are read at load), tokenizer structures, fixed process cost."""
    return metadata_bytes + tokenizer_bytes(model, n_merges) + output_buffer_bytes(model) + CPU_FIXED_BYTES


# clip.cpp (llama.cpp tools/mtmd) reserves the projector's compute buffer once, at load, by building the
# graph of a warm-up image: image_size² for fixed-size towers (Gemma 3's SigLIP), and for Pixtral
# (dynamic resolution) the image of 256 merged tokens, set_warmup_n_tokens(256): 16 * patch * merge px.
VISION_WARMUP_TOKENS = 256
# Per-token live activations of the peak (FFN) phase, in floats: the FFN's hidden width times the
# tensors alive at once (GELU MLP: 1, SwiGLU gate/up/product: 3) plus residual and normed input (2 x
# n_embd). Fitted on clip.cpp's logged "compute buffer size" with flash attention (its default where the
# backend has it: CPU, CUDA), measured on real-width one-layer towers (tests/tiny_models.py *-wide):
# Gemma 3 SigLIP-so400m 103.81 MiB logged vs 103.25 formula (-0.5%), Mistral Small 3.1 Pixtral 58.31 vs
# 58.30 MiB; the tiny test towers (<5 MiB) are off by up to 10%, as fixed graph costs dominate there.
VISION_FFN_TENSORS = {"gemma3": 1, "pixtral": 3}


def vision_compute_bytes(clip: Mapping[str, Any]) -> int:
    """Compute buffer of an mmproj projector from its ``clip.*`` metadata (0 for a projector type
    whose graph is not modelled here). Depth does not matter: ggml-alloc reuses one layer's memory."""
    kind = str(clip.get("clip.projector_type", ""))
    if kind not in VISION_FFN_TENSORS:
        return 0
    patch = int(clip["clip.vision.patch_size"])
    n_embd, n_ff = int(clip["clip.vision.embedding_length"]), int(clip["clip.vision.feed_forward_length"])
    if kind == "pixtral":
        side = int(VISION_WARMUP_TOKENS ** 0.5) * patch * int(clip.get("clip.vision.spatial_merge_size", 1))
        image = 3 * side * side  # the F32 input image stays live through the graph (Pixtral's measured fit)
    else:
        side, image = int(clip["clip.vision.image_size"]), 0
    n_pos = (side // patch) ** 2
    return 4 * (image + n_pos * (VISION_FFN_TENSORS[kind] * n_ff + 2 * n_embd))
