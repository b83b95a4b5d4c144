"""One progress bar over a whole job: stages weighted by their expected cost, elapsed time and an ETA.

Why: a conversion with the default calibration reads the model twice (the importance estimate, then
the writing pass). Reported stage by stage, the bar filled twice and the ETA extrapolated the fast first
pass over the whole job (issue 18: 17-22 s shown on a 0.8B model when 81 s remained).

Here each stage has a cost from the plan before the job starts (elements per output type times a
relative cost per element, ``WRITE_COST``/``IMPORTANCE_COST``, measured by ``benchmarks/eta.py``), so
``fraction`` is the share of the whole job's work done. The machine's own speed is measured as the job
runs: a stage that has run for a while is extrapolated at its own measured rate, later stages at the
job's rate so far (seconds per cost unit), so the ETA is right from early on as long as the relative
costs are — the absolute numbers in the tables never need to match the machine.

Used by ``core.gguf.convert.convert`` (so the CLI and the GUI show the same numbers); any job can wrap
its ``report`` in :class:`StagedProgress`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from quantpress.core.jobs import Progress, Report

# Relative cost per weight of the writing pass, per output GGML type (one unit = one nanosecond per
# weight on the reference machine; only the ratios matter). Measured with `python -m benchmarks.eta
# --costs` (native kernels, importance given where the type takes it; BENCHMARKS.md, "Progress and
# ETA"). Reading and converting a bf16 source row to float32 is READ_COST, paid once per tensor
# whatever the number of outputs.
WRITE_COST: Mapping[str, float] = {
    "F32": 1.0, "F16": 2.0, "BF16": 2.0, "Q8_0": 3.0,
    "Q4_0": 14.0, "Q4_1": 14.0, "Q5_0": 16.0, "Q5_1": 16.0,
    "Q2_K": 40.0, "Q3_K": 40.0, "Q4_K": 40.0, "Q5_K": 40.0, "Q6_K": 20.0,
    "IQ4_NL": 30.0, "IQ4_XS": 30.0,
}
# Types not in the table (ggml's i-quant searches) are much slower per weight than the k-quants.
DEFAULT_WRITE_COST = 120.0
READ_COST = 4.0
# The weights-only importance estimate (core/calibration/weights.py): one read plus column statistics.
IMPORTANCE_COST = 6.0
# A calibration pass over text runs the model (transformers, layer by layer): per weight.
CALIBRATION_COST = 200.0

MIN_MEASURE_S = 1.0  # a stage's own rate is trusted after it has run this long
MIN_MEASURE_FRACTION = 0.02  # ... and done this share of its work


@dataclass(frozen=True)
class Stage:
    """One pass of a job: the ``Progress.stage`` name it reports under and its expected cost."""

    name: str
    cost: float


def write_cost(n_weights: int, types: Iterable[str]) -> float:
    """The writing pass's cost for a tensor of ``n_weights`` written once per type in ``types``."""
    return n_weights * (READ_COST + sum(WRITE_COST.get(t, DEFAULT_WRITE_COST) for t in types))


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
            self._index, self._stage_t0, self._stage_f0 = i, self._last_t, 0.0
        self._last_t = now
        overall = self.fraction_of(i, f)
        elapsed = now - self._t0
        self._report(replace(p, fraction=overall, eta_seconds=self._eta(i, f, overall, now),
                             elapsed_seconds=elapsed))

    def _eta(self, i: int, f: float, overall: float, now: float) -> float | None:
        if overall >= 1.0:
            return 0.0
        elapsed = now - self._t0
        if elapsed < MIN_MEASURE_S or overall <= 0.0:
            return None  # nothing measured yet: better no number than a wild one
        per_cost = elapsed / (overall * self._total)  # this machine's seconds per cost unit so far
        stage = self._stages[i]
        stage_s, stage_df = now - self._stage_t0, f - self._stage_f0
        if stage_s >= MIN_MEASURE_S and stage_df >= MIN_MEASURE_FRACTION:
            current = (1.0 - f) * stage_s / stage_df  # the current stage at its own measured rate
        else:
            current = (1.0 - f) * stage.cost * per_cost
        later = sum(s.cost for s in self._stages[i + 1:]) * per_cost
        return current + later
