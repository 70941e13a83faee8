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
    "val_rel_l2",
    "test_rel_l2",
    "test_mse",
    "test_residual",
    "pretrain_low",
    "pretrain_high",
    "wall_time_s",
]


def load_plan(root: str | Path) -> dict:
    path = Path(root) / "plan.json"
    if not path.is_file():
        raise PdefmError(
            f"{root} is not a study directory (no plan.json); run `pdefm study run FILE` first"
        )
    return json.loads(path.read_text())


def load_results(root: str | Path) -> list[dict]:
    """Every training / evaluation run of the study in ``root`` as a row (missing runs
    appear with status "todo")."""
    root = Path(root)
    plan = load_plan(root)
    stages = {r["labels"]["stage"]: r for r in plan["runs"] if r["kind"] == "pretrain"}
    params = {name: _parameter_name(spec["family"]) for name, spec in plan["datasets"].items()}
    rows = []
    for run in plan["runs"]:
        if run["kind"] == "data":
            continue
        record = _record(root / "runs" / run["id"] / "record.json")
        rows.append(_row(run, record, stages, params))
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
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # being written: treated as not finished


def _parameter_name(family: str) -> str:
    """The physics parameter's short name; "mixed" for a mixture of families."""
    names = {"poisson": "e", "advection_diffusion": "psi", "helmholtz": "w", "mixture": "mixed"}
    return names.get(family, "")


def write_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
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
            out[name] = _summary(json.loads(card_path.read_text()), role)
    return out


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
