"""One progress bar over a whole job: stages weighted by their expected cost, elapsed time and an ETA.

Why: a conversion with the default calibration reads the model twice (the importance estimate, then
the writing pass). Reported stage by stage, the bar filled twice and the ETA extrapolated the fast first
pass over the whole job (issue 18: 17-22 s shown on a 0.8B model when 81 s remained).

Here each stage has a cost from the plan before the job starts (elements per output type times a
relative cost per element: ``WRITE_COST`` by engine, type and importance, ``IMPORTANCE_COST``; measured
by ``benchmarks/eta.py``), so ``fraction`` is the share of the whole job's work done. The machine's own speed is measured as the job
runs, so the ETA is right from early on as long as the relative costs are — the absolute numbers in
the tables never need to match the machine:

- the current stage is extrapolated at its *recent* pace: the work done over the last
  ``RECENT_SHARE`` of the stage's time (at least ``RECENT_MIN_S``). Its average pace since it began
  lagged behind a machine whose load changed mid-job (the 0.9B benchmark ran 33% high at 60% of the
  job when other jobs on the machine ended; BENCHMARKS.md, "Progress and ETA");
- until the stage has done ``PRIOR_FRACTION`` of its work, that measurement is blended with the prior:
  the stage's planned cost at the pace of the stages before it (the first stage: its own pace);
- later stages are priced at the current stage's recent seconds per cost unit.

Used by ``core.gguf.convert.convert`` (so the CLI and the GUI show the same numbers); any job can wrap
its ``report`` in :class:`StagedProgress`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from quantpress.core.jobs import Progress, Report

# Cost per weight of the writing pass: nanoseconds per weight to encode a 2048 x 2048 float32 matrix on
# the reference machine (2 cores; only the ratios matter), per engine and output type, as (without,
# with) importance. Measured with `python -m benchmarks.eta --costs` (BENCHMARKS.md, "Progress and
# ETA"). The engine and the importance matter as much as the type: ggml's Q4_K search takes 68 ns
# without importance and 113 with it, so a token embedding (never any importance) written at Q4_K costs
# 0.6 of a block's Q4_K; an ETA that priced them equal ran 42-49% short early in a 0.9B conversion.
# Reading and converting a bf16 source row to float32 is READ_COST, paid once per tensor whatever the
# number of outputs.
CAST_COST: Mapping[str, float] = {"F32": 1.0, "F16": 6.0, "BF16": 9.0}
WRITE_COST: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "ggml": {
        "Q8_0": (5.0, 5.0), "Q4_0": (3.0, 27.0), "Q4_1": (3.0, 110.0), "Q5_0": (4.0, 27.0), "Q5_1": (3.0, 110.0),
        "Q2_K": (57.0, 126.0), "Q3_K": (13.0, 37.0), "Q4_K": (68.0, 113.0), "Q5_K": (52.0, 113.0),
        "Q6_K": (30.0, 31.0), "IQ4_NL": (222.0, 226.0), "IQ4_XS": (220.0, 218.0), "MXFP4": (9.0, 9.0),
        # i-quants always take importance (llama-quantize refuses the low ones without)
        "IQ1_S": (151.0, 151.0), "IQ1_M": (143.0, 143.0), "IQ2_XXS": (325.0, 325.0), "IQ2_XS": (671.0, 671.0),
        "IQ2_S": (186.0, 186.0), "IQ3_XXS": (413.0, 413.0), "IQ3_S": (281.0, 281.0),
    },
    "native": {
        "Q8_0": (1.1, 1.2), "Q4_0": (61.0, 61.0), "Q4_1": (101.0, 101.0), "Q5_0": (62.0, 62.0),
        "Q5_1": (101.0, 103.0), "Q2_K": (21.0, 39.0), "Q3_K": (10.0, 22.0), "Q4_K": (41.0, 46.0),
        "Q5_K": (20.0, 27.0), "Q6_K": (15.0, 20.0), "IQ4_NL": (46.0, 47.0), "IQ4_XS": (44.0, 45.0),
    },
}
# A type the table lacks: priced like the slower i-quant searches.
DEFAULT_WRITE_COST = 300.0
READ_COST = 4.0
# The weights-only importance estimate (core/calibration/weights.py): one read plus column statistics.
IMPORTANCE_COST = 4.5
# A calibration pass over text runs the model (transformers, layer by layer): per weight.
CALIBRATION_COST = 200.0

MIN_MEASURE_S = 1.0  # a stage's own rate is measured once it has run this long
MIN_MEASURE_FRACTION = 0.02  # ... and done this share of its work
# The pace used is the one over the last RECENT_SHARE of the stage's time, never a window shorter than
# RECENT_MIN_S: long enough to span a layer or two of a 0.9B model (its tensors' types, and so their
# real cost against the planned one, vary within a layer), short enough to follow a change of load.
RECENT_SHARE = 0.2
RECENT_MIN_S = 20.0
# Until a stage has done this share of its work, its measured pace is blended with the prior.
PRIOR_FRACTION = 0.1


@dataclass(frozen=True)
class Stage:
    """One pass of a job: the ``Progress.stage`` name it reports under and its expected cost."""

    name: str
    cost: float


def encode_cost(ggml_type: str, engine: str, importance: bool) -> float:
    """Nanoseconds per weight (WRITE_COST's unit) to write one weight as ``ggml_type`` with ``engine``
    ('ggml' or 'native', as core.quant.engine_for resolves it), with or without importance."""
    if ggml_type in CAST_COST:
        return CAST_COST[ggml_type]
    costs = WRITE_COST.get(engine, WRITE_COST["ggml"]).get(ggml_type) or WRITE_COST["ggml"].get(ggml_type)
    return costs[1 if importance else 0] if costs else DEFAULT_WRITE_COST


def write_cost(n_weights: int, encodings: Iterable[tuple[str, str, bool]]) -> float:
    """The writing pass's cost for a tensor of ``n_weights`` written once per (type, engine, with
    importance) in ``encodings``."""
    return n_weights * (READ_COST + sum(encode_cost(t, e, imp) for t, e, imp in encodings))


class StagedProgress:
    """A ``Report`` that maps each stage's own 0..1 fraction onto one fraction over the whole job and
    fills ``elapsed_seconds`` and ``eta_seconds``. Stages run in the given order; a report for a later
    stage marks the earlier ones done (a skipped stage counts as done); an unknown stage name counts
    as part of the current stage."""

    def __init__(self, report: Report, stages: Sequence[Stage], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._report = report
        self._stages = [s for s in stages if s.cost > 0] or [Stage("job", 1.0)]
        self._total = sum(s.cost for s in self._stages)
        self._clock = clock
        self._t0 = clock()
        self._index = 0
        self._stage_t0 = self._t0
        self._last_t = self._t0
        self._stage_f0 = 0.0
        self._prior_per_cost: float | None = None  # seconds per cost unit of the stages before this one
        self._recent: deque[tuple[float, float]] = deque()  # (time, stage fraction) within the window

    def _stage_index(self, name: str) -> int:
        for i, s in enumerate(self._stages):
            if s.name == name and i >= self._index:
                return i
        return self._index

    def fraction_of(self, stage_index: int, stage_fraction: float) -> float:
        before = sum(s.cost for s in self._stages[:stage_index])
        return min(1.0, (before + stage_fraction * self._stages[stage_index].cost) / self._total)

    def __call__(self, p: Progress) -> None:
        now = self._clock()
        i = self._stage_index(p.stage)
        f = min(max(p.fraction, 0.0), 1.0)
        if i != self._index:  # the time since the previous report went into this stage already
            done_s = self._last_t - self._t0
            if done_s > 0:
                self._prior_per_cost = done_s / sum(s.cost for s in self._stages[:i])
            self._index, self._stage_t0, self._stage_f0 = i, self._last_t, 0.0
            self._recent.clear()
            self._recent.append((self._stage_t0, 0.0))
        self._last_t = now
        self._recent.append((now, f))
        overall = self.fraction_of(i, f)
        elapsed = now - self._t0
        self._report(replace(p, fraction=overall, eta_seconds=self._eta(i, f, overall, now),
                             elapsed_seconds=elapsed))

    def _recent_pace(self, f: float, now: float) -> float | None:
        """Seconds per unit of the current stage's fraction over the recent window, or None while too
        little of the stage has been seen to measure it."""
        stage_s = now - self._stage_t0
        if stage_s < MIN_MEASURE_S or f - self._stage_f0 < MIN_MEASURE_FRACTION:
            return None
        since = now - max(RECENT_MIN_S, RECENT_SHARE * stage_s)
        recent = self._recent
        while len(recent) > 2 and recent[1][0] <= since:  # keep the last sample at or before the window
            recent.popleft()
        t_then, f_then = recent[0]
        if f - f_then < MIN_MEASURE_FRACTION:  # a window that saw too little work (one huge tensor)
            t_then, f_then = self._stage_t0, self._stage_f0
        return (now - t_then) / (f - f_then)

    def _eta(self, i: int, f: float, overall: float, now: float) -> float | None:
        if overall >= 1.0:
            return 0.0
        elapsed = now - self._t0
        if elapsed < MIN_MEASURE_S or overall <= 0.0:
            return None  # nothing measured yet: better no number than a wild one
        if self._prior_per_cost is None and f - self._stage_f0 < MIN_MEASURE_FRACTION:
            # the first stage's prior is the job so far: seconds of start-up over a sliver of its work
            # (the first tiny tensor) made it days ("0.0% ... ETA 145499s" on the qwen3 test model)
            return None
        stage = self._stages[i]
        # The prior: the stages before this one, or for the first the job so far (it is this stage).
        prior_per_cost = self._prior_per_cost or elapsed / (overall * self._total)
        pace = self._recent_pace(f, now)
        if pace is None:
            per_cost = prior_per_cost
        else:
            measured = pace / stage.cost
            trust = min(1.0, (f - self._stage_f0) / PRIOR_FRACTION)
            per_cost = trust * measured + (1.0 - trust) * prior_per_cost
        later = sum(s.cost for s in self._stages[i + 1:])
        return ((1.0 - f) * stage.cost + later) * per_cost
