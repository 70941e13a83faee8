"""The results row: one training / evaluation run of a study, as ``results.csv`` and the report
read it.

:class:`ResultRow` is the contract between the results store (:mod:`pdefm.study.results` builds
rows from the plan and the run records) and the report (:mod:`pdefm.report` reads them by
attribute). Its fields are the columns of ``results.csv`` in the order written (``COLUMNS``).
A row is checked when it is made, so every row the report sees has every column with a value of
its type (or None where the field allows it), a known kind and, downstream, a known method; a
row that is not is one line naming the row and how to fix it.

Rows come from JSON-like mappings (:meth:`ResultRow.from_json`) or from the text cells of
``results.csv`` (:meth:`ResultRow.from_csv`, :func:`read_rows`) and go back with
:meth:`ResultRow.to_json` and :func:`write_rows`; a table written and read back gives equal rows.
A row is also a read-only mapping over its columns, so code written for the dict rows this
class replaced (``row["test_rel_l2"]``) keeps working.

This module lives in ``pdefm.study`` because the study builds the rows, and imports nothing of
pdefm but the error class: the report imports it without pulling in the rest of the study (nor
torch), and importing ``pdefm.report`` here instead would drag matplotlib into every
``pdefm study`` command.
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import IO, Any

from pdefm.errors import PdefmError

KINDS = ("pretrain", "downstream")
METHODS = ("scratch", "finetune", "zero-shot")
#: Columns that say which protocol a run got (rates tried, edge, budget, convergence,
#: refinement factor). Rows may lack them (tables built before they existed, or by hand):
#: they are then None and the report says the protocol is unknown.
PROTOCOL_COLUMNS = (
    "lrs_tried", "lr_at_edge", "epochs", "steps", "batch_size", "budget_rule", "converged",
    "budget_factor",
)  # fmt: skip
#: Columns added after the first tables were written: None when a table lacks them.
LATER_COLUMNS = (
    "shared_range", "pretrain_seed", "protocol", "loss", "start_kept", "val_by_lr",
    "test_per_output", "flops", "core_s", "device", "check_of", "stage",
)  # fmt: skip
#: Text columns whose empty cell in results.csv is the text "" rather than None: the results
#: store writes "" there for "no parameter name", "no rate tried", "not at an edge", "no rule".
EMPTY_TEXT = ("parameter", "lrs_tried", "lr_at_edge", "budget_rule")
FIX = "rebuild the table from the run records (pdefm study collects them)"


@dataclass(frozen=True, kw_only=True, eq=False)
class ResultRow(Mapping):
    """One run of a study. Errors are relative L2 ||u_hat - u|| / ||u|| (dimensionless) of the
    learning rate selected on validation, NaN when the run has none; ``test_mse`` is in
    squared solution units, ``wall_time_s`` in seconds. Fields without a default must be given
    (None where the type allows it); the protocol columns and the ``LATER_COLUMNS`` default
    to None (unknown)."""

    run_id: str
    kind: str  # one of KINDS
    status: str  # "completed", "failed", "running", or "todo" (no record yet)
    task: str | None  # the dataset the run trained on (pre-training) or adapts to
    family: str | None  # the task data's PDE family ("mixture" for a mixture)
    parameter: str | None  # the physics parameter's short name, "mixed" for a mixture
    task_low: float | None  # the task data's declared parameter range
    task_high: float | None
    method: str  # "pretrain", or downstream one of METHODS
    init: str  # the pre-training stage it starts from, "scratch" for none
    init_family: str | None  # family of that stage's data ("mixture", ...), "none" for scratch
    mode: str  # adaptation mode: "full", "lora", "zero-shot", ...
    model: str | None  # model preset
    params: int | None  # trainable parameters of the model
    seed: int
    n_train: int | None  # downstream training examples (0 for zero-shot)
    lr: float | None  # the selected learning rate
    lrs_tried: str | None = None  # space-separated rates, "" when none was tried
    lr_at_edge: str | None = None  # "high", "low", "both", or "" when inside the rates tried
    epochs: int | None = None  # epochs and optimiser steps the selected rate ran
    steps: int | None = None
    batch_size: int | None = None
    budget_rule: str | None = None  # "epochs", "steps", "patience", or "" when unknown
    converged: bool | None = None  # had validation stopped improving (None: unknown)
    budget_factor: int | None = None  # budget multiple of the refinement standing for the run
    val_rel_l2: float | None
    test_rel_l2: float | None
    test_mse: float | None
    test_residual: float | None  # relative PDE residual of the predictions
    pretrain_low: float | None  # the init stage's parameter range (None: scratch, mixture)
    pretrain_high: float | None
    wall_time_s: float | None
    # another task of the study has the same family and parameter range (its data differ in
    # something else: boundary, forcing, seed); titles then name the task too
    shared_range: bool | None = None
    # the pre-training seed behind the run: a pre-training run's own seed, the seed of the
    # model a fine-tune / zero-shot run started from; None for scratch (and when unknown)
    pretrain_seed: int | None = None
    protocol: int | None = None  # training protocol version (1: before step-0 validation)
    loss: str | None = None  # training loss: "mse" or "rel_l2"
    # protocol 2 fine-tuning: no learning rate beat the starting weights, which were kept
    start_kept: bool | None = None
    # every rate tried and its best validation rel. L2, "0.001:0.0123 0.003:0.0101"; with
    # protocol 2 fine-tuning "start:0.0150" first: the selection can be audited
    val_by_lr: str | None = None
    # test rel. L2 of each output when there are several, "u:0.012 v:0.034"
    test_per_output: str | None = None
    flops: float | None = None  # floating-point operations of the whole run (analytic)
    core_s: float | None = None  # CPU core-seconds summed over every process of the run
    device: str | None = None  # where it ran: "cpu", "cuda:0", ...
    # the run this one reruns at twice the budget for the savings check (None: a study run)
    check_of: str | None = None
    # a pre-training run's stage (the name downstream rows give as their init; None there)
    stage: str | None = None

    def __post_init__(self) -> None:
        for name, (base, optional) in _TYPES.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            ok, what = _CHECKS[base]
            if not ok(value):
                raise PdefmError(
                    f"results row {self.run_id}: column {name!r} must be {what}, got "
                    f"{value!r}; {FIX}"
                )
        if self.kind not in KINDS:
            raise PdefmError(
                f"results row {self.run_id} has kind {self.kind!r}; "
                f"expected one of {', '.join(KINDS)}"
            )
        if self.kind == "downstream" and self.method not in METHODS:
            raise PdefmError(
                f"results row {self.run_id} has method {self.method!r}; "
                f"expected one of {', '.join(METHODS)}"
            )

    # -- in and out ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "?") -> ResultRow:
        """The row ``data`` holds (values as they are, keys outside ``COLUMNS`` ignored);
        ``where`` names it when it has no run_id (e.g. "#3", its place in a list). A missing
        column other than the protocol ones and the ``LATER_COLUMNS`` is a one-line
        :class:`PdefmError`."""
        if not isinstance(data, Mapping):
            raise PdefmError(f"results row {where} is a {type(data).__name__}, not a row; {FIX}")
        missing = [c for c in REQUIRED_COLUMNS if c not in data]
        if missing:
            raise PdefmError(
                f"results row {data.get('run_id', where)} lacks {', '.join(missing)}; {FIX}"
            )
        return cls(**{c: data[c] for c in COLUMNS if c in data})

    @classmethod
    def from_csv(cls, cells: Mapping[str, str | None], where: str = "?") -> ResultRow:
        """The row of one line of results.csv (``csv.DictReader`` cells): numbers parsed, an
        empty or "None" cell None (text "" in the ``EMPTY_TEXT`` columns and in the required
        text columns), "nan" NaN, "True" / "False" the flag. A cell the reader left out (a
        short line) counts as a missing column."""
        rid = cells.get("run_id") or where
        given = {c: text for c, text in cells.items() if c in _TYPES and text is not None}
        return cls.from_json({c: _parse(c, text, rid) for c, text in given.items()}, where)

    def to_json(self) -> dict[str, Any]:
        """The columns in ``COLUMNS`` order (what results.csv writes; None is an empty cell)."""
        return {c: getattr(self, c) for c in COLUMNS}

    # -- the read-only mapping (for code written for dict rows) ------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _TYPES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)

    def __eq__(self, other: object) -> bool:
        """Same cells, NaN equal to NaN (a run without a test error equals its copy)."""
        if not isinstance(other, ResultRow):
            return NotImplemented
        return all(_same(getattr(self, c), getattr(other, c)) for c in COLUMNS)

    # like a dict: compared by value, never a set member or a key
    __hash__ = None  # type: ignore[assignment]


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c not in PROTOCOL_COLUMNS + LATER_COLUMNS)


def _is_number(value: object) -> bool:
    """A real number (NaN and inf included), not a flag: True is not a count."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    """An integer, or a float with no fractional part (JSON may write 8 as 8.0)."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: type name of a field -> (check, what the error message says it must be)
