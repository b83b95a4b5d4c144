"""The budgeted choice of one GGML type per tensor: minimise the summed expected loss under a byte budget.

Each tensor offers options (type, cost in budget bytes, expected loss): a multiple-choice knapsack.
It is solved exactly on costs rounded up to a unit of 1/UNITS of the most any choice costs, by dynamic
programming over the budget (numpy, one pass per tensor): with rounded-up costs the choice never
exceeds the budget, and since the unit depends on the problem, not on the budget, a larger budget's
candidates include a smaller one's: the expected loss never rises with the budget. Rounding leaves at
most one unit per tensor unspent; a fill pass then spends the leftover on the single changes that save
the most loss while they fit. (A Lagrangian sweep, the usual alternative, stops at the first upgrade
that does not fit and was measurably worse on small models with few large tensors.)

Given a ``priority`` per tensor, what is still left is then spent on changes that cost more for no
measured loss (a tensor whose weights lie on a type's grid, stored as a dearer type that is exact too):
highest priority first, each its dearest such type that fits, until none fits. A file asked for at a
size is then that size whenever the options allow, and never above it.

Pure: numbers in, names out; no model, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from quantpress.core.errors import InvalidInput


@dataclass(frozen=True)
class Option:
    """One candidate type of one tensor: ``cost`` bytes against the budget, ``loss`` expected loss
    (any additive unit, the same for every tensor)."""

    ggml_type: str
    cost: int
    loss: float


@dataclass(frozen=True)
class Allocation:
    types: dict[str, str]  # tensor name -> chosen type
    cost: int  # summed cost of the chosen options
    loss: float  # summed expected loss of the chosen options
    min_cost: int  # the cheapest possible choice (every tensor at its cheapest option)
    max_cost: int  # the most any choice costs (every tensor at its lowest-loss option)


UNITS = 100_000  # budget resolution: the unspent remainder is at most one unit per tensor before the fill


def allocate(options: Mapping[str, Sequence[Option]], budget: int,
             priority: Mapping[str, float] | None = None) -> Allocation:
    """The choice of one option per tensor with summed cost ≤ ``budget`` and the least loss (exact
    on costs rounded to the unit). With ``priority`` (tensor name -> rank, higher first), the budget
    left over is spent on dearer options of no more loss (module docstring). InvalidInput when even
    the cheapest choice costs more than the budget, or a tensor has no option."""
    for name, opts in options.items():
        if not opts:
            raise InvalidInput(f"tensor {name}: no type can store it")
    names = list(options)
    min_cost = sum(min(o.cost for o in options[n]) for n in names)
    max_cost = sum(min(options[n], key=lambda o: (o.loss, o.cost)).cost for n in names)
    if min_cost > budget:
        raise InvalidInput(f"the budget of {budget:,} bytes is below the smallest possible choice "
                           f"({min_cost:,} bytes with every tensor at its smallest type)")
    unit = max(1, -(-sum(max(o.cost for o in options[n]) for n in names) // UNITS))
    units = {n: [-(-o.cost // unit) for o in options[n]] for n in names}
    n_units = min(budget // unit, sum(max(u) for u in units.values()))
    best = np.zeros(n_units + 1)  # best[b]: least loss of the tensors so far within b units
    picks = np.zeros((len(names), n_units + 1), dtype=np.int16)
    for i, n in enumerate(names):
        new = np.full(n_units + 1, np.inf)
        for k, (o, c) in enumerate(zip(options[n], units[n], strict=True)):
            if c > n_units:
                continue
            cand = best[: n_units + 1 - c] + o.loss
            better = cand < new[c:]
            new[c:][better] = cand[better]
            picks[i, c:][better] = k
        best = new
    pick: dict[str, Option] = {}
    b = n_units
    if not np.isfinite(best[b]):  # rounding up made the cheapest choice miss a budget it fits exactly
        pick = {n: min(options[n], key=lambda o: o.cost) for n in names}
    else:
        for i in range(len(names) - 1, -1, -1):
            k = int(picks[i, b])
            pick[names[i]] = options[names[i]][k]
            b -= units[names[i]][k]
    spent = _fill(options, pick, sum(o.cost for o in pick.values()), budget)
    if priority is not None:
        spent = _spend(options, pick, spent, budget, priority)
    return Allocation({n: pick[n].ggml_type for n in names}, spent, sum(o.loss for o in pick.values()),
                      min_cost, max_cost)


def _fill(options: Mapping[str, Sequence[Option]], pick: dict[str, Option], spent: int, budget: int) -> int:
    """Spend the leftover budget: repeatedly the single change that saves the most loss and fits."""
    while True:
        best: tuple[float, str, Option] | None = None
        for name, opts in options.items():
            cur = pick[name]
            for o in opts:
                saved = cur.loss - o.loss
                if saved > 0 and spent + o.cost - cur.cost <= budget and (best is None or saved > best[0]):
                    best = (saved, name, o)
        if best is None:
            return spent
        _, name, o = best
        spent += o.cost - pick[name].cost
        pick[name] = o


def _spend(options: Mapping[str, Sequence[Option]], pick: dict[str, Option], spent: int, budget: int,
           priority: Mapping[str, float]) -> int:
    """Spend what the fill left on dearer options of no more loss: the highest-priority tensor that
    has one that fits gets its dearest, until none fits (each step raises one tensor's cost, so it
    ends)."""
    while True:
        best: tuple[float, int, str, Option] | None = None
        for name, opts in options.items():
            cur = pick[name]
            for o in opts:
                extra = o.cost - cur.cost
                if (o.loss <= cur.loss and extra > 0 and spent + extra <= budget
                        and (best is None or (priority[name], extra) > best[:2])):
                    best = (priority[name], extra, name, o)
        if best is None:
            return spent
        _, extra, name, o = best
        spent += extra
        pick[name] = o
