"""The int4 quantizer and both packed layouts, checked bit by bit against the documented orders
and against the compressed-tensors package's own unpacking/decompression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quantpress.core.awq.quantizer import (
    AWQ_ORDER,
    dequantize,
    fake_quantize,
    group_size_for,
    pack_autoawq,
    pack_compressed_tensors,
    quantize,
    unpack_autoawq,
    unpack_compressed_tensors,
)


def _q(n: int = 32, k: int = 256, gs: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return quantize(torch.randn(n, k), gs)


def test_quantizer_math() -> None:
    w = torch.randn(16, 128)
    q, scale, zero = quantize(w, 64)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    assert torch.equal(scale, scale.half().float())  # scales are exactly fp16
    deq = dequantize(q, scale, zero, 64)
    assert torch.equal(deq, fake_quantize(w, 64))
    step = scale.repeat_interleave(64, dim=1)
    assert bool(((deq - w).abs() <= step + 1e-6).all())  # rounding plus the rounded zero point: one step at most


def test_group_size_choice() -> None:
    assert group_size_for(1536, 128) == 128
    assert group_size_for(576, 128) == 64  # the demo model's hidden width
    assert group_size_for(576, 32) == 32
    assert group_size_for(100, 128) is None


def test_autoawq_nibble_order_is_the_documented_one() -> None:
    """qweight (K, N/8): nibble i of word [k, c] holds output column 8c + ORDER[i], ORDER = 0,2,4,6,1,3,5,7."""
    q, scale, zero = _q()
    t = pack_autoawq(q, scale, zero)
    words = t["qweight"].numpy().view(np.uint32)
    assert words.shape == (256, 4) and t["scales"].dtype == torch.float16 and t["scales"].shape == (4, 32)
    for i, order in enumerate((0, 2, 4, 6, 1, 3, 5, 7)):
        nib = (words >> (4 * i)) & 0xF  # (K, N/8)
        for c in range(4):
            np.testing.assert_array_equal(nib[:, c], q[8 * c + order, :].numpy())
    zwords = t["qzeros"].numpy().view(np.uint32)
    np.testing.assert_array_equal((zwords[:, 0] >> 4) & 0xF, zero[2, :].numpy())  # nibble 1 -> column 2
    assert AWQ_ORDER == (0, 2, 4, 6, 1, 3, 5, 7)
    back = unpack_autoawq(t)
    assert torch.equal(back[0], q) and torch.equal(back[2], zero) and torch.equal(back[1], scale)


def test_compressed_tensors_layout_and_round_trip() -> None:
    q, scale, zero = _q()
    t = pack_compressed_tensors(q, scale, zero, torch.float16)
    assert t["weight_packed"].shape == (32, 32) and t["weight_packed"].dtype == torch.int32
    assert t["weight_zero_point"].shape == (4, 4) and t["weight_shape"].tolist() == [32, 256]
    words = t["weight_packed"].numpy().view(np.uint32)
    np.testing.assert_array_equal(words[:, 0] & 0xF, q[:, 0].numpy())  # natural order along K
    np.testing.assert_array_equal((words[:, 1] >> 28) & 0xF, q[:, 15].numpy())
    back = unpack_compressed_tensors(t)
    assert torch.equal(back[0], q) and torch.equal(back[2], zero)


def test_compressed_tensors_package_unpacks_to_our_integers_and_weights() -> None:
    ct = pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    q, scale, zero = _q(n=48, k=256, gs=64)
    t = pack_compressed_tensors(q, scale, zero, torch.float16)
    signed = unpack_from_int32(t["weight_packed"], 4, torch.Size([48, 256]))
    assert torch.equal(signed.to(torch.int16) + 8, q.to(torch.int16))  # stored = signed q + 8
    zp = unpack_from_int32(t["weight_zero_point"], 4, torch.Size([48, 4]), packed_dim=0)
    assert torch.equal(zp.to(torch.int16) + 8, zero.to(torch.int16))
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=4, type="int", symmetric=False, strategy="group", group_size=64))
    out = PackedQuantizationCompressor.decompress(dict(t), scheme)
    ours = dequantize(q, scale, zero, 64)
    torch.testing.assert_close(out["weight"].float(), ours, rtol=1e-3, atol=1e-6)  # it dequantizes in fp16
    assert ct is not None
