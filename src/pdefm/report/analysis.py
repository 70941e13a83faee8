"""From curves to the report's numbers: headline, savings per fine-tune curve, scaling fits, and
the OOD shift of each fine-tune run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pdefm.report.fits import PowerLawFit, fit_power_law
from pdefm.report.headline import headline_from_curves, headline_pick
from pdefm.report.savings import data_savings, default_targets
from pdefm.report.savings_check import (
    Anchor,
    SavingsCheck,
    check_factor,
    check_savings,
    doubled_runs,
    needed_runs,
    verdict_line,
)
from pdefm.report.table import (
    Curve,
    CurveKey,
    build_curves,
    by_task,
    curve_key,
    scratch_of,
    usable_rows,
    validate_rows,
)
from pdefm.study.row import ResultRow


def headline(rows: list[ResultRow]) -> str:
    """Headline sentence of a results table (see :mod:`pdefm.report.headline`), e.g. 'On
    Poisson, e in [5, 10] (fno-tiny, fine-tuned from Poisson, e in [1, 5]): fine-tuning
    reached 9.50% test error with 8 examples (mean of 3 seeds; ...); training from scratch
    needed about 61 (interpolated between N=32 at 12.1% and N=128 at 5.02%). Budget: ...'.
    Mappings of the results columns are taken too (see :func:`validate_rows`)."""
    rows = validate_rows(rows)
    return headline_from_curves(build_curves(rows), doubled_runs(rows))


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
    """A scaling law per scratch / fine-tune curve (zero-shot has no N to scale with); runs
    fine-tuned from several pre-trained models of a stage are grouped by that model."""
    return [
        (c, fit_power_law(*c.points(), pretrained=c.pretrained()))
        for c in curves.values()
        if c.key.method != "zero-shot"
    ]


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


SCOPES = ("all", "headline")  # which savings factors a check covers


def study_checks(rows: Sequence[ResultRow], scope: str = "all") -> list[SavingsCheck]:
    """The savings checks of a results table: with ``scope`` "all", every factor of the
    savings table (each fine-tune curve against its same-model scratch curve, at the errors
    scratch reaches at its sizes); with "headline" only the headline's factor (its target is
    the fine-tuning error at the headlined N), which "all" includes too."""
    curves = build_curves(list(rows))
    doubled = doubled_runs(rows)
    out = []
    if scope == "all":
        for ft, sc, _ in savings_by_curve(curves):
            out += check_savings(ft, sc, doubled)
    pick = headline_pick(curves)
    if pick is not None:
        out.append(check_factor(pick.finetune, pick.scratch, Anchor("finetune", pick.n), doubled))
    return out


def runs_to_double(rows: Sequence[ResultRow], checks: Sequence[SavingsCheck]) -> set[str]:
    """The run ids the checks need rerun at twice the budget (reruns done or not)."""
    ids = {(curve_key(r), int(r.n_train), r.seed): r.run_id for r in usable_rows(list(rows))}
    return {ids[k] for k in needed_runs(checks) if k in ids}


def study_runs_to_double(root: str | Path, scope: str = "all") -> set[str]:
    """For ``pdefm study run --check-savings``: the ids of the runs of the study in ``root``
    that its savings factors (``scope``) rest on."""
    from pdefm.study.results import load_results  # here: the study store pulls in torch

    rows = load_results(root)
    return runs_to_double(rows, study_checks(rows, scope))


def study_verdicts(root: str | Path, scope: str = "all") -> list[str]:
    """One line per checked savings factor of the study in ``root`` (``verdict_line``)."""
    from pdefm.study.results import load_results

    return [verdict_line(c) for c in study_checks(load_results(root), scope)]
