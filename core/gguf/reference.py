"""llama.cpp's own quantizer (``llama_model_quantize`` through llama-cpp-python's ctypes), the
reference quantpress is measured against in tests and benchmarks/convert.py."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from quantpress.core.errors import ModelLoadError
from quantpress.core.gguf.mixes import MIXES


def llama_quantize(src: Path, dst: Path, fmt: str, *, imatrix: Mapping[str, np.ndarray] | None = None,
                   threads: int = 0, allow_requantize: bool = False) -> None:
    """Quantize the GGUF ``src`` to ``dst`` as llama-quantize would (``imatrix``: GGUF tensor
    name -> mean x² per input column, float32)."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = MIXES[fmt].ftype
    params.nthread = threads
    params.allow_requantize = allow_requantize
    keep: list[object] = []
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            arr = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
            keep += [arr, name.encode()]
            entries[i].name = name.encode()
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(imatrix)].name = None
        params.imatrix = ctypes.cast(entries, type(params.imatrix))
        keep.append(entries)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise ModelLoadError(f"llama_model_quantize failed for {src.name} -> {fmt} (code {rc})")
