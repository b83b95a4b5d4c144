"""The best-fit planner's loss per tensor and type, measured per category through llama.cpp's runtime.

The weights estimate (core/calibration/sensitivity.py) follows a tensor's error to the logits with
energies propagated from the weights alone. On a trained model that misses by orders of magnitude
where a block writes a few very large channels into the residual stream for every token ("massive
activations": on the qwen3 test model the real stream after block 0 carries 10^3-10^4 times the
energy the weights suggest), and it ranks tensors no better than chance there (BENCHMARKS.md, "Is the
per-tensor sensitivity right?"). So the planner measures, per category (the tensor name without its
block number: attn_q.weight, ..., ffn_down.weight; token_embd.weight; output.weight), what storing
every tensor of that category at one type costs through the real model.

The measurement: the model is written once as F16 into a temporary folder; the reference is llama.cpp's
output on PROBE_TOKENS tokens of the built-in calibration text. Then, one category at a time, that
category's tensors in the file are replaced by what the converter stores for them at the probe type
(probe_type: Q5_0; the converter's own quantizer and importance, dequantized), the file is run
again, the KL-divergence to the reference is the category's measured loss, and the tensors are put back.
Where the category's tensors have a lossier cheapest type (Q2_K where rows of 256 allow it), a second
run at those measures how fast the loss grows below the probe type: on the demo model all ffn_down at
Q2_K cost 100x what they cost at Q4_K, for an importance-weighted error about 15x larger, far from the
proportion the planner's squared-error model assumes (calibrated).

Real rounding errors, not random noise of the same energy: on the test models a quantizer's error cost
up to 30x what noise of its importance-weighted energy does (a shrink shared by a whole tensor,
per-block offsets on a model whose weights lie on a grid), and factors taken from noise let the planner
spend the demo model's bytes where they bought nothing (BENCHMARKS.md, "Types chosen for a target").
F16, not Q8_0: ggml's CPU matmuls round the activations to the weights' dot-product type, and with Q8_0
weights that rounding alone cost about 1e-6 KL on the qwen3 test model once anything moved.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.gguf.reader import open_gguf
from quantpress.core.gguf.source import TensorPlan
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore
from quantpress.core.signals import PROBE_FOLDER, remove_stale

# The type a tensor's probe stores it at: Q5_0, a candidate for every row length the planner handles, a
# little under 5 bits (its error well above the F16 copy's own, well inside the range the planner
# chooses from), and quick to make: ggml's IQ4_NL and Q4_K searches with importance took 7x and 4x as
# long, which on the demo model made the probe most of the planning time.
PROBE_TYPES = ("Q5_0",)
PROBE_TOKENS = 256
MIN_EXPONENT, MAX_EXPONENT = 1.0, 3.0  # quadratic in the error (1) up to where a model falls apart
KL_ROWS = 32  # the probe's KL is taken this many tokens at a time
MIN_MEASURED_KL = 1e-9  # below this the runtime's own rounding noise is as large as the signal
_BLOCK = re.compile(r"blk\.\d+\.(.+)$")

# (tensor, type) -> that tensor as the converter stores it at that type, dequantized, float32 (rows, n)
Stored = Callable[[TensorPlan, str], np.ndarray]


@dataclass(frozen=True)
class Point:
    """What a tensor's probe stores it at: (type, the planner's predicted loss there) at the probe type,
    and at the tensor's cheapest type where that is another, lossier one."""

    elements: int
    probe: tuple[str, float]
    low: tuple[str, float] | None = None

    def ratio(self) -> float:
        """Predicted loss at the cheapest type over that at the probe type (the tensor's own errors)."""
        return self.low[1] / self.probe[1] if self.low else 1.0


@dataclass(frozen=True)
class CategoryFactor:
    """What the probe of one category measured."""

    category: str
    tensors: int
    elements: int
    predicted: float  # the weights estimate's expected loss of the category at the probe type (for reports)
    measured: float  # llama.cpp's KL with the category at the probe type
    exponent: float = 1.0  # the loss grows as (a tensor's own error ratio)^exponent below the probe type

    @property
    def per_element(self) -> float:
        return self.measured / self.elements


