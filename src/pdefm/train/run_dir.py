"""A run's folder ``OUT/ID/``: its lock (one process per run, every rank told at once under
torchrun), stale temp files, and the run record at the start and at the end."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from pdefm import __version__
from pdefm.data.io import directory_lock, is_empty_dir, write_json_atomic
from pdefm.errors import PdefmError
from pdefm.train import distributed
from pdefm.train.config import RunConfig
from pdefm.train.record import RunRecord

RECORD = "record.json"


@contextlib.contextmanager
def run_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """Create and lock ``run_dir`` (rank 0; the other ranks never write). A second process
    on the same run is refused in one line rather than made to wait: a rerun afterwards
    returns the finished record at once. Temp files a killed writer left are removed."""
    if not distributed.is_main():
        if not _all_ranks_agree(True):  # rank 0 was refused: leave now, not at a timeout
            raise PdefmError(
                f"rank 0 could not take run {run_id} (in {run_dir}); see its error above"
            )
        yield
        return
    try:
        stack = _lock_run_dir(run_dir, run_id)
    except PdefmError:
        _all_ranks_agree(False)
        raise
    _all_ranks_agree(True)
    with stack:
        _remove_stale_temps(run_dir)
        yield


def _lock_run_dir(run_dir: Path, run_id: str) -> contextlib.ExitStack:
    """Create ``run_dir`` and take its lock (held by the returned stack); a refusal removes
    the folder again if this call created it."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PdefmError(
            f"cannot create the run folder {run_dir} ({exc.strerror or exc}); give --out a "
            "writable directory"
        ) from None
    busy = (
        f"run {run_id} is being trained by another process (in {run_dir}); wait for it to "
        "finish, then rerun this command to get its record"
    )
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(directory_lock(run_dir, busy))
    except PdefmError:
        if created and is_empty_dir(run_dir):  # refused: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return stack


def _all_ranks_agree(ok: bool) -> bool:
    """Whether every rank says ``ok`` (a collective under torchrun; ``ok`` alone otherwise).
    Rank 0 takes the run lock alone; this tells the other ranks whether it got it."""
    if not distributed.active():
        return ok
    flag = torch.tensor([1.0 if ok else 0.0])
    return int(distributed.all_reduce_sum(flag).item()) == distributed.world_size()


def _remove_stale_temps(run_dir: Path) -> None:
    """Temp files and folders (``.NAME.PID.RANDOM.tmp``) under a run folder whose lock we
    hold were left by a killed writer: nobody else can be writing them."""
    for path in sorted(run_dir.rglob(".*.tmp"), reverse=True):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def finished_record(run_dir: Path) -> RunRecord | None:
    """The record of a finished run in ``run_dir`` (None if there is none, or it is running)."""
    path = run_dir / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        raise PdefmError(
            f"run record {path} is damaged (not JSON); delete {run_dir} to run it again"
        ) from None
    if isinstance(record, dict) and record.get("status") in ("completed", "failed"):
        return RunRecord.from_json(record, path)
    return None


