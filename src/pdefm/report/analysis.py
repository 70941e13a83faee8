"""From curves to the report's numbers: headline, savings per fine-tune curve, scaling fits, and
the OOD shift of each fine-tune run."""

from __future__ import annotations

import math

import numpy as np

from pdefm.report.fits import PowerLawFit, fit_power_law
from pdefm.report.savings import data_savings, default_targets, headline_sentence
from pdefm.report.table import Curve, CurveKey, build_curves, by_task

NO_HEADLINE = "no task has both scratch and fine-tune results yet"


def _scratch_of(curves: list[Curve], model: str) -> Curve | None:
    """The scratch curve of ``model`` among one task's curves."""
    return next((c for c in curves if c.key.method == "scratch" and c.key.model == model), None)


def _headline_pick(curves: list[Curve]) -> tuple[Curve, Curve] | None:
    """(fine-tune, scratch) pair of a task: the fine-tune curves that have a same-model scratch
    curve, at their common smallest N the one with the lowest mean error."""
    pairs = [
        (c, s)
        for c in curves
        if c.key.method == "finetune" and (s := _scratch_of(curves, c.key.model)) is not None
    ]
    if not pairs:
        return None
    n0 = min(min(c.errors) for c, _ in pairs)
    at_n0 = [(c, s) for c, s in pairs if n0 in c.errors]
    return min(at_n0, key=lambda p: float(np.mean(p[0].errors[n0])))


def headline_from_curves(curves: dict[CurveKey, Curve]) -> str:
    """The headline of the first task (by name) that has both scratch and fine-tune curves."""
    for task, group in by_task(curves).items():
        pick = _headline_pick(group)
        if pick is None:
            continue
        ft, sc = pick
        n0 = min(ft.errors)
        label = f"{ft.key.model}, fine-tuned from {ft.key.init}, mode {ft.key.mode}"
        err = float(np.mean(ft.errors[n0]))
        return headline_sentence(task, label, err, n0, sc.sizes(), sc.mean())
    return NO_HEADLINE


def headline(rows: list[dict]) -> str:
    """Headline sentence of a results table, e.g. 'On poisson_5-10 (fno-tiny, fine-tuned from
    pre, mode full): fine-tuning reached 12.3% error with 8 examples; scratch needed 181'.

    X is the mean (over seeds) fine-tune error at its smallest N; M is the scratch N
    interpolated to reach X (see :mod:`pdefm.report.savings`), or a bound.
    """
    return headline_from_curves(build_curves(rows))


def savings_by_curve(curves: dict[CurveKey, Curve]) -> list[tuple[Curve, Curve, list[dict]]]:
    """For each fine-tune curve with a same-model scratch curve: (ft, scratch, savings at the
    errors scratch reaches at its sizes)."""
    out = []
    for group in by_task(curves).values():
        for ft in (c for c in group if c.key.method == "finetune"):
            sc = _scratch_of(group, ft.key.model)
            if sc is None:
                continue
            targets = default_targets(sc.sizes(), sc.mean())
            out.append(
                (ft, sc, data_savings((sc.sizes(), sc.mean()), (ft.sizes(), ft.mean()), targets))
            )

    return out


def fits_by_curve(
    curves: dict[CurveKey, Curve], n_boot: int = 200
) -> list[tuple[Curve, PowerLawFit]]:
    """A scaling law per scratch / fine-tune curve (zero-shot has no N to scale with)."""
    return [
        (c, fit_power_law(*c.points(), n_boot=n_boot))
        for c in curves.values()
        if c.key.method != "zero-shot"
    ]


def shift(row: dict) -> float:
    """OOD shift of a fine-tune run: |midpoint(task range) - midpoint(pre-training range)|
    divided by the pre-training range's width, i.e. how many pre-training widths the task's
    centre lies away (0 = same centre; dimensionless, so families with different parameter
    scales read alike). NaN when the run has no pre-training range."""
    lo, hi = row["pretrain_low"], row["pretrain_high"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    mid_task = 0.5 * (row["task_low"] + row["task_high"])
    return abs(mid_task - 0.5 * (lo + hi)) / max(hi - lo, 1e-12)
