"""Where llama.cpp puts a chat model's weights: a layer split (``n_gpu_layers``) or, for a
mixture-of-experts model, "GPU + experts in RAM" (llama.cpp's ``--n-cpu-moe N``: every layer on
the GPU except the routed experts of the first N blocks, which stay in a CPU buffer).

llama-cpp-python 0.3.36's ``Llama()`` takes no tensor buffer overrides, but the C loader does:
``llama_model_params.tensor_buft_overrides`` (declared ``c_void_p`` in its bindings) points to a
NULL-terminated array of ``struct llama_model_tensor_buft_override { const char * pattern;
ggml_backend_buffer_type_t buft; }``. :func:`llama_class` returns a ``Llama`` subclass that sets it
on the parameters ``Llama.__init__`` builds, before the model is loaded; the array and its pattern
strings are attributes of that ``Llama``, so they live as long as the model.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

# llama.cpp common/common.h: LLM_FFN_EXPS_REGEX and llm_ffn_block_regex(i, ...), as --n-cpu-moe N
# builds them (common/arg.cpp: one override per block i < N, all to ggml_backend_cpu_buffer_type()).
FFN_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


def cpu_moe_patterns(n_cpu_moe: int) -> tuple[str, ...]:
    """The override patterns of ``--n-cpu-moe n_cpu_moe``: one per block 0..N-1."""
    return tuple(rf"blk\.{i}{FFN_EXPS_REGEX}" for i in range(max(0, n_cpu_moe)))


@dataclass(frozen=True)
class LoadPlacement:
    """How a GGUF is placed at load: ``gpu_layers`` is llama.cpp's n_gpu_layers (-1: all),
    ``n_cpu_moe`` the blocks whose routed experts stay in RAM, ``gpu_offload`` whether this
    llama.cpp build can use a GPU at all."""

    gpu_layers: int = 0
    n_cpu_moe: int = 0
    gpu_offload: bool = False

    def describe(self, n_layers: int) -> str:
        """The placement in words, for the chat pane and the CLI."""
        if not self.gpu_offload or self.gpu_layers == 0:
            why = "no GPU offload in this llama.cpp build" if not self.gpu_offload else "no layer fits the GPU"
            moe = f"; routed experts of the first {self.n_cpu_moe} layers in a CPU buffer" if self.n_cpu_moe else ""
            return f"CPU ({why}){moe}"
        on_gpu = n_layers if self.gpu_layers < 0 else min(self.gpu_layers, n_layers)
        if self.n_cpu_moe:
            return f"GPU + experts of the first {self.n_cpu_moe} of {n_layers} layers in RAM"
        if on_gpu >= n_layers:
            return f"GPU (all {n_layers} layers)"
        return f"GPU: {on_gpu} of {n_layers} layers, the rest on the CPU"


def placement_from_estimate(fit: str, gpu_layers: int, cpu_moe_layers: int) -> LoadPlacement:
    """The estimator's row for a file as a load placement: everything on the GPU when it fits;
    otherwise, for a MoE model with a fitting N, "GPU + experts in RAM" (its attention and shared
    weights stay on the GPU, which a layer split would give up first); otherwise the layer split."""
    if fit == "gpu":
        return LoadPlacement(-1, 0, True)
    if cpu_moe_layers > 0:
        return LoadPlacement(-1, cpu_moe_layers, True)
    return LoadPlacement(gpu_layers if fit == "partial" else 0, 0, True)


def cpu_buffer_type() -> int:
    """ggml's plain CPU buffer type, ``ggml_backend_cpu_buffer_type()``, of the libggml-base that
    libllama itself uses: llama.cpp compares an override's buft with it by pointer.

    Looked up through libllama's handle (dlsym searches the library and its dependencies): the wheel
    ships libggml-base.so, .so.0 and .so.0.25.3 as separate copies, so opening one by path can load a
    second instance whose pointer llama.cpp does not recognise (measured: it then treats the override
    as a foreign buffer type and skips its CPU rules)."""
    from llama_cpp import llama_cpp as bindings

    fn = bindings._lib.ggml_backend_cpu_buffer_type
    fn.restype = ctypes.c_void_p
    fn.argtypes = []
    return int(fn())


class BuftOverride(ctypes.Structure):
    """llama.h ``struct llama_model_tensor_buft_override`` (llama-cpp-python declares no such class)."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def buffer_overrides(patterns: tuple[str, ...], buft: int) -> tuple[Any, list[bytes]]:
    """A NULL-terminated ``llama_model_tensor_buft_override`` array sending ``patterns`` to
    ``buft``, and the pattern bytes it points into (keep both alive while the model lives)."""
    encoded = [p.encode() for p in patterns]
    array = (BuftOverride * (len(encoded) + 1))()
    for i, p in enumerate(encoded):
        array[i].pattern = p
        array[i].buft = buft
    array[len(encoded)].pattern = None  # the terminator llama.cpp's loader stops at
    array[len(encoded)].buft = None
    return array, encoded


def llama_class(patterns: tuple[str, ...]) -> Any:
    """``llama_cpp.Llama``, or with ``patterns`` a subclass whose model load sends the tensors they
    match to the CPU buffer type (llama.cpp's ``--n-cpu-moe``/``--override-tensor X=CPU``)."""
    import llama_cpp
    from llama_cpp.llama import Llama  # the class itself, even where llama_cpp.Llama is wrapped

    if not patterns:
        return llama_cpp.Llama

    class OverridingLlama(Llama):
        """``Llama.__init__`` assigns ``self.model_params`` once, fills it, then loads the model:
        the setter adds the overrides to that struct."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._buft_overrides = buffer_overrides(patterns, cpu_buffer_type())
            super().__init__(*args, **kwargs)

        @property
        def model_params(self) -> Any:
            return self._model_params

        @model_params.setter
        def model_params(self, params: Any) -> None:
            params.tensor_buft_overrides = ctypes.cast(self._buft_overrides[0], ctypes.c_void_p)
            self._model_params = params

    return OverridingLlama
