"""The results table: validation, learning-rate selection, curves (mean / spread over seeds), CSV.

Rows are :class:`pdefm.study.row.ResultRow`, read by attribute. A *curve* is the set of
completed downstream runs that share (task, method, init, mode, model); its points are the
downstream sizes N, and at each N it holds one test error per seed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# the row contract lives with the study that builds the rows; its names stay importable here
from pdefm.study.row import COLUMNS as COLUMNS
from pdefm.study.row import METHODS as METHODS
from pdefm.study.row import PROTOCOL_COLUMNS as PROTOCOL_COLUMNS
from pdefm.study.row import ResultRow, write_rows


@dataclass(frozen=True)
class CurveKey:
    """What identifies a curve. ``init`` and ``mode`` are part of it so that two pre-training
    stages (or two adaptation modes) are never averaged into one line."""

    task: str
    method: str
    init: str
    mode: str
    model: str

    def label(self, with_model: bool = True) -> str:
        """Short legend text, e.g. ``finetune poisson_1-5/full fno-tiny``."""
        core = self.method if self.method == "scratch" else f"{self.method} {self.init}/{self.mode}"
        return f"{core} {self.model}" if with_model else core


@dataclass
class Curve:
    """One curve: per N the test errors of its seeds; ``rows`` keeps the runs for later use."""

    key: CurveKey
    params: int
    errors: dict[int, list[float]] = field(default_factory=dict)
    rows: list[ResultRow] = field(default_factory=list)

    def sizes(self) -> np.ndarray:
        """Downstream sizes N, ascending."""
        return np.array(sorted(self.errors), dtype=float)

    def mean(self) -> np.ndarray:
        """Mean test error over seeds at each N (ascending N)."""
        return np.array([np.mean(self.errors[n]) for n in sorted(self.errors)])

    def spread(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) over seeds at each N: the band drawn around the mean."""
        ns = sorted(self.errors)
        return np.array([min(self.errors[n]) for n in ns]), np.array(
            [max(self.errors[n]) for n in ns]
        )

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every run as (N, error, seed), the input of :func:`pdefm.report.fits.fit_power_law`."""
        n = np.array([r.n_train for r in self.rows], dtype=float)
        e = np.array([r.test_rel_l2 for r in self.rows], dtype=float)
        s = np.array([r.seed for r in self.rows])
        return n, e, s

    def pretrained(self) -> np.ndarray | None:
        """Each run's pre-training seed (the pre-trained model it started from), in
        ``points`` order; None when a run has none (scratch, or a table without the column)."""
        seeds = [r.pretrain_seed for r in self.rows]
        return None if any(p is None for p in seeds) else np.array(seeds)


def validate_rows(rows: Sequence[ResultRow | Mapping]) -> list[ResultRow]:
    """``rows`` as :class:`ResultRow`: rows pass as they are (they were checked when made),
    mappings of the same columns are converted, so a row that lacks a column or has an
    unknown kind / method is a one-line :class:`PdefmError` (a row without run_id is named by
    its place, "#3")."""
    return [
        r if isinstance(r, ResultRow) else ResultRow.from_json(r, f"#{i}")
        for i, r in enumerate(rows)
    ]


def finite(x: object) -> bool:
    """True for a real, finite number (None and NaN are not)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def usable_rows(rows: list[ResultRow]) -> list[ResultRow]:
    """Completed downstream runs with a finite test error, one per (curve, N, seed); the
    savings check's reruns at twice the budget are left out (see ``savings_check``).

    When a study ran several learning rates as separate runs, the one with the lowest
    validation error is kept: the protocol selects the learning rate on validation, never on
    test.
    """
    best: dict[tuple, ResultRow] = {}
    for row in rows:
        if row.kind != "downstream" or row.status != "completed":
            continue
        if row.check_of is not None:  # a savings-check rerun: compared with, never mixed in
            continue
        if not finite(row.test_rel_l2):
            continue
        k = (curve_key(row), int(row.n_train), row.seed)
        old = best.get(k)
        if old is None or _val(row) < _val(old):
            best[k] = row
    return list(best.values())


def _val(row: ResultRow) -> float:
    """The validation error a run is selected on; inf when it has none."""
    return row.val_rel_l2 if finite(row.val_rel_l2) else math.inf


def curve_key(row: ResultRow) -> CurveKey:
    """The curve a row belongs to."""
    return CurveKey(row.task, row.method, row.init, row.mode, row.model)


def build_curves(rows: list[ResultRow]) -> dict[CurveKey, Curve]:
    """Group usable rows into curves, sorted by (task, method, init, mode, model)."""
    curves: dict[CurveKey, Curve] = {}
    for row in usable_rows(rows):
        key = curve_key(row)
        curve = curves.setdefault(key, Curve(key, int(row.params)))
        curve.errors.setdefault(int(row.n_train), []).append(float(row.test_rel_l2))
        curve.rows.append(row)
    order = sorted(curves, key=lambda k: (k.task, METHODS.index(k.method), k.init, k.mode, k.model))
    return {k: curves[k] for k in order}


def by_task(curves: dict[CurveKey, Curve]) -> dict[str, list[Curve]]:
    """Curves grouped by task, ordered by family, then by parameter range (so a shift ladder
    reads [1, 5], [2.5, 7.5], [5, 10], [10, 20], not in the text order of the names), then
    by name."""
    out: dict[str, list[Curve]] = defaultdict(list)
    for key, curve in curves.items():
        out[key.task].append(curve)
    return dict(sorted(out.items(), key=lambda item: _task_order(item[0], item[1])))


def _task_order(task: str, curves: list[Curve]) -> tuple:
    row = next((r for c in curves for r in c.rows), None)
    low, high = (row.task_low, row.task_high) if row is not None else (None, None)
    numeric = finite(low) and finite(high)
    family = row.family if row is not None else None
    return (str(family or ""), not numeric, low if numeric else 0.0,
            high if numeric else 0.0, task)  # fmt: skip


def scratch_of(curves: list[Curve], model: str) -> Curve | None:
    """The scratch curve of ``model`` among one task's curves."""
    return next((c for c in curves if c.key.method == "scratch" and c.key.model == model), None)


def summary_rows(curves: dict[CurveKey, Curve], names=None) -> list[list[str]]:
    """Rows of the summary table: task, method, model, N, seeds, mean +- sd of test rel L2
    (sd "n/a" for one seed). ``names(curve) -> [task, method]`` words the first two cells
    (default: the curve key's short names)."""
    out = []
    for key, curve in curves.items():
        first = names(curve) if names else [key.task, key.label(with_model=False)]
        for n in sorted(curve.errors):
            e = np.array(curve.errors[n])
            sd = f"{float(e.std(ddof=1)):.2g}" if e.size > 1 else "n/a"  # one seed: no spread
            cells = [*first, key.model, str(n), str(e.size)]
            out.append(cells + [f"{e.mean():.4g} ± {sd}"])
    return out


def failed_rows(rows: list[ResultRow]) -> list[list[str]]:
    """Rows of the 'failed or unfinished runs' table (any kind, status other than completed):
    run_id, kind, status, task, method, model, N, seed."""
    return [
        [str(v) for v in (r.run_id, r.kind, r.status, r.task, r.method, r.model, r.n_train, r.seed)]
        for r in rows
        if r.status != "completed"
    ]


def write_csv(rows: list[ResultRow], path: Path) -> Path:
    """results.csv: every row (all kinds and statuses), columns ``COLUMNS``; None is written
    empty, NaN as ``nan``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        write_rows(rows, fh)
    return path
