"""The results store: a study's run records joined with its plan into one table (no torch).

Rows follow the report's schema (see ``pdefm.report``): one per training / evaluation run, with
the test metrics of the learning rate selected on validation (the loop selects it per run, so
per (task, size, init, mode, preset, seed)).

``init_family`` is the PDE family of the data the run's init stage was pre-trained on
(``"mixture"`` for a mixed pre-training stage, ``"none"`` for scratch and for pre-training
runs). Plans written before the label existed lack it: it is then read from the stage's own
``family`` label.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from pdefm.checks import check_name, check_output_file
from pdefm.errors import PdefmError

COLUMNS = [
    "run_id",
    "kind",
    "status",
    "task",
    "family",
    "parameter",
    "task_low",
    "task_high",
    "method",
    "init",
    "init_family",
    "mode",
    "model",
    "params",
    "seed",
    "n_train",
    "lr",
    "lrs_tried",
    "lr_at_edge",
    "epochs",
    "steps",
    "batch_size",
    "budget_rule",
    "converged",
    "budget_factor",
    "val_rel_l2",
    "test_rel_l2",
    "test_mse",
    "test_residual",
    "pretrain_low",
    "pretrain_high",
    "wall_time_s",
]


PLAN_KINDS = ("data", "pretrain", "downstream")
# labels the results and the report print as text or compute with as numbers
TEXT_LABELS = ("name", "stage", "task", "family", "method", "init", "init_family", "mode", "model")
NUMBER_LABELS = ("seed", "n_train", "low", "high", "task_low", "task_high")
RECORD_NUMBERS = {
    "test": ("rel_l2", "mse", "residual"),
    "val": ("rel_l2",),
    "parameters": ("total",),
    "budget": ("epochs_run", "steps_run", "batch"),
}
PLAN_FIX = "plan.json is written by `pdefm study run`: rerun it on this folder to rewrite it"


def load_plan(root: str | Path) -> dict:
    """The study's plan.json, checked: a garbled or hand-edited plan is one line naming the
    file and the field, and every name in it that becomes a path is a plain name."""
    path = Path(root) / "plan.json"
    if not path.is_file():
        raise PdefmError(
            f"{root} is not a study directory (no plan.json); run `pdefm study run FILE` first"
        )
    plan = _read_json(path, PLAN_FIX)
    _check_plan(plan, path)
    return plan


def _read_json(path: Path, fix: str) -> object:
    """The JSON in ``path``, or a one-line error naming the file and ``fix``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PdefmError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    except UnicodeDecodeError:
        raise PdefmError(f"{path} is not a text (UTF-8) file; {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PdefmError(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); {fix}"
        ) from None


def _bad(path: Path, where: str, problem: str, fix: str = PLAN_FIX) -> PdefmError:
    return PdefmError(f"{path}: {where} {problem}; {fix}")


def _check_plan(plan: object, path: Path) -> None:
    if not isinstance(plan, dict):
        raise _bad(path, "the file", f"must hold a JSON object, got {type(plan).__name__}")
    for key, kind in (("name", str), ("datasets", dict), ("runs", list)):
        if not isinstance(plan.get(key), kind):
            raise _bad(path, f"field {key!r}", f"must be a {_TYPE_WORDS[kind]}")
    _named(path, "field 'name'", plan["name"], "the study name")
    for name, spec in plan["datasets"].items():
        _named(path, "datasets", name, "the dataset name")
        if not isinstance(spec, dict) or not isinstance(spec.get("family"), str):
            raise _bad(path, f"datasets.{name}", "must be an object with a text 'family'")
    for i, run in enumerate(plan["runs"]):
        _check_plan_run(path, i, run)


_TYPE_WORDS = {str: "text", dict: "JSON object", list: "JSON list"}


def _named(path: Path, where: str, value: object, what: str) -> None:
    """A plain name (it is joined to the study folder)."""
    try:
        check_name(value, what)
    except PdefmError as exc:
        raise _bad(path, where, f"is unusable: {exc}") from None