def category(name: str) -> str:
    """The category a tensor's probe belongs to: its name without the block number."""
    m = _BLOCK.match(name)
    return m.group(1) if m else name


def probe_type(candidates: Sequence[str]) -> str | None:
    """The type a tensor is stored at for its probe (PROBE_TYPES), None when its rows allow none."""
    return next((t for t in PROBE_TYPES if t in candidates), None)


def probe_points(errors: Mapping[str, Any], candidates: Mapping[str, Sequence[str]],
                 elements: Mapping[str, int]) -> dict[str, Point]:
    """The Point of every tensor that can be probed; ``errors``: the planner's TensorErrors."""
    out = {}
    for n, e in errors.items():
        pt = probe_type(candidates[n])
        if pt is None or not e.loss.get(pt, 0.0) > 0:
            continue
        low = candidates[n][0]
        lower = (low, e.loss[low]) if low != pt and e.loss.get(low, 0.0) > e.loss[pt] else None
        out[n] = Point(elements[n], (pt, e.loss[pt]), lower)
    return out


def _exponent(measured_probe: float, group: Sequence[TensorPlan], low: Sequence[TensorPlan],
              points: Mapping[str, Point], measured_low: float) -> float:
    """How fast the category's measured loss grows with its tensors' own errors, between the probe type
    (all of ``group``) and the cheapest types (``low``, a part of it), within MIN_EXPONENT..MAX_EXPONENT."""
    share = sum(points[t.name].elements for t in low) / sum(points[t.name].elements for t in group)
    growth = sum(points[t.name].elements * points[t.name].ratio() for t in low) / sum(
        points[t.name].elements for t in low)
    at_probe = measured_probe * share  # these tensors' part of the probe-type run, by size
    if measured_low <= at_probe or growth <= 1.0:
        return MIN_EXPONENT
    return float(np.clip(np.log(measured_low / at_probe) / np.log(growth), MIN_EXPONENT, MAX_EXPONENT))


def calibrated(errors: Mapping[str, Any], points: Mapping[str, Point],
               measured: Sequence[CategoryFactor]) -> dict[str, Any]:
    """The planner's TensorErrors replaced by the measured model: a tensor at its probe type costs its
    category's measured loss per element times its size; at another type, that times (its own predicted
    loss there / at the probe type)^exponent. Within a category the weights estimate's ranking of one
    tensor against another is not used: it was no better than chance on the qwen3 test model, and a
    planner that trusts it buys the errors of the tensors it underrates most (on the demo model a
    larger target then came out worse than a smaller one). A tensor without a measured category keeps
    its estimate, scaled by the median of the measured categories' measured / predicted."""
    by_cat = {c.category: c for c in measured}
    scale = float(np.median([c.measured / c.predicted for c in measured if c.predicted > 0])) if measured else 1.0
    out = {}
    for n, e in errors.items():
        c, pt = by_cat.get(category(n)), points.get(n)
        if c is None or pt is None:
            out[n] = dataclasses.replace(e, loss={t: v * scale for t, v in e.loss.items()}, signal=e.signal * scale)
            continue
        at_probe, ref = c.per_element * pt.elements, pt.probe[1]
        loss = {t: at_probe * (v / ref) ** c.exponent for t, v in e.loss.items()}
        out[n] = dataclasses.replace(e, loss=loss, signal=at_probe * (e.signal / ref) ** c.exponent)
    return out


