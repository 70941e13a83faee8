"""The study folder's plan, read and checked (no torch): ``plan.json`` (every run: id, kind,
labels, depends). Run records are read by ``pdefm.train.record``.

A garbled or hand-edited file is one line naming the file, the field and the fix; every name
in a plan that becomes a path is a plain name.
"""

from __future__ import annotations

from pathlib import Path

from pdefm.checks import check_name, read_json
from pdefm.checks import field_error as _field_error
from pdefm.errors import PdefmError

PLAN_KINDS = ("data", "pretrain", "downstream")
# labels the results and the report print as text or compute with as numbers
TEXT_LABELS = ("name", "stage", "task", "family", "method", "init", "init_family", "mode", "model")
NUMBER_LABELS = ("seed", "n_train", "low", "high", "task_low", "task_high")
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


def bad_field(path: Path, where: str, problem: str, fix: str = PLAN_FIX) -> PdefmError:
    """The one-line error for a damaged field of a study file: ``FILE: WHERE PROBLEM; FIX``."""
    return _field_error(path, where, problem, fix)


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
