"""The report's headline: one sentence that says what pre-training saved, and how that was
measured, or plainly why there is nothing to headline.

Rules (each is tested):

- the target is the mean (over seeds) test error of a fine-tune curve at the smallest N where
  it is below 1 (a relative L2 error of 1 is what predicting zero scores) and below the
  error of the same pre-trained model used zero-shot: a fine-tune result that zero-shot
  already beats, or that is worse than predicting zero, is never headlined;
- among the fine-tune curves of a task that have a scratch curve of the same model, the one
  whose target comes at the smallest N (ties: the lower error) is headlined;
- the scratch N needed for the target is interpolated (log N linear in log error, on the
  running minimum over N) between two sizes that were run, and the sentence names both with
  their errors; where scratch reaches it at its smallest size, or never, it says so;
- the sentence states the seeds (a single seed has no spread: it says "one seed"), the
  budget rule and the learning rates tried, and counts the runs behind it that were
  budget-limited or chose a learning rate at the edge of the rates tried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pdefm.report.names import pretraining_title, row_task_title
from pdefm.report.savings import AT_MOST, EXACT, format_savings, monotone, n_to_reach, sig
from pdefm.report.savings_check import (
    BUDGET_BOUND,
    INCOMPLETE,
    SETTLED,
    Anchor,
    SavingsCheck,
    check_factor,
)
from pdefm.report.table import Curve, CurveKey, by_task, scratch_of
from pdefm.study.row import ResultRow

NO_HEADLINE = "no task has both scratch and fine-tune results yet"


@dataclass(frozen=True)
class Pick:
    """A headlined comparison: the fine-tune and scratch curves, the zero-shot error of the
    pre-trained model on the task (None: not evaluated), and the target N and error."""

    finetune: Curve
    scratch: Curve
    zero_shot: float | None
    n: int
    error: float


def zero_shot_of(curves: list[Curve], key: CurveKey) -> float | None:
    """Mean zero-shot error of the stage ``key.init`` on the task (None if not evaluated)."""
    for c in curves:
        if c.key.method == "zero-shot" and c.key.init == key.init:
            return float(np.mean([e for es in c.errors.values() for e in es]))
    return None


def _target(ft: Curve, ceiling: float) -> tuple[int, float] | None:
    """(N, mean error) at the smallest N where the fine-tune mean error is below ``ceiling``."""
    for n, err in zip(ft.sizes(), ft.mean(), strict=True):
        if err < ceiling:
            return int(n), float(err)
    return None


def pick(curves: list[Curve]) -> Pick | str:
    """The comparison to headline among one task's curves, or the reason there is none."""
    pairs = [
        (c, s)
        for c in curves
        if c.key.method == "finetune" and (s := scratch_of(curves, c.key.model)) is not None
    ]
    if not pairs:
        return NO_HEADLINE
    picks = []
    for ft, sc in pairs:
        zs = zero_shot_of(curves, ft.key)
        target = _target(ft, min(1.0, zs if zs is not None else math.inf))
        if target is not None:
            picks.append(Pick(ft, sc, zs, *target))
    if picks:
        return min(picks, key=lambda p: (p.n, p.error))
    return _why_none(pairs, curves)


def _why_none(pairs: list[tuple[Curve, Curve]], curves: list[Curve]) -> str:
    best = min(float(np.min(ft.mean())) for ft, _ in pairs)
    if best >= 1.0:
        return (
            f"no fine-tuned model got below 100% test error (best {sig(100 * best)}%): worse "
            "than predicting zero, so there is nothing to headline"
        )
    zero = [z for ft, _ in pairs if (z := zero_shot_of(curves, ft.key)) is not None]
    return (
        f"fine-tuning did not beat the pre-trained model used zero-shot "
        f"({sig(100 * min(zero))}% test error) at any N run, so there is nothing to headline"
    )


def _pct(x: float) -> str:
    return f"{sig(100 * x)}%"


def _scratch_part(p: Pick, check: SavingsCheck | None = None) -> str:
    """How many examples scratch needed for the target, and how that N was found (a
    budget-bound saving gives the N at both budgets, never one number)."""
    n, err = p.scratch.sizes(), p.scratch.mean()
    m, found = n_to_reach(n, err, p.error)
    if check is not None and check.verdict == BUDGET_BOUND and found == EXACT:
        m2 = check.doubled["n_scratch"]
        return (
            f"training from scratch needed between {min(m, m2):.0f} and {max(m, m2):.0f} "
            f"({m:.0f} as run, {m2:.0f} with both arms at twice the budget)"
        )
    if found == EXACT:
        ns, es = monotone(n, err)
        j = int(np.flatnonzero(es <= p.error)[0])
        return (
            f"training from scratch needed about {m:.0f} (interpolated between N={ns[j - 1]:.0f}"
            f" at {_pct(es[j - 1])} and N={ns[j]:.0f} at {_pct(es[j])})"
        )
    if found == AT_MOST:
        return (
            f"training from scratch reached it with {m:.0f} examples too (its smallest N: "
            f"{_pct(float(np.min(err[:1])))}), so the savings are at most {m / p.n:.3g}x"
        )
    return (
        f"training from scratch did not reach it with up to {m:.0f} examples (its best: "
        f"{_pct(float(np.min(err)))}), so the savings are more than {m / p.n:.3g}x"
    )