def probe_factors(tensors: Sequence[TensorPlan], points: Mapping[str, Point], stored: Stored,
                  write_base: Callable[[Path], Path], text: str, *, threads: int = 0, report: Report = ignore,
                  cancel: CancelToken = NEVER) -> list[CategoryFactor]:
    """Measure every category (module docstring): its KL at the probe type and, where its tensors have
    lossier types, the exponent from a run at those. ``points``: probe_points; ``stored``: the
    converter's dequantized bytes; ``write_base(folder)`` writes the model's F16 GGUF into ``folder``
    and returns its path; ``text``: what the probe evaluates. Raises what llama.cpp's loading raises
    (the caller falls back to the estimate); leaves nothing behind."""
    groups: dict[str, list[TensorPlan]] = {}
    for t in tensors:
        if t.name in points:
            groups.setdefault(category(t.name), []).append(t)
    if not groups:
        return []
    # a planner killed outright (SIGKILL, a crash in native code) leaves its copy: the next one removes it
    remove_stale(Path(tempfile.gettempdir()), PROBE_FOLDER)
    folder = Path(tempfile.mkdtemp(prefix=f"quantpress-probe-{os.getpid()}-"))
    try:
        base = write_base(folder)
        with open_gguf(base) as f:
            where = {t.name: t for t in f.tensors}
        report(Progress("probe", 0.1, "sensitivity probe: reference run"))
        runner = _Runner(base, text, threads)
        try:
            measured = _probe_groups(runner, groups, points, stored, base, folder, where, report, cancel)
        finally:
            runner.close()  # before the folder goes: the model maps the copy
        return measured
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _probe_groups(runner: _Runner, groups: Mapping[str, list[TensorPlan]], points: Mapping[str, Point],
                  stored: Stored, base: Path, folder: Path, where: Mapping[str, Any], report: Report,
                  cancel: CancelToken) -> list[CategoryFactor]:
    """probe_factors' measurements, one category after another, on the loaded ``runner``."""
    out = []
    for i, (cat, group) in enumerate(groups.items()):
        cancel.raise_if_cancelled()
        kl = runner.kl_with(base, folder, where, [(t, points[t.name].probe[0]) for t in group], stored)
        if kl >= MIN_MEASURED_KL:
            low = [(t, lossier[0]) for t in group if (lossier := points[t.name].low) is not None]
            exponent = MIN_EXPONENT
            if low:
                kl_low = runner.kl_with(base, folder, where, low, stored)
                exponent = _exponent(kl, group, [t for t, _ in low], points, kl_low)
            out.append(CategoryFactor(cat, len(group), sum(points[t.name].elements for t in group),
                                      sum(points[t.name].probe[1] for t in group), kl, exponent))
        report(Progress("probe", 0.1 + 0.9 * (i + 1) / len(groups), f"sensitivity probe: {cat}"))
    return out


class _patched:
    """Context: each tensor of ``values`` ((name, a function giving its float32 (rows, n) value), made one
    at a time so a category never sits in memory whole) written into the GGUF ``path`` in place (its
    F16/F32 data, found with quantpress's reader: gguf-py's parses a large vocabulary for seconds), the
    originals saved in ``folder`` and written back on exit."""

    def __init__(self, path: Path, folder: Path, where: Mapping[str, Any],
                 values: list[tuple[str, Callable[[], np.ndarray]]]) -> None:
        self.path, self.folder, self.where, self.values = path, folder, where, values

    def _data(self, name: str) -> np.memmap:
        t = self.where[name]
        if t.ggml_type not in ("F16", "F32"):
            raise ValueError(f"{name}: the probe's copy holds it as {t.ggml_type}")
        return np.memmap(self.path, dtype=np.float16 if t.ggml_type == "F16" else np.float32, mode="r+",
                         offset=t.data_offset, shape=(t.n_elements,))

    def __enter__(self) -> _patched:
        for i, (name, value) in enumerate(self.values):
            d = self._data(name)
            np.save(self.folder / f"backup-{i}.npy", d)
            d[...] = value().reshape(-1).astype(d.dtype)
            d.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        for i, (name, _) in enumerate(self.values):
            backup = self.folder / f"backup-{i}.npy"
            if backup.exists():
                d = self._data(name)
                d[...] = np.load(backup, mmap_mode="r")
                d.flush()
                backup.unlink()


def _kl_rows(p: np.ndarray, ref: np.ndarray, z: np.ndarray) -> np.ndarray:
    """KL(p ‖ softmax(z)) per row, p = softmax(ref): with d = z − ref (exact in float32 where the logits
    are close), log q − log p = d − log Σ p·e^d, so KL = log1p(Σ p·expm1(d)) − Σ p·d, summed in float64.
    Two passes and no cancellation between large log-probabilities: the probe's KLs reach down to 1e-9."""
    d = z - ref
    with np.errstate(over="ignore"):
        grown = np.sum(p * np.expm1(d), axis=1, dtype=np.float64)
    kl = np.log1p(grown) - np.sum(p * d, axis=1, dtype=np.float64)
    if np.all(np.isfinite(kl)):
        return np.asarray(kl)
    # logits far apart (a broken model): through log-softmax, where nothing overflows
    return np.asarray(np.sum(p * (_log_softmax(ref) - _log_softmax(z)), axis=1, dtype=np.float64))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits - logits.max(axis=1, keepdims=True)
    return np.asarray(x - np.log(np.exp(x).sum(axis=1, keepdims=True)))


