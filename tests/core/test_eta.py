"""core/eta.py: one bar over a job's stages, elapsed time and an ETA that is right early (issue 18)."""

from __future__ import annotations

import pytest
from quantpress.core.eta import Stage, StagedProgress, write_cost
from quantpress.core.jobs import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(stages: list[Stage], seconds: dict[str, float], steps: int = 20) -> list[tuple[float, Progress]]:
    """Drive a StagedProgress through ``stages`` whose true durations are ``seconds``; returns
    (true remaining, forwarded report) pairs."""
    clock = Clock()
    seen: list[Progress] = []
    staged = StagedProgress(seen.append, stages, clock=clock)
    total = sum(seconds.values())
    out = []
    spent = 0.0
    for s in stages:
        for i in range(1, steps + 1):
            clock.now += seconds[s.name] / steps
            spent += seconds[s.name] / steps
            staged(Progress(s.name, i / steps, f"{s.name} {i}"))
            out.append((total - spent, seen[-1]))
    return out


def test_one_bar_over_both_passes_weighted_by_cost() -> None:
    """Point 1: the importance pass fills only its share of the bar; the bar never drops back."""
    out = run([Stage("importance", 1.0), Stage("convert", 9.0)], {"importance": 10.0, "convert": 90.0})
    fractions = [p.fraction for _, p in out]
    assert fractions == sorted(fractions)
    assert fractions[19] == pytest.approx(0.1)  # end of the importance pass: 10% of the job
    assert fractions[-1] == pytest.approx(1.0)
    assert out[0][1].stage == "importance" and out[-1][1].stage == "convert"
    assert [p.elapsed_seconds for _, p in out][:2] == pytest.approx([0.5, 1.0])


def test_eta_right_from_the_first_pass_when_costs_are_right() -> None:
    """With the planned costs in the ratio of the true times, the ETA during the fast first pass
    already counts the slow second one (before: 17-22 s shown when 81 s remained)."""
    out = run([Stage("importance", 1.0), Stage("convert", 9.0)], {"importance": 10.0, "convert": 90.0})
    for remaining, p in out:
        if p.elapsed_seconds and p.elapsed_seconds >= 1.0 and remaining > 0:
            assert p.eta_seconds == pytest.approx(remaining, rel=0.01)


def test_current_stage_uses_its_own_measured_rate() -> None:
    """Costs off by 2x between the stages: once the second stage has run a while, its own pace is used,
    so the ETA converges on the truth instead of keeping the first stage's error."""
    out = run([Stage("importance", 1.0), Stage("convert", 9.0)], {"importance": 20.0, "convert": 90.0})
    late = [(r, p) for r, p in out if p.stage == "convert" and p.fraction > 0.3 and r > 0]
    for remaining, p in late:
        assert p.eta_seconds == pytest.approx(remaining, rel=0.02)


def test_no_eta_before_anything_is_measured_and_zero_at_the_end() -> None:
    clock = Clock()
    seen: list[Progress] = []
    staged = StagedProgress(seen.append, [Stage("convert", 1.0)], clock=clock)
    staged(Progress("convert", 0.0, "start"))
    clock.now += 0.2
    staged(Progress("convert", 0.01, "first tensor"))
    assert [p.eta_seconds for p in seen] == [None, None]
    clock.now += 5
    staged(Progress("convert", 1.0, "done"))
    assert seen[-1].eta_seconds == 0.0 and seen[-1].fraction == 1.0


def test_no_eta_from_a_sliver_of_work_after_a_slow_start() -> None:
    clock = Clock()
    seen: list[Progress] = []
    staged = StagedProgress(seen.append, [Stage("convert", 1.0)], clock=clock)
    staged(Progress("convert", 0.0, "start"))
    clock.now += 3.0  # opening the model, planning
    staged(Progress("convert", 1e-6, "a norm vector"))
    assert seen[-1].eta_seconds is None
    clock.now += 1.0
    staged(Progress("convert", 0.25, "a quarter"))
    assert seen[-1].eta_seconds == pytest.approx(12.0)  # 4 s for a quarter: 12 s to go


def test_skipped_and_unknown_stages() -> None:
    """A stage that never reports counts as done once a later one does; an unknown name stays in the
    current stage; a stage with no cost is dropped."""
    seen: list[Progress] = []
    staged = StagedProgress(seen.append, [Stage("calibrate", 3.0), Stage("empty", 0.0), Stage("convert", 1.0)],
                            clock=Clock())
    staged(Progress("convert", 0.5, "half"))
    assert seen[-1].fraction == pytest.approx(3.5 / 4)
    staged(Progress("tokenizer", 0.9, "other"))
    assert seen[-1].fraction == pytest.approx(3.9 / 4)


