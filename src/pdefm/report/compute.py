"""The report's Compute section: what the runs cost, and whether pre-training pays for itself in
compute as well as in data.

Each row carries ``flops`` (analytic floating-point operations of the whole run: every learning
rate tried, validation and final evaluation), ``core_s`` (CPU core-seconds over every process
segment), ``wall_time_s`` and ``device``; rows written before these existed have None there and
the section says "not recorded" rather than inventing a number. Savings-check reruns
(``check_of``) are left out, as in every other section.

With P the mean operations of the stage's pre-training runs and F(N), S(N) the mean operations
of a fine-tuning / scratch run with N examples:

- equal compute: at each fine-tuning N, the scratch error at P + F(N) operations, log error
  linear in log operations between the scratch sizes whose operations bracket it;
- break-even: at a target error T, D(T) = S(N_s(T)) - F(N_f(T)) (operations interpolated in
  log-log over N) and k* = P / D(T) downstream tasks amortise the pre-training; "never" when
  D <= 0. In core-seconds, P also counts generating the pre-training data;
- gains: efficiency = N_s(T) / N_f(T) (the savings factor), accuracy = e_s(N) / e_f(N).

Reads rows and dataset summaries only: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pdefm.report.analysis import savings_by_curve
from pdefm.report.names import method_label, row_task_title
from pdefm.report.savings import sig
from pdefm.report.savings_check import check_savings
from pdefm.report.table import Curve, CurveKey, finite
from pdefm.study.row import ResultRow

NOT_RECORDED = "not recorded"
BEYOND = "beyond the scratch runs"
BELOW = "below the scratch runs"
NO_STAGE = "no pre-training run"
AMBIGUOUS = "pre-training runs on two datasets match"
COMPUTE_NOTE = (
    "Operations are analytic floating-point operations of a whole run (every learning rate "
    "tried, validation and the final evaluation); core-seconds are CPU time summed over every "
    "process of a run; 'not recorded' marks runs made before these were measured. Savings-check "
    "reruns are not counted. Generating the downstream data is left out (both methods use it)."
)
EQUAL_NOTE = (
    "Equal compute: fine-tuning's operations count its pre-training, P + F(N) (P: mean over "
    "the stage's pre-training runs; F(N): mean of the fine-tuning runs at N). The scratch error "
    "at that many operations is interpolated (log error linear in log operations) between the "
    "scratch sizes whose mean operations bracket it; scratch at equal operations also trained "
    f"on more examples (its N column), so this compares total compute, not data. '{BEYOND}': "
    "P + F(N) exceeds every scratch run, so scratch was never given that much."
)
BREAK_EVEN_NOTE = (
    "Break-even: at each target error of the savings table, D = operations scratch needs to "
    "reach it minus operations fine-tuning needs (mean operations per run interpolated in "
    "log-log at N_scratch and N_fine-tune). k* = P / D downstream tasks of this kind amortise "
    "the pre-training; 'never' when fine-tuning costs at least as much per task. Where an N is "
    "a bound (the savings table's '>' / '<'), so are D and k*. In core-seconds P also counts "
    "generating the pre-training data."
)
GAINS_NOTE = (
    "Efficiency gain: examples scratch needs / examples fine-tuning needs for the error scratch "
    "reaches at N (the savings factor, printed as the savings table prints it). Accuracy gain: "
    "mean scratch test error / mean fine-tuned test error at N, where both ran."
)


# -- numbers as text -----------------------------------------------------------------------
def ops_text(x: float | None) -> str:
    """Operations in scientific notation, 3 significant digits: 1.23e12."""
    if x is None or not math.isfinite(x):
        return NOT_RECORDED
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def seconds_text(x: float | None) -> str:
    """Seconds with 3 significant digits, plain: 0.0123, 4.56, 789, 12300."""
    if x is None or not math.isfinite(x):
        return NOT_RECORDED
    if abs(x) < 1000:
        return sig(x)
    return f"{round(x, 2 - math.floor(math.log10(abs(x)))):.0f}"


def _bounded(text: str, relation: str) -> str:
    """'> x' / '< x' for a bound, 'x' for a value."""
    return text if relation == "=" else f"{relation} {text}"


# -- what runs cost ------------------------------------------------------------------------
def recorded_mean(rows: Sequence[ResultRow], column: str) -> float | None:
    """Mean of ``column`` over the rows that recorded it: (1/k) sum_i x_i over the k rows with
    a finite value; None when none did."""
    values = [getattr(r, column) for r in rows]
    values = [float(v) for v in values if finite(v)]
    return float(np.mean(values)) if values else None


def pretrain_rows(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """Completed pre-training runs (savings-check reruns left out)."""
    return [
        r for r in rows if r.kind == "pretrain" and r.status == "completed" and r.check_of is None
    ]


def stage_runs(pre: Sequence[ResultRow], ft: Curve) -> list[ResultRow]:
    """The pre-training runs behind a fine-tune curve: those of its init stage (the ``stage``
    column). Tables written before that column: a run matches when it pre-trained the
    curve's model on data of the curve's init family and range (a mixture has no range), and
    runs on two different datasets may match (``stage_cost`` then gives no P rather than one
    averaged over two stages)."""
    if any(p.stage is not None for p in pre):
        return [p for p in pre if p.stage == ft.key.init]
    first = ft.rows[0]
    runs = [
        p
        for p in pre
        if p.model == ft.key.model
        and p.family == first.init_family
        and (p.task_low, p.task_high) == (first.pretrain_low, first.pretrain_high)
    ]
    return runs


@dataclass(frozen=True)
class StageCost:
    """What a fine-tune curve's pre-training cost: P in operations and in core-seconds (mean over
    the stage's runs; None: not recorded or no run found), the generation of its data
    ({"wall_s", "cpu_s"} or None) and why P is missing."""

    ops: float | None
    core_s: float | None
    generation: dict | None
    why: str

    def core_s_with_data(self) -> float | None:
        """P_c = mean core-seconds of the pre-training runs + core-seconds of generating its
        data (the latter only when the card recorded it)."""
        if self.core_s is None:
            return None
        return self.core_s + (self.generation["cpu_s"] if self.generation else 0.0)


def stage_cost(pre: Sequence[ResultRow], ft: Curve, datasets: dict) -> StageCost:
    """P of ``ft``'s stage, from its pre-training runs and the summary of their dataset."""
    runs = stage_runs(pre, ft)
    if len({p.task for p in runs}) != 1:
        return StageCost(None, None, None, AMBIGUOUS if runs else NO_STAGE)
    gen = (datasets.get(runs[0].task) or {}).get("generation")
    return StageCost(recorded_mean(runs, "flops"), recorded_mean(runs, "core_s"), gen, NOT_RECORDED)


