"""From curves to the report's numbers: headline, savings per fine-tune curve, scaling fits, and
the OOD shift of each fine-tune run."""

from __future__ import annotations

import math

from pdefm.report.fits import PowerLawFit, fit_power_law
from pdefm.report.headline import headline_from_curves, scratch_of
from pdefm.report.savings import data_savings, default_targets
from pdefm.report.table import Curve, CurveKey, build_curves, by_task, validate_rows
from pdefm.study.row import ResultRow


def headline(rows: list[ResultRow]) -> str:
    """Headline sentence of a results table (see :mod:`pdefm.report.headline`), e.g. 'On
    Poisson, e in [5, 10] (fno-tiny, fine-tuned from Poisson, e in [1, 5]): fine-tuning
    reached 9.50% test error with 8 examples (mean of 3 seeds; ...); training from scratch
    needed about 61 (interpolated between N=32 at 12.1% and N=128 at 5.02%). Budget: ...'.
    Mappings of the results columns are taken too (see :func:`validate_rows`)."""
    return headline_from_curves(build_curves(validate_rows(rows)))


def savings_by_curve(curves: dict[CurveKey, Curve]) -> list[tuple[Curve, Curve, list[dict]]]:
    """For each fine-tune curve with a same-model scratch curve: (ft, scratch, savings at the
    errors scratch reaches at its sizes)."""
    out = []
    for group in by_task(curves).values():
        for ft in (c for c in group if c.key.method == "finetune"):
            sc = scratch_of(group, ft.key.model)
            if sc is None:
                continue
            targets = default_targets(sc.sizes(), sc.mean())
            out.append(
                (ft, sc, data_savings((sc.sizes(), sc.mean()), (ft.sizes(), ft.mean()), targets))
            )

    return out


def fits_by_curve(
    curves: dict[CurveKey, Curve],
) -> list[tuple[Curve, PowerLawFit]]:
    """A scaling law per scratch / fine-tune curve (zero-shot has no N to scale with)."""
    return [(c, fit_power_law(*c.points())) for c in curves.values() if c.key.method != "zero-shot"]


def shift(row: ResultRow) -> float:
    """OOD shift of a fine-tune run: |midpoint(task range) - midpoint(pre-training range)|
    divided by the pre-training range's width, i.e. how many pre-training widths the task's
    centre lies away (0 = same centre; dimensionless, so families with different parameter
    scales read alike). NaN when the run has no pre-training range."""
    lo, hi = row.pretrain_low, row.pretrain_high
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    mid_task = 0.5 * (row.task_low + row.task_high)
    return abs(mid_task - 0.5 * (lo + hi)) / max(hi - lo, 1e-12)
