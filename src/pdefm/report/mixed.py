"""Mixed vs single-family pre-training (the study's SYS-4), per downstream task.

A *comparison* puts side by side, on one task, the curves of

- fine-tuning from a mixture stage (``init_family == "mixture"``),
- fine-tuning from a stage pre-trained on the task's own family (``init_family == family``),
  in the same adaptation mode, preferring a stage of the mixture stage's model preset,
- scratch with the mixture stage's preset (equal model size: chosen by preset, never by test
  error),
- both stages zero-shot (N = 0).

Errors are means over seeds of the test relative L2 ||u_hat - u|| / ||u|| (dimensionless),
taken from :class:`pdefm.report.table.Curve`, so the learning rate was chosen on validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pdefm.catalogue import MIXTURE
from pdefm.report.savings import sig
from pdefm.report.table import Curve
from pdefm.study.row import ResultRow

#: Legend text of each role, in drawing order.
ROLES = {
    "mixed": "fine-tune from mixed",
    "single": "fine-tune from single-family",
    "scratch": "scratch (same preset)",
    "zs_mixed": "zero-shot mixed",
    "zs_single": "zero-shot single-family",
}
NOTE = (
    "Per downstream task: fine-tuning from the mixture pre-training stage against fine-tuning "
    "from a stage pre-trained on the task's own family (same adaptation mode; a stage of the "
    "mixture stage's model preset when there is one) and against scratch with the mixture "
    "stage's preset (equal model size; picked by preset, not by test error). Errors are test "
    "rel. L2, mean over seeds; 'single / mixed' > 1 means the mixed model transfers better."
)


@dataclass(frozen=True)
class Comparison:
    """One task's mixed-vs-single comparison; a missing curve is None."""

    task: str
    label: str  # e.g. "hh_10-20 (helmholtz [10, 20])"
    mixed_init: str
    single_init: str | None
    model: str
    mode: str | None  # adaptation mode of both fine-tune curves; None: zero-shot only
    mixed: Curve | None
    single: Curve | None
    scratch: Curve | None
    zs_mixed: Curve | None
    zs_single: Curve | None

    def curves(self) -> list[tuple[str, Curve]]:
        """(role, curve) for each curve present, in :data:`ROLES` order."""
        found = ((role, getattr(self, role)) for role in ROLES)
        return [(role, c) for role, c in found if c is not None]


def has_mixed(rows: list[ResultRow]) -> bool:
    """True when some fine-tune or zero-shot run starts from a mixture stage (any status)."""
    return any(
        r.kind == "downstream"
        and r.method in ("finetune", "zero-shot")
        and r.init_family == MIXTURE
        for r in rows
    )


def init_families(rows: list[ResultRow]) -> dict[str, str]:
    """Init stage name -> family of its pre-training data, read from the downstream rows."""
    return {
        r.init: r.init_family for r in rows if r.kind == "downstream" and r.init_family is not None
    }


def task_labels(rows: list[ResultRow]) -> dict[str, tuple[str, str]]:
    """Task -> (family, readable label 'name (family [low, high])') from the downstream rows."""
    out = {}
    for r in rows:
        if r.kind != "downstream" or r.task in out:
            continue
        lo, hi = r.task_low, r.task_high
        rng = f" [{lo:g}, {hi:g}]" if _number(lo) and _number(hi) else ""
        out[r.task] = (r.family, f"{r.task} ({r.family}{rng})")
    return out


