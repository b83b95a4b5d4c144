"""Open a GGUF with llama-cpp-python, turning every failure into a message for the user.

Shared by the chat backend and the evaluator. llama_cpp is imported inside functions only (the GUI
starts without it). ``verbose=False`` always: llama.cpp otherwise floods stderr.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gguf.constants import GGMLQuantizationType, Keys
from quantpress.core.chat.architectures import LLAMA_CPP_ARCHITECTURES
from quantpress.core.chat.placement import (
    LoadPlacement,
    cpu_moe_patterns,
    llama_class,
    placement_from_estimate,
)
from quantpress.core.chat.types import KVCacheType
from quantpress.core.errors import InvalidInput, InvalidModel, ModelLoadError
from quantpress.core.inspect import gguf_kv_layout, gguf_recurrent, gguf_swa

if TYPE_CHECKING:
    from quantpress.core.hardware import Hardware

GPU_LAYERS_TIMEOUT_S = 120.0  # the separate estimate process (default_placement); then the CPU


@dataclass(frozen=True)
class GgufShape:
    """What we need to know about a GGUF before (and besides) loading it."""

    path: Path
    architecture: str
    n_layers: int
    n_embd_k_gqa: int  # key width per layer summed over KV heads
    n_embd_v_gqa: int
    n_vocab: int
    file_bytes: int
    chat_template: str | None
    sliding_window: int | None = None
    swa_layers: tuple[int, ...] = ()
    recurrent_layers: tuple[int, ...] = ()
    recurrent_state_bytes: int = 0
    n_nextn_layers: int = 0
    kv_widths: tuple[tuple[int, int], ...] = ()  # per layer (K, V) widths where they differ (Gemma 4)
    n_kv_shared_layers: int = 0


def llama_cpp_version() -> str:
    import llama_cpp

    return str(getattr(llama_cpp, "__version__", "unknown"))


def _first(value: Any) -> int:
    # head_count_kv may be a per-layer array (e.g. hybrid models); we size with its maximum.
    if isinstance(value, (list, tuple)):
        return int(max(value)) if value else 0
    return int(value)


def read_gguf_shape(path: str | Path) -> GgufShape:
    """Read architecture and attention shape with gguf.GGUFReader (no llama.cpp involved)."""
    from quantpress.core.gguf.reader import open_gguf
    from quantpress.core.validate import check_gguf_model

    path = Path(path)
    with open_gguf(path) as g:
        if g.architecture in LLAMA_CPP_ARCHITECTURES:  # else check_architecture() names the architecture
            check_gguf_model(g)  # metadata of the right kind before llama.cpp (or int() below) reads it
        try:
            arch = g.architecture
            n_head = _first(g.arch_value("attention.head_count", 0) or 0)
            n_head_kv = _first(g.arch_value("attention.head_count_kv", n_head) or n_head)
            n_embd = int(g.arch_value("embedding_length", 0) or 0)
            head_dim = n_embd // n_head if n_head else 0
            key_len = int(g.arch_value("attention.key_length", head_dim) or head_dim)
            value_len = int(g.arch_value("attention.value_length", head_dim) or head_dim)
            tokens = g.get(Keys.Tokenizer.LIST)
            n_vocab = len(tokens) if tokens else int(g.arch_value("vocab_size", 0) or 0)
            template = g.get(Keys.Tokenizer.CHAT_TEMPLATE)
            n_layers = int(g.arch_value("block_count", 0) or 0)
            window, swa = gguf_swa(arch, n_layers, g.arch_value)
            recurrent, state, n_nextn = gguf_recurrent(g.arch_value, n_layers)
            kv_widths, n_kv_shared = gguf_kv_layout(g.arch_value, n_layers, swa)
            return GgufShape(
                path=path,
                architecture=arch,
                n_layers=n_layers,
                n_embd_k_gqa=key_len * n_head_kv,
                # MLA (key_length_mla written): llama.cpp caches only the latent K row, no V
                n_embd_v_gqa=0 if g.arch_value("attention.key_length_mla") else value_len * n_head_kv,
                n_vocab=n_vocab,
                file_bytes=path.stat().st_size,
                chat_template=str(template) if template else None,
                sliding_window=window or None,
                swa_layers=swa,
                recurrent_layers=recurrent,
                recurrent_state_bytes=state,
                n_nextn_layers=n_nextn,
                kv_widths=kv_widths,
                n_kv_shared_layers=n_kv_shared,
            )
        except (ValueError, TypeError) as exc:  # an architecture llama.cpp lacks, with odd values besides
            raise InvalidModel(f"{path.name}: GGUF metadata of the wrong kind ({exc}); the file is damaged") from None


def kv_cache_bytes(shape: GgufShape, ctx_tokens: int, kv_type_k: KVCacheType, kv_type_v: KVCacheType) -> int:
    """Bytes of llama.cpp's KV buffer for this file: core.memory's formula (the Fit pane's and the
    estimator's), sliding-window layers and hybrids' recurrent state included."""
    from quantpress.core.memory import KVShape, RuntimeConfig
    from quantpress.core.memory import kv_cache_bytes as model_kv_cache_bytes

    kv = KVShape(shape.n_layers, shape.n_embd_k_gqa, shape.n_embd_v_gqa, shape.sliding_window, shape.swa_layers,
                 shape.recurrent_layers, shape.recurrent_state_bytes, shape.n_nextn_layers, shape.kv_widths,
                 shape.n_kv_shared_layers)
    return model_kv_cache_bytes(kv, RuntimeConfig(n_ctx=ctx_tokens, kv_type=kv_type_k.value,
                                                  kv_type_v=kv_type_v.value))


def default_placement(path: Path, ctx_tokens: int, kv_type: KVCacheType) -> LoadPlacement:
    """CPU only on a llama.cpp build without GPU offload (the estimator is not even asked);
    otherwise the estimator's verdict for this file and context (placement.placement_from_estimate:
    all layers, "GPU + experts in RAM" for a MoE model that needs it, some layers, or none).

    The estimate (NVML, the converter's plan) runs in a separate short-lived process: the process
    that is about to initialise CUDA inside llama.cpp does no NVML or estimator work first (a chat
    with an NVML call just before ``Llama()`` died with SIGSEGV on an H200, issue 17). Any failure
    means CPU only: the CPU always works."""
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return LoadPlacement(0, 0, gpu_offload=False)
    import json
    import subprocess
    import sys

    args = [sys.executable, "-m", "quantpress.core.chat.gpu_layers", str(path), str(int(ctx_tokens)), kv_type.value]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=GPU_LAYERS_TIMEOUT_S, check=False)
        if out.returncode != 0:
            return LoadPlacement(0, 0, gpu_offload=True)
        n_gpu, n_cpu_moe = json.loads(out.stdout.strip().splitlines()[-1])
        return LoadPlacement(int(n_gpu), int(n_cpu_moe), gpu_offload=True)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, TypeError):  # advice: never block loading
        return LoadPlacement(0, 0, gpu_offload=True)


def estimated_placement(path: Path, ctx_tokens: int, kv_type: KVCacheType,
                        hardware: Hardware | None = None) -> LoadPlacement:
    """The estimator's row for this file on ``hardware`` (default: this machine's) as a load
    placement (n_gpu_layers and --n-cpu-moe N). Detecting the hardware runs NVML in this process:
    call it in a separate one."""
    try:
        from quantpress.core.estimate import estimate
        from quantpress.core.hardware import detect_hardware
        from quantpress.core.inspect import open_model
        from quantpress.core.memory import RuntimeConfig

        est = estimate(open_model(path), hardware or detect_hardware(),
                       RuntimeConfig(n_ctx=ctx_tokens, kv_type=kv_type.value), formats=[])
        row = est.formats[0]  # formats=[]: only the row for this file as it is
        return placement_from_estimate(row.fit, row.gpu_layers, row.cpu_moe_layers)
    except Exception:  # noqa: BLE001  (an estimate is advice; never block loading on it)
        return LoadPlacement(0, 0, gpu_offload=True)


def chosen_placement(path: Path, ctx_tokens: int, kv_type: KVCacheType, gpu_layers: int | None,
                     n_cpu_moe: int | None) -> LoadPlacement:
    """The user's placement where they gave one (``--n-cpu-moe N`` alone means every layer on the
    GPU but those experts, as llama.cpp users run it with ``-ngl 99``), else the estimator's."""
    import llama_cpp

    if gpu_layers is None and n_cpu_moe is None:
        return default_placement(path, ctx_tokens, kv_type)
    if n_cpu_moe is not None and n_cpu_moe < 0:
        raise InvalidInput(f"--n-cpu-moe must be 0 or more (got {n_cpu_moe}).")
    n_gpu = gpu_layers if gpu_layers is not None else (-1 if n_cpu_moe else 0)
    return LoadPlacement(n_gpu, n_cpu_moe or 0, bool(llama_cpp.llama_supports_gpu_offload()))


