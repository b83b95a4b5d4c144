"""Grid-safe Q5_1 (core/quant/grid_safe.py): searched where the weights are a grid or were never
quantized, Q5_0's max-abs levels where they sit in clusters around an older grid, so a fine-tune of a
once-quantized model is not rounded back onto its old levels; and the k-quant mixes whose Q5_K falls
back to Q5_1 use it by default (core/quant/auto.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from quantpress.core.gguf.convert import convert
from quantpress.core.gguf.plan import plan_conversion
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.reference import llama_quantize
from quantpress.core.gguf.source import open_source
from quantpress.core.quant import quantize_tensor
from quantpress.core.quant.auto import LLAMA_CPP_GRID_SAFE, choose
from quantpress.core.quant.grid_safe import q5_0_as_q5_1


def _deq(blocks: np.ndarray, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(dequantize(blocks, GGMLQuantizationType[qtype]), dtype=np.float32).reshape(shape)


def _on_q4_1_grid(rows: int = 16, n: int = 512, seed: int = 0) -> np.ndarray:
    """Weights as a model dequantized from a Q4_1 GGUF holds them (ggml's own Q4_1 of random rows)."""
    x = np.random.default_rng(seed).standard_normal((rows, n)).astype(np.float32)
    return np.ascontiguousarray(_deq(quantize_tensor(x, "Q4_1", None, 1, "ggml"), "Q4_1", x.shape))


def test_q5_0_blocks_rewritten_as_q5_1_hold_the_same_values() -> None:
    x = np.random.default_rng(1).standard_normal((8, 256)).astype(np.float32) * 3
    x[0, :32] = -np.abs(x[0, :32])  # blocks whose largest weight is negative: Q5_0's d < 0
    q5_0 = quantize_tensor(x, "Q5_0", None, 1, "ggml")
    q5_1 = q5_0_as_q5_1(q5_0)
    assert q5_1.shape == (8, 8 * 24)
    np.testing.assert_array_equal(_deq(q5_1, "Q5_1", x.shape), _deq(q5_0, "Q5_0", x.shape))


def test_weights_on_an_old_grid_are_stored_exactly() -> None:
    """A dequantized Q4_1 checkpoint: Q5_1 with half the step holds it exactly, and grid-safe keeps that."""
    x = _on_q4_1_grid()
    searched = quantize_tensor(x, "Q5_1", None, 1, "native")
    safe = quantize_tensor(x, "Q5_1", None, 1, "ggml", grid_safe=True)
    np.testing.assert_array_equal(safe, searched)
    np.testing.assert_allclose(_deq(safe, "Q5_1", x.shape), x, rtol=0, atol=1e-6)


def test_never_quantized_weights_get_the_search() -> None:
    x = np.random.default_rng(4).standard_normal((32, 512)).astype(np.float32)
    imp = np.linspace(0.5, 2.0, x.shape[1]).astype(np.float32)
    np.testing.assert_array_equal(quantize_tensor(x, "Q5_1", imp, 1, "ggml", grid_safe=True),
                                  quantize_tensor(x, "Q5_1", imp, 1, "native"))


def test_a_fine_tune_near_the_grid_is_not_rounded_back() -> None:
    """Grid weights plus a change smaller than a 5-bit step (a fine-tune of a quantized model): a searched
    Q5_1 undoes most of the change; grid-safe Q5_1's error is unrelated to it."""
    base = _on_q4_1_grid(rows=64)
    rng = np.random.default_rng(2)
    delta = (0.02 * base.std() * rng.standard_normal(base.shape)).astype(np.float32)
    x = np.ascontiguousarray(base + delta)

    def undone(blocks: np.ndarray) -> float:  # share of the change the rounding error takes back
        err = _deq(blocks, "Q5_1", x.shape) - x
        return float(-(err * delta).sum() / (delta * delta).sum())

    searched = quantize_tensor(x, "Q5_1", np.ones(x.shape[1], np.float32), 1, "native")
    safe = quantize_tensor(x, "Q5_1", None, 1, "ggml", grid_safe=True)
    assert undone(searched) > 0.5
    assert abs(undone(safe)) < 0.15
    # (nearly) every block holds Q5_0's max-abs levels for the same weights
    as_q5_0 = q5_0_as_q5_1(quantize_tensor(x, "Q5_0", None, 1, "ggml")).reshape(64, -1, 24)
    assert (safe.reshape(as_q5_0.shape) == as_q5_0).all(axis=2).mean() > 0.95


def test_blocks_are_chosen_one_by_one_and_other_types_are_untouched() -> None:
    """In a tensor a fine-tune moved, a row it left on the grid stays searched (exact) and the moved rows
    take Q5_0's levels."""
    x = _on_q4_1_grid(rows=4)
    rng = np.random.default_rng(3)
    x[1:] += (0.02 * x.std() * rng.standard_normal((3, x.shape[1]))).astype(np.float32)
    safe = quantize_tensor(x, "Q5_1", None, 1, "ggml", grid_safe=True).reshape(4, -1, 24)
    searched = quantize_tensor(x, "Q5_1", None, 1, "native").reshape(4, -1, 24)
    as_q5_0 = q5_0_as_q5_1(quantize_tensor(x, "Q5_0", None, 1, "ggml")).reshape(4, -1, 24)
    np.testing.assert_array_equal(safe[0], searched[0])
    assert (safe[1:] == as_q5_0[1:]).all(axis=2).mean() > 0.95
    for qtype in ("Q5_0", "Q4_K", "Q8_0"):
        np.testing.assert_array_equal(quantize_tensor(x, qtype, None, 1, "ggml", grid_safe=True),
                                      quantize_tensor(x, qtype, None, 1, "ggml"))


def test_a_change_far_below_a_step_keeps_the_grid() -> None:
    """A fine-tune that moved the weights by a tiny fraction of a step: the grid is kept (searched), as
    storing it costs almost nothing and Q5_0's levels would cost a whole rounding error."""
    x = _on_q4_1_grid(rows=16)
    x += (1e-4 * x.std() * np.random.default_rng(5).standard_normal(x.shape)).astype(np.float32)
    np.testing.assert_array_equal(quantize_tensor(x, "Q5_1", None, 1, "ggml", grid_safe=True),
                                  quantize_tensor(x, "Q5_1", None, 1, "native"))


def test_q5_k_mixes_default_to_grid_safe_q5_1_fallbacks(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """Q5_K_S on a model whose rows 256 does not divide: its Q5_1 fallbacks are grid-safe (random
    weights, never quantized: the native search's bytes), every other tensor llama-quantize's bytes."""
    assert choose("auto", "Q5_K_S", "weights") == LLAMA_CPP_GRID_SAFE
    model = open_source(tiny("smollm"))  # hidden 96: Q5_K falls back to Q5_1
    (f16,) = convert(plan_conversion(model, ["F16"], tmp_path))
    (ours,) = convert(plan_conversion(model, ["Q5_K_S"], tmp_path / "ours.gguf", policy="llama.cpp"))
    ref_path = tmp_path / "ref-Q5_K_S.gguf"
    llama_quantize(Path(f16.output), ref_path, "Q5_K_S", threads=2)
    n_q5_1 = 0
    with open_gguf(ref_path) as ref, open_gguf(Path(ours.output)) as got, open_gguf(Path(f16.output)) as src:
        for t in ref.tensors:
            if t.ggml_type != "Q5_1":
                assert bytes(got.raw(t.name).tobytes()) == bytes(ref.raw(t.name).tobytes()), t.name
                continue
            n_q5_1 += 1
            w = np.ascontiguousarray(src.dequantize(t.name).reshape(-1, t.shape[-1]), dtype=np.float32)
            want = quantize_tensor(w, "Q5_1", None, 1, "native")  # the search: these weights were never quantized
            assert bytes(got.raw(t.name).tobytes()) == bytes(want.tobytes()), t.name
    assert n_q5_1 > 0


def test_the_writing_pass_prices_the_search(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    """The progress bar's cost model counts what grid-safe Q5_1 runs (core/eta.py): the native search and
    the max-abs Q5_0, not the min/max rounding the choice's engine would do."""
    from quantpress.core.eta import write_cost
    from quantpress.core.gguf.convert import _tensor_costs

    plan = plan_conversion(open_source(tiny("smollm")), ["Q5_K_S"], tmp_path / "x.gguf", policy="llama.cpp")
    types = plan.outputs[0].tensor_types
    costs = dict(zip([t.name for t in plan.tensors], _tensor_costs(plan), strict=True))
    t = next(t for t in plan.tensors if types[t.name] == "Q5_1")
    assert costs[t.name] == write_cost(t.n_elements, [("Q5_1", "native", True), ("Q5_0", "ggml", False)])
    assert costs[t.name] > write_cost(t.n_elements, [("Q5_1", "ggml", False)])

