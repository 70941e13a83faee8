"""Refining a study: rerun just the downstream runs whose protocol did not settle, with a
larger budget, and let their results replace the first ones in the report.

A run is *flagged* when its record says validation was still improving at the end
(``converged`` false) or that the chosen learning rate sits at the edge of the rates tried
(``lr_at_edge``). Its refinement is the same run (task, init, mode, model, N, seed) with the
budget multiplied by ``factor`` (epochs, steps or the patience cap), the learning rates
around the chosen one (the chosen rate and its neighbours among those tried) and the grid
allowed to grow past an edge again (``REFINE_EXTEND`` times).

Refinements live next to the plan in ``refinements.json`` (each with the id of the run it
refines, ``of``) and train in ``runs/ID`` like any run, so a refinement is resumable and a
flagged refinement can itself be refined (budget x factor again). ``latest`` follows those
chains: the results table reads, for each planned run, its last completed refinement.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pdefm.data.io import write_json_atomic
from pdefm.errors import PdefmError
from pdefm.study.spec import Study, StudyRun
from pdefm.train.record import RunRecord, read_record

REFINEMENTS = "refinements.json"
REFINE_EXTEND = 2  # a refined grid may grow past an edge this often (as a downstream default)
FIX = "it is written by `pdefm study run --refine`; delete it to forget the refinements"


def load_refinements(root: str | Path) -> dict[str, dict]:
    """id -> refinement entry ({id, of, factor, labels, depends, config}), checked."""
    return load_reruns(Path(root) / REFINEMENTS, FIX)


def load_reruns(path: Path, fix: str) -> dict[str, dict]:
    """id -> entry of a file of reruns (refinements, savings-check doublings: each with id,
    the run it reruns ``of``, labels, depends and config), checked; {} if there is none."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["runs"]
        out = {}
        for e in entries:
            if not all(isinstance(e[k], str) for k in ("id", "of")):
                raise TypeError("id and of must be text")
            if not isinstance(e["config"], dict) or not isinstance(e["labels"], dict):
                raise TypeError("config and labels must be objects")
            out[e["id"]] = e
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PdefmError(f"{path} is damaged ({exc}); {fix}") from None


def latest(root: str | Path) -> dict[str, dict]:
    """Planned run id -> its last completed refinement (following refinements of
    refinements), for the planned runs that have one."""
    root = Path(root)
    refinements = load_refinements(root)
    children: dict[str, list[dict]] = {}
    for e in refinements.values():
        children.setdefault(e["of"], []).append(e)
    out = {}
    for origin in {e["of"] for e in refinements.values()} - set(refinements):
        found, frontier = None, [origin]
        while frontier:  # breadth-first down the chain; the deepest completed one wins
            nxt = []
            for rid in frontier:
                for child in children.get(rid, []):
                    record = read_record(root / "runs" / child["id"] / "record.json")
                    if record is not None and record.completed:
                        found = child
                    nxt.append(child["id"])
            frontier = nxt
        if found is not None:
            out[origin] = found
    return out


def refinement_progress(root: str | Path) -> dict[int, dict[str, int]]:
    """Budget factor -> {status: count} over the refinements listed in ``root``: "completed",
    "failed", "running" (a record says so: started, maybe interrupted) or "todo" (none yet)."""
    root = Path(root)
    out: dict[int, dict[str, int]] = {}
    for entry in load_refinements(root).values():
        status = rerun_status(root, entry)
        counts = out.setdefault(entry["factor"], {})
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(out.items()))


def _neighbours(chosen: float, tried: list[float]) -> list[float]:
    """The chosen rate and the rates next to it among those tried."""
    rates = sorted(tried)
    i = rates.index(chosen)
    return rates[max(0, i - 1) : i + 2]


def _scaled_budget(config: dict, factor: int) -> dict:
    out = dict(config)
    if out.get("steps") is not None:
        out["steps"] = out["steps"] * factor
    else:
        out["epochs"] = out["epochs"] * factor  # with patience: the cap grows, P stays
    return out


def refinement_of(run: dict, record: RunRecord, factor: int) -> dict:
    """The refinement entry of a flagged run (``run``: {id, labels, depends, config})."""
    config = _scaled_budget(run["config"], factor)
    tried = [float(x) for x in record.lrs_tried or run["config"]["lrs"]]
    config["lrs"] = _neighbours(float(record.selected_lr), tried)
    config["lr_extend"] = max(REFINE_EXTEND, int(run["config"].get("lr_extend", 0)))
    digest = json.dumps(["refine", run["id"], factor, config], sort_keys=True).encode()
    rid = hashlib.sha256(digest).hexdigest()[:16]
    factor_total = int(run.get("factor", 1)) * factor
    return {
        "id": rid,
        "of": run["id"],
        "factor": factor_total,
        "labels": dict(run["labels"]),
        "depends": list(run["depends"]),
        "config": config,
    }


def is_flagged(record: RunRecord | None) -> bool:
    """Completed, and budget-limited or with the chosen rate at an edge of those tried."""
    if record is None or not record.completed or record.selected_lr is None:
        return False
    return record.converged is False or bool(record.lr_at_edge)


def plan_refinements(study: Study, root: Path, factor: int) -> list[StudyRun]:
    """Add a refinement for every flagged downstream run (the last refinement of each planned
    run, if it has one) to ``refinements.json``; return the refinements not yet done."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise PdefmError(f"--refine-factor must be a whole number >= 2, got {factor!r}")
    entries = load_refinements(root)
    last = latest(root)
    for run in study.runs:
        if run.kind != "downstream" or run.labels.get("method") == "zero-shot":
            continue
        current = last.get(run.id) or {
            "id": run.id,
            "labels": run.labels,
            "depends": list(run.depends),
            "config": run.config,
        }
        record = read_record(root / "runs" / current["id"] / "record.json")
        if is_flagged(record):
            entry = refinement_of(current, record, factor)
            entries.setdefault(entry["id"], entry)
    write_json_atomic(root / REFINEMENTS, {"runs": list(entries.values())})
    return unfinished(root, entries, as_run)


def rerun_status(root: Path, entry: dict) -> str:
    """A rerun's state: its record's status ("completed", "failed", "running": started,
    maybe interrupted) or "todo" (no record yet)."""
    record = read_record(root / "runs" / entry["id"] / "record.json")
    return "todo" if record is None else record.status


def unfinished(root: Path, entries: dict[str, dict], as_run) -> list[StudyRun]:
    """The reruns among ``entries`` whose run has no finished record, as study runs."""
    return [as_run(e) for e in entries.values() if rerun_status(root, e) in ("todo", "running")]


def as_run(entry: dict) -> StudyRun:
    """A refinement as a runnable study run."""
    labels = {**entry["labels"], "refines": entry["of"], "budget_factor": entry["factor"]}
    return StudyRun(
        entry["id"], "downstream", labels, tuple(entry["depends"]), config=entry["config"]
    )


def find_refinement(root: Path, run_id: str) -> StudyRun | None:
    """The refinement ``run_id`` of the study in ``root``, if it is one."""
    entry = load_refinements(root).get(run_id)
    return None if entry is None else as_run(entry)
