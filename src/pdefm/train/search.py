"""The learning-rate search: which rates train, and for how long (``RunConfig.lr_search``).

"grid" (the default) trains every rate of ``lrs`` for the whole budget, then grows the grid
past an edge where the best rate sits (``extend_grid``, up to ``lr_extend`` times).

"halving" is successive halving with ETA = 2. With E the budget in epochs (the cap, under
patience) and R the most rates the search can train (``max_rates``), the rungs are

    e_k = v * floor(E / (ETA^(K - k) * v)),   k = 0 .. K,   K = ceil(log_ETA R),

at least v (``FitPlan.validate_every``, so every rung ends on a validation epoch, whose state
is saved) and e_K = E. Every rate of the grid, and the grid's extension, trains to e_0; at
each later rung the best ceil(n / ETA) of the n rates of the rung before (by best validation
rel L2 up to that rung) train on to e_k, and the last rung's rates finish the budget. As
2^K >= R, one rate finishes it (more only when rounding to validation epochs merged rungs).

A rung does not shorten anyone's schedule: every rate keeps its full-budget cosine schedule
and ``FitPlan``, and stopping at e_k only leaves its saved state "running". Going on is
resuming, so the winner's model is bit-identical to the one the full grid trains for that
rate. Every decision reads each rate's saved validation history up to the rung's epoch, never
what a rate did past it, so a run killed anywhere and resumed makes the same decisions.

With ``patience`` a rate may stop early inside a rung: it is finished, ranks with its final
best, and needs no more training if it survives.

ETA = 2 rather than 3: the grids searched here hold 2 to 5 rates, so the first rung is E/4 to
E/8 of the budget with ETA = 2, against E/9 or less with 3, where the cosine schedule is still
near its peak and the rates' order early says less about their order at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise

from pdefm.train.config import FitPlan, RunConfig
from pdefm.train.fit import LrResult
from pdefm.train.start import Start

ETA = 2  # each rung keeps the best 1 / ETA of the rates and trains them ETA times longer
LADDER = (1.0, 3.0)  # learning rates the grid grows by: 1e-4, 3e-4, 1e-3, 3e-3, ...

#: train(lr, until) -> the rate's result, trained or resumed up to epoch ``until`` (None: all)
Trainer = Callable[[float, int | None], LrResult]


def search_lrs(
    config: RunConfig, plan: FitPlan, train: Trainer, start: Start | None = None
) -> dict[float, LrResult]:
    """Search the rates of ``config`` as ``config.lr_search`` says; {lr: result}. Rates that
    halving stopped before the end of the budget have status "stopped"."""
    if config.lr_search == "halving":
        return halving(config, plan, train, start)
    return extend_grid(config, train, start)


# -- the grid and its extension ------------------------------------------------------------------
def extend_grid(
    config: RunConfig, train: Trainer, start: Start | None = None, until: int | None = None
) -> dict[float, LrResult]:
    """Train every rate of ``config.lrs`` (to epoch ``until``; None: the whole budget); then,
    up to ``config.lr_extend`` times, while the best rate (on validation, by ``until``) is the
    largest or smallest rate tried, train the next rate past that edge (``next_lr``). A best
    rate that did not beat the starting weights (``start``, protocol 2 fine-tuning) is not
    followed downwards: smaller rates only stay closer to the start, which is already a
    candidate. Every decision depends only on saved states, so a resumed run makes the same
    ones. Returns {lr: result}."""
    results: dict[float, LrResult] = {}
    grid = list(config.lrs)
    for _ in range(config.lr_extend + 1):
        for lr in grid:
            if lr not in results:
                results[lr] = train(lr, until)
        scores = standings(results, until)
        if not scores:
            break
        best = best_lr(scores)
        edge = grid_edge(best, list(results))
        if edge is None:
            break
        ups = (True, False) if edge == "both" else (edge == "high",)
        if start is not None and scores[best] >= start.val:
            ups = tuple(up for up in ups if up)
        grid = [lr for lr in (next_lr(best, up) for up in ups) if lr not in results]
        if not grid:
            break
    return results


def standings(results: dict[float, LrResult], until: int | None) -> dict[float, float]:
    """{lr: best validation rel L2 up to epoch ``until``} of the rates that had not failed by
    then (None: as they ended). Read from the saved history, so a rate that trained past
    ``until`` before a kill stands where it stood at ``until``."""
    out = {}
    for lr, r in results.items():
        if r.status == "failed" and (until is None or r.epochs < until):
            continue  # it diverged within the epochs looked at
        if until is None:
            out[lr] = r.best_val_rel_l2
        else:
            vals = [h["val_rel_l2"] for h in r.history if h["epoch"] <= until]
            out[lr] = min(vals, default=math.inf)
    return out


def best_lr(scores: dict[float, float]) -> float:
    """The rate with the lowest score (best validation error; ties: the smaller rate)."""
    return min(sorted(scores), key=lambda lr: scores[lr])


def grid_edge(lr: float, tried: list[float]) -> str | None:
    """Where ``lr`` sits in the rates tried (diverged ones included: a rate that diverged
    bounds the search): "high", "low", "both" (the only one) or None (inside)."""
    high, low = lr >= max(tried), lr <= min(tried)
    if high and low:
        return "both"
    return "high" if high else "low" if low else None


def next_lr(lr: float, up: bool) -> float:
    """The next rate past ``lr`` on the ladder 1, 3, 10, 30, ... x 10^k, at least a factor of
    1.5 away: 3e-3 -> 1e-2 upwards, 1e-3 -> 3e-4 downwards (a factor of about 3; from a rate
    off the ladder, the nearest ladder rate that far)."""
    k = math.floor(math.log10(lr)) - 2
    ladder = [m * 10.0**e for e in range(k, k + 5) for m in LADDER]
    ladder = [float(f"{x:.12g}") for x in ladder]
    if up:
        return min(x for x in ladder if x >= 1.5 * lr * (1 - 1e-9))
    return max(x for x in ladder if x <= lr / 1.5 * (1 + 1e-9))


# -- successive halving --------------------------------------------------------------------------
def max_rates(config: RunConfig) -> int:
    """The most rates the search can train: the grid, one more per extension round, and one
    more again when a single rate grows both ways in its first round."""
    both = len(config.lrs) == 1 and config.lr_extend > 0
    return len(config.lrs) + config.lr_extend + int(both)


def rung_epochs(plan: FitPlan, rates: int) -> list[int]:
    """The rungs' epoch limits e_0 < ... < e_K = E for ``rates`` rates (module doc):
    e_k = v floor(E / (ETA^(K-k) v)), at least v, K = ceil(log_ETA rates); equal ones merged."""
    levels = 0
    while ETA**levels < rates:
        levels += 1
    v, epochs = plan.validate_every, plan.epochs
    limits = {max(v, epochs // ETA**k // v * v) for k in range(1, levels + 1)}
    return sorted(e for e in limits | {epochs} if e <= epochs)


def halving(
    config: RunConfig, plan: FitPlan, train: Trainer, start: Start | None = None
) -> dict[float, LrResult]:
    """Successive halving (module doc): the grid and its extension to the first rung, then the
    better half of each rung on to the next; {lr: result}, the stopped rates "stopped"."""
    rungs = rung_epochs(plan, max_rates(config))
    fresh: dict[float, tuple[float, float]] = {}

    def go(lr: float, until: int | None) -> LrResult:
        result = train(lr, until)  # the time this process spent, summed over the rungs
        wall, cpu = fresh.get(lr, (0.0, 0.0))
        fresh[lr] = (wall + result.fresh[0], cpu + result.fresh[1])
        return result

    results = extend_grid(config, go, start, rungs[0])
    alive = list(results)
    for before, until in pairwise(rungs):
        scores = standings({lr: results[lr] for lr in alive}, before)
        alive = sorted(scores, key=lambda lr: (scores[lr], lr))[: math.ceil(len(scores) / ETA)]
        for lr in alive:
            results[lr] = go(lr, until)
    _finish_one(results, go)
    return {lr: _stopped(replace(r, fresh=fresh[lr]), plan) for lr, r in sorted(results.items())}


def _finish_one(results: dict[float, LrResult], go: Trainer) -> None:
    """If every rate of the last rung failed, the best stopped rate finishes the budget (and
    so on), so that halving fails only where the grid would: when every rate fails."""
    while not any(r.completed for r in results.values()):
        stopped = {lr: r.best_val_rel_l2 for lr, r in results.items() if r.status == "running"}
        if not stopped:
            return
        lr = best_lr(stopped)
        results[lr] = go(lr, None)


def _stopped(r: LrResult, plan: FitPlan) -> LrResult:
    """``r`` as the record states it: a rate halving left before the end is "stopped"."""
    if r.status != "running":
        return r
    reason = f"successive halving stopped it at epoch {r.epochs} of {plan.epochs}"
    return replace(r, status="stopped", reason=reason)