_CHECKS = {
    "str": (lambda v: isinstance(v, str), "text"),
    "int": (_is_whole, "a whole number"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "True or False"),
}
#: column -> (type name, whether None is allowed), read from the annotations above
_TYPES = {
    f.name: (str(f.type).split(" | ")[0], str(f.type).endswith("| None")) for f in fields(ResultRow)
}


def _same(a: object, b: object) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def _parse(column: str, text: str, rid: str) -> object:
    """One results.csv cell as the column's type (see :meth:`ResultRow.from_csv`)."""
    base, optional = _TYPES[column]
    if base == "str":
        if optional and (text == "None" or (text == "" and column not in EMPTY_TEXT)):
            return None
        return text
    if text in ("", "None"):
        return None
    try:
        if base == "bool":
            return {"True": True, "False": False}[text]
        if base == "int":
            return _whole(text)
        return float(text)
    except (KeyError, ValueError):
        what = _CHECKS[base][1]
        raise PdefmError(
            f"results row {rid}: column {column!r} must be {what}, got {text!r}; "
            f"correct the cell or {FIX}"
        ) from None


def _whole(text: str) -> int:
    """ "8" or "8.0" as 8; anything else is a ValueError."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


def write_rows(rows: Iterable[ResultRow], fh: IO[str]) -> None:
    """``rows`` as CSV (header ``COLUMNS``; None an empty cell, NaN ``nan``) to ``fh``, a text
    file opened with ``newline=""``. A column of ``LATER_COLUMNS`` that is None in every row
    is left out, so that a table read from a file written before it existed writes back the
    same bytes."""
    rows = list(rows)
    unknown = [c for c in LATER_COLUMNS if all(getattr(r, c) is None for r in rows)]
    columns = [c for c in COLUMNS if c not in unknown]
    writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(row.to_json() for row in rows)


def read_rows(fh: IO[str], where: str) -> list[ResultRow]:
    """The rows of a results CSV read from ``fh`` (opened with ``newline=""``); ``where`` (the
    file) names a row without a run_id in an error, with its line."""
    reader = csv.DictReader(fh)
    return [ResultRow.from_csv(cells, f"{where} line {reader.line_num}") for cells in reader]