def needs_flash_attention(kv_type_v: KVCacheType) -> bool:
    return kv_type_v != KVCacheType.F16


def check_architecture(shape: GgufShape) -> None:
    if shape.architecture not in LLAMA_CPP_ARCHITECTURES:
        raise ModelLoadError(
            f"{shape.path.name}: architecture '{shape.architecture or '(none)'}' is not known to the "
            f"llama.cpp bundled with llama-cpp-python {llama_cpp_version()}, so it cannot be run here. "
            "A newer llama-cpp-python may support it."
        )


def llama_defaults() -> dict[str, Any]:
    """``llama_cpp.Llama``'s own keyword defaults (read from its signature, so a new release's
    defaults are honoured)."""
    import inspect

    from llama_cpp.llama import Llama  # the class itself, even where llama_cpp.Llama is wrapped

    params = inspect.signature(Llama.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def llama_kwargs(
    *,
    ctx_tokens: int,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    kv_type_k: KVCacheType = KVCacheType.F16,
    kv_type_v: KVCacheType = KVCacheType.F16,
    flash_attn: bool | None = None,
    logits_all: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """The keyword arguments for ``llama_cpp.Llama``: only those that differ from its defaults, each
    for a reason (issue 17: a chat passing explicit flash_attn, type_k/type_v, n_ubatch, seed and
    logits_all died on CUDA where a plain ``Llama(n_ctx, n_gpu_layers, n_batch)`` ran).

    - n_ctx: the user's context; n_gpu_layers: the placement; n_batch: the caller's batch;
    - type_k/type_v: only for a quantized cache (F16 is llama.cpp's own default);
    - flash_attn: only switched on where a quantized V cache needs it, or where asked for;
    - logits_all: only where a caller asks for every token's logits;
    - n_threads/n_threads_batch: only when the user set a thread count;
    - verbose=False: llama.cpp otherwise floods stderr.
    n_ubatch is left to llama-cpp-python (it uses min(n_batch, n_ubatch)); a seed is set with
    ``Llama.set_seed`` after loading (the chat sets one per reply anyway)."""
    wanted: dict[str, Any] = dict(n_ctx=ctx_tokens, n_gpu_layers=n_gpu_layers, n_batch=n_batch,
                                  logits_all=logits_all, verbose=False)
    if kv_type_k != KVCacheType.F16:
        wanted["type_k"] = int(GGMLQuantizationType[kv_type_k.name])  # ggml.h enum ggml_type
    if kv_type_v != KVCacheType.F16:
        wanted["type_v"] = int(GGMLQuantizationType[kv_type_v.name])
    fa = needs_flash_attention(kv_type_v) if flash_attn is None else flash_attn
    if fa:
        wanted["flash_attn"] = True
    if threads:
        wanted.update(n_threads=threads, n_threads_batch=threads)
    defaults = llama_defaults()
    return {k: v for k, v in wanted.items() if k not in defaults or defaults[k] != v}


def open_llama(
    path: str | Path,
    *,
    ctx_tokens: int,
    kv_type_k: KVCacheType = KVCacheType.F16,
    kv_type_v: KVCacheType = KVCacheType.F16,
    gpu_layers: int | None = None,
    threads: int | None = None,
    seed: int | None = None,
    n_batch: int = 512,
    logits_all: bool = False,
    flash_attn: bool | None = None,
    n_cpu_moe: int | None = None,
) -> tuple[Any, GgufShape, LoadPlacement]:
    """Load ``path`` into a ``llama_cpp.Llama``; raises ModelLoadError with a message for the user.
    ``flash_attn=None``: on exactly when the V cache is quantized (which requires it).
    ``gpu_layers`` and ``n_cpu_moe`` both None: the estimator's placement (:func:`chosen_placement`);
    ``n_cpu_moe`` N keeps the routed experts of blocks 0..N-1 in a CPU buffer (llama.cpp's --n-cpu-moe)."""

    if flash_attn is False and needs_flash_attention(kv_type_v):
        raise InvalidInput(f"A {kv_type_v.value} V cache needs flash attention; it cannot be switched off.")

    try:
        shape = read_gguf_shape(path)
    except InvalidModel as exc:
        raise ModelLoadError(str(exc)) from None
    check_architecture(shape)
    place = chosen_placement(shape.path, ctx_tokens, kv_type_k, gpu_layers, n_cpu_moe)
    kwargs = llama_kwargs(ctx_tokens=ctx_tokens, n_gpu_layers=place.gpu_layers, n_batch=n_batch,
                          kv_type_k=kv_type_k, kv_type_v=kv_type_v, flash_attn=flash_attn, logits_all=logits_all,
                          threads=threads)
    try:
        llm = llama_class(cpu_moe_patterns(place.n_cpu_moe))(str(shape.path), **kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(
            f"{shape.path.name}: llama.cpp (llama-cpp-python {llama_cpp_version()}) could not load this "
            f"'{shape.architecture}' model ({exc}). The file may be damaged or truncated, or use a tensor "
            "type or layout this llama.cpp version does not support."
        ) from None
    if seed is not None:
        llm.set_seed(seed)
    return llm, shape, place