def _seeds_text(curve: Curve, n: int) -> str:
    k = len(curve.errors[n])
    return "one seed, so no spread" if k == 1 else f"mean of {k} seeds"


def _budget_text(rows: list[ResultRow]) -> str:
    """'200 epochs per run', 'up to 400 epochs (patience)', '300 steps per run'; runs that
    kept their starting weights trained their rates but return the start (0 epochs): they
    are counted apart."""
    kept = sum(bool(r.start_kept) for r in rows)
    text = _trained_budget_text([r for r in rows if not r.start_kept])
    if kept:
        text += f"; {kept} fine-tuning run(s) kept their starting weights (no rate beat them)"
    return text


def _trained_budget_text(rows: list[ResultRow]) -> str:
    rules = {r.budget_rule or "" for r in rows}
    epochs = sorted({r.epochs for r in rows if r.epochs is not None})
    steps = sorted({r.steps for r in rows if r.steps is not None})
    if rules == {"epochs"} and len(epochs) == 1:
        text = f"{epochs[0]} epochs per run"
    elif rules == {"patience"} and epochs:
        text = f"{epochs[0]}-{epochs[-1]} epochs per run (stopped by patience or the cap)"
    elif rules == {"steps"} and len(steps) == 1:
        text = f"a flat {steps[0]} steps per run"
    elif epochs:
        text = f"{epochs[0]}-{epochs[-1]} epochs per run"
    else:
        return "budget not recorded"
    if steps:
        span = f"{steps[0]}" if steps[0] == steps[-1] else f"{steps[0]}-{steps[-1]}"
        text += f" ({span} optimiser steps)"
    return text


def _protocol_text(p: Pick) -> str:
    rows = p.finetune.rows + p.scratch.rows
    rates = sorted({float(x) for r in rows for x in (r.lrs_tried or "").split()})
    lrs = ", ".join(f"{lr:g}" for lr in rates) if rates else "not recorded"
    text = f"Budget: {_budget_text(rows)}; learning rate chosen on validation from {lrs}"
    flagged = sum(r.converged is False or bool(r.lr_at_edge) for r in rows)
    if flagged:
        text += (
            f"; {flagged} of the {len(rows)} runs behind it were budget-limited or chose a "
            "learning rate at the edge of those tried (see Runs to check)"
        )
    return text + "."


def sentence(p: Pick, check: SavingsCheck | None = None) -> str:
    """The headline sentence of a pick, with its savings check (None: not computed)."""
    ft = p.finetune
    mode = "" if ft.key.mode == "full" else f", mode {ft.key.mode}"
    zs = "" if p.zero_shot is None else f"; zero-shot it scores {_pct(p.zero_shot)}"
    source = pretraining_title(ft.key.init, ft.rows[0])
    return (
        f"On {row_task_title(ft.rows[0])} ({ft.key.model}, fine-tuned from {source}"
        f"{mode}): fine-tuning reached {_pct(p.error)} test error with {p.n} examples "
        f"({_seeds_text(ft, p.n)}{zs}); {_scratch_part(p, check)}. {_protocol_text(p)}"
        f"{_check_text(check)}"
    )


def _check_text(check: SavingsCheck | None) -> str:
    """What the savings check found about the headlined factor."""
    if check is None:
        return ""
    if check.verdict == SETTLED:
        s2 = format_savings(check.doubled["savings"], check.doubled["relation"])
        return (
            f" Savings check: settled (with the runs behind it at twice the budget the saving "
            f"is {s2}x, {check.drift:+.0%})."
        )
    if check.verdict == BUDGET_BOUND:
        return f" Savings check: the saving is {check.text()}, so it is not quoted as a number."
    if check.verdict == INCOMPLETE:
        return " Savings check incomplete: run `pdefm study run FILE --check-savings` again."
    return " Savings check not run (`pdefm study run FILE --check-savings`): not yet settled."


def headline_pick(curves: dict[CurveKey, Curve]) -> Pick | None:
    """The comparison the headline states: that of the first task (``by_task`` order) with
    something to headline; None if no task has one."""
    for group in by_task(curves).values():
        chosen = pick(group)
        if isinstance(chosen, Pick):
            return chosen
    return None


def headline_from_curves(curves: dict[CurveKey, Curve], doubled: dict | None = None) -> str:
    """The headline of the first task (in ``by_task`` order: family, then parameter range)
    with something to headline, with its savings check (``doubled``: the reruns at twice
    the budget, ``savings_check.doubled_runs``); else the first task's reason why not (or
    NO_HEADLINE)."""
    chosen = headline_pick(curves)
    if chosen is not None:
        check = check_factor(chosen.finetune, chosen.scratch, Anchor("finetune", chosen.n), doubled)
        return sentence(chosen, check)
    reasons = []
    for group in by_task(curves).values():
        why = pick(group)
        if why != NO_HEADLINE:
            reasons.append(f"On {row_task_title(group[0].rows[0])}: {why}")
    return reasons[0] if reasons else NO_HEADLINE
