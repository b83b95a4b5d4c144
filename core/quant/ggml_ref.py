"""ggml's own quantizers, called through ctypes from llama-cpp-python's bundled ggml.

This is the reference every quantpress kernel is measured against (tests and benchmarks), and the
fallback engine of :func:`quantpress.core.quant.quantize_tensor` for types where the native kernel
has not (yet) been shown to be at least as good.

``ggml_quantize_chunk`` is what llama-quantize calls, so bytes from here are exactly what
llama-quantize would write for the same float32 rows and importance vector.
ctypes releases the GIL during the foreign call, so callers may run several row chunks in threads.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
from quantpress.core.gguf.layout import ggml_geometry


class GgmlType(NamedTuple):
    """One GGML tensor type: enum id in ggml.h, weights per block, bytes per block."""

    type_id: int
    block_size: int
    type_size: int


# The types ggml's quantizer is called for: ids and block geometry from gguf-py (ggml.h, ggml-common.h),
# checked against the loaded library in _load() so a mismatching ggml build fails loudly.
GGML_TYPES: dict[str, GgmlType] = {name: GgmlType(*geometry) for name, geometry in ggml_geometry((
    "F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ2_XXS",
    "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "IQ1_M", "BF16",
    "MXFP4")).items()}  # MXFP4: gpt-oss's expert type (the MXFP4_MOE mix); ggml's quantize_mxfp4 ignores importance

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def _llama_cpp_lib_dir() -> Path:
    """The folder holding llama-cpp-python's shared libraries (honours LLAMA_CPP_LIB_PATH like llama_cpp)."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llama-cpp-python is not installed; it provides the reference ggml quantizer")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _candidate_names() -> list[str]:
    # Newer builds split ggml into ggml-base (quantizers live there); older ones ship one libggml.
    if sys.platform == "win32":
        return ["ggml-base.dll", "libggml-base.dll", "ggml.dll", "libggml.dll"]
    if sys.platform == "darwin":
        return ["libggml-base.dylib", "libggml.dylib", "libggml-base.so", "libggml.so"]
    return ["libggml-base.so", "libggml.so"]


def _open_library() -> ctypes.CDLL:
    lib_dir = _llama_cpp_lib_dir()
    if sys.platform == "win32" and hasattr(os, "add_dll_directory"):
        os.add_dll_directory(str(lib_dir))
    tried = []
    for name in _candidate_names():
        path = lib_dir / name
        tried.append(str(path))
        if path.exists():
            lib = ctypes.CDLL(str(path))
            if hasattr(lib, "ggml_quantize_chunk"):
                return lib
    raise RuntimeError(f"no ggml library with ggml_quantize_chunk found; tried: {', '.join(tried)}")


def _declare(lib: ctypes.CDLL) -> None:
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_type_size.argtypes = [ctypes.c_int]
    lib.ggml_type_size.restype = ctypes.c_size_t
    lib.ggml_blck_size.argtypes = [ctypes.c_int]
    lib.ggml_blck_size.restype = ctypes.c_int64


def _load() -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is None:
            lib = _open_library()
            _declare(lib)
            for name, t in GGML_TYPES.items():
                got = (lib.ggml_blck_size(t.type_id), lib.ggml_type_size(t.type_id))
                if got != (t.block_size, t.type_size):
                    raise RuntimeError(f"ggml type table mismatch for {name}: library says {got}, expected "
                                       f"{(t.block_size, t.type_size)}; llama-cpp-python version not supported")
            _lib = lib
        return _lib


def ggml_type(qtype: str) -> GgmlType:
    """The :class:`GgmlType` of a type name like ``"Q4_K"`` (ValueError if unknown)."""
    try:
        return GGML_TYPES[qtype.upper()]
    except KeyError:
        raise ValueError(f"unknown GGML type {qtype!r}; known: {', '.join(GGML_TYPES)}") from None


def row_bytes(qtype: str, n_per_row: int) -> int:
    """Bytes of one quantized row of ``n_per_row`` weights (n_per_row must be a multiple of the block)."""
    t = ggml_type(qtype)
    if n_per_row % t.block_size:
        raise ValueError(f"{qtype} needs rows that are a multiple of {t.block_size}, got {n_per_row}")
    return n_per_row // t.block_size * t.type_size


def check_input(x: np.ndarray, qtype: str, importance: np.ndarray | None) -> GgmlType:
    """Validate (rows, n_per_row) float32 C-contiguous finite input and importance; ValueError if not."""
    t = ggml_type(qtype)
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise ValueError(f"x must be a float32 numpy array, got {getattr(x, 'dtype', type(x))}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, n_per_row), got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (use np.ascontiguousarray)")
    if x.shape[1] == 0 or x.shape[1] % t.block_size:
        raise ValueError(f"{qtype} needs a row length that is a multiple of {t.block_size}, got {x.shape[1]}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"x contains NaN or Inf (first in row {bad})")
    if importance is not None:
        imp = importance
        if not isinstance(imp, np.ndarray) or imp.dtype != np.float32 or imp.ndim != 1:
            raise ValueError("importance must be a 1-D float32 numpy array (one weight per column)")
        if imp.shape[0] != x.shape[1]:
            raise ValueError(f"importance has {imp.shape[0]} values but rows have {x.shape[1]} columns")
        if not np.isfinite(imp).all() or (imp < 0).any():
            raise ValueError("importance must be finite and non-negative")
    return t


def ggml_quantize(x: np.ndarray, qtype: str, importance: np.ndarray | None = None) -> np.ndarray:
    """Quantize float32 rows with ggml's ``ggml_quantize_chunk``.

    x: (rows, n_per_row) float32, C-contiguous; importance: (n_per_row,) float32 or None.
    Returns uint8 (rows, row_bytes) in GGUF block layout. Runs on the calling thread; the GIL is
    released during the call, so row chunks may be quantized from several threads.
    """
    t = check_input(x, qtype, importance)
    lib = _load()
    if importance is None and lib.ggml_quantize_requires_imatrix(t.type_id):
        raise ValueError(f"{qtype} cannot be quantized without importance weights (ggml requires an imatrix)")
    rows, n_per_row = x.shape
    out = np.empty((rows, n_per_row // t.block_size * t.type_size), dtype=np.uint8)
    if rows == 0:
        return out
    imp = None if importance is None else np.ascontiguousarray(importance)
    written = lib.ggml_quantize_chunk(
        t.type_id, x.ctypes.data, out.ctypes.data, 0, rows, n_per_row,
        None if imp is None else imp.ctypes.data,
    )
    if written != out.nbytes:
        raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected {out.nbytes}")
    return out


def ggml_init(qtype: str) -> None:
    """Build ggml's lookup tables for ``qtype`` once (IQ grids); call before quantizing from threads."""
    _load().ggml_quantize_init(ggml_type(qtype).type_id)
