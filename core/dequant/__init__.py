"""Quantized Hugging Face checkpoints as conversion sources, dequantized on the fly, tensor by tensor.

config.json's ``quantization_config.quant_method`` picks a reader from ``READERS`` (one small module per
format: fp8, mxfp4, compressed, gptq, awq). From the safetensors headers alone the reader finds each
quantized weight's stored parts and the name and shape of the float tensor they stand for, so a model
description, an estimate and a conversion plan see the model as a float checkpoint would show it
(dequantized shapes; the stored bytes as its size). The converter then asks for float32 row slabs of
such a tensor and gets them dequantized from the parts' bytes, a slab at a time.

    source = quantized_source(config, stored, "MyModel-FP8")   # None: not a quantized checkpoint
    source.tensors                        # the description's tensor list (dequantized names/shapes)
    for x in source.slabs(name, read, 0, n_rows, 4096): ...   # float32 (rows, n_per_row)

Converting from these adds quantization error on top of what the checkpoint already lost; the plan
warns as it does for a GGUF requantize.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from quantpress.core.dequant import awq, compressed, fp8, gptq, mxfp4
from quantpress.core.dequant.base import FLOAT_DTYPES, QuantTensor, RowReader, Scheme
from quantpress.core.dequant.packing import FP8_TABLES
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.model import TensorInfo

# quantization_config.quant_method -> the reader of that format (its settings checked).
READERS: dict[str, Callable[[Mapping[str, Any]], Scheme]] = {
    "fp8": fp8.from_config,
    "fbgemm_fp8": fp8.fbgemm_from_config,
    "mxfp4": mxfp4.from_config,
    "compressed-tensors": compressed.from_config,
    "gptq": gptq.from_config,
    "awq": awq.from_config,
}


def quantization_config(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """config.json's quantization_config (or compressed-tensors' older ``compression_config``), if any."""
    text = config.get("text_config")
    for holder in (config, text if isinstance(text, dict) else {}):
        for key in ("quantization_config", "compression_config"):
            qc = holder.get(key)
            if qc is not None:
                if not isinstance(qc, dict):
                    raise InvalidModel(f"config.json: '{key}' is not an object; the config is damaged")
                return qc
    return None


def scheme_for(config: Mapping[str, Any]) -> Scheme | None:
    """The reader for ``config``'s quantization (None: not quantized); UnsupportedArchitecture for a
    method no reader handles."""
    qc = quantization_config(config)
    if qc is None:
        return None
    method = str(qc.get("quant_method", "")).lower()
    reader = READERS.get(method)
    if reader is None:
        raise UnsupportedArchitecture(
            f"config.json: quantization method '{method or '(none)'}' cannot be read as a conversion source; "
            f"quantpress reads {', '.join(READERS)}. Convert from the original (unquantized) weights")
    return reader(qc)


def bits_per_weight(label: str) -> float | None:
    """Nominal stored bits per weight of a quantized-source label (None: a float or GGML type)."""
    if label in FP8_TABLES:
        return 8.0
    if label == mxfp4.LABEL:
        return 4.25  # 4 bits + one 8-bit scale per 32
    m = re.search(r"_INT(\d+)$", label)
    return float(m.group(1)) if m else None


@dataclass(frozen=True)
class QuantizedSource:
    """The quantized weights of one checkpoint by dequantized name, and the description's tensor list."""

    scheme: Scheme
    weights: Mapping[str, QuantTensor]
    tensors: tuple[TensorInfo, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted({q.label for q in self.weights.values()}))

    def slabs(self, name: str, read: RowReader, first: int, stop: int, max_rows: int) -> Iterator[np.ndarray]:
        """float32 slabs (at most ``max_rows``) of rows first..stop of ``name`` viewed as 2-D (rows, last dim)."""
        rows = self.scheme.open(self.weights[name], read)
        for a in range(first, stop, max_rows):
            b = min(stop, a + max_rows)
            x = rows(a, b)
            if x.shape != (b - a, self.weights[name].shape[-1]):  # a reader bug, never the user's input
                raise RuntimeError(f"{name}: dequantized rows {x.shape}, expected {(b - a, self.weights[name].shape[-1])}")
            yield np.ascontiguousarray(x, dtype=np.float32)


def quantized_source(config: Mapping[str, Any], stored: Sequence[TensorInfo], where: str, *,
                     strict: bool = True) -> QuantizedSource | None:
    """The quantized view of ``stored`` (a checkpoint's safetensors tensors) under ``config``; None when
    the config declares no quantization. ``strict``: refuse quantization methods no reader handles and
    non-float tensors that belong to no quantized weight (what a conversion needs); without it those
    pass unchanged (a model description of, say, a bitsandbytes folder the torch backend runs)."""
    try:
        scheme = scheme_for(config)
    except UnsupportedArchitecture:
        if strict:
            raise
        return None
    if scheme is None:
        return None
    by_name = {t.name: t for t in stored}
    weights = {q.name: q for q in scheme.find(by_name)}
    main = {q.main.name: q for q in weights.values()}
    consumed = {p.name for q in weights.values() for _, p in q.parts}
    out: list[TensorInfo] = []
    for t in stored:
        if t.name in main:
            out.append(main[t.name].info())
        elif t.name in consumed or t.name.endswith(scheme.ignored):
            continue
        elif strict and t.dtype not in FLOAT_DTYPES:
            raise InvalidModel(f"{where}/{t.file}: tensor '{t.name}' is {t.dtype} but belongs to no {scheme.method} "
                               "weight quantpress can read; the checkpoint is damaged or uses a layout quantpress does "
                               "not know. Convert from the original weights")
        else:
            out.append(t)
    if strict and not weights:
        raise InvalidModel(f"{where}: config.json declares {scheme.method} quantization but no quantized weight is "
                           "stored; the config does not belong to these weights")
    return QuantizedSource(scheme, weights, tuple(out))


def dequantized_tensors(config: Mapping[str, Any], stored: Sequence[TensorInfo], where: str, *,
                        strict: bool = True) -> list[TensorInfo]:
    """``stored`` as a model description lists it: each quantized weight as one tensor of its
    dequantized name and shape (see quantized_source)."""
    source = quantized_source(config, stored, where, strict=strict)
    return list(stored) if source is None else list(source.tensors)