def _number(x: object) -> bool:
    """True for a finite int or float."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def _find(group: list[Curve], method: str, init: str | None, **match: str | None) -> Curve | None:
    """The curve of ``method`` from ``init`` (and the given mode / model, when not None)."""
    if init is None:
        return None
    for c in group:
        k = c.key
        same = all(v is None or getattr(k, f) == v for f, v in match.items())
        if k.method == method and k.init == init and same:
            return c
    return None


def _stages(group: list[Curve], families: dict[str, str], family: str) -> list[str]:
    """Pre-training stages with curves on this task whose data family is ``family``."""
    inits = {c.key.init for c in group if c.key.method != "scratch"}
    return sorted(i for i in inits if families.get(i) == family)


def _model_of(group: list[Curve], init: str) -> str:
    """The model preset of a stage (every curve from one stage shares it)."""
    return next(c.key.model for c in group if c.key.init == init)


def task_comparisons(
    task: str, group: list[Curve], families: dict[str, str], info: tuple[str, str]
) -> list[Comparison]:
    """Every (mixture stage, fine-tune mode, single-family stage) comparison on one task."""
    family, label = info
    singles = _stages(group, families, family) if family != MIXTURE else []
    out = []
    for m in _stages(group, families, MIXTURE):
        model = _model_of(group, m)
        modes = sorted(
            {c.key.mode for c in group if c.key.init == m and c.key.method == "finetune"}
        )
        same = [s for s in singles if _model_of(group, s) == model]
        for mode in modes or [None]:
            for s in same or singles or [None]:
                out.append(
                    Comparison(
                        task, label, m, s, model, mode,
                        mixed=_find(group, "finetune", m, mode=mode),
                        single=_find(group, "finetune", s, mode=mode) if mode else None,
                        scratch=_find(group, "scratch", "scratch", model=model),
                        zs_mixed=_find(group, "zero-shot", m),
                        zs_single=_find(group, "zero-shot", s),
                    )
                )  # fmt: skip
    return out


def comparisons(rows: list[ResultRow], tasks: dict[str, list[Curve]]) -> list[Comparison]:
    """All comparisons of a study: ``tasks`` is :func:`pdefm.report.table.by_task` output."""
    families, labels = init_families(rows), task_labels(rows)
    out = []
    for task, group in tasks.items():
        out += task_comparisons(task, group, families, labels[task])
    return out


def mean_at(curve: Curve | None, n: int) -> float:
    """Mean test error over seeds at N (NaN when the curve is missing or lacks N)."""
    if curve is None or n not in curve.errors:
        return math.nan
    return float(np.mean(curve.errors[n]))


def zero_shot(curve: Curve | None) -> float:
    """Mean zero-shot error (NaN when there is none)."""
    if curve is None:
        return math.nan
    return float(np.mean([e for es in curve.errors.values() for e in es]))


def values(comp: Comparison) -> list[tuple[int, float, float, float, float]]:
    """Per N (ascending, any of the three curves): (N, mixed, single, scratch, single / mixed)."""
    curves = (comp.mixed, comp.single, comp.scratch)
    sizes = sorted({n for c in curves if c is not None for n in c.errors})
    out = []
    for n in sizes:
        mix, one, scr = (mean_at(c, n) for c in curves)
        out.append((n, mix, one, scr, one / mix if mix > 0 else math.nan))
    return out


def _cell(x: float, digits: int = 4) -> str:
    """A table cell: the number, or '—' for a missing one."""
    return "—" if math.isnan(x) else f"{x:.{digits}g}"


def table_rows(comps: list[Comparison]) -> list[list[str]]:
    """Rows of the fine-tune table: task, stages, mode, preset, N, the three errors, the ratio."""
    out = []
    for c in comps:
        head = [c.task, c.mixed_init, c.single_init or "—", c.mode or "—", c.model]
        for n, mix, one, scr, ratio in values(c):
            out.append(head + [str(n), _cell(mix), _cell(one), _cell(scr), _cell(ratio, 3)])
    return out


def zero_shot_rows(comps: list[Comparison]) -> list[list[str]]:
    """Rows of the zero-shot table, one per (task, mixed stage, single stage)."""
    out: dict[tuple, list[str]] = {}
    for c in comps:
        zm, zs = zero_shot(c.zs_mixed), zero_shot(c.zs_single)
        ratio = zs / zm if zm > 0 else math.nan
        cells = [c.task, c.mixed_init, _cell(zm), c.single_init or "—", _cell(zs), _cell(ratio, 3)]
        out.setdefault((c.task, c.mixed_init, c.single_init), cells)
    return list(out.values())


def _fine_tune_clause(comp: Comparison) -> str:
    """'fine-tuning from the mixed model (M) reaches X at N=n vs Y from ... and Z from ...' at
    the smallest N the mixed curve shares with the single-family one (else its smallest N)."""
    rows = [v for v in values(comp) if not math.isnan(v[1])]
    pick = next((v for v in rows if not math.isnan(v[2])), rows[0])
    n, mix, one, scr, _ = pick
    text = f"fine-tuning from the mixed model ({comp.mixed_init}) reaches {sig(mix)} at N={n}"
    others = []
    if not math.isnan(one):
        others.append(f"{sig(one)} from the single-family model ({comp.single_init})")
    if not math.isnan(scr):
        others.append(f"{sig(scr)} from scratch ({comp.model})")
    return text + (" vs " + " and ".join(others) if others else "")


def _ratio_clause(comp: Comparison) -> str:
    """Geometric mean over the shared N of single / mixed ('' with no shared N)."""
    ratios = [v[4] for v in values(comp) if math.isfinite(v[4]) and v[4] > 0]
    if not ratios:
        return ""
    gm = float(np.exp(np.mean(np.log(ratios))))
    return (
        f"; over the {len(ratios)} N both were fine-tuned with, the single-family error is "
        f"{sig(gm)}x the mixed one (geometric mean)"
    )


def _zero_shot_clause(comp: Comparison) -> str:
    """'zero-shot: X (mixed) vs Y (single-family)', or '' without zero-shot runs."""
    parts = [
        f"{sig(e)} ({who})"
        for e, who in (
            (zero_shot(comp.zs_mixed), "mixed"),
            (zero_shot(comp.zs_single), "single-family"),
        )
        if not math.isnan(e)
    ]
    return f"; zero-shot: {' vs '.join(parts)}" if parts else ""


def sentence(comp: Comparison) -> str:
    """The analysis sentence of one comparison, every number computed from its curves."""
    body = _fine_tune_clause(comp) + _ratio_clause(comp) if comp.mixed else "no fine-tune runs"
    where = comp.label if comp.mode in (None, "full") else f"{comp.label}, mode {comp.mode}"
    return f"{where}: {body}{_zero_shot_clause(comp)}."
