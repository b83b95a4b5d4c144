"""Native Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 kernels: byte-identical to ggml's quantizer (ggml_quantize_chunk
from llama-cpp-python's bundled ggml), with and without importance, on random and real tensors,
for 1, 2 and 7 threads; dequantize equals gguf.quants.dequantize."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from native_helpers import demo_weights, random_importance, random_rows
from quantpress import native
from quantpress.core.quant import SEARCH_WITHOUT_IMPORTANCE, quantize_tensor
from quantpress.core.quant.ggml_ref import ggml_quantize

LEGACY = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
THREADS = [1, 2, 7]
DEMO_TENSORS = (
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.3.mlp.down_proj.weight",
    "model.layers.20.self_attn.v_proj.weight",
)


# With importance these search wider than ggml (qp_make_qx_quants): their bytes differ, their weighted
# error is never above ggml's. The other legacy types write ggml's bytes with importance too.
WIDER_SEARCH = {"Q4_0", "Q5_0"}


def weighted_error(q: np.ndarray, x: np.ndarray, qtype: str, imp: np.ndarray) -> float:
    """ggml's objective for legacy types with importance: sum imp_j sqrt(sigma2 + x_j^2) (x_j - q_j)^2."""
    sigma2 = np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True)
    w = imp[None, :] * np.sqrt(sigma2 + x.astype(np.float64) ** 2)
    return float((w * (native.dequantize(q, qtype, x.shape[1]).astype(np.float64) - x) ** 2).sum())


def assert_ggml_or_better(ours: np.ndarray, x: np.ndarray, qtype: str, imp: np.ndarray) -> None:
    """ggml's bytes, or (WIDER_SEARCH types) a weighted error at most ggml's."""
    ref = ggml_quantize(x, qtype, imp)
    if qtype not in WIDER_SEARCH:
        return assert_same_bytes(ours, ref)
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    assert np.isfinite(native.dequantize(ours, qtype, x.shape[1])).all()
    e_ours, e_ggml = weighted_error(ours, x, qtype, imp), weighted_error(ref, x, qtype, imp)
    assert e_ours <= e_ggml * (1 + 1e-5) + 1e-30, (e_ours, e_ggml)


