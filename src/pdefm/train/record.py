"""The run record: ``OUT/ID/record.json``, what one training or evaluation run did and found.

Written by the training loop (atomically, at the start and at the end of a run) and read by
the CLI, the study runner, refinements, the results table and the report, all through
:class:`RunRecord`: typed properties over the record's JSON, checked on read (a damaged record
is one line naming the file, the field and how to run that run again). It is also a read-only
mapping, so the Python API's users may write ``record["test"]["rel_l2"]``.

Imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdefm.checks import field_error, read_json

RECORD_NAME = "record.json"
STATUSES = ("running", "completed", "failed")
EDGES = (None, "high", "low", "both")
# numbers the results table reads: field -> keys inside it
NUMBERS = {
    "test": ("rel_l2", "mse", "residual"),
    "val": ("rel_l2",),
    "parameters": ("total",),
    "budget": ("epochs_run", "steps_run", "batch"),
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class RunRecord(Mapping):
    """A run record. ``data`` is the JSON as written; ``path`` the file (None while a run
    builds it in memory)."""

    data: dict
    path: Path | None = None

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> RunRecord | None:
        """The record at ``path``, checked; None if the run has not written one. Records are
        written atomically, so one that does not parse was damaged."""
        path = Path(path)
        if not path.is_file():
            return None
        fix = f"delete {path.parent} to run that run again"
        return cls.from_json(read_json(path, fix), path, fix)

    @classmethod
    def from_json(cls, data: object, path: Path, fix: str = "") -> RunRecord:
        """``data`` checked: the fields the CLI, the runner and the results read, by type."""
        fix = fix or f"delete {path.parent} to run that run again"
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise field_error(path, "the file", f"must hold a JSON object, got {kind}", fix)
        if not isinstance(data.get("status"), str):
            raise field_error(path, "field 'status'", "must be text", fix)
        for key, names in NUMBERS.items():
            value = data.get(key)
            if value is not None and not isinstance(value, dict):
                raise field_error(path, f"field {key!r}", "must be a JSON object", fix)
            for name in names:
                number = (value or {}).get(name)
                if number is not None and not _is_number(number):
                    raise field_error(
                        path, f"{key}.{name}", f"must be a number, got {number!r}", fix
                    )
        for key in ("selected_lr", "wall_time_s"):
            if data.get(key) is not None and not _is_number(data[key]):
                raise field_error(
                    path, f"field {key!r}", f"must be a number, got {data[key]!r}", fix
                )
        _check_protocol(data, path, fix)
        return cls(data, path)

    def to_json(self) -> dict:
        return self.data

    # -- the mapping (for API users) ---------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    # -- what happened -----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def status(self) -> str:
        """ "running", "completed" or "failed"."""
        return self.data["status"]

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def finished(self) -> bool:
        """Completed or failed: nothing left to run."""
        return self.status in ("completed", "failed")

    @property
    def reason(self) -> str | None:
        """Why a run failed."""
        return self.data.get("reason")

    @property
    def out(self) -> str:
        """The run's folder."""
        return self.data["out"]

    @property
    def checkpoint(self) -> str | None:
        """The selected model's folder (None for zero-shot and failed runs)."""
        return self.data.get("checkpoint")

    # -- what it found -------------------------------------------------------------------------
    @property
    def test(self) -> dict:
        """Test metrics of the selected rate: rel_l2, mse, residual (empty if none)."""
        return dict(self.data.get("test") or {})

    @property
    def val(self) -> dict:
        return dict(self.data.get("val") or {})

    @property
    def parameters_total(self) -> int | None:
        return (self.data.get("parameters") or {}).get("total")

    @property
    def wall_time_s(self) -> float | None:
        return self.data.get("wall_time_s")

    @property
    def history(self) -> list | None:
        """The selected rate's validation history: [{epoch, step, val_rel_l2, ...}]."""
        return self.data.get("history")

    # -- the protocol it got ---------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The resolved config (what the run id hashes)."""
        return dict(self.data.get("config") or {})

    @property
    def selected_lr(self) -> float | None:
        return self.data.get("selected_lr")

    @property
    def lrs_tried(self) -> list[float]:
        return list(self.data.get("lrs_tried") or [])

    @property
    def lr_at_edge(self) -> str | None:
        """ "high", "low", "both" or None: the chosen rate at an edge of those tried."""
        return self.data.get("lr_at_edge")

    @property
    def converged(self) -> bool | None:
        """False if validation was still improving at the end; None if unknown."""
        return self.data.get("converged")

    @property
    def protocol(self) -> int:
        """The training protocol version (records written before versions existed: 1)."""
        return int(self.data.get("protocol", 1))

    @property
    def start_kept(self) -> bool | None:
        """True when no learning rate beat the starting weights, which are the selected model
        (protocol 2 fine-tuning); False when one did; None when the start was not scored."""
        return self.data.get("start_kept")

    @property
    def start_val(self) -> float | None:
        """The starting weights' validation relative L2 error (None: not scored)."""
        return (self.data.get("start") or {}).get("val_rel_l2")

    @property
    def loss(self) -> str:
        """The training loss ("mse" unless the config says otherwise)."""
        return (self.data.get("config") or {}).get("loss", "mse")

    @property
    def device(self) -> str | None:
        return self.data.get("device")

    @property
    def val_by_lr(self) -> dict[str, float]:
        """Each rate tried (as written, e.g. "0.001") -> its best validation rel. L2."""
        per_lr = self.data.get("per_lr") or {}
        return {k: v.get("best_val_rel_l2") for k, v in per_lr.items() if isinstance(v, dict)}

    @property
    def compute(self) -> dict:
        """What the run cost: wall_s, cpu_s (core-seconds), segments, threads, device,
        samples, evaluated, flops (empty for records written before it was recorded)."""
        return dict(self.data.get("compute") or {})

    @property
    def budget(self) -> dict:
        """{rule, batch, epochs, steps, epochs_run, steps_run, stopped_early}."""
        return dict(self.data.get("budget") or {})


def read_record(path: str | Path) -> RunRecord | None:
    """A run's record.json, checked (None if the run has not written one)."""
    return RunRecord.read(path)


def _check_protocol(record: dict, path: Path, fix: str) -> None:
    """The protocol fields the results table reads: rates tried, edge, convergence flag."""
    tried = record.get("lrs_tried")
    if tried is not None and not (isinstance(tried, list) and all(map(_is_number, tried))):
        raise field_error(path, "field 'lrs_tried'", "must be a list of numbers", fix)
    if record.get("lr_at_edge") not in EDGES:
        raise field_error(path, "field 'lr_at_edge'", "must be high, low, both or null", fix)
    for key in ("converged", "start_kept"):
        if record.get(key) not in (None, True, False):
            raise field_error(path, f"field {key!r}", "must be true, false or null", fix)
    if record.get("protocol") is not None and not _is_number(record["protocol"]):
        raise field_error(path, "field 'protocol'", "must be a number", fix)