def test_write_cost_counts_each_encoding_by_engine_and_importance() -> None:
    from quantpress.core.eta import DEFAULT_WRITE_COST, READ_COST, WRITE_COST, encode_cost

    q4k, q8 = WRITE_COST["ggml"]["Q4_K"], WRITE_COST["native"]["Q8_0"]
    assert write_cost(10, [("Q4_K", "ggml", True), ("Q8_0", "native", False)]) == 10 * (READ_COST + q4k[1] + q8[0])
    assert encode_cost("Q4_K", "ggml", False) == q4k[0] < q4k[1]  # importance makes ggml's search dearer
    assert encode_cost("IQ2_XS", "native", True) == WRITE_COST["ggml"]["IQ2_XS"][1]  # no native kernel: ggml's
    assert write_cost(10, [("F16", "ggml", False)]) < write_cost(10, [("Q4_K", "ggml", False)])
    assert write_cost(10, [("TQ1_0", "ggml", True)]) == 10 * (READ_COST + DEFAULT_WRITE_COST)
    assert write_cost(10, []) == 10 * READ_COST


def test_writing_pass_prices_what_reaches_each_tensor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each tensor is priced by the engine that writes it and by whether importance reaches it: the
    token embedding never gets any (a lookup, not a matmul), a block linear does."""
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.convert import _quant_choice, _tensor_costs
    from quantpress.core.gguf.request import ConversionRequest
    from quantpress.core.inspect import open_model
    from quantpress.core.quant import engine_for

    plan = ConversionRequest(("Q4_0",), tmp_path).plan(open_model(str(ensure_demo_model())))
    how = _quant_choice(plan, plan.outputs[0])
    assert how.importance
    types, costs = plan.outputs[0].tensor_types, dict(zip([t.name for t in plan.tensors], _tensor_costs(plan), strict=True))
    sizes = {t.name: t.n_elements for t in plan.tensors}
    for name, imp in (("token_embd.weight", False), ("blk.0.ffn_up.weight", True)):
        ty = types[name]
        assert costs[name] == write_cost(sizes[name], [(ty, engine_for(ty, imp, how.engine), imp)])


def test_conversion_reports_one_bar_with_elapsed_and_eta(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The converter itself (what the CLI and the GUI's child run): the importance pass and the
    writing pass share one non-decreasing bar, every report has the elapsed time."""
    from quantpress.core.demo import ensure_demo_model
    from quantpress.core.gguf.convert import convert, job_stages
    from quantpress.core.gguf.request import ConversionRequest
    from quantpress.core.inspect import open_model

    plan = ConversionRequest(("Q4_0",), tmp_path).plan(open_model(str(ensure_demo_model())))  # its default uses the weights estimate
    assert [s.name for s in job_stages(plan)] == ["importance", "convert"]
    seen: list[Progress] = []
    convert(plan, report=seen.append)
    assert {p.stage for p in seen} == {"importance", "convert"}
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    share = job_stages(plan)[0].cost / sum(s.cost for s in job_stages(plan))
    assert max(p.fraction for p in seen if p.stage == "importance") <= share + 1e-9
    assert all(p.elapsed_seconds is not None for p in seen)


def run_timeline(stages: list[Stage], step_seconds: dict[str, list[float]]) -> list[tuple[float, Progress]]:
    """Like ``run``, with each stage's steps (equal shares of its work) taking the given seconds: a
    machine whose speed changes during the job."""
    clock = Clock()
    seen: list[Progress] = []
    staged = StagedProgress(seen.append, stages, clock=clock)
    remaining = sum(sum(v) for v in step_seconds.values())
    out = []
    for s in stages:
        steps = step_seconds[s.name]
        for i, dt in enumerate(steps, start=1):
            clock.now += dt
            remaining -= dt
            staged(Progress(s.name, i / len(steps), f"{s.name} {i}"))
            out.append((remaining, seen[-1]))
    return out


def errors_between(out: list[tuple[float, Progress]], lo: float, hi: float) -> list[float]:
    """(ETA - true remaining) / true remaining for reports with the bar between ``lo`` and ``hi``."""
    return [(p.eta_seconds - r) / r for r, p in out if lo <= p.fraction <= hi and r > 0 and p.eta_seconds is not None]


