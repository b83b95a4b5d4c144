"""The budgeted per-tensor type choice (core/gguf/allocate.py): budget kept, loss falls with the
budget, optimal where exhaustive search can check it, and clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from quantpress.core.errors import InvalidInput
from quantpress.core.gguf.allocate import Option, allocate

# bits per weight of the candidate ladder and a typical error falling ~4x per extra bit
LADDER = (("Q2_K", 2.625), ("Q3_K", 3.4375), ("Q4_K", 4.5), ("Q5_K", 5.5), ("Q6_K", 6.5625), ("Q8_0", 8.5))


def random_problem(seed: int, n_tensors: int = 12) -> dict[str, list[Option]]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_tensors):
        n = int(rng.integers(1, 50)) * 4096
        sens = float(rng.lognormal(0, 2))
        noise = rng.lognormal(0, 0.3, len(LADDER))  # measured errors are not a clean curve
        out[f"t{i}"] = [Option(t, int(n * bpw / 8), sens * n * 4.0 ** -bpw * e) for (t, bpw), e in zip(LADDER, noise, strict=True)]
    return out


def brute_force(options: dict[str, list[Option]], budget: int) -> float:
    best = float("inf")
    for combo in itertools.product(*options.values()):
        if sum(o.cost for o in combo) <= budget:
            best = min(best, sum(o.loss for o in combo))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_budget_is_respected_and_loss_falls_with_the_budget(seed: int) -> None:
    options = random_problem(seed)
    lo = sum(min(o.cost for o in v) for v in options.values())
    hi = sum(max(o.cost for o in v) for v in options.values())
    losses = []
    for budget in np.linspace(lo, hi, 60).astype(int):
        a = allocate(options, int(budget))
        assert a.cost <= budget
        assert a.cost == sum(next(o.cost for o in options[n] if o.ggml_type == t) for n, t in a.types.items())
        assert a.loss == pytest.approx(sum(next(o.loss for o in options[n] if o.ggml_type == t)
                                           for n, t in a.types.items()))
        losses.append(a.loss)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[0] > 10 * losses[-1]  # the sweep spans the ladder


@pytest.mark.parametrize("seed", range(4))
def test_close_to_the_exhaustive_optimum(seed: int) -> None:
    options = random_problem(100 + seed, n_tensors=5)
    lo = sum(min(o.cost for o in v) for v in options.values())
    hi = sum(max(o.cost for o in v) for v in options.values())
    for budget in np.linspace(lo, hi, 9).astype(int)[1:-1]:
        got = allocate(options, int(budget)).loss
        best = brute_force(options, int(budget))
        assert got <= best * 1.02, (budget, got, best)  # exact up to the cost rounding


def test_every_tensor_gets_one_of_its_own_options() -> None:
    # a 32-block-only tensor (576-wide rows) offers no k-quant: the choice must come from its list
    options = {"wide": [Option("Q4_K", 100, 5.0), Option("Q8_0", 200, 1.0)],
               "odd": [Option("IQ4_NL", 90, 6.0), Option("Q5_1", 120, 3.0), Option("Q8_0", 170, 0.5)]}
    for budget in range(190, 371, 10):
        a = allocate(options, budget)
        assert a.types["wide"] in ("Q4_K", "Q8_0") and a.types["odd"] in ("IQ4_NL", "Q5_1", "Q8_0")
        assert a.cost <= budget
    assert allocate(options, 370).types == {"wide": "Q8_0", "odd": "Q8_0"}
    assert allocate(options, 370).cost == allocate(options, 370).max_cost


def test_too_small_a_budget_and_empty_options_are_refused() -> None:
    options = {"a": [Option("Q2_K", 100, 1.0)], "b": [Option("Q2_K", 50, 1.0)]}
    with pytest.raises(InvalidInput, match="below the smallest possible choice .*150"):
        allocate(options, 149)
    with pytest.raises(InvalidInput, match="tensor c: no type"):
        allocate({**options, "c": []}, 1000)


def test_leftover_buys_lossless_dearer_options_by_priority_and_never_exceeds_the_budget() -> None:
    # "a", "b", "c" are exact at their second option and at a dearer third (weights on both grids);
    # "d" gains from every byte. Without a priority the leftover stays unspent.
    options = {"a": [Option("Q4_K", 100, 2.0), Option("Q4_1", 110, 0.0), Option("Q5_1", 150, 0.0)],
               "b": [Option("Q4_K", 300, 2.0), Option("Q4_1", 330, 0.0), Option("Q5_1", 450, 0.0)],
               "c": [Option("Q4_K", 50, 1.0), Option("Q4_1", 55, 0.0), Option("Q5_1", 75, 0.0)],
               "d": [Option("Q4_K", 200, 3.0), Option("Q8_0", 380, 1.0)]}
    exact = 110 + 330 + 55 + 380
    plain = allocate(options, exact + 150)
    assert plain.types == {"a": "Q4_1", "b": "Q4_1", "c": "Q4_1", "d": "Q8_0"} and plain.cost == exact
    assert plain.max_cost == exact
    # b first (the highest priority), then what still fits: a's upgrade (40) before c's (20)
    spent = allocate(options, exact + 170, priority={"a": 1.0, "b": 3.0, "c": 0.0, "d": 2.0})
    assert spent.types == {"a": "Q5_1", "b": "Q5_1", "c": "Q4_1", "d": "Q8_0"}
    assert spent.cost == exact + 160 and spent.loss == plain.loss == 1.0
    # too little for b's upgrade: the lower priorities still spend what fits
    spent = allocate(options, exact + 65, priority={"a": 1.0, "b": 3.0, "c": 0.0, "d": 2.0})
    assert spent.types == {"a": "Q5_1", "b": "Q4_1", "c": "Q5_1", "d": "Q8_0"} and spent.cost == exact + 60
    # bytes that save loss go first, whatever the priority: d's upgrade, not a's lossless one
    spent = allocate(options, exact + 39, priority={"a": 9.0, "b": 0.0, "c": 0.0, "d": 0.0})
    assert spent.types == {"a": "Q4_1", "b": "Q4_1", "c": "Q5_1", "d": "Q8_0"} and spent.cost == exact + 20
