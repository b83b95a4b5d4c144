"""How right is a conversion's ETA early on (issue 18)? Converts a generated ~0.9B-parameter model
(benchmarks/generated_model.py) with the default calibration (importance estimated from the weights:
two passes over the model) and compares the ETA it reported with the time that really remained.

    .venv/bin/python -m benchmarks.eta [--work DIR] [--format Q4_K_S] [--keep] [--save-samples F.json]
    .venv/bin/python -m benchmarks.eta --costs     # per-type encoding cost, for core/eta.py's tables
    .venv/bin/python -m benchmarks.eta --replay F.json   # today's ETA rule on a saved run's timeline

The conversion runs in this process through ``core.gguf.convert.convert`` — the function the CLI and
the GUI's job child call — and records every report (time, fraction of the job, stage, ETA). The
ETA shown at a moment is the last one reported by then; its error is (ETA - true remaining) / true
remaining, where true remaining is the end of the job minus that moment. Rows at 10%, 30% and 60% of
the job's wall time (and, for comparison, where the bar first showed 10/30/60%). The target: within
25% from 10% on. The baseline column is what the converter reported before issue 18: each pass
extrapolated on its own (elapsed x (1 - f) / f from the writing pass's start, after a bar that had
already filled once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import generated_model  # noqa: E402

POINTS = (0.10, 0.30, 0.60)


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the job started
    fraction: float
    stage: str
    stage_fraction: float  # the stage's own fraction (what the bar showed before issue 18)
    eta: float | None


def run_conversion(model_dir: Path, out_dir: Path, fmt: str) -> tuple[list[Sample], float, dict[str, float],
                                                                     list[tuple[str, float]]]:
    """Convert ``model_dir`` to ``fmt`` with the default calibration; the samples, the job's wall time
    the seconds spent in each stage and the planned stages (name, cost)."""
    from quantpress.core.gguf.convert import convert, job_stages
    from quantpress.core.gguf.request import ConversionRequest
    from quantpress.core.inspect import open_model
    from quantpress.core.jobs import Progress

    plan = ConversionRequest((fmt,), out_dir).plan(open_model(str(model_dir)))
    stages = job_stages(plan)
    print("planned stages: " + ", ".join(f"{s.name} {s.cost / sum(x.cost for x in stages):.1%}" for s in stages))
    samples: list[Sample] = []
    t0 = time.monotonic()

    def report(p: Progress) -> None:  # done/total count the stage's own work (weights, cost units)
        own = p.done / p.total if p.total else p.fraction
        samples.append(Sample(time.monotonic() - t0, p.fraction, p.stage, own, p.eta_seconds))

    convert(plan, report=report)
    total = time.monotonic() - t0
    per_stage: dict[str, float] = {}
    previous_t = 0.0
    for s in samples:
        per_stage[s.stage] = per_stage.get(s.stage, 0.0) + s.t - previous_t
        previous_t = s.t
    return samples, total, per_stage, [(s.name, s.cost) for s in stages]


def replay(path: Path) -> tuple[list[Sample], float]:
    """The samples of a run saved with ``--save-samples``, their ETA recomputed by today's
    core/eta.py on the same timeline (its clock is the recorded time): ETA rules compared on one run."""
    from quantpress.core.eta import Stage, StagedProgress
    from quantpress.core.jobs import Progress

    saved = json.loads(path.read_text())
    now = [0.0]
    etas: list[float | None] = []
    staged = StagedProgress(lambda p: etas.append(p.eta_seconds), [Stage(n, c) for n, c in saved["stages"]],
                            clock=lambda: now[0])
    samples = []
    for raw in saved["samples"]:
        s = Sample(**raw)
        now[0] = s.t
        staged(Progress(s.stage, s.stage_fraction, ""))
        samples.append(Sample(s.t, s.fraction, s.stage, s.stage_fraction, etas[-1]))
    return samples, float(saved["total_s"])


def baseline_eta(samples: list[Sample], i: int) -> float | None:
    """The ETA the converter showed before issue 18 at sample ``i``: its Throttle extrapolated the
    current pass from the job's start (the importance pass reported without one, so the ETA of the
    writing pass counted the importance pass's time as if it were writing)."""
    s = samples[i]
    if s.stage != "convert" or not 0 < s.stage_fraction < 1:
        return None
    return s.t * (1 - s.stage_fraction) / s.stage_fraction


