"""The report's setup section: everything a reader needs to judge the numbers without the
study folder (how the runs were made, on which data, with which budget and learning rates),
and the list of runs whose protocol did not settle (budget-limited, or a learning rate at the
edge of the rates tried).

Input: the results rows (:class:`pdefm.study.row.ResultRow`) and a ``setup`` dict
(``study_setup`` in ``pdefm.study.results``) with the study file's text, the plan's datasets and
the provenance entries. No torch.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from pdefm import catalogue
from pdefm.report.names import method_label, row_task_title, task_title
from pdefm.report.table import curve_key, usable_rows
from pdefm.study.row import ResultRow

EDGE_WORDS = {"high": "largest tried", "low": "smallest tried", "both": "only one tried"}
FLAGS_NOTE = (
    "A run is budget-limited when its validation error still fell by 5% or more over the "
    "second half of its epochs (if the error falls like a power of the steps, that is about "
    "what doubling the budget would gain; measured, doubling gained up to 1.5 times as much); "
    "its point is an upper bound on what the protocol can reach. A learning rate at the edge "
    "is the largest or smallest rate tried after the grid was extended as far as the study "
    "allows: a rate outside the grid may be better."
)


def _span(values: list) -> str:
    """'40' or '40-120' (min-max of whole numbers), '-' when there are none."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-"
    lo, hi = values[0], values[-1]
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _lr_counts(rows: list[ResultRow]) -> str:
    """Chosen rates with how often: '0.003 (4), 0.01 (2)'."""
    counts = Counter(r.lr for r in rows if r.lr is not None)
    return ", ".join(f"{lr:g} ({k})" for lr, k in sorted(counts.items())) or "-"


def _tried(rows: list[ResultRow]) -> str:
    rates = {float(x) for r in rows for x in (r.lrs_tried or "").split()}
    return ", ".join(f"{lr:g}" for lr in sorted(rates)) or "-"


def _converged_text(rows: list[ResultRow]) -> str:
    known = [r.converged for r in rows if r.converged is not None]
    if not known:
        return "unknown"
    return f"{sum(bool(c) for c in known)} of {len(rows)}"


def _pretrain_rows(rows: list[ResultRow]) -> list[list[str]]:
    out = []
    for r in rows:
        if r.kind != "pretrain" or r.status != "completed":
            continue
        out.append(
            [
                r.task,
                r.model,
                f"{r.params:,}" if r.params else "-",
                _span([r.epochs]),
                _span([r.steps]),
                _span([r.batch_size]),
                _tried([r]),
                _lr_counts([r]),
                _converged_text([r]),
            ]
        )
    return out