def per_size(curve: Curve, column: str) -> dict[int, float | None]:
    """Mean ``column`` per run at each N of ``curve`` (``recorded_mean``)."""
    return {
        n: recorded_mean([r for r in curve.rows if r.n_train == n], column)
        for n in sorted(curve.errors)
    }


def loglog(xs: Sequence[float], ys: Sequence[float], at: float) -> float | None:
    """y at x = ``at`` between the two points that bracket it, log y linear in log x
    (``np.interp`` in log-log). None when ``at`` lies outside the points (no extrapolation)."""
    order = np.argsort(xs)
    x, y = np.asarray(xs, float)[order], np.asarray(ys, float)[order]
    if x.size == 0 or not x[0] <= at <= x[-1]:
        return None
    return float(np.exp(np.interp(math.log(at), np.log(x), np.log(y))))


def cost_at(curve: Curve, column: str, n: float) -> float | None:
    """Mean ``column`` of a run of ``curve`` with ``n`` examples, interpolated in log-log over
    the sizes that recorded it (None outside them)."""
    known = {s: v for s, v in per_size(curve, column).items() if v is not None and v > 0}
    return loglog(list(known), list(known.values()), n)


# -- the tables ----------------------------------------------------------------------------
def _names(curve: Curve) -> list[str]:
    """Task, and method with the model, in words: one cell for the two keeps these wide
    tables narrower."""
    row = curve.rows[0]
    return [row_task_title(row), method_label(curve.key, row)]