def assert_same_bytes(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    if not np.array_equal(ours, ref):
        rows = np.flatnonzero((ours != ref).any(axis=1))
        pytest.fail(f"{rows.size} of {ref.shape[0]} rows differ from ggml, first row {rows[0]}")


@pytest.mark.parametrize("qtype", LEGACY)
@pytest.mark.parametrize("threads", THREADS)
def test_random_matches_ggml(qtype: str, threads: int) -> None:
    x = random_rows(67, 512, seed=threads)
    ref = ggml_quantize(x, qtype)
    assert_same_bytes(native.quantize(x, qtype, threads=threads), ref)
    assert_same_bytes(native.quantize_ref(x, qtype, threads=threads), ref)


@pytest.mark.parametrize("qtype", LEGACY)
@pytest.mark.parametrize("threads", THREADS)
def test_random_with_importance_matches_or_beats_ggml(qtype: str, threads: int) -> None:
    x = random_rows(41, 1024, seed=10 + threads)
    imp = random_importance(1024)
    ours = native.quantize(x, qtype, imp, threads=threads)
    assert_ggml_or_better(ours, x, qtype, imp)
    assert_same_bytes(native.quantize_ref(x, qtype, imp, threads=threads), ours)


@pytest.mark.parametrize("qtype", LEGACY)
def test_demo_model_tensors_match_ggml(qtype: str, demo_model_dir) -> None:
    imp = None
    for name, w in demo_weights(demo_model_dir, DEMO_TENSORS).items():
        ref = ggml_quantize(w, qtype)
        for threads in THREADS:
            assert_same_bytes(native.quantize(w, qtype, threads=threads), ref)
        imp = random_importance(w.shape[1], seed=len(name))
        ours = native.quantize(w, qtype, imp, threads=2)
        assert_ggml_or_better(ours, w, qtype, imp)
        assert_same_bytes(quantize_tensor(w, qtype, imp, threads=7), ours)


@pytest.mark.parametrize("qtype", sorted(SEARCH_WITHOUT_IMPORTANCE))
def test_converter_searches_scales_without_importance(qtype: str, demo_model_dir) -> None:
    """The converter's better rounding: without importance, quantize_tensor gives these types uniform
    importance (a scale search) instead of ggml's plain max-abs rounding. Stated here: the bytes are
    the importance path's for uniform importance, and the squared error on real weights is lower."""
    for name, w in demo_weights(demo_model_dir, DEMO_TENSORS).items():
        ours = quantize_tensor(w, qtype, threads=2)
        ones = np.ones(w.shape[1], np.float32)
        assert_same_bytes(ours, native.quantize(w, qtype, ones, threads=2))
        assert_ggml_or_better(ours, w, qtype, ones)
        err_ours = np.square(native.dequantize(ours, qtype, w.shape[1]) - w).sum()
        plain = ggml_quantize(w, qtype)
        err_plain = np.square(native.dequantize(plain, qtype, w.shape[1]) - w).sum()
        # The demo weights lie on a Q4_1 grid, which Q4_1 represents exactly either way.
        assert err_ours <= err_plain * (1.0 if qtype == "Q4_1" else 0.9), (name, err_ours, err_plain)


@pytest.mark.parametrize("qtype", LEGACY)
def test_dequantize_equals_gguf(qtype: str) -> None:
    x = random_rows(16, 256, seed=3)
    q = native.quantize(x, qtype)
    ours = native.dequantize(q, qtype, 256)
    theirs = gguf_dequantize(q, GGMLQuantizationType[qtype])
    np.testing.assert_array_equal(ours, theirs.reshape(ours.shape))
    flat = native.dequantize(q.reshape(-1), qtype, 256)  # flat bytes are accepted too
    np.testing.assert_array_equal(flat, ours)
    step = {"Q8_0": 1 / 127, "Q4_0": 1 / 8, "Q5_0": 1 / 16, "Q4_1": 1 / 15, "Q5_1": 1 / 31}[qtype]
    block_max = np.abs(x).reshape(16, -1, 32).max(axis=2, keepdims=True)
    err = np.abs(ours - x).reshape(16, -1, 32)
    assert (err <= block_max * step * 1.01 + 1e-7).all()  # within one quantization step


EDGE_ROWS = {
    "zeros": np.zeros((3, 64), np.float32),
    "constant": np.full((3, 64), 0.37, np.float32),
    "negative_constant": np.full((2, 96), -2.5, np.float32),
    "tiny": (np.random.default_rng(0).standard_normal((4, 64)) * 1e-30).astype(np.float32),
    "subnormal": (np.random.default_rng(1).standard_normal((4, 64)) * 1e-39).astype(np.float32),
    "huge": (np.random.default_rng(2).standard_normal((4, 64)) * 1e3).astype(np.float32),
    "one_block": random_rows(5, 32),
    "mixed": np.vstack([np.zeros((1, 64)), np.full((1, 64), 1e-8), random_rows(2, 64)]).astype(np.float32),
}


@pytest.mark.parametrize("qtype", LEGACY)
@pytest.mark.parametrize("case", sorted(EDGE_ROWS))
def test_edge_cases_match_ggml_and_round_trip(qtype: str, case: str) -> None:
    x = np.ascontiguousarray(EDGE_ROWS[case])
    q = native.quantize(x, qtype)
    assert_same_bytes(q, ggml_quantize(x, qtype))
    y = native.dequantize(q, qtype, x.shape[1])
    assert not np.isnan(y).any()
    imp = np.ones(x.shape[1], np.float32)
    assert_ggml_or_better(native.quantize(x, qtype, imp), x, qtype, imp)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_raise_naming_the_row(bad: float) -> None:
    x = random_rows(50, 256)
    x[37, 5] = bad
    x[41, 0] = bad
    with pytest.raises(ValueError, match="row 37"):
        native.quantize(x, "Q4_0", threads=7)
    with pytest.raises(ValueError, match="row 37"):
        quantize_tensor(x, "Q4_K")


def test_bad_inputs_raise_value_error() -> None:
    x = random_rows(4, 64)
    cases = [
        (x.astype(np.float64), "Q4_0", "float32"),  # no silent conversion
        (x.astype(np.float16), "Q8_0", "float32"),
        (x[:, ::2], "Q4_0", "contiguous"),  # no silent copy either
        (x.T, "Q4_0", "contiguous"),
        (x.reshape(-1), "Q4_0", "2-D"),
        (x[:, :48].copy(), "Q4_0", "multiple of 32"),
        (x, "Q9_9", "unknown"),
    ]
    for arr, qtype, msg in cases:
        with pytest.raises(ValueError, match=msg):
            native.quantize(arr, qtype)
    with pytest.raises(ValueError, match="importance"):
        native.quantize(x, "Q4_0", np.ones(63, np.float32))
    with pytest.raises(ValueError, match="importance"):
        native.quantize(x, "Q4_0", np.ones(64, np.float64))
    with pytest.raises(ValueError, match="importance"):
        native.quantize(x, "Q4_0", np.full(64, np.nan, np.float32))
    with pytest.raises(ValueError, match="bytes"):
        native.dequantize(np.zeros((2, 17), np.uint8), "Q4_0", 32)


def test_empty_and_readonly_inputs() -> None:
    assert native.quantize(np.zeros((0, 64), np.float32), "Q4_0").shape == (0, 36)
    x = random_rows(3, 64)
    x.flags.writeable = False
    assert_same_bytes(native.quantize(x, "Q5_1"), ggml_quantize(x, "Q5_1"))


def test_gil_released_threads_agree() -> None:
    """Several Python threads quantize at once (the GIL is dropped in the kernel) with equal results."""
    from concurrent.futures import ThreadPoolExecutor

    x = random_rows(256, 1024)
    ref = native.quantize(x, "Q4_1", threads=1)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: native.quantize(x, "Q4_1", threads=t), [1, 2, 3, 7]))
    for r in results:
        assert_same_bytes(r, ref)
