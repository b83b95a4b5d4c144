"""AWQ checkpoints in AutoAWQ's GEMM layout (``quant_method: awq``, ``version: gemm``).

Per linear (N out, K in): ``qweight`` int32 (K, N/8) and ``qzeros`` int32 (G, N/8), eight 4-bit fields
per word packed along N, field i of word c holding output 8c + ORDER[i]; ``scales`` (G, N).
w[n, k] = (q - zero) · scale of group k // group_size (AutoAWQ's ``AWQ_ORDER``; core/awq/quantizer.py
writes the same layout). GEMV, Marlin and the other kernels' layouts differ: refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from quantpress.core.dequant.base import QuantTensor, RowReader, RowSource, ceil_div, expect_shape, float32
from quantpress.core.dequant.gptq import packed_siblings, whole
from quantpress.core.dequant.packing import unpack
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.model import TensorInfo

ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
LABEL = "AWQ_INT4"


@dataclass(frozen=True)
class AwqGemm:
    group_size: int
    method: str = "AWQ (GEMM)"
    ignored: tuple[str, ...] = ()

    def find(self, stored: Mapping[str, TensorInfo]) -> list[QuantTensor]:
        out = []
        for name, t in stored.items():
            if not name.endswith(".qweight"):
                continue
            base = name.removesuffix(".qweight")
            qweight, qzeros, scales = packed_siblings(stored, t, base)
            k, n = qweight.shape[0], qweight.shape[1] * 8
            expect_shape(scales, (ceil_div(k, self.group_size), n), f"AWQ group size {self.group_size} for '{name}'")
            expect_shape(qzeros, (scales.shape[0], n // 8), f"4-bit zero points of '{name}'")
            out.append(QuantTensor(base + ".weight", (n, k), LABEL,
                                   (("qweight", qweight), ("qzeros", qzeros), ("scales", scales))))
        return out

    def open(self, qt: QuantTensor, read: RowReader) -> RowSource:
        _, k = qt.shape
        qweight = whole(read, qt.need("qweight"))
        zeros = unpack(whole(read, qt.need("qzeros")), 4, ORDER).astype(np.float32)  # (G, N)
        scale_part = qt.need("scales")
        scales = float32(whole(read, scale_part), scale_part.dtype)
        groups = np.arange(k) // self.group_size

        def rows(a: int, b: int) -> np.ndarray:
            first = a // 8
            q = unpack(qweight[:, first:ceil_div(b, 8)], 4, ORDER)[:, a - 8 * first:b - 8 * first]  # (K, rows)
            out: np.ndarray = (q.T.astype(np.float32) - zeros[groups, a:b].T) * scales[groups, a:b].T
            return out
        return rows


def from_config(qc: Mapping[str, Any]) -> AwqGemm:
    version = str(qc.get("version") or "gemm").lower()
    if version != "gemm":
        raise UnsupportedArchitecture(f"config.json: AWQ version '{version}' (its kernel's packing) cannot be read as "
                                      "a conversion source; quantpress reads AutoAWQ's GEMM layout")
    if qc.get("bits", qc.get("w_bit", 4)) != 4 or not qc.get("zero_point", True):
        raise UnsupportedArchitecture("config.json: only 4-bit AWQ with zero points (AutoAWQ's default) can be read "
                                      "as a conversion source")
    size = qc.get("group_size", qc.get("q_group_size", 128))
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise InvalidModel(f"config.json: AWQ group_size is {size!r}; it must be a positive whole number")
    return AwqGemm(size)
