"""Importance-weighted quantization error of every tensor under every candidate type, measured.

For each tensor a fixed sample of its rows is quantized with exactly the quantizer and importance the
converter would use (core/gguf/convert.py ``encode``), decoded with the native kernels, and the
expected loss of the error, Σ_ij r_i·c_j·(w_ij − q_ij)² per loss term (core/calibration/fisher.py
LossTerm: r per output row, c per input column), is scaled from the sampled rows to the whole tensor.
Rows, not blocks, are sampled: every type's blocks see the same rows, so the differences between
types are measured on the same data; the sample is a fixed function of the tensor name and shape, so
a plan is reproducible.

The estimate's error is bounded, not hoped for: each estimate's standard error follows from the
spread of the sampled rows' losses (sampling without replacement), and a tensor whose estimate of
any type is less certain than MAX_RELATIVE_SE is measured again on twice the rows, until it is or
every row is measured. A small first sample is therefore safe: most tensors' rows err alike.
"""

from __future__ import annotations

import dataclasses
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from quantpress.core.calibration.fisher import LossTerm
from quantpress.core.gguf.source import TensorPlan
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore
from quantpress.core.quant import decode

# Rows measured per tensor at first: at least MIN_SAMPLE_ROWS (all rows of smaller tensors), else a
# SAMPLE_FRACTION of them. With about ten candidates per tensor, 1/32 of the rows costs about a third
# of one pass of quantization over the model (the planning budget is 2x a conversion); the standard
# error bound below adds rows where they are needed.
SAMPLE_FRACTION = 1 / 32
MIN_SAMPLE_ROWS = 32
# A tensor is measured again on twice the rows while any type's estimated loss has a standard error
# above this share of it: the allocation weighs types whose losses differ 2-4x per step in size.
MAX_RELATIVE_SE = 0.1
# A loss at most this share of the tensor's signal is zero (its weights already lie on the type's grid).
ZERO_LOSS = 1e-9
# Dearer types after a lossless one are first tried on this many sampled rows: most are not lossless
# (a few rows show it at a fraction of the sample's cost); those that are get the whole sample.
PROBE_ROWS = 4


@dataclass(frozen=True)
class TensorErrors:
    """``loss[type]``: the tensor's expected loss stored as that type, Σ over its loss terms of
    scale · Σ_i rows_i Σ_j columns_j (w_ij − q_ij)² over the whole tensor (estimated from
    ``sampled_rows`` of ``rows``), exactly 0 for a type whose grid the weights lie on (ZERO_LOSS);
    after the first such type (candidates are listed cheapest first) only the dearer types that are
    lossless too are listed: the others cost more and do worse, while these are what a size target's
    leftover bytes may still buy (core/gguf/allocate.py). ``signal``: the same sum with q = 0 (what
    the loss would be if the tensor were zero: a scale for reading the losses)."""

    name: str
    rows: int
    sampled_rows: int
    signal: float
    loss: dict[str, float]  # only the types worth choosing: after a lossless one, only lossless ones
    relative_se: float = 0.0  # the largest standard error of a type's loss estimate, relative to it