@pytest.mark.parametrize("speed_change", [0.5, 2.0], ids=["machine-gets-faster", "machine-gets-slower"])
def test_eta_follows_a_change_of_pace_mid_job(speed_change: float) -> None:
    """The machine's load changes 40% into the writing pass (another job ends or starts), and stays
    so: the ETA follows the new pace within a window instead of averaging the whole pass (which ran
    33% high at 60% of the 0.9B benchmark). Shortly after the change it is right again."""
    write = [1.0] * 200  # 200 s at the planned pace
    write = write[:80] + [speed_change] * 120
    out = run_timeline([Stage("importance", 1.0), Stage("convert", 9.0)],
                       {"importance": [0.5] * 40, "convert": write})
    # The change is at 46% of the bar. At 60% the window (the last 20% of the pass's time, at least
    # 20 s) has mostly passed it; by 70% wholly.
    at_60_to_70 = errors_between(out, 0.6, 0.7)
    assert at_60_to_70 and max(abs(e) for e in at_60_to_70) < 0.15, at_60_to_70
    after = errors_between(out, 0.7, 0.99)
    assert after and max(abs(e) for e in after) < 0.02, after
    # The average pace since the pass began, as before, was still far off at 60%.
    at_60 = next(p for r, p in out if p.fraction >= 0.6)
    elapsed_in_pass = at_60.elapsed_seconds - 20.0
    f = (at_60.fraction - 0.1) / 0.9
    average_eta = (1 - f) * elapsed_in_pass / f
    truth = next(r for r, p in out if p is at_60)
    assert abs(average_eta - truth) / truth > 0.25


def test_eta_steady_when_tensors_vary_in_real_cost() -> None:
    """Tensors whose real cost differs from the planned one by +-40% in turn (a layer's Q4_K and Q6_K
    tensors): the recent window spans several, so the ETA does not jump about."""
    write = [1.4 if (i // 5) % 2 else 0.6 for i in range(300)]  # 5 s fast, 5 s slow, ...: 300 s in all
    out = run_timeline([Stage("importance", 1.0), Stage("convert", 9.0)],
                       {"importance": [1.0 / 3] * 100, "convert": write})
    errors = errors_between(out, 0.1, 0.9)
    assert errors and max(abs(e) for e in errors) < 0.12, max(errors, key=abs)


def test_a_new_stage_starts_from_the_prior_and_moves_to_its_own_pace() -> None:
    """The writing pass really runs at 2x the planned cost relative to the first pass: its first
    reports blend the prior (the first pass's pace) with its own, so the ETA rises smoothly toward
    the truth instead of jumping, and is right once the pass has done a tenth of its work."""
    out = run([Stage("importance", 1.0), Stage("convert", 9.0)], {"importance": 10.0, "convert": 180.0}, steps=100)
    convert = [(r, p) for r, p in out if p.stage == "convert"]
    etas = [p.eta_seconds for _, p in convert[:10]]
    assert all(e is not None for e in etas)
    assert etas == sorted(etas)  # rising from the prior toward the measured pace, no jump back
    assert abs(etas[0] - 90.0) / 90.0 < 0.05  # the first report: the prior (9 units at 10 s per unit)
    for r, p in convert[10:-1]:
        assert p.eta_seconds == pytest.approx(r, rel=0.02)


def test_recorded_run_replays_within_target_from_30_percent_on() -> None:
    """The timeline of a real run (benchmarks/eta.py --save-samples: the generated 0.9B model to
    Q4_K_M on the loaded 2-core machine, BENCHMARKS.md "Progress and ETA"), replayed through today's
    rule: from 30% of the job on the ETA is within the 25% target, and at 30% and 60% of the time it is
    closer than the pace averaged since the stage began (the rule before), which ran 28% and 16% low."""
    from pathlib import Path

    from benchmarks.eta import replay, shown_at

    samples, total = replay(Path(__file__).resolve().parents[2] / "benchmarks" / "data"
                            / "eta-q4km-0.9b-2026-12-05.json")
    for point in (0.3, 0.6):
        s = samples[shown_at(samples, point * total)]
        remaining = total - s.t
        assert s.eta is not None and abs(s.eta - remaining) / remaining < 0.15, (point, s.eta, remaining)
    late = [s for s in samples if s.fraction >= 0.6 and total - s.t > 20]
    assert max(abs(s.eta - (total - s.t)) / (total - s.t) for s in late if s.eta is not None) < 0.25


def test_recorded_run_priced_by_engine_is_within_target_from_10_percent_on() -> None:
    """A run whose writing pass is priced by engine and importance (core/eta.py's WRITE_COST; the
    generated 0.9B model to Q4_K_S on the idle 2-core machine, both passes), replayed through today's
    rule: within the issue's 25% at 10%, 30% and 60% of the job's time."""
    from pathlib import Path

    from benchmarks.eta import POINTS, replay, shown_at

    samples, total = replay(Path(__file__).resolve().parents[2] / "benchmarks" / "data"
                            / "eta-q4ks-0.9b-2026-12-05.json")
    for point in POINTS:
        s = samples[shown_at(samples, point * total)]
        remaining = total - s.t
        assert s.eta is not None and abs(s.eta - remaining) / remaining < 0.25, (point, s.eta, remaining)
