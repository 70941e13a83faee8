"""What the report reads from a study folder beyond its results table: the validation
histories of the runs (for ``figures.validation_curves``) and predictions of the trained
models on a few test samples (for ``figures.samples_panel``).

``pdefm.report`` must stay importable without torch, so torch (through ``pdefm.api`` and
``pdefm.data.dataset``) is imported only inside :func:`predict_samples`, and neither
``pdefm.report`` nor ``pdefm.report.figures`` imports this module.

Study folder layout read here: ``root/data/NAME/`` (datasets), ``root/runs/RUN_ID/record.json``
(run records) and ``root/runs/RUN_ID/checkpoint/`` (the selected model of a training run; a
zero-shot run evaluated the checkpoint named by its record's ``init_path``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from pdefm.errors import PdefmError
from pdefm.report.figures import MAX_SAMPLES, seed_order
from pdefm.report.names import method_label, row_task_title
from pdefm.report.table import curve_key, usable_rows
from pdefm.study.row import ResultRow
from pdefm.train.record import read_record

LABELS = {"finetune": "fine-tuned, N={n}", "scratch": "scratch, N={n}", "zero-shot": "zero-shot"}


# -- validation histories ------------------------------------------------------------------
def read_histories(root: str | Path, rows: list[ResultRow]) -> dict[str, list[dict]]:
    """run_id -> validation history of every completed downstream run in ``rows`` that
    recorded one: the selected learning rate's list of {"epoch", "step", "val_rel_l2", ...}
    (run record field "history"; empty for zero-shot runs, which are left out). Needs no
    torch. A damaged history is a one-line PdefmError naming the record."""
    root = Path(root)
    out = {}
    for row in rows:
        if row.kind != "downstream" or row.status != "completed":
            continue
        path = root / "runs" / row.run_id / "record.json"
        record = read_record(path)
        history = record.history if record else None
        if history:
            out[row.run_id] = _checked_history(history, path)
    return out


def _checked_history(history: object, path: Path) -> list[dict]:
    """The history if it is a list of objects with numbers "step" and "val_rel_l2"."""
    ok = isinstance(history, list) and all(
        isinstance(h, dict) and _is_number(h.get("step")) and _is_number(h.get("val_rel_l2"))
        for h in history
    )
    if not ok:
        raise PdefmError(
            f"{path}: field 'history' must be a list of objects with numbers 'step' and "
            f"'val_rel_l2'; delete {path.parent} to run that run again"
        )
    return history


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# -- which runs to show ----------------------------------------------------------------------
def _mean_val(rows: list[ResultRow]) -> float:
    """Mean validation error of a group of runs (inf when none is finite): runs are picked on
    validation, never on test."""
    vals = [r.val_rel_l2 for r in rows if _is_number(r.val_rel_l2)]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.inf


def _pick(
    rows: list[ResultRow], method: str, n: int | None = None, prefer: dict | None = None
) -> ResultRow | None:
    """The run of ``method`` to show: at size ``n`` (or the smallest size it has), from the
    curve matching ``prefer`` (fields of the curve key) if any, else the curve with the lowest
    mean validation error there; its lowest seed. None when the method has no run."""
    runs = [r for r in rows if r.method == method]
    if not runs:
        return None
    sizes = {int(r.n_train) for r in runs}
    size = n if n in sizes else min(sizes)
    groups: dict = defaultdict(list)
    for r in runs:
        if int(r.n_train) == size:
            groups[curve_key(r)].append(r)

    def rank(key) -> tuple:
        mismatch = any(getattr(key, f) != v for f, v in (prefer or {}).items())
        return (mismatch, _mean_val(groups[key]), key.init, key.mode, key.model)

    best = min(groups, key=rank)
    return min(groups[best], key=seed_order)


def pick_runs(rows: list[ResultRow], task: str) -> dict[str, ResultRow]:
    """Column label -> results row of the runs :func:`predict_samples` shows for ``task``:
    fine-tuned at its smallest N (the init, mode and model with the lowest mean validation
    error there), scratch at the same N and model when run (else its smallest N), and the
    zero-shot run of the same init and model when there is one; lowest seed each. Needs no
    torch."""
    runs = [r for r in usable_rows(rows) if r.task == task]
    ft = _pick(runs, "finetune")
    model = {"model": ft.model} if ft is not None else {}
    sc = _pick(runs, "scratch", int(ft.n_train) if ft is not None else None, model)
    zs = _pick(runs, "zero-shot", prefer={**model, "init": ft.init} if ft is not None else None)
    return {LABELS[r.method].format(n=r.n_train): r for r in (ft, sc, zs) if r is not None}


# -- predictions ---------------------------------------------------------------------------
def _checkpoint(root: Path, row: ResultRow) -> Path | None:
    """The checkpoint a run's test error came from: its own, or for zero-shot the one its
    record's ``init_path`` names (looked up under ``root/runs`` when the study folder was
    moved since). None when it is not there."""
    run_dir = root / "runs" / row.run_id
    if row.method != "zero-shot":
        own = run_dir / "checkpoint"
        return own if own.is_dir() else None
    init = (read_record(run_dir / "record.json") or {}).get("init_path")
    if not isinstance(init, str) or not init:
        return None
    init_path = Path(init)
    moved = root / "runs" / init_path.parent.name / init_path.name
    return next((p for p in (init_path, moved) if p.is_dir()), None)


def _predict(checkpoint: Path, dataset, inputs) -> np.ndarray:
    """The model's prediction (S, n, n) for dataset-ordered ``inputs`` (S, C, n, n), made as
    the study evaluated it: channels mapped by name, the model's normalisation plus the
    test data's families it lacks (zero-shot on another family), each sample's family."""
    import torch

    from pdefm.api import Model, load_model
    from pdefm.train.checkpoint import map_channels

    model = load_model(checkpoint)
    cmap = map_channels(model.input_channels, dataset.input_channels, f"checkpoint {checkpoint}")
    model = Model(model.network, model.card, model.norm.with_dataset(dataset.card))
    x = cmap.apply(inputs)
    families = dataset.families()[: len(x)]
    out = [model.predict(x[i : i + 1], family=str(f)) for i, f in enumerate(families)]
    return torch.cat(out)[:, 0].numpy()


def shown_input(inputs: np.ndarray, channels: list[str], fields: list[str]) -> str:
    """The input channel a samples panel shows: the source, unless it is constant over the grid
    in every sample (darcy's f = 1) and another input field varies (its coefficient a(x)).
    inputs (S, C, n, n) in ``channels`` order; ``fields`` the field channels, source first."""
    flat = inputs.reshape(inputs.shape[0], inputs.shape[1], -1)
    varies = {c: bool(np.ptp(flat[:, k], axis=1).max() > 0) for k, c in enumerate(channels)}
    if varies[channels[0]]:
        return channels[0]
    return next((c for c in fields[1:] if varies.get(c)), channels[0])


def predict_samples(
    root: str | Path, rows: list[ResultRow], task: str, n_samples: int = 3
) -> dict | None:
    """Predictions on the first ``n_samples`` (at most 4) test samples of ``task`` by the runs
    :func:`pick_runs` chooses, as ``figures.samples_panel`` takes them: {"title": str,
    "inputs": source (S, n, n), "truth": (S, n, n), "predictions": {label: (S, n, n)},
    "details": {label: the method in words}}, labels "fine-tuned, N=8", "scratch, N=8",
    "zero-shot". None when nothing can be predicted: no completed run of the task with its
    checkpoint still on disk, or the task's dataset no longer in ``root/data``. A damaged
    checkpoint or dataset is a one-line PdefmError."""
    root = Path(root)
    picks = pick_runs(rows, task)
    found = {label: (row, _checkpoint(root, row)) for label, row in picks.items()}
    found = {label: (row, ckpt) for label, (row, ckpt) in found.items() if ckpt is not None}
    data = root / "data" / task
    if not found or not (data / "card.json").is_file():
        return None
    from pdefm.data.dataset import PDEDataset

    test = PDEDataset(data, "test")
    try:
        count = min(max(1, int(n_samples)), MAX_SAMPLES, len(test))
        inputs, target = test.batch(np.arange(count))
        preds = {label: _predict(ckpt, test, inputs) for label, (_, ckpt) in found.items()}
        shown = shown_input(inputs.numpy(), test.input_channels, test.card.field_channels)
    finally:
        test.close()
    first = next(iter(found.values()))[0]
    return {
        "title": f"{row_task_title(first)}: first {count} test samples",
        "inputs": inputs[:, test.input_channels.index(shown)].numpy(),
        "input_name": shown,
        "truth": target[:, 0].numpy(),
        "predictions": preds,
        "details": {label: method_label(curve_key(row), row) for label, (row, _) in found.items()},
    }