def pretrain_cost_rows(pre: Sequence[ResultRow], datasets: dict) -> list[list[str]]:
    """Per pre-training run: data, model, seed, operations, core-seconds, wall seconds, device,
    and the generation cost (core-seconds, wall seconds) of its data."""
    out = []
    for r in sorted(pre, key=lambda r: (str(r.task), str(r.model), r.seed)):
        gen = (datasets.get(r.task) or {}).get("generation") or {}
        cells = [str(r.task), str(r.model), str(r.seed), ops_text(r.flops), seconds_text(r.core_s)]
        cells += [seconds_text(r.wall_time_s), r.device or NOT_RECORDED]
        out.append(cells + [seconds_text(gen.get("cpu_s")), seconds_text(gen.get("wall_s"))])
    return out


def downstream_cost_rows(curves: dict[CurveKey, Curve]) -> list[list[str]]:
    """Per curve and N: runs, mean operations and mean core-seconds per run (with how many
    runs recorded them when not all did)."""
    out = []
    for curve in curves.values():
        for n in sorted(curve.errors):
            runs = [r for r in curve.rows if r.n_train == n]
            cells = [*_names(curve), str(n), str(len(runs))]
            out.append(
                cells
                + [_mean_cell(runs, "flops", ops_text), _mean_cell(runs, "core_s", seconds_text)]
            )
    return out


def _mean_cell(runs: Sequence[ResultRow], column: str, fmt) -> str:
    """The recorded mean, '(k of n runs)' added when only some runs recorded it."""
    k = sum(finite(getattr(r, column)) for r in runs)
    text = fmt(recorded_mean(runs, column))
    return text if k in (0, len(runs)) else f"{text} ({k} of {len(runs)} runs)"


def scratch_at_ops(sc: Curve, budget: float) -> tuple[float | None, float | None, str]:
    """(scratch error, scratch N, why) at ``budget`` operations: log error and log N linear in
    log operations between the scratch sizes whose mean operations bracket the budget; the
    numbers are None outside them (``why`` then says on which side) or when not recorded."""
    ops = {n: v for n, v in per_size(sc, "flops").items() if v is not None and v > 0}
    if not ops:
        return None, None, NOT_RECORDED
    if budget > max(ops.values()):
        return None, None, BEYOND
    if budget < min(ops.values()):
        return None, None, BELOW
    x = list(ops.values())
    err = loglog(x, [float(np.mean(sc.errors[n])) for n in ops], budget)
    return err, loglog(x, [float(n) for n in ops], budget), ""


def equal_compute_rows(pairs, stages: dict) -> list[list[str]]:
    """Per fine-tune curve and N: fine-tune error, P + F(N), the scratch error and N at that
    many operations, and their ratio e_scratch / e_finetune."""
    out = []
    for ft, sc, _ in pairs:
        stage = stages[ft.key]
        for n, f in per_size(ft, "flops").items():
            err_ft = float(np.mean(ft.errors[n]))
            cells = [*_names(ft), str(n), sig(err_ft)]
            if stage.ops is None or f is None:
                out.append(cells + [stage.why if stage.ops is None else NOT_RECORDED] + ["-"] * 3)
                continue
            err_sc, n_sc, why = scratch_at_ops(sc, stage.ops + f)
            cells.append(ops_text(stage.ops + f))
            if err_sc is None:
                out.append(cells + [why, "-", "-"])
                continue
            out.append(cells + [sig(err_sc), f"{n_sc:.4g}", f"{err_sc / err_ft:.3g}"])
    return out


def break_even(p: float, d: float, relation: str) -> str:
    """k* = P / D, the number of downstream tasks whose per-task saving D amortises P.
    ``relation`` says what D is: "=" a value, ">" a lower bound (so k* an upper bound), "<" an
    upper bound. "never" when D <= 0 for sure; "unknown" when only D >= (something <= 0)."""
    if d <= 0:
        return "never" if relation in ("=", "<") else "unknown"
    flip = {"=": "=", ">": "<", "<": ">"}[relation]
    return _bounded(sig(p / d), flip)


def _difference(ft: Curve, sc: Curve, r: dict, column: str) -> float | None:
    """D = cost of scratch at N_scratch(T) - cost of fine-tuning at N_finetune(T)."""
    s, f = cost_at(sc, column, r["n_scratch"]), cost_at(ft, column, r["n_finetune"])
    return None if s is None or f is None else s - f


def _k_cell(p: float | None, d: float | None, relation: str, why: str) -> str:
    """The break-even cell: k*, or why there is none."""
    if p is None:
        return why
    return NOT_RECORDED if d is None else break_even(p, d, relation)