def budget_rows(rows: list[ResultRow]) -> list[list[str]]:
    """One row per (method, model, N) of the downstream runs used: the budget they got, the
    rates tried and chosen, seeds and how many converged."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for r in usable_rows(rows):
        if r.method == "zero-shot":
            continue
        groups[(r.method, r.model, int(r.n_train))].append(r)
    out = []
    for (method, model, n), group in sorted(groups.items()):
        edge = sum(bool(r.lr_at_edge) for r in group)
        out.append(
            [
                method,
                model,
                str(n),
                _span([r.batch_size for r in group]),
                _span([r.epochs for r in group]),
                _span([r.steps for r in group]),
                ", ".join(sorted({r.budget_rule or "-" for r in group})),
                _tried(group),
                _lr_counts(group),
                ", ".join(str(s) for s in sorted({r.seed for r in group})),
                _converged_text(group),
                f"{edge} of {len(group)}",
            ]
        )
    return out


def _dataset_rows(datasets: dict[str, dict]) -> list[list[str]]:
    out = []
    for name, d in datasets.items():
        if d.get("family") == "mixture":
            members = ", ".join(f"{m} ({w:g})" for m, w in d.get("members", {}).items())
            kind, grid = f"mixture of {members}", "-"
        else:
            kind = task_title(
                d["family"], catalogue.parameter_name(d["family"]) or "parameter", d.get("low"),
                d.get("high"),
            )  # fmt: skip
            grid = f"{d.get('resolution')} x {d.get('resolution')}"
        counts = " / ".join(str(d.get(k, "-")) for k in ("n_train", "n_val", "n_test"))
        out.append([name, kind, grid, counts, str(d.get("seed", "-"))])
    return out


def _provenance_text(invocations: list[dict]) -> list[str]:
    """One sentence per `study run` that produced the runs."""
    if not invocations:
        return ["How the runs were produced was not recorded (a study folder older than its "
                "provenance file)."]  # fmt: skip
    out = []
    for e in invocations:
        commit = e.get("commit") or "not a git checkout"
        out.append(
            f"`{e.get('command', '?')}` started {e.get('started', '?')}: pdefm "
            f"{e.get('pdefm_version', '?')} (commit {commit}), torch {e.get('torch_version')}, "
            f"Python {e.get('python', '?')}, {e.get('machine', '?')}."
        )
    return out


def run_time_text(run_time: dict) -> str:
    """How long the runs took, e.g. "Run time: 91.3 min summed over 40 runs, plus 1.5 min
    over 1 refinement (each run's own wall clock: runs on parallel workers overlap; data
    generation not counted)." """
    runs, refined = run_time["runs"], run_time.get("refinements") or {"count": 0}
    text = f"Run time: {_minutes(runs['seconds'])} summed over {_count(runs['count'], 'run')}"
    if refined["count"]:
        text += (
            f", plus {_minutes(refined['seconds'])} over {_count(refined['count'], 'refinement')}"
        )
    return text + (
        " (each run's own wall clock: runs on parallel workers overlap; data generation not "
        "counted)."
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def setup_blocks(rows: list[ResultRow], setup: dict | None) -> list:
    """The setup section as report blocks (see ``pdefm.report.render``)."""
    setup = setup or {}
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    b: list = [("h2", "Setup")]
    b.append(("p", f"Report written {now}" + (f" by `{setup['command']}`." if setup.get(
        "command") else ".")))  # fmt: skip
    b.append(("p", "Runs produced by:"))
    b += [("p", line) for line in _provenance_text(setup.get("invocations", []))]
    if setup.get("run_time"):
        b.append(("p", run_time_text(setup["run_time"])))
    if setup.get("datasets"):
        header = ["dataset", "family and parameter range", "grid", "train / val / test", "seed"]
        b.append(("table", header, _dataset_rows(setup["datasets"])))
    pre = _pretrain_rows(rows)
    if pre:
        header = ["pre-training data", "model", "parameters", "epochs", "steps"]
        header += ["batch", "lrs tried", "lr chosen", "converged"]
        b += [("p", "Pre-training:"), ("table", header, pre)]
    budgets = budget_rows(rows)
    if budgets:
        b.append(
            (
                "p",
                "Downstream protocol per size N (every seed; epochs and steps are what the "
                "chosen learning rate ran; full batch at N <= 64; the learning rate is chosen "
                "on validation, never on test):",
            )
        )
        header = ["method", "model", "N", "batch", "epochs", "steps", "budget rule"]
        header += ["lrs tried", "lr chosen (runs)", "seeds", "converged", "lr at edge"]
        b.append(("table", header, budgets))
    if setup.get("study_yaml"):
        b += [("p", "The study file as run:"), ("code", setup["study_yaml"])]
    return b


def flagged_rows(rows: list[ResultRow]) -> list[ResultRow]:
    """Completed downstream runs whose budget or learning rate did not settle."""
    return [
        r
        for r in usable_rows(rows)
        if r.method != "zero-shot" and (r.converged is False or r.lr_at_edge)
    ]


def flags_blocks(rows: list[ResultRow], refine_hint: str) -> list:
    """The 'runs to check' section: a table of flagged runs, or a sentence saying none."""
    flagged = flagged_rows(rows)
    b: list = [("h2", "Runs to check"), ("p", FLAGS_NOTE)]
    kept = _start_kept_note(rows)
    if not flagged:
        b.append(("p", "None: every downstream run converged and chose a rate inside its grid."))
        return b + kept
    header = ["task", "method", "model", "N", "seed", "epochs", "steps", "lr", "lrs tried"]
    header += ["budget-limited", "lr at edge", "test rel L2"]
    body = [
        [
            row_task_title(r),
            method_label(curve_key(r), r, with_model=False),
            r.model,
            str(r.n_train),
            str(r.seed),
            _span([r.epochs]),
            _span([r.steps]),
            f"{r.lr:g}" if r.lr is not None else "-",
            r.lrs_tried or "-",
            "yes" if r.converged is False else "no",
            EDGE_WORDS.get(r.lr_at_edge or "", "no"),
            f"{r.test_rel_l2:.4g}",
        ]
        for r in flagged
    ]
    b += [("table", header, body), ("p", refine_hint)]
    return b + kept


def _start_kept_note(rows: list[ResultRow]) -> list:
    """A sentence on the fine-tuning runs that kept their starting weights (protocol 2): no
    rate tried beat them on validation, and rates below the smallest tried were not tried
    (each would only stay closer to the start)."""
    kept = [
        r for r in rows if r.start_kept and r.kind == "downstream" and r.check_of is None
    ]  # fmt: skip
    if not kept:
        return []
    where = sorted({(r.task, r.n_train) for r in kept})
    smallest = min(float(x) for r in kept for x in (r.lrs_tried or "nan").split())
    text = (
        f"{len(kept)} fine-tuning run(s) kept their starting weights (no learning rate beat "
        "them on validation; their error is the pre-trained model's): "
        + ", ".join(f"{task} N = {n}" for task, n in where)
        + f". The smallest rate tried there was {smallest:g}; smaller rates were not tried."
    )
    return [("p", text)]
