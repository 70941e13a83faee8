"""The results store: a study's run records joined with its plan into one table (no torch).

Rows follow the report's schema (see ``pdefm.report``): one per training / evaluation run, with
the test metrics of the learning rate selected on validation (the loop selects it per run, so
per (task, size, init, mode, preset, seed)).
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
    if stage is not None:
        row["pretrain_low"], row["pretrain_high"] = stage["labels"]["low"], stage["labels"]["high"]
    return row


def _record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # being written: treated as not finished


def _parameter_name(family: str) -> str:
    return {"poisson": "e", "advection_diffusion": "psi", "helmholtz": "w"}.get(family, "")


def write_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def dataset_summaries(root: str | Path) -> dict[str, dict]:
    """Parameter histograms of the study's datasets (train split) for the report."""
    root = Path(root)
    plan = load_plan(root)
    pre = {r["labels"]["task"] for r in plan["runs"] if r["kind"] == "pretrain"}
    out = {}
    for name in plan["datasets"]:
        card_path = root / "data" / name / "card.json"
        if not card_path.is_file():
            continue
        card = json.loads(card_path.read_text())
        realised = card["realised"]["train"]["parameter"]
        out[name] = {
            "family": card["family"],
            "parameter": card["parameter"]["name"],
            "low": card["parameter"]["declared"]["low"],
            "high": card["parameter"]["declared"]["high"],
            "role": "pretrain" if name in pre else "downstream",
            **(
                {"histogram": realised["histogram"]}
                if "histogram" in realised
                else {"counts": realised["counts"]}
            ),
        }
    return out