def _earlier_segments(path: Path) -> int:
    """How many processes worked on the run before this one: those an unfinished record
    (status running) counts, 0 when there is none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return 0
    if not isinstance(data, dict) or data.get("status") != "running":
        return 0
    return int(data.get("segments", 0)) or 1


class RecordDraft:
    """The run record while its run goes: started (status "running"), then filled by the run's
    steps in the order the record lists them, written by rank 0 at the start and at the end.
    The one writer of ``record.json`` (``RunRecord`` reads it)."""

    def __init__(self, config: RunConfig, resolved: dict, run_id: str, device) -> None:
        self.path = Path(config.out) / (config.run_name or run_id) / RECORD
        self.data = {
            "format": "pdefm.run",
            "id": run_id,
            "config": resolved,
            "status": "running",
            "segments": 0,
            "protocol": config.protocol,
            "device": str(device),
            "world_size": distributed.world_size(),
            "compile": config.compile,
            "pdefm_version": __version__,
            "torch_version": torch.__version__,
            "out": str(self.path.parent),
            "init_path": None if config.init == "scratch" else str(Path(config.init).resolve()),
        }
        self._segments = _earlier_segments(self.path) + 1
        self.data["segments"] = self._segments
        self._trained = {"wall_s": 0.0, "cpu_s": 0.0, "fresh_wall_s": 0.0, "fresh_cpu_s": 0.0}
        self._counts = {"samples": 0, "evaluated": 0, "flops": 0}

    def searched(
        self, per_lr: dict[str, dict], tried: list[float], start_val: float | None = None
    ) -> None:
        """Every learning rate trained: its summary by rate, and the rates in order; with
        protocol 2 fine-tuning, the starting weights' validation error (step 0)."""
        self.data["per_lr"] = per_lr
        self.data["lrs_tried"] = tried
        for entry in per_lr.values():
            for key in ("wall_s", "cpu_s"):
                self._trained[key] += entry.get(key, 0.0)
            for key in self._counts:
                self._add(key, entry.get(key, 0))
        if start_val is not None:
            self.data["start"] = {"val_rel_l2": start_val}

    def _add(self, key: str, value: int | None) -> None:
        """Add to a count; one uncountable part (None) makes the total unknown (None)."""
        current = self._counts[key]
        self._counts[key] = None if current is None or value is None else current + value

    def scored(self, examples: int, flops: int | None) -> None:
        """Examples scored outside training (the start, the final evaluation) and their
        operations."""
        self._add("evaluated", examples)
        self._add("flops", flops)

    def trained_here(self, wall_s: float, cpu_s: float) -> None:
        """The training seconds this process added (the rest of its time is set-up and
        evaluation, counted once, by ``ended``)."""
        self._trained["fresh_wall_s"] += wall_s
        self._trained["fresh_cpu_s"] += cpu_s

    def selected(
        self, edge: str | None, budget: dict, converged: bool | None, start_kept: bool = False
    ) -> None:
        """The model chosen on validation: whether its rate sits at an edge of those tried,
        the budget it ran and whether it converged; ``start_kept``: no rate beat the starting
        weights, which are the answer (edge and convergence are then null)."""
        self.data["lr_at_edge"] = edge
        self.data["budget"] = budget
        self.data["converged"] = converged
        if "start" in self.data:
            self.data["start_kept"] = start_kept

    def evaluated(self, lr: float | None, history: list[dict], final, trainable: int) -> None:
        """The selected model's final metrics (``final``, an ``Evaluation``), with its rate,
        validation history and trainable parameter count (None, [] and 0: zero-shot)."""
        self.data["selected_lr"] = lr
        self.data["history"] = history
        self.data["channels"] = final.channels
        self.data["val"] = final.val
        self.data["test"] = final.test
        self.data["parameters"] = {"total": final.total_parameters, "trainable": trainable}

    def published(self, checkpoint: Path) -> None:
        self.data["checkpoint"] = str(checkpoint)

    def ended(self, wall_s: float, cpu_s: float, failure: str | None = None) -> None:
        """Completed, or failed with ``failure`` as the reason. ``wall_s`` and ``cpu_s`` are
        this process's; the record's ``compute`` sums every process that worked on the run:
        the training time of every rate (saved with its state, so resumes add up) plus this
        process's set-up and evaluation (an interrupted process's set-up is not counted).
        ``wall_time_s`` is that total wall time (records of pdefm before compute was
        recorded hold the last process's time only)."""
        if failure is None:
            self.data["status"] = "completed"
        else:
            self.data.update(status="failed", reason=failure)
        t = self._trained
        total_wall = t["wall_s"] + max(0.0, wall_s - t["fresh_wall_s"])
        total_cpu = t["cpu_s"] + max(0.0, cpu_s - t["fresh_cpu_s"])
        self.data["wall_time_s"] = round(total_wall, 3)
        self.data["compute"] = {
            "wall_s": round(total_wall, 3),
            "cpu_s": round(total_cpu, 3),
            "segments": self._segments,
            "threads": torch.get_num_threads(),
            "device": self.data["device"],
            **self._counts,
        }

    def write(self) -> None:
        """Write the record (rank 0 only: the other ranks hold the same one)."""
        if distributed.is_main():
            write_json_atomic(self.path, self.data)

    def record(self) -> RunRecord:
        return RunRecord(self.data, self.path)
