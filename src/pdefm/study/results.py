"""The results store: a study's run records joined with its plan into one table (no torch).

Rows are :class:`pdefm.study.row.ResultRow` (the report's input, columns ``COLUMNS``): one per
training / evaluation run, with the test metrics of the learning rate selected on validation
(the loop selects it per run, so per (task, size, init, mode, preset, seed)). They are written
to and read from CSV here, the boundary where rows become text and back.

``init_family`` is the PDE family of the data the run's init stage was pre-trained on
(``"mixture"`` for a mixed pre-training stage, ``"none"`` for scratch and for pre-training
runs). Plans written before the label existed lack it: it is then read from the stage's own
``family`` label.

``pretrain_seed`` is the seed of the pre-training run behind a run: its own seed for a
pre-training run, the ``pretrain_seed`` label of a fine-tune or zero-shot run (the seed of
the stage's run it started from), None for scratch and for fine-tune / zero-shot runs of
plans written before the label existed.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections import Counter
from pathlib import Path

from pdefm import catalogue
from pdefm.checks import check_output_file, read_json
from pdefm.data.card import DatasetCard
from pdefm.errors import PdefmError
from pdefm.study.doubling import FACTOR as DOUBLING
from pdefm.study.doubling import load_doublings
from pdefm.study.refine import latest, load_refinements
from pdefm.study.row import COLUMNS as COLUMNS  # re-exported: the table's columns
from pdefm.study.row import ResultRow, read_rows, write_rows
from pdefm.study.store import bad_field, load_plan
from pdefm.train.record import RunRecord, read_record


def load_results(root: str | Path) -> list[ResultRow]:
    """Every training / evaluation run of the study in ``root`` as a row (missing runs
    appear with status "todo")."""
    root = Path(root)
    plan = load_plan(root)
    stages: dict[str, dict] = {}  # a stage's first run: every seed's has its data and range
    for r in plan["runs"]:
        if r["kind"] == "pretrain":
            stages.setdefault(r["labels"]["stage"], r)
    params = {name: _parameter_name(spec["family"]) for name, spec in plan["datasets"].items()}
    shared = _shared_ranges(plan["datasets"])
    refined = latest(root)
    rows = []
    for run in plan["runs"]:
        if run["kind"] == "data":
            continue
        factor = 1
        if run["id"] in refined:  # its last completed refinement stands for it
            entry = refined[run["id"]]
            run, factor = {**run, "id": entry["id"]}, entry["factor"]
        record = read_record(root / "runs" / run["id"] / "record.json")
        row = _row(run, record, stages, params, factor)
        rows.append(dataclasses.replace(row, shared_range=row.task in shared))
    return rows + _doubled_rows(root, rows, stages, params, shared)


def _doubled_rows(root: Path, rows: list[ResultRow], stages, params, shared) -> list[ResultRow]:
    """The savings check's reruns at twice the budget, each labelled with the run it reruns
    (``check_of``) and the budget multiple it ran (twice that run's)."""
    factors = {r.run_id: r.budget_factor or 1 for r in rows}
    out = []
    for entry in load_doublings(root).values():
        run = {"id": entry["id"], "kind": "downstream",
               "labels": {**entry["labels"], "check_of": entry["of"]}}  # fmt: skip
        record = read_record(root / "runs" / entry["id"] / "record.json")
        row = _row(run, record, stages, params, factors.get(entry["of"], 1) * DOUBLING)
        out.append(dataclasses.replace(row, shared_range=row.task in shared))
    return out


def _shared_ranges(datasets: dict[str, dict]) -> set[str]:
    """The datasets whose family and declared range another dataset of the plan has too
    (e.g. the same Darcy range with periodic and with Dirichlet boundaries)."""
    keys = {n: (s.get("family"), s.get("low"), s.get("high")) for n, s in datasets.items()}
    counts = Counter(keys.values())
    return {n for n, key in keys.items() if counts[key] > 1}


def _row(run: dict, record: RunRecord | None, stages: dict, params: dict, factor: int) -> ResultRow:
    """One planned run with its record (None: not run yet) as a row; ``factor`` is the budget
    multiple of the refinement that stands for it (1: none)."""
    labels = run["labels"]
    test = record.test if record else {}
    val = record.val if record else {}
    nan = math.nan
    low, high = _pretrain_range(stages.get(labels.get("init")))
    return ResultRow(
        run_id=run["id"],
        kind=run["kind"],
        status=record.status if record else "todo",
        task=labels.get("task"),
        family=labels.get("family"),
        parameter=params.get(labels.get("task"), ""),
        task_low=labels.get("task_low", labels.get("low")),
        task_high=labels.get("task_high", labels.get("high")),
        method=labels.get("method", "pretrain"),
        init=labels.get("init", "scratch"),
        init_family=_init_family(labels, stages),
        mode=labels.get("mode", "full"),
        model=labels.get("model"),
        params=record.parameters_total if record else None,
        seed=labels.get("seed", 0),
        n_train=labels.get("n_train"),
        lr=record.selected_lr if record else None,
        **_budget_columns(record),
        budget_factor=factor,
        val_rel_l2=val.get("rel_l2", nan),
        test_rel_l2=test.get("rel_l2", nan),
        test_mse=test.get("mse", nan),
        test_residual=test.get("residual", nan),
        pretrain_low=low,
        pretrain_high=high,
        wall_time_s=record.wall_time_s if record else None,
        pretrain_seed=_pretrain_seed(run["kind"], labels),
        **_audit_columns(record),
        check_of=labels.get("check_of"),
        stage=labels.get("stage") if run["kind"] == "pretrain" else None,
    )


def _audit_columns(record: RunRecord | None) -> dict:
    """What a reader needs to audit a run: protocol, loss, whether the start was kept, the
    validation error of every rate tried (and of the start), per-output test errors, and what
    it cost (operations, core-seconds, device). None for a run without a record."""
    if record is None:
        return {}
    rates = [f"{lr}:{err:.6g}" for lr, err in record.val_by_lr.items() if err is not None]
    if record.start_val is not None:
        rates.insert(0, f"start:{record.start_val:.6g}")
    outputs = record.test.get("per_output") or {}
    compute = record.compute
    return {
        "protocol": record.protocol,
        "loss": record.loss,
        "start_kept": record.start_kept,
        "val_by_lr": " ".join(rates),
        "test_per_output": " ".join(f"{k}:{v:.6g}" for k, v in outputs.items()) or None,
        "flops": compute.get("flops"),
        "core_s": compute.get("cpu_s"),
        "device": record.device,
    }


def _pretrain_range(stage: dict | None) -> tuple[float | None, float | None]:
    """(low, high) of the init stage's pre-training data: (None, None) for scratch, for a stage
    the plan does not define and for a mixture stage (a mixture has no range)."""
    if stage is None:
        return None, None
    return stage["labels"].get("low"), stage["labels"].get("high")


def _pretrain_seed(kind: str, labels: dict) -> int | None:
    """The seed of the pre-training behind a run (see the module doc)."""
    if kind == "pretrain":
        return labels.get("seed", 0)  # as the seed column reads it
    return labels.get("pretrain_seed")


def _budget_columns(record: RunRecord | None) -> dict:
    """The protocol a run got: rates tried (space-separated), whether the chosen one sits at
    an edge of them ("high", "low", "both" or empty), the selected rate's budget (epochs and
    steps run, batch, rule) and whether validation had stopped improving (``converged``:
    True, False, or None when unknown: too few validations, or a record older than the flag)."""
    if record is None:
        record = RunRecord({"status": "todo"})
    budget, tried = record.budget, record.lrs_tried
    return {
        "lrs_tried": " ".join(f"{lr:g}" for lr in tried),
        "lr_at_edge": record.lr_at_edge or "",
        "epochs": budget.get("epochs_run"),
        "steps": budget.get("steps_run"),
        "batch_size": budget.get("batch"),
        "budget_rule": budget.get("rule", ""),
        "converged": record.converged,
    }


def _init_family(labels: dict, stages: dict) -> str | None:
    """The run's ``init_family`` label, or for older plans the family of its init stage's data
    ("none" for scratch; None when the plan names a stage it does not define)."""
    if "init_family" in labels:
        return labels["init_family"]
    init = labels.get("init", "scratch")
    if init == "scratch":
        return "none"
    stage = stages.get(init)
    return None if stage is None else stage["labels"].get("family")


def _parameter_name(family: str) -> str:
    """The physics parameter's short name; "mixed" for a mixture of families."""
    if family == catalogue.MIXTURE:
        return "mixed"
    return catalogue.parameter_name(family) or ""


def write_csv(rows: list[ResultRow], path: str | Path) -> Path:
    """The rows as CSV at ``path``, whose folder must exist (a missing one is refused)."""
    path = check_output_file(path, "the CSV file")
    try:
        with path.open("w", newline="") as fh:
            write_rows(rows, fh)
    except OSError as exc:
        raise PdefmError(
            f"cannot write {path} ({exc.strerror or exc}); pick another path"
        ) from None
    return path


def read_csv(path: str | Path) -> list[ResultRow]:
    """The rows of a results CSV (``write_csv``'s or a report's ``results.csv``), typed as the
    store builds them; an unreadable file or a bad cell is one line naming it."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return read_rows(fh, str(path))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PdefmError(
            f"cannot read {path} ({exc}); give a results.csv that pdefm wrote"
        ) from None


def dataset_summaries(root: str | Path) -> dict[str, dict]:
    """Per dataset of the study (train split): family, parameter, declared range, role and the
    realised parameter histogram (or per-value counts); a mixture instead carries ``families``,
    its realised train count per member family, and no range (low = high = None)."""
    root = Path(root)
    plan = load_plan(root)
    pre = {r["labels"]["task"] for r in plan["runs"] if r["kind"] == "pretrain"}
    out = {}
    for name in plan["datasets"]:
        card_path = root / "data" / name / "card.json"
        if card_path.is_file():
            role = "pretrain" if name in pre else "downstream"
            out[name] = _card_summary(card_path, role)
    return out


def _card_summary(card_path: Path, role: str) -> dict:
    """``_summary`` of the card at ``card_path``; a damaged card is one line naming it."""
    fix = f"delete {card_path.parent} and rerun the study to regenerate it"
    # read leniently: the summary needs few fields, and a missing one is named below
    card = DatasetCard(read_json(card_path, fix), card_path.parent)
    try:
        return _summary(card, role)
    except KeyError as exc:
        raise bad_field(card_path, "the card", f"lacks the field {exc}", fix) from None
    except (TypeError, AttributeError):
        raise bad_field(card_path, "the card", "has a field of the wrong type", fix) from None


def _summary(card: DatasetCard, role: str) -> dict:
    """One dataset card as the report's summary entry; "generation" ({"wall_s", "cpu_s"}) only
    when the card recorded what writing it cost."""
    declared = card.declared
    head = {
        "family": card.family,
        "parameter": card.parameter["name"],
        "low": declared.get("low"),
        "high": declared.get("high"),
        "role": role,
    }
    if card.generation is not None:  # cards written before it was recorded say nothing
        head["generation"] = card.generation  # {"wall_s", "cpu_s"}: what writing it cost
    realised = card.realised("train")
    if card.family == catalogue.MIXTURE:
        return {**head, "families": dict(realised.get("families", {}))}
    law = realised["parameter"]
    if "histogram" in law:
        return {**head, "histogram": law["histogram"]}
    return {**head, "counts": law["counts"]}


@dataclasses.dataclass(frozen=True)
class StudySetup:
    """What the report's setup section states about a study: its name, the study file as run
    (text; None if unreadable), the plan's datasets, the provenance of every ``study run``
    and the run time its runs took (``run_time``)."""

    name: str
    study_yaml: str | None
    datasets: dict
    invocations: list
    run_time: dict | None = None

    def to_json(self) -> dict:
        """The ``setup`` mapping ``pdefm.report.write_report`` takes."""
        return dataclasses.asdict(self)


def study_setup(root: str | Path) -> StudySetup:
    """The setup of the study in ``root`` (see ``StudySetup``)."""
    from pdefm.study.provenance import load_provenance

    root = Path(root)
    plan = load_plan(root)
    try:
        text = (root / "study.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    return StudySetup(
        plan["name"], text, plan["datasets"], load_provenance(root), run_time(root, plan)
    )


def run_time(root: Path, plan: dict) -> dict:
    """The wall time the study's finished training runs took, summed: ``runs`` (planned
    pre-training and downstream runs with a record) and ``refinements`` (reruns of flagged
    runs, superseded ones included: their budget was spent too), each with its count and
    seconds. Each run's own wall clock, so runs on parallel workers overlap; data generation
    is not counted."""
    planned = [r["id"] for r in plan["runs"] if r["kind"] != "data"]
    return {
        "runs": _seconds(root, planned),
        "refinements": _seconds(root, list(load_refinements(root))),
    }


def _seconds(root: Path, ids: list[str]) -> dict:
    """{"count", "seconds"} over the finished records of ``ids`` that state their wall time."""
    times = []
    for rid in ids:
        record = read_record(root / "runs" / rid / "record.json")
        if record is not None and record.wall_time_s is not None:
            times.append(record.wall_time_s)
    return {"count": len(times), "seconds": float(sum(times))}
