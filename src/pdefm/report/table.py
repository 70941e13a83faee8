"""The results table: validation, learning-rate selection, curves (mean / spread over seeds), CSV.

A *curve* is the set of completed downstream runs that share (task, method, init, mode, model);
its points are the downstream sizes N, and at each N it holds one test error per seed.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pdefm.errors import PdefmError

#: The keys every row carries, in the order results.csv writes them (the same list as
#: ``pdefm.study.results.COLUMNS``). ``init_family``: family of the init stage's pre-training
#: data ("mixture", "poisson", ...), "none" for scratch.
COLUMNS = (
    "run_id", "kind", "status", "task", "family", "parameter", "task_low", "task_high",
    "method", "init", "init_family", "mode", "model", "params", "seed", "n_train", "lr",
    "lrs_tried", "lr_at_edge", "epochs", "steps", "batch_size", "budget_rule", "converged",
    "budget_factor", "val_rel_l2", "test_rel_l2", "test_mse", "test_residual",
    "pretrain_low", "pretrain_high", "wall_time_s",
)  # fmt: skip

METHODS = ("scratch", "finetune", "zero-shot")
#: Columns that say which protocol a run got (rates tried, edge, budget, convergence,
#: refinement factor). Rows may lack them (tables built before they existed, or by hand):
#: the report then says the protocol is unknown.
PROTOCOL_COLUMNS = (
    "lrs_tried", "lr_at_edge", "epochs", "steps", "batch_size", "budget_rule", "converged",
    "budget_factor",
)  # fmt: skip


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
    rows: list[dict] = field(default_factory=list)

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
        n = np.array([r["n_train"] for r in self.rows], dtype=float)
        e = np.array([r["test_rel_l2"] for r in self.rows], dtype=float)
        s = np.array([r["seed"] for r in self.rows])
        return n, e, s


def validate_rows(rows: list[dict]) -> None:
    """One-line :class:`PdefmError` for a row that lacks a key or has an unknown kind/method."""
    for i, row in enumerate(rows):
        missing = [k for k in COLUMNS if k not in row and k not in PROTOCOL_COLUMNS]
        if missing:
            rid = row.get("run_id", f"#{i}")
            raise PdefmError(
                f"results row {rid} lacks {', '.join(missing)}; "
                "rebuild the table from the run records (pdefm study collects them)"
            )
        if row["kind"] == "downstream" and row["method"] not in METHODS:
            raise PdefmError(
                f"results row {row['run_id']} has method {row['method']!r}; "
                f"expected one of {', '.join(METHODS)}"
            )


def _finite(x: object) -> bool:
    """True for a real, finite number (None and NaN are not)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def usable_rows(rows: list[dict]) -> list[dict]:
    """Completed downstream runs with a finite test error, one per (curve, N, seed).

    When a study ran several learning rates as separate runs, the one with the lowest
    validation error is kept: the protocol selects the learning rate on validation, never on
    test.
    """
    best: dict[tuple, dict] = {}
    for row in rows:
        if row["kind"] != "downstream" or row["status"] != "completed":
            continue
        if not _finite(row["test_rel_l2"]):
            continue
        k = (curve_key(row), int(row["n_train"]), row["seed"])
        val = row["val_rel_l2"] if _finite(row["val_rel_l2"]) else math.inf
        old = best.get(k)
        if old is None or val < (old["val_rel_l2"] if _finite(old["val_rel_l2"]) else math.inf):
            best[k] = row
    return list(best.values())


def curve_key(row: dict) -> CurveKey:
    """The curve a row belongs to."""
    return CurveKey(row["task"], row["method"], str(row["init"]), row["mode"], row["model"])


def build_curves(rows: list[dict]) -> dict[CurveKey, Curve]:
    """Group usable rows into curves, sorted by (task, method, init, mode, model)."""
    curves: dict[CurveKey, Curve] = {}
    for row in usable_rows(rows):
        key = curve_key(row)
        curve = curves.setdefault(key, Curve(key, int(row["params"])))
        curve.errors.setdefault(int(row["n_train"]), []).append(float(row["test_rel_l2"]))
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
    row = next((r for c in curves for r in c.rows), {})
    low, high = row.get("task_low"), row.get("task_high")
    numeric = _finite(low) and _finite(high)
    return (str(row.get("family") or ""), not numeric, low if numeric else 0.0,
            high if numeric else 0.0, task)  # fmt: skip


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


def failed_rows(rows: list[dict]) -> list[list[str]]:
    """Rows of the 'failed or unfinished runs' table (any kind, status other than completed)."""
    keys = ("run_id", "kind", "status", "task", "method", "model", "n_train", "seed")
    return [[str(r.get(k, "")) for k in keys] for r in rows if r["status"] != "completed"]


def write_csv(rows: list[dict], path: Path) -> Path:
    """results.csv: every row (all kinds and statuses), the contract columns first, then any
    extra keys in first-seen order; None is written empty, NaN as ``nan``."""
    extra = []
    for row in rows:
        extra += [k for k in row if k not in COLUMNS and k not in extra]
    header = list(COLUMNS) + extra
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in header})
    return path