def _check_plan_run(path: Path, i: int, run: object) -> None:
    where = f"runs[{i}]"
    if not isinstance(run, dict):
        raise _bad(path, where, "must be a JSON object")
    _named(path, f"{where}.id", run.get("id"), "the run id")
    if run.get("kind") not in PLAN_KINDS:
        raise _bad(path, f"{where}.kind", f"must be one of {', '.join(PLAN_KINDS)}")
    labels, depends = run.get("labels"), run.get("depends", [])
    if not isinstance(labels, dict):
        raise _bad(path, f"{where}.labels", "must be a JSON object")
    if not (isinstance(depends, list) and all(isinstance(d, str) for d in depends)):
        raise _bad(path, f"{where}.depends", "must be a list of run ids")
    needed = {"data": ("name",), "pretrain": ("stage", "task")}.get(run["kind"], ())
    for key in needed:
        if not isinstance(labels.get(key), str):
            raise _bad(path, f"{where}.labels.{key}", "must be text")
    for key in TEXT_LABELS:
        if key in labels and not isinstance(labels[key], str):
            raise _bad(path, f"{where}.labels.{key}", f"must be text, got {labels[key]!r}")
    for key in NUMBER_LABELS:
        if labels.get(key) is not None and not _is_number(labels[key]):
            raise _bad(path, f"{where}.labels.{key}", f"must be a number, got {labels[key]!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_results(root: str | Path) -> list[dict]:
    """Every training / evaluation run of the study in ``root`` as a row (missing runs
    appear with status "todo")."""
    from pdefm.study.refine import latest  # refine reads records through this module

    root = Path(root)
    plan = load_plan(root)
    stages = {r["labels"]["stage"]: r for r in plan["runs"] if r["kind"] == "pretrain"}
    params = {name: _parameter_name(spec["family"]) for name, spec in plan["datasets"].items()}
    refined = latest(root)
    rows = []
    for run in plan["runs"]:
        if run["kind"] == "data":
            continue
        factor = 1
        if run["id"] in refined:  # its last completed refinement stands for it
            entry = refined[run["id"]]
            run, factor = {**run, "id": entry["id"]}, entry["factor"]
        record = _record(root / "runs" / run["id"] / "record.json")
        rows.append({**_row(run, record, stages, params), "budget_factor": factor})
    return rows


def _row(run: dict, record: dict | None, stages: dict, params: dict) -> dict:
    labels = run["labels"]
    test = (record or {}).get("test") or {}
    nan = math.nan
    row = {
        "run_id": run["id"],
        "kind": run["kind"],
        "status": (record or {}).get("status", "todo"),
        "task": labels.get("task"),
        "family": labels.get("family"),
        "parameter": params.get(labels.get("task"), ""),
        "task_low": labels.get("task_low", labels.get("low")),
        "task_high": labels.get("task_high", labels.get("high")),
        "method": labels.get("method", "pretrain"),
        "init": labels.get("init", "scratch"),
        "init_family": _init_family(labels, stages),
        "mode": labels.get("mode", "full"),
        "model": labels.get("model"),
        "params": ((record or {}).get("parameters") or {}).get("total"),
        "seed": labels.get("seed", 0),
        "n_train": labels.get("n_train"),
        "lr": (record or {}).get("selected_lr"),
        **_budget_columns(record or {}),
        "val_rel_l2": ((record or {}).get("val") or {}).get("rel_l2", nan),
        "test_rel_l2": test.get("rel_l2", nan),
        "test_mse": test.get("mse", nan),
        "test_residual": test.get("residual", nan),
        "pretrain_low": None,
        "pretrain_high": None,
        "wall_time_s": (record or {}).get("wall_time_s"),
    }
    stage = stages.get(labels.get("init"))
    if stage is not None:  # a mixture stage has no range: both stay None
        row["pretrain_low"] = stage["labels"].get("low")
        row["pretrain_high"] = stage["labels"].get("high")
    return row


def _budget_columns(record: dict) -> dict:
    """The protocol a run got: rates tried (space-separated), whether the chosen one sits at
    an edge of them ("high", "low", "both" or empty), the selected rate's budget (epochs and
    steps run, batch, rule) and whether validation had stopped improving (``converged``:
    True, False, or None when unknown: too few validations, or a record older than the flag)."""
    budget = record.get("budget") or {}
    tried = record.get("lrs_tried") or []
    return {
        "lrs_tried": " ".join(f"{lr:g}" for lr in tried),
        "lr_at_edge": record.get("lr_at_edge") or "",
        "epochs": budget.get("epochs_run"),
        "steps": budget.get("steps_run"),
        "batch_size": budget.get("batch"),
        "budget_rule": budget.get("rule", ""),
        "converged": record.get("converged"),
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


def _record(path: Path) -> dict | None:
    return read_record(path)


def read_record(path: str | Path) -> dict | None:
    """A run's record.json, checked (None if the run has not written one). Records are
    written atomically, so one that does not parse was damaged: one line says which and how
    to run that run again."""
    path = Path(path)
    if not path.is_file():
        return None
    fix = f"delete {path.parent} to run that run again"
    record = _read_json(path, fix)
    if not isinstance(record, dict):
        raise _bad(path, "the file", f"must hold a JSON object, got {type(record).__name__}", fix)
    if not isinstance(record.get("status"), str):
        raise _bad(path, "field 'status'", "must be text", fix)
    for key, names in RECORD_NUMBERS.items():  # only what the results table reads
        value = record.get(key)
        if value is not None and not isinstance(value, dict):
            raise _bad(path, f"field {key!r}", "must be a JSON object", fix)
        for name in names:
            number = (value or {}).get(name)
            if number is not None and not _is_number(number):
                raise _bad(path, f"{key}.{name}", f"must be a number, got {number!r}", fix)
    for key in ("selected_lr", "wall_time_s"):
        if record.get(key) is not None and not _is_number(record[key]):
            raise _bad(path, f"field {key!r}", f"must be a number, got {record[key]!r}", fix)
    _check_protocol(record, path, fix)
    return record


def _check_protocol(record: dict, path: Path, fix: str) -> None:
    """The protocol fields the results table reads: rates tried, edge, convergence flag."""
    tried = record.get("lrs_tried")
    if tried is not None and not (isinstance(tried, list) and all(map(_is_number, tried))):
        raise _bad(path, "field 'lrs_tried'", "must be a list of numbers", fix)
    if record.get("lr_at_edge") not in (None, "high", "low", "both"):
        raise _bad(path, "field 'lr_at_edge'", "must be high, low, both or null", fix)
    if record.get("converged") not in (None, True, False):
        raise _bad(path, "field 'converged'", "must be true, false or null", fix)


def _parameter_name(family: str) -> str:
    """The physics parameter's short name; "mixed" for a mixture of families."""
    names = {"poisson": "e", "advection_diffusion": "psi", "helmholtz": "w", "mixture": "mixed"}
    return names.get(family, "")


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """The rows as CSV at ``path``, whose folder must exist (a missing one is refused)."""
    path = check_output_file(path, "the CSV file")
    try:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise PdefmError(
            f"cannot write {path} ({exc.strerror or exc}); pick another path"
        ) from None
    return path


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
    card = _read_json(card_path, fix)
    try:
        return _summary(card, role)
    except KeyError as exc:
        raise _bad(card_path, "the card", f"lacks the field {exc}", fix) from None
    except (TypeError, AttributeError):
        raise _bad(card_path, "the card", "has a field of the wrong type", fix) from None


def _summary(card: dict, role: str) -> dict:
    """One dataset card as the report's summary entry."""
    declared = card["parameter"]["declared"]
    head = {
        "family": card["family"],
        "parameter": card["parameter"]["name"],
        "low": declared.get("low"),
        "high": declared.get("high"),
        "role": role,
    }
    realised = card["realised"]["train"]
    if card["family"] == "mixture":
        return {**head, "families": dict(realised.get("families", {}))}
    law = realised["parameter"]
    if "histogram" in law:
        return {**head, "histogram": law["histogram"]}
    return {**head, "counts": law["counts"]}


def study_setup(root: str | Path) -> dict:
    """What the report's setup section states about the study in ``root``: the study file as
    run (text), the plan's datasets and the provenance of every ``study run``."""
    from pdefm.study.provenance import load_provenance

    root = Path(root)
    plan = load_plan(root)
    try:
        text = (root / "study.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    return {
        "name": plan["name"],
        "study_yaml": text,
        "datasets": plan["datasets"],
        "invocations": load_provenance(root),
    }
