"""Reruns at twice the budget for the savings check (``pdefm study run --check-savings``).

The report decides which runs a savings factor rests on (``pdefm.report.savings_check``);
this module reruns them: the run (a planned run, or the refinement that stands for it) with
its budget doubled (epochs, steps or the patience cap), its selected learning rate alone
and no grid extension, the same seed and subset. A fine-tuning run that kept its starting
weights reruns its best rate, which may then beat the start. The reruns are listed in
``savings_checks.json`` (each with the id of the run it doubles, ``of``) and train in
``runs/ID`` like any run: resumable, and done once however often the check is asked for.
They never replace the runs they double: the results table lists them apart (``check_of``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from pdefm.data.io import write_json_atomic
from pdefm.errors import PdefmError
from pdefm.study.refine import load_refinements, load_reruns, rerun_status, unfinished
from pdefm.study.runs import Study, StudyRun
from pdefm.train.record import RunRecord, read_record

CHECKS = "savings_checks.json"
FACTOR = 2
FIX = "it is written by `pdefm study run --check-savings`; delete it to forget the checks"


def load_doublings(root: str | Path) -> dict[str, dict]:
    """id -> doubling entry ({id, of, labels, depends, config}), checked."""
    return load_reruns(Path(root) / CHECKS, FIX)


def _rate(record: RunRecord) -> float:
    """The rate to rerun: the selected one, or (starting weights kept) the best trained."""
    if record.selected_lr is not None:
        return float(record.selected_lr)
    per_lr = record.data.get("per_lr") or {}
    done = {k: v for k, v in per_lr.items() if v.get("status") == "completed"}
    if not done:
        raise PdefmError(f"run {record.id} has no completed learning rate to rerun")
    return float(min(done, key=lambda k: done[k]["best_val_rel_l2"]))


def doubling_of(run: dict, record: RunRecord) -> dict:
    """The doubling entry of ``run`` ({id, labels, depends, config}) given its record."""
    config = dict(run["config"])
    if config.get("steps") is not None:
        config["steps"] = config["steps"] * FACTOR
    else:
        config["epochs"] = config["epochs"] * FACTOR  # with patience: the cap grows
    config["lrs"] = [_rate(record)]
    config["lr_extend"] = 0
    config.pop("lr_search", None)  # one rate: nothing to search
    digest = json.dumps(["double", run["id"], FACTOR, config], sort_keys=True).encode()
    return {
        "id": hashlib.sha256(digest).hexdigest()[:16],
        "of": run["id"],
        "labels": dict(run["labels"]),
        "depends": list(run["depends"]),
        "config": config,
    }


def _known_runs(study: Study, root: Path) -> dict[str, dict]:
    """Every downstream run a results row can name: planned runs and refinements."""
    known = {
        r.id: {"id": r.id, "labels": r.labels, "depends": list(r.depends), "config": r.config}
        for r in study.runs
        if r.kind == "downstream"
    }
    known.update(load_refinements(root))
    return known


def plan_doublings(study: Study, root: Path, run_ids: set[str]) -> list[StudyRun]:
    """Add a doubling of every completed run in ``run_ids`` to ``savings_checks.json``;
    return the doublings not yet finished, as runnable study runs."""
    entries = load_doublings(root)
    known = _known_runs(study, root)
    doubled = {e["of"] for e in entries.values()}
    added = False
    for rid in sorted(run_ids - doubled):
        record = read_record(root / "runs" / rid / "record.json")
        if rid not in known or record is None or not record.completed:
            continue
        entry = doubling_of(known[rid], record)
        if entry["id"] not in entries:
            entries[entry["id"]] = entry
            added = True
    if added:  # a check with nothing new to rerun (the demo's second call) writes nothing
        write_json_atomic(root / CHECKS, {"runs": list(entries.values())})
    return unfinished(root, entries, as_run)


def as_run(entry: dict) -> StudyRun:
    """A doubling as a runnable study run."""
    labels = {**entry["labels"], "check_of": entry["of"]}
    return StudyRun(
        entry["id"], "downstream", labels, tuple(entry["depends"]), config=entry["config"]
    )


def doubling_progress(root: str | Path) -> dict[str, int]:
    """{status: count} over the savings check's reruns listed in ``root``: "completed",
    "failed", "running" (a record says so) or "todo" (none yet)."""
    root = Path(root)
    statuses = [rerun_status(root, e) for e in load_doublings(root).values()]
    return dict(sorted(Counter(statuses).items()))
