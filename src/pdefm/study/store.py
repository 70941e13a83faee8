"""The study folder's own files, read and checked (no torch): ``plan.json`` (every run: id,
kind, labels, depends) and each run's ``runs/ID/record.json``.

A garbled or hand-edited file is one line naming the file, the field and the fix; every name
in a plan that becomes a path is a plain name.
"""

from __future__ import annotations

import json
from pathlib import Path

from pdefm.checks import check_name
from pdefm.errors import PdefmError

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
    plan = read_json(path, PLAN_FIX)
    _check_plan(plan, path)
    return plan


def read_json(path: Path, fix: str) -> object:
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


def bad_field(path: Path, where: str, problem: str, fix: str = PLAN_FIX) -> PdefmError:
    """The one-line error for a damaged field: ``FILE: WHERE PROBLEM; FIX``."""
    return PdefmError(f"{path}: {where} {problem}; {fix}")


def _check_plan(plan: object, path: Path) -> None:
    if not isinstance(plan, dict):
        raise bad_field(path, "the file", f"must hold a JSON object, got {type(plan).__name__}")
    for key, kind in (("name", str), ("datasets", dict), ("runs", list)):
        if not isinstance(plan.get(key), kind):
            raise bad_field(path, f"field {key!r}", f"must be a {_TYPE_WORDS[kind]}")
    _named(path, "field 'name'", plan["name"], "the study name")
    for name, spec in plan["datasets"].items():
        _named(path, "datasets", name, "the dataset name")
        if not isinstance(spec, dict) or not isinstance(spec.get("family"), str):
            raise bad_field(path, f"datasets.{name}", "must be an object with a text 'family'")
    for i, run in enumerate(plan["runs"]):
        _check_plan_run(path, i, run)


_TYPE_WORDS = {str: "text", dict: "JSON object", list: "JSON list"}


def _named(path: Path, where: str, value: object, what: str) -> None:
    """A plain name (it is joined to the study folder)."""
    try:
        check_name(value, what)
    except PdefmError as exc:
        raise bad_field(path, where, f"is unusable: {exc}") from None


def _check_plan_run(path: Path, i: int, run: object) -> None:
    where = f"runs[{i}]"
    if not isinstance(run, dict):
        raise bad_field(path, where, "must be a JSON object")
    _named(path, f"{where}.id", run.get("id"), "the run id")
    if run.get("kind") not in PLAN_KINDS:
        raise bad_field(path, f"{where}.kind", f"must be one of {', '.join(PLAN_KINDS)}")
    labels, depends = run.get("labels"), run.get("depends", [])
    if not isinstance(labels, dict):
        raise bad_field(path, f"{where}.labels", "must be a JSON object")
    if not (isinstance(depends, list) and all(isinstance(d, str) for d in depends)):
        raise bad_field(path, f"{where}.depends", "must be a list of run ids")
    needed = {"data": ("name",), "pretrain": ("stage", "task")}.get(run["kind"], ())
    for key in needed:
        if not isinstance(labels.get(key), str):
            raise bad_field(path, f"{where}.labels.{key}", "must be text")
    for key in TEXT_LABELS:
        if key in labels and not isinstance(labels[key], str):
            raise bad_field(path, f"{where}.labels.{key}", f"must be text, got {labels[key]!r}")
    for key in NUMBER_LABELS:
        if labels.get(key) is not None and not _is_number(labels[key]):
            raise bad_field(path, f"{where}.labels.{key}", f"must be a number, got {labels[key]!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_record(path: str | Path) -> dict | None:
    """A run's record.json, checked (None if the run has not written one). Records are
    written atomically, so one that does not parse was damaged: one line says which and how
    to run that run again."""
    path = Path(path)
    if not path.is_file():
        return None
    fix = f"delete {path.parent} to run that run again"
    record = read_json(path, fix)
    if not isinstance(record, dict):
        kind = type(record).__name__
        raise bad_field(path, "the file", f"must hold a JSON object, got {kind}", fix)
    if not isinstance(record.get("status"), str):
        raise bad_field(path, "field 'status'", "must be text", fix)
    for key, names in RECORD_NUMBERS.items():  # only what the results table reads
        value = record.get(key)
        if value is not None and not isinstance(value, dict):
            raise bad_field(path, f"field {key!r}", "must be a JSON object", fix)
        for name in names:
            number = (value or {}).get(name)
            if number is not None and not _is_number(number):
                raise bad_field(path, f"{key}.{name}", f"must be a number, got {number!r}", fix)
    for key in ("selected_lr", "wall_time_s"):
        if record.get(key) is not None and not _is_number(record[key]):
            raise bad_field(path, f"field {key!r}", f"must be a number, got {record[key]!r}", fix)
    _check_protocol(record, path, fix)
    return record


def _check_protocol(record: dict, path: Path, fix: str) -> None:
    """The protocol fields the results table reads: rates tried, edge, convergence flag."""
    tried = record.get("lrs_tried")
    if tried is not None and not (isinstance(tried, list) and all(map(_is_number, tried))):
        raise bad_field(path, "field 'lrs_tried'", "must be a list of numbers", fix)
    if record.get("lr_at_edge") not in (None, "high", "low", "both"):
        raise bad_field(path, "field 'lr_at_edge'", "must be high, low, both or null", fix)
    if record.get("converged") not in (None, True, False):
        raise bad_field(path, "field 'converged'", "must be true, false or null", fix)