def shown_at(samples: list[Sample], t: float) -> int:
    """Index of the last report at or before ``t``."""
    i = 0
    for j, s in enumerate(samples):
        if s.t <= t:
            i = j
    return i


def error(eta: float | None, remaining: float) -> str:
    if eta is None:
        return "none"
    return f"{(eta - remaining) / remaining:+.0%} ({eta:.0f} s)"


def table(samples: list[Sample], total: float) -> list[str]:
    rows = ["| point | at | bar shows | true remaining | ETA error (ETA shown) | before issue 18 |",
            "|---|---:|---:|---:|---:|---:|"]
    for p in POINTS:
        i = shown_at(samples, p * total)
        s = samples[i]
        remaining = total - s.t
        rows.append(f"| {p:.0%} of the time | {s.t:.1f} s | {s.fraction:.0%} | {remaining:.1f} s | "
                    f"{error(s.eta, remaining)} | {error(baseline_eta(samples, i), remaining)} |")
    for p in POINTS:
        i = next((j for j, s in enumerate(samples) if s.fraction >= p), len(samples) - 1)
        s = samples[i]
        remaining = total - s.t
        rows.append(f"| bar at {p:.0%} | {s.t:.1f} s | {s.fraction:.0%} | {remaining:.1f} s | "
                    f"{error(s.eta, remaining)} | {error(baseline_eta(samples, i), remaining)} |")
    return rows


def measure_costs() -> None:
    """Nanoseconds per weight for each (engine, type) in core/eta.py's WRITE_COST, without and with
    importance (one 2048 x 2048 matrix, all cores, best of two), next to the table's numbers."""
    from quantpress.core.eta import WRITE_COST
    from quantpress.core.gguf.convert import encode

    rng = np.random.default_rng(0)
    x = (0.02 * rng.standard_normal((2048, 2048))).astype(np.float32)
    imp = rng.random(2048).astype(np.float32) + 0.1
    print("| engine | type | ns / weight without importance (table) | with importance (table) |")
    print("|---|---|---:|---:|")
    for engine, table in WRITE_COST.items():
        for t, (plain, weighted) in table.items():
            measured = []
            encode(x[:32], t, imp, 0, engine)  # i-quant grids are built on first use
            for importance in (None, imp):
                best = float("inf")
                for _ in range(2):
                    start = time.perf_counter()
                    encode(x, t, imp if t.startswith(("IQ1", "IQ2", "IQ3")) else importance, 0, engine)  # these need it
                    best = min(best, time.perf_counter() - start)
                measured.append(best / x.size * 1e9)
            print(f"| {engine} | {t} | {measured[0]:.1f} ({plain:g}) | {measured[1]:.1f} ({weighted:g}) |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "quantpress-eta-bench")
    ap.add_argument("--format", default="Q4_K_S",
                    help="Q4_K_S (default): its default conversion has both passes (importance, writing)")
    ap.add_argument("--keep", action="store_true", help="keep the generated model and the output")
    ap.add_argument("--costs", action="store_true", help="only measure the per-type encoding costs")
    ap.add_argument("--save-samples", type=Path, default=None,
                    help="write every report (time, stage, fractions, ETA) as JSON, to replay ETA rules on")
    ap.add_argument("--replay", type=Path, default=None,
                    help="no conversion: recompute the ETA of a run saved with --save-samples with today's rule")
    args = ap.parse_args()
    if args.costs:
        measure_costs()
        return 0
    if args.replay is not None:
        samples, total = replay(args.replay)
        print(f"replayed {args.replay} ({total:.1f} s) with today's core/eta.py")
        print("\n".join(table(samples, total)))
        return 0
    from quantpress.core.demo import ensure_demo_model

    model_dir = generated_model.build(args.work / "generated-0.9b", ensure_demo_model())
    out_dir = args.work / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    try:
        samples, total, per_stage, stages = run_conversion(model_dir, out_dir, args.format)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    print(f"{args.format} of the generated 0.9B model, default calibration: {total:.1f} s, "
          + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in per_stage.items()))
    print("\n".join(table(samples, total)))
    if args.save_samples is not None:
        args.save_samples.write_text(json.dumps({"total_s": total, "stages": stages,
                                                 "samples": [asdict(s) for s in samples]}))
        print(f"samples written to {args.save_samples}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
