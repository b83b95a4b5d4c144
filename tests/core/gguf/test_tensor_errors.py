"""Measured per-type errors on a row sample (core/gguf/tensor_errors.py): the sampling standard error
is what repeated draws give, and a tensor whose rows err very unevenly is measured on more rows until
its estimate is within the bound (or exact)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from quantpress.core.calibration.fisher import LossTerm
from quantpress.core.gguf.convert import encode
from quantpress.core.gguf.source import TensorPlan
from quantpress.core.gguf.tensor_errors import MAX_RELATIVE_SE, estimate_se, measure_errors, sample_rows


def test_standard_error_matches_repeated_draws() -> None:
    rng = np.random.default_rng(1)
    population = rng.gamma(0.5, size=4000)  # skewed, like per-row losses
    n, k = len(population), 250
    totals = []
    ses = []
    for seed in range(400):
        rows = np.random.default_rng(seed).choice(n, size=k, replace=False)
        w = np.full(k, n / k)
        totals.append(float(population[rows] @ w))
        ses.append(estimate_se(population[rows], w))
    assert abs(np.mean(totals) - population.sum()) < 3 * np.std(totals) / np.sqrt(len(totals))
    assert 0.9 < np.mean(ses) / np.std(totals) < 1.1  # the formula's SE is the spread of the estimates
    assert estimate_se(population[:10], np.ones(10)) == 0.0  # rows taken for certain: no sampling error


def _plan(name: str, shape: tuple[int, int]) -> TensorPlan:
    return TensorPlan(name, shape, name, "x.safetensors", "F32")


def test_uneven_rows_are_measured_until_the_estimate_is_within_the_bound() -> None:
    rng = np.random.default_rng(0)
    n_rows, n = 8192, 256
    x = rng.standard_normal((n_rows, n)).astype(np.float32)
    x[rng.choice(n_rows, 40, replace=False)] *= 30.0  # a few rows carry most of the error
    plan = _plan("blk.0.ffn_down.weight", (n_rows, n))

    def read(_t: TensorPlan) -> Iterator[np.ndarray]:
        yield from (x[i: i + 1000] for i in range(0, n_rows, 1000))

    def quantize(a: np.ndarray, t: str, imp: np.ndarray | None) -> np.ndarray:
        return encode(a, t, imp, 1)

    types = ("Q4_K", "Q8_0")
    errors = measure_errors([plan], {plan.name: types}, read, quantize, lambda name, k: None,
                            lambda name, r, c: [LossTerm(1.0, np.ones(c, np.float32))])[plan.name]
    first = len(sample_rows(plan.name, n_rows)[0])
    assert errors.sampled_rows > first  # the first sample was too uncertain
    assert errors.relative_se <= MAX_RELATIVE_SE or errors.sampled_rows == n_rows
    from quantpress.core.quant import decode

    for t in types:
        exact = float(((x - decode(encode(x, t, None, 1), t, n)) ** 2).sum())
        assert abs(errors.loss[t] / exact - 1) < 3 * max(errors.relative_se, 1e-6)


def q4_1_grid(n_rows: int, n: int, seed: int = 2) -> np.ndarray:
    """Weights as llama.cpp's min/max Q4_1 leaves them (the demo model's): per 32-block m + d·k with
    f16 d and m and k in 0..15, both ends used."""
    rng = np.random.default_rng(seed)
    blocks = n_rows * n // 32
    d = rng.uniform(0.01, 0.1, (blocks, 1)).astype(np.float16).astype(np.float32)
    m = rng.uniform(-1.0, 0.0, (blocks, 1)).astype(np.float16).astype(np.float32)
    k = rng.integers(0, 16, (blocks, 32))
    k[:, 0], k[:, 1] = 0, 15
    return (k.astype(np.float32) * d + m).reshape(n_rows, n)


def test_after_a_lossless_type_only_lossless_dearer_types_are_listed() -> None:
    """Weights on Q4_1's grid: Q4_1 measures zero; of the larger types after it only Q5_1 (whose grid
    holds Q4_1's at half the step) is lossless too and listed, a way to spend bytes for nothing lost;
    Q5_0 and Q8_0 (no minimum) cost more and do worse: left out."""
    from quantpress.core.quant import decode

    n_rows, n = 256, 64
    x = q4_1_grid(n_rows, n)
    plan = _plan("blk.0.attn_q.weight", (n_rows, n))
    errors = measure_errors([plan], {plan.name: ("IQ4_NL", "Q4_1", "Q5_0", "Q5_1", "Q8_0")}, lambda t: iter([x]),
                            lambda a, t, imp: encode(a, t, imp, 1), lambda name, k: None,
                            lambda name, r, c: [LossTerm(1.0, np.ones(c, np.float32))])[plan.name]
    assert list(errors.loss) == ["IQ4_NL", "Q4_1", "Q5_1"]
    assert errors.loss["Q4_1"] == errors.loss["Q5_1"] == 0.0 < errors.loss["IQ4_NL"]
    for left_out in ("Q5_0", "Q8_0"):
        assert float(((x - decode(encode(x, left_out, None, 1), left_out, n)) ** 2).sum()) > 0


def test_rows_exact_checks_every_row_alone() -> None:
    """A tensor on Q4_1's grid is exact at Q4_1 and Q5_1 in every row; one row moved off the grid by
    a tiny fraction of the tensor's energy (less than ZERO_LOSS of the whole) still fails its own row."""
    from quantpress.core.gguf.tensor_errors import ZERO_LOSS, rows_exact

    x = q4_1_grid(256, 64)

    def quantize(a: np.ndarray, t: str, imp: np.ndarray | None) -> np.ndarray:
        return np.asarray(encode(a, t, imp, 1))

    assert rows_exact(x, "Q4_1", quantize, None) and rows_exact(x, "Q5_1", quantize, None)
    off = x.copy()
    off[200, 3] += 1e-3 * float(np.abs(x[200]).max())
    moved = float(((off - x).astype(np.float64) ** 2).sum())
    assert moved < ZERO_LOSS * float((x.astype(np.float64) ** 2).sum())  # the whole tensor would hide it
    assert not rows_exact(off, "Q5_1", quantize, None)
    assert not rows_exact(x, "Q5_0", quantize, None)
