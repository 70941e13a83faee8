"""The savings check: is a data-savings factor a property of the task, or of the budget?

A savings factor S = N_scratch(T) / N_finetune(T) at target error T rests on a few runs: the
scratch runs at the size N_s whose error sets T, and the fine-tuning runs at the two sizes
around the point where the fine-tuning curve crosses T (the smallest size alone when it is
already below T there; the largest when it never gets there). The check retrains exactly those
runs with twice the budget (same learning rate, seeds and subsets) and recomputes

    S(2B) = N_s / N_finetune(T(2B)),   T(2B) = the scratch error at N_s with twice the budget,

with the other sizes' runs as they were. S is **settled** when

    |ln S(2B) - ln S(B)| <= max(ln 1.15, h)   and   S(2B) on the same side of 1 as S(B),

h the half-width of the paired-seed interval of ln S(B): seed s gives S_s from scratch seed s
(its error at N_s is the target) and fine-tuning seed s, and h = t_{0.975, k-1} sd(ln S_s) /
sqrt(k) over the k seeds where both are found by interpolation. Otherwise S is printed as the
range [S(B), S(2B)] with the direction it drifts and the words "budget-bound", never as one
number. A check whose crossing at 2B moved onto sizes that were not rerun is "incomplete":
running the check again reruns those too.

Imports no torch: the report reads rows only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pdefm.report.fit_core import t_quantile
from pdefm.report.savings import EXACT, data_savings, format_savings, monotone, n_to_reach
from pdefm.report.table import (
    Curve,
    CurveKey,
    curve_key,
    finite,
)
from pdefm.study.row import ResultRow

TOLERANCE = math.log(1.15)  # a drift of 15% in S either way is within the protocol's noise
INTERVAL_LEVEL = 0.95
SETTLED, BUDGET_BOUND, INCOMPLETE, UNCHECKED = "settled", "budget-bound", "incomplete", "unchecked"

RunKey = tuple[CurveKey, int, int]  # (curve, N, seed): one run of a curve


@dataclass(frozen=True)
class SavingsCheck:
    """One savings factor and its check: its target is the mean error of the ``anchor``
    curve at the anchor's size. ``base`` and ``doubled`` are ``data_savings``
    entries (target, n_scratch, n_finetune, savings, relation, text) at the budget B and at
    2B (None: not checked); ``half_width`` the paired-seed half-width h of ln S(B) (None:
    fewer than 2 seeds found it by interpolation); ``runs`` the runs that enter S(B)."""

    finetune: CurveKey
    scratch: CurveKey
    anchor: Anchor
    base: dict
    doubled: dict | None
    half_width: float | None
    runs: tuple[RunKey, ...]
    verdict: str
    missing: tuple[RunKey, ...] = ()  # runs the crossing at 2B rests on that were not rerun

    @property
    def drift(self) -> float:
        """S(2B) / S(B) - 1 (NaN when unchecked or either is not a number)."""
        if self.doubled is None:
            return math.nan
        a, b = self.base["savings"], self.doubled["savings"]
        return b / a - 1 if a > 0 and math.isfinite(a) and math.isfinite(b) else math.nan

    @property
    def settled(self) -> bool:
        return self.verdict == SETTLED

    def text(self) -> str:
        """S as the report may print it: one number only when settled; otherwise the range
        and the words budget-bound (or why it is not known yet)."""
        if self.verdict == SETTLED:
            return self.base["text"]
        if self.verdict == BUDGET_BOUND:
            lo, hi = sorted((self.base["savings"], self.doubled["savings"]))
            way = "grows" if self.drift > 0 else "shrinks"
            return f"[{lo:.3g}, {hi:.3g}] budget-bound ({way} with budget)"
        if self.verdict == INCOMPLETE:
            return f"{self.base['text']} (check incomplete)"
        return f"{self.base['text']} (unchecked)"


# -- which runs a savings factor rests on ----------------------------------------------------
def _setting_size(curve: Curve, index: int) -> int:
    """The size whose mean error is the curve's running minimum at sorted position ``index``
    (a larger size that did worse falls back to it)."""
    sizes, means = curve.sizes(), curve.mean()
    return int(sizes[int(np.argmin(means[: index + 1]))])


def crossing_sizes(curve: Curve, target: float) -> list[int]:
    """The sizes of ``curve`` that decide where it reaches ``target``: the two around an
    interpolated crossing, the smallest when it is already there, the largest when never."""
    n, e = monotone(curve.sizes(), curve.mean())
    hit = np.flatnonzero(e <= target)
    if hit.size == 0:
        return [_setting_size(curve, len(n) - 1)]
    j = int(hit[0])
    if j == 0:
        return [int(n[0])]
    return sorted({_setting_size(curve, j - 1), _setting_size(curve, j)})


def _runs_at(curve: Curve, sizes: Iterable[int]) -> list[RunKey]:
    wanted = set(sizes)
    return [(curve.key, int(r.n_train), r.seed) for r in curve.rows if int(r.n_train) in wanted]


# -- the factor at one budget ------------------------------------------------------------------
def _target_size(sc: Curve, target: float) -> int:
    """The scratch size whose (running-minimum) mean error is ``target``."""
    n, e = monotone(sc.sizes(), sc.mean())
    j = int(np.flatnonzero(np.isclose(e, target, rtol=1e-12, atol=0))[0])
    return _setting_size(sc, j)


@dataclass(frozen=True)
class Anchor:
    """Where a savings factor's target comes from: the mean error of ``method`` ("scratch"
    for the savings table, "finetune" for the headline) at size ``n``; the other curve's
    crossing of it gives the other N."""

    method: str
    n: int

    def curves(self, ft: Curve, sc: Curve) -> tuple[Curve, Curve]:
        """(the anchor's curve, the other one)."""
        return (sc, ft) if self.method == "scratch" else (ft, sc)

    def savings(self, n_anchor: float, n_other: float) -> float:
        """S = N_scratch / N_finetune."""
        return n_anchor / n_other if self.method == "scratch" else n_other / n_anchor


def paired_half_width(ft: Curve, sc: Curve, anchor: Anchor) -> float | None:
    """h: the half-width of the ``INTERVAL_LEVEL`` t interval of the mean of ln S_s over the
    seeds s that both curves ran, S_s from the anchor curve's seed-s error at the anchor size
    and the other curve's seed s; seeds whose S_s is a bound are left out. None with fewer
    than 2 seeds left."""
    own, other = anchor.curves(ft, sc)
    logs = []
    for seed in sorted({r.seed for r in sc.rows} & {r.seed for r in ft.rows}):
        own_s, other_s = _seed_curve(own, seed), _seed_curve(other, seed)
        if anchor.n not in own_s:
            continue
        n, how = n_to_reach(list(other_s), list(other_s.values()), own_s[anchor.n])
        if how == EXACT:
            logs.append(math.log(anchor.savings(anchor.n, n)))
    if len(logs) < 2:
        return None
    k = len(logs)
    return t_quantile(INTERVAL_LEVEL, k - 1) * float(np.std(logs, ddof=1)) / math.sqrt(k)


def _seed_curve(curve: Curve, seed: int) -> dict[int, float]:
    return {int(r.n_train): float(r.test_rel_l2) for r in curve.rows if r.seed == seed}


def _target(ft: Curve, sc: Curve, anchor: Anchor) -> float:
    return float(np.mean(anchor.curves(ft, sc)[0].errors[anchor.n]))


def _savings_at(ft: Curve, sc: Curve, anchor: Anchor) -> dict:
    """The savings entry at the anchor's target (its curve's mean error at its size)."""
    target = _target(ft, sc, anchor)
    return data_savings((sc.sizes(), sc.mean()), (ft.sizes(), ft.mean()), [target])[0]


def _entering(ft: Curve, sc: Curve, anchor: Anchor) -> list[RunKey]:
    """The runs a factor rests on: the anchor's at its size, the other curve's around its
    crossing of the target."""
    own, other = anchor.curves(ft, sc)
    return _runs_at(own, [anchor.n]) + _runs_at(
        other, crossing_sizes(other, _target(ft, sc, anchor))
    )


# -- the check ---------------------------------------------------------------------------------
def with_doubled(curve: Curve, doubled: dict[RunKey, ResultRow]) -> Curve:
    """``curve`` with each run that was rerun at twice the budget replaced by its rerun."""
    out = Curve(curve.key, curve.params)
    for r in curve.rows:
        r2 = doubled.get((curve.key, int(r.n_train), r.seed), r)
        out.errors.setdefault(int(r2.n_train), []).append(float(r2.test_rel_l2))
        out.rows.append(r2)
    return out


def check_factor(
    ft: Curve, sc: Curve, anchor: Anchor, doubled: dict[RunKey, ResultRow] | None = None
) -> SavingsCheck:
    """The savings factor of (``ft``, ``sc``) at ``anchor``'s target with its verdict against
    ``doubled`` (run -> its rerun at twice the budget; None or runs missing: unchecked)."""
    doubled = doubled or {}
    base = _savings_at(ft, sc, anchor)
    runs = tuple(_entering(ft, sc, anchor))
    h = paired_half_width(ft, sc, anchor)
    if not all(k in doubled for k in runs):
        return SavingsCheck(ft.key, sc.key, anchor, base, None, h, runs, UNCHECKED)
    ft2, sc2 = with_doubled(ft, doubled), with_doubled(sc, doubled)
    again = _savings_at(ft2, sc2, anchor)
    moved = tuple(sorted(set(_entering(ft2, sc2, anchor)) - set(doubled), key=str))
    verdict = INCOMPLETE if moved else _verdict(base, again, h)
    return SavingsCheck(ft.key, sc.key, anchor, base, again, h, runs, verdict, moved)


def check_savings(
    ft: Curve, sc: Curve, doubled: dict[RunKey, ResultRow] | None = None
) -> list[SavingsCheck]:
    """Every savings factor of (``ft``, ``sc``) at the errors scratch reaches at its sizes
    (the savings table's targets, largest error first), each with its verdict."""
    targets = sorted({float(x) for x in monotone(sc.sizes(), sc.mean())[1]}, reverse=True)
    anchors = [Anchor("scratch", _target_size(sc, t)) for t in targets]
    return [check_factor(ft, sc, a, doubled) for a in anchors]


def _verdict(base: dict, again: dict, half_width: float | None) -> str:
    """settled or budget-bound (module docstring)."""
    a, b = base["savings"], again["savings"]
    if base["relation"] != again["relation"] or not (math.isfinite(a) and math.isfinite(b)):
        return BUDGET_BOUND
    if a <= 0 or b <= 0 or (a - 1) * (b - 1) <= 0 and not a == b == 1:
        return BUDGET_BOUND
    tolerance = max(TOLERANCE, half_width or 0.0)
    return SETTLED if abs(math.log(b / a)) <= tolerance else BUDGET_BOUND


def needed_runs(checks: Sequence[SavingsCheck]) -> set[RunKey]:
    """Every run a set of checks needs rerun at twice the budget."""
    return {k for c in checks for k in c.runs + c.missing}


# -- a study's rows --------------------------------------------------------------------------
def doubled_runs(rows: Sequence[ResultRow]) -> dict[RunKey, ResultRow]:
    """The completed reruns at twice the budget among ``rows`` (``check_of`` set), under the
    key of the run each reruns (the same curve, N and seed)."""
    return {
        (curve_key(r), int(r.n_train), r.seed): r
        for r in rows
        if r.check_of is not None and r.status == "completed" and finite(r.test_rel_l2)
    }


def verdict_line(c: SavingsCheck) -> str:
    """One printed line: where, S(B), S(2B), drift, verdict."""
    s2 = "-" if c.doubled is None else format_savings(c.doubled["savings"], c.doubled["relation"])
    drift = "-" if math.isnan(c.drift) else f"{c.drift:+.0%}"
    return (
        f"{c.finetune.task} {c.finetune.label()}: target {c.base['target']:.3g} ("
        f"{c.anchor.method} at N = {c.anchor.n}): S(B) {c.base['text']}, S(2B) {s2}, "
        f"drift {drift}: {c.verdict}"
    )