def sample_rows(name: str, n_rows: int, priority: np.ndarray | None = None,
                k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sorted row indices measured for tensor ``name`` and each one's weight (1 / its chance of
    being picked): ``k`` rows (default: the first sample's size), all rows of a small tensor; else,
    with a ``priority`` per row (a loss term's row weights), the top half of the sample by priority
    plus a uniform draw from the rest (the rows that carry most of the loss are never left to
    chance); else a uniform draw. Deterministic."""
    if k is None:
        k = max(MIN_SAMPLE_ROWS, int(round(n_rows * SAMPLE_FRACTION)))
    k = min(n_rows, k)
    if k >= n_rows:
        return np.arange(n_rows), np.ones(n_rows)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if priority is None:
        return np.sort(rng.choice(n_rows, size=k, replace=False)), np.full(k, n_rows / k)
    top = np.argsort(-priority, kind="stable")[: k // 2]
    rest = np.setdiff1d(np.arange(n_rows), top)
    drawn = rng.choice(rest, size=k - len(top), replace=False)
    rows = np.concatenate([top, drawn])
    weights = np.concatenate([np.ones(len(top)), np.full(len(drawn), len(rest) / len(drawn))])
    order = np.argsort(rows)
    return rows[order], weights[order]


def estimate_se(row_loss: np.ndarray, row_weight: np.ndarray) -> float:
    """Standard error of Σ_i w_i·l_i as an estimate of the whole tensor's loss: the rows drawn at
    random (weight w > 1, each 1/w of its stratum) vary as a sample without replacement,
    Var = w(w − 1)·m·s² for m drawn rows of sample variance s²; rows taken for certain add none."""
    drawn = row_weight > 1.0
    m = int(drawn.sum())
    if m < 2:
        return 0.0
    w = float(row_weight[drawn][0])
    return float(np.sqrt(w * (w - 1.0) * m * np.var(row_loss[drawn], ddof=1)))


def _sampled(read: Callable[[TensorPlan], Iterator[np.ndarray]], t: TensorPlan, rows: np.ndarray) -> np.ndarray:
    """The rows ``rows`` of tensor ``t`` as float32 (k, n_per_row), read slab by slab."""
    parts, start = [], 0
    for x in read(t):
        x = x.reshape(-1, t.shape[-1])
        end = start + x.shape[0]
        pick = rows[(rows >= start) & (rows < end)] - start
        if pick.size:
            parts.append(x[pick])
        start = end
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def measure_errors(tensors: Sequence[TensorPlan], candidates: Mapping[str, Sequence[str]],
                   read: Callable[[TensorPlan], Iterator[np.ndarray]],
                   quantize: Callable[[np.ndarray, str, np.ndarray | None], np.ndarray],
                   importance: Callable[[str, int], np.ndarray | None],
                   terms: Callable[[str, int, int], Sequence[LossTerm]], *, workers: int = 1,
                   report: Report = ignore, cancel: CancelToken = NEVER) -> dict[str, TensorErrors]:
    """Expected loss of every tensor named in ``candidates`` under each of its types.

    ``candidates`` lists each tensor's types cheapest first. quantize(x, type, importance) -> block
    bytes (the converter's encoder, called from ``workers`` threads at once); importance(name, n) ->
    what the converter passes for that tensor (or None); terms(name, n_rows, n_per_row) -> its loss
    terms. ``read`` is called from one thread at a time. Tensors are measured ``workers`` at a time:
    a sample is too small for the quantizer's own threads (most tensors' are a few dozen rows), and
    ggml's searches with importance release the GIL. The result does not depend on ``workers``."""
    todo = [t for t in tensors if len(candidates.get(t.name, ())) > 0]
    total = sum(len(candidates[t.name]) * t.n_elements for t in todo) or 1
    reading = threading.Lock()

    def locked_read(t: TensorPlan) -> Iterator[np.ndarray]:
        with reading:  # a reader's files are shared (seek, then read); _sampled reads a tensor through at once
            yield from read(t)

    def one(t: TensorPlan) -> TensorErrors:
        cancel.raise_if_cancelled()
        n = int(t.shape[-1])
        n_rows = int(t.n_elements // n)
        tensor_terms = list(terms(t.name, n_rows, n))
        ranked = [p for p in (term.row_priority for term in tensor_terms) if p is not None]
        imp = importance(t.name, n)
        k = None
        while True:
            rows, row_weight = sample_rows(t.name, n_rows, ranked[0] if ranked else None, k)
            errors = _measure_sample(t, rows, row_weight, locked_read, candidates[t.name], quantize, imp,
                                     tensor_terms, cancel)
            if errors.relative_se <= MAX_RELATIVE_SE or len(rows) >= n_rows:
                return dataclasses.replace(errors, rows=n_rows)
            k = 2 * len(rows)  # too uncertain: twice the rows (never more than all of them)

    out: dict[str, TensorErrors] = {}
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, t) for t in todo]
        try:
            for t, future in zip(todo, futures, strict=True):  # results and progress in the tensors' order
                out[t.name] = future.result()
                done += len(candidates[t.name]) * t.n_elements
                report(Progress("measure", min(done / total, 0.999), f"errors: {t.name}"))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out


def _measure_sample(t: TensorPlan, rows: np.ndarray, row_weight: np.ndarray,
                    read: Callable[[TensorPlan], Iterator[np.ndarray]], types: Sequence[str],
                    quantize: Callable[[np.ndarray, str, np.ndarray | None], np.ndarray], imp: np.ndarray | None,
                    tensor_terms: Sequence[LossTerm], cancel: CancelToken) -> TensorErrors:
    """Every type's loss estimate on the sampled rows ``rows`` (weights ``row_weight``)."""
    n = int(t.shape[-1])
    x = _sampled(read, t, rows)
    weights = [(term.scale * (term.rows[rows] if term.rows is not None else 1.0) * np.ones(len(rows)),
                np.asarray(term.columns, dtype=np.float64),
                term.matrix[rows].astype(np.float64) if term.matrix is not None else None)
               for term in tensor_terms]
    signal = float(_row_losses(x.astype(np.float64) ** 2, weights) @ row_weight)
    losses, worst, lossless = {}, 0.0, False
    for ggml_type in types:
        cancel.raise_if_cancelled()
        if lossless and not _exact_on(x[:PROBE_ROWS], ggml_type, quantize, imp):
            continue  # dearer than a lossless type and not lossless itself: a few rows tell, cheaply
        q = decode(quantize(x, ggml_type, imp), ggml_type, n)
        per_row = _row_losses((x - q).astype(np.float64) ** 2, weights)
        total = float(per_row @ row_weight)
        exact = total <= ZERO_LOSS * signal  # on this type's grid
        if exact:
            total = 0.0
        if lossless and not exact:  # dearer and worse than a lossless type: never worth choosing
            continue
        losses[ggml_type] = total
        lossless = lossless or exact
        if not exact:
            worst = max(worst, estimate_se(per_row, row_weight) / total)
    return TensorErrors(t.name, 0, len(rows), signal, losses, worst)


def rows_exact(x: np.ndarray, ggml_type: str, quantize: Callable[[np.ndarray, str, np.ndarray | None], np.ndarray],
               imp: np.ndarray | None) -> bool:
    """Whether every row of ``x`` (rows, n) is stored by ``ggml_type`` with at most ZERO_LOSS of that
    row's energy lost: row by row, so one block off the grid in a large tensor is not averaged away."""
    err, energy = _stored_errors(x, ggml_type, quantize, imp)
    return bool(np.all(err <= ZERO_LOSS * energy))


def _exact_on(x: np.ndarray, ggml_type: str, quantize: Callable[[np.ndarray, str, np.ndarray | None], np.ndarray],
              imp: np.ndarray | None) -> bool:
    """Whether rows ``x`` lie on ``ggml_type``'s grid (stored with at most ZERO_LOSS of their energy lost)."""
    err, energy = _stored_errors(x, ggml_type, quantize, imp)
    return float(err.sum()) <= ZERO_LOSS * float(energy.sum())


def _stored_errors(x: np.ndarray, ggml_type: str, quantize: Callable[[np.ndarray, str, np.ndarray | None], np.ndarray],
                   imp: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``x`` (rows, n): the squared error of storing it as ``ggml_type``, and its energy."""
    q = decode(quantize(x, ggml_type, imp), ggml_type, x.shape[-1])
    return ((x - q).astype(np.float64) ** 2).sum(axis=1), (x.astype(np.float64) ** 2).sum(axis=1)


def _row_losses(err2: np.ndarray, weights: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """Per sampled row: Σ over terms of r_i · (Σ_j M_ij err2_ij, or Σ_j c_j err2_ij)."""
    return np.asarray(sum(((err2 * m).sum(axis=1) if m is not None else err2 @ c) * r for r, c, m in weights))