def _core_k_cell(stage: StageCost, d: float | None, relation: str) -> str:
    """k* in core-seconds, P_c with the data generation; said so when the card lacks it (P_c
    is then too small, so a finite k* is too small as well)."""
    text = _k_cell(stage.core_s_with_data(), d, relation, stage.why)
    if (
        stage.core_s is not None
        and stage.generation is None
        and text not in (NOT_RECORDED, "never", "unknown")
    ):
        text += " (data generation not recorded)"
    return text


def break_even_rows(pairs, stages: dict) -> list[list[str]]:
    """Per fine-tune curve and savings-table target: D in operations and k* in operations and
    in core-seconds (P_c with the pre-training data's generation)."""
    out = []
    for ft, sc, res in pairs:
        stage = stages[ft.key]
        for r in res:
            cells = [*_names(ft), f"{r['target']:.4g}"]
            rel = r["relation"]
            if rel not in ("=", ">", "<"):  # no crossing to cost: "neither", "both at smallest"
                out.append(cells + [r["text"], "-", "-"])
                continue
            d_ops = _difference(ft, sc, r, "flops")
            d_text = NOT_RECORDED if d_ops is None else _bounded(ops_text(d_ops), rel)
            k_ops = _k_cell(stage.ops, d_ops, rel, stage.why)
            out.append(
                cells + [d_text, k_ops, _core_k_cell(stage, _difference(ft, sc, r, "core_s"), rel)]
            )
    return out


def accuracy_gain(ft: Curve, sc: Curve, n: int) -> float | None:
    """e_scratch(N) / e_finetune(N), the mean test errors at N; None unless both ran N."""
    if n not in ft.errors or n not in sc.errors:
        return None
    return float(np.mean(sc.errors[n]) / np.mean(ft.errors[n]))


def gains_rows(pairs, doubled: dict) -> list[list[str]]:
    """Per fine-tune curve and N: efficiency gain (the savings factor at the error scratch
    reaches at N, as the savings table prints it) and accuracy gain."""
    out = []
    for ft, sc, _ in pairs:
        # the savings table's factors (data_savings at its targets) with their check text
        efficiency = {c.anchor.n: c.text() for c in check_savings(ft, sc, doubled)}
        for n in sorted(set(efficiency) | (set(ft.errors) & set(sc.errors))):
            gain = accuracy_gain(ft, sc, n)
            acc = "-" if gain is None else sig(gain)
            out.append([*_names(ft), str(n), efficiency.get(n, "-"), acc])
    return out


def compute_blocks(
    rows: Sequence[ResultRow], curves: dict[CurveKey, Curve], datasets: dict | None, doubled: dict
) -> list:
    """The Compute section as report blocks (see ``pdefm.report.render``)."""
    datasets = datasets or {}
    pre = pretrain_rows(rows)
    pairs = savings_by_curve(curves)
    stages = {ft.key: stage_cost(pre, ft, datasets) for ft, _, _ in pairs}
    b: list = [("h2", "Compute"), ("p", COMPUTE_NOTE), ("p", "Pre-training cost per run:")]
    header = ["pre-training data", "model", "seed", "operations", "core-seconds", "wall seconds"]
    header += ["device", "data generation core-seconds", "data generation wall seconds"]
    b.append(("table", header, pretrain_cost_rows(pre, datasets)) if pre else ("p", "None."))
    b.append(("p", "Downstream cost per method and N (mean per run):"))
    header = ["task", "method", "N", "runs", "operations", "core-seconds"]
    b.append(("table", header, downstream_cost_rows(curves)))
    b.append(("p", EQUAL_NOTE))
    header = ["task", "fine-tune", "N", "fine-tune error", "operations P + F(N)"]
    header += ["scratch error at equal operations", "scratch N", "scratch / fine-tune"]
    b.append(("table", header, equal_compute_rows(pairs, stages)))
    b.append(("p", BREAK_EVEN_NOTE))
    header = ["task", "fine-tune", "target", "operations saved per task (D)"]
    header += ["break-even tasks k* (operations)", "break-even tasks k* (core-seconds)"]
    b.append(("table", header, break_even_rows(pairs, stages)))
    b += [("p", "Gains. " + GAINS_NOTE)]
    header = ["task", "fine-tune", "N", "efficiency gain", "accuracy gain"]
    b.append(("table", header, gains_rows(pairs, doubled)))
    return b