class _Runner:
    """llama.cpp on the GGUF ``path``: the reference logits (run when made), then ``kl()`` = the mean
    KL(reference ‖ the file as it is now) over the probe's tokens.

    The model is loaded once, memory-mapped: llama.cpp's CPU backend computes from the file's mapped
    pages (a shared mapping), so a tensor patched in the file (``_patched``, through another shared
    mapping of the same file) is what the next run multiplies by. Where that does not hold (a backend
    that copies the weights at load) a patched run would return the reference's logits bit for bit:
    such a run is checked against a fresh load, and if that one differs every later run loads the
    file afresh."""

    def __init__(self, path: Path, text: str, threads: int) -> None:
        self.path = path
        self.kw: dict[str, Any] = {"n_threads": threads, "n_threads_batch": threads} if threads > 0 else {}
        self.live: bool | None = None  # whether patches reach the loaded model; None: not known yet
        self.llm = self._load(use_mmap=True)
        try:
            self.tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True)[:PROBE_TOKENS]
            self.ref = self._logits(self.llm).copy()
        except BaseException:
            self.close()
            raise
        self.p = np.exp(_log_softmax(self.ref))
        self.workers = threads if threads > 0 else (os.cpu_count() or 1)

    def _load(self, use_mmap: bool) -> Any:
        import llama_cpp

        return llama_cpp.Llama(str(self.path), n_ctx=PROBE_TOKENS, n_batch=PROBE_TOKENS, logits_all=True,
                               verbose=False, use_mmap=use_mmap, **self.kw)

    def _logits(self, llm: Any) -> np.ndarray:
        """The raw logits of the probe's tokens, a view of the runner's buffer (valid until its next run)."""
        llm.reset()
        llm.eval(self.tokens)
        return np.asarray(llm.scores[: len(self.tokens)], dtype=np.float32)

    def _fresh_kl(self) -> float:
        llm = self._load(use_mmap=False)
        try:
            return self._mean_kl(self._logits(llm))
        finally:
            llm.close()

    def _mean_kl(self, z: np.ndarray) -> float:
        # KL_ROWS rows at a time (their temporaries stay in cache: 2-4x quicker than all 256 at once for
        # a 49k vocabulary), over the threads (numpy drops the GIL in its loops); each row's KL is
        # computed as it would be alone, so the mean is the same to the bit whatever the split
        chunks = [slice(a, a + KL_ROWS) for a in range(0, len(z), KL_ROWS)]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            parts = list(pool.map(lambda c: _kl_rows(self.p[c], self.ref[c], z[c]), chunks))
        return float(np.mean(np.concatenate(parts)))

    def kl(self) -> float:
        if self.live is False:
            return self._fresh_kl()
        kl = self._mean_kl(self._logits(self.llm))
        if kl != 0.0:
            self.live = True
            return kl
        # the reference's logits bit for bit: the patch left the values as they were, or it did not reach
        # the loaded model (a backend that copies some types at load) - a fresh load tells which
        fresh = self._fresh_kl()
        if fresh != 0.0:
            self.live = False
        return fresh

    def close(self) -> None:
        self.llm.close()

    def kl_with(self, base: Path, folder: Path, where: Mapping[str, Any], choice: list[tuple[TensorPlan, str]],
                stored: Stored) -> float:
        """kl() with each tensor of ``choice`` stored at its type (written into ``base`` and put back)."""
        with _patched(base, folder, where, [(t.name, functools.partial(stored, t, ty)) for t, ty in choice]):
            return self.kl()


def read_all(read: Callable[[TensorPlan], Iterator[np.ndarray]], t: TensorPlan) -> np.ndarray:
    """Tensor ``t`` as float32 (rows, n) from its slabs."""
    n = int(t.shape[-1])
    return np.concatenate([np.asarray(x, np.float32).reshape(-1, n) for x in read(t)])
