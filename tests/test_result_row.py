"""ResultRow, the results table's row: JSON and CSV round trips, one-line errors, the protocol
columns a table may lack, and the mapping view older callers read."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path

import pytest

from pdefm.errors import PdefmError
from pdefm.report.table import validate_rows
from pdefm.study.results import read_csv, write_csv
from pdefm.study.row import (
    COLUMNS,
    LATER_COLUMNS,
    PROTOCOL_COLUMNS,
    ResultRow,
    read_rows,
    write_rows,
)

RESULTS = Path(__file__).parents[1] / "results"


def cells(**kw) -> dict:
    """A completed fine-tune run as the results store builds it (every column)."""
    base = dict(
        run_id="abc123", kind="downstream", status="completed", task="poisson_5-10",
        family="poisson", parameter="e", task_low=5.0, task_high=10.0, method="finetune",
        init="poisson_1-5", init_family="poisson", mode="full", model="fno-tiny", params=70000,
        seed=1, n_train=32, lr=0.003, lrs_tried="0.001 0.003 0.01", lr_at_edge="",
        epochs=200, steps=800, batch_size=8, budget_rule="epochs", converged=True,
        budget_factor=1, val_rel_l2=0.0512, test_rel_l2=0.0498, test_mse=1.2e-6,
        test_residual=0.31, pretrain_low=1.0, pretrain_high=5.0, wall_time_s=12.5,
        shared_range=False, pretrain_seed=0, protocol=2, loss="rel_l2", start_kept=False,
        val_by_lr="start:0.061 0.001:0.0533 0.003:0.0512 0.01:0.0544", test_per_output=None,
        flops=1.5e12, core_s=40.5, device="cpu", check_of=None, stage=None,
    )  # fmt: skip
    base.update(kw)
    return base


#: the columns added with protocol 2 (pretrain_seed and after), unknown in older tables
UNKNOWN_LATER = {c: None for c in LATER_COLUMNS[1:]}


def odd_rows() -> list[ResultRow]:
    """Rows with every kind of cell: NaN metrics, None, "", both flags, a pre-training run."""
    return [
        ResultRow.from_json(cells()),
        ResultRow.from_json(cells(run_id="todo1", status="todo", params=None, lr=None,
                                  lrs_tried="", epochs=None, steps=None, batch_size=None,
                                  budget_rule="", converged=None, val_rel_l2=math.nan,
                                  test_rel_l2=math.nan, test_mse=math.nan,
                                  test_residual=math.nan, wall_time_s=None)),  # fmt: skip
        ResultRow.from_json(cells(run_id="s1", method="scratch", init="scratch", init_family="none",
                                  pretrain_low=None, pretrain_high=None, converged=False,
                                  lr_at_edge="high", budget_factor=2,
                                  pretrain_seed=None)),  # fmt: skip
        ResultRow.from_json(cells(run_id="p1", kind="pretrain", method="pretrain",
                                  init="scratch", init_family="none", n_train=None,
                                  pretrain_low=None, pretrain_high=None,
                                  pretrain_seed=1)),  # fmt: skip
        ResultRow.from_json(cells(run_id="mix", task=None, family=None, parameter="",
                                  init_family=None, model=None, task_low=None, task_high=None)),
    ]  # fmt: skip


def test_to_json_is_every_column_in_order_and_round_trips():
    row = ResultRow.from_json(cells())
    assert list(row.to_json()) == list(COLUMNS)
    assert row.to_json() == cells()
    for r in odd_rows():
        assert ResultRow.from_json(r.to_json()) == r


def test_rows_are_typed_and_read_by_attribute():
    row = ResultRow.from_json(cells())
    assert (row.n_train, row.seed, row.test_rel_l2, row.converged) == (32, 1, 0.0498, True)
    changed = replace(row, status="failed")
    assert changed.status == "failed" and row.status == "completed" and changed != row


def test_csv_write_then_read_gives_equal_rows(tmp_path):
    rows = odd_rows()
    path = write_csv(rows, tmp_path / "rows.csv")
    back = read_csv(path)
    assert back == rows  # NaN cells equal NaN, None stays None, "" stays ""
    assert math.isnan(back[1].test_rel_l2) and back[1].converged is None
    assert back[1].lrs_tried == "" and back[4].task is None and back[4].parameter == ""
    assert type(back[0].params) is int and type(back[0].task_low) is float
    again = write_csv(back, tmp_path / "again.csv")
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in RESULTS.glob("*/results.csv")))
def test_published_tables_read_and_write_back_byte_identical(folder, tmp_path):
    source = RESULTS / folder / "results.csv"
    rows = read_csv(source)
    assert rows and all(isinstance(r, ResultRow) for r in rows)
    assert write_csv(rows, tmp_path / "results.csv").read_bytes() == source.read_bytes()


def test_missing_column_is_one_line_naming_the_row():
    data = cells()
    del data["test_rel_l2"], data["model"]
    with pytest.raises(PdefmError) as err:
        ResultRow.from_json(data)
    text = str(err.value)
    assert "\n" not in text
    assert text == (
        "results row abc123 lacks model, test_rel_l2; rebuild the table from the run records "
        "(pdefm study collects them)"
    )
    del data["run_id"]
    with pytest.raises(PdefmError, match=r"^results row #1 lacks run_id, model, test_rel_l2;"):
        validate_rows([cells(), data])


def test_unknown_kind_method_or_type_is_one_line():
    with pytest.raises(PdefmError) as err:
        ResultRow.from_json(cells(method="transfer"))
    assert str(err.value) == (
        "results row abc123 has method 'transfer'; expected one of scratch, finetune, zero-shot"
    )
    with pytest.raises(PdefmError, match="has kind 'data'; expected one of pretrain, downstream"):
        ResultRow.from_json(cells(kind="data"))
    with pytest.raises(PdefmError, match="column 'n_train' must be a whole number, got '8'"):
        ResultRow.from_json(cells(n_train="8"))
    with pytest.raises(PdefmError, match="has method 'x'"):
        replace(ResultRow.from_json(cells()), method="x")  # derived rows are checked too
    bad = io.StringIO("run_id,seed\nr1,one\n")
    with pytest.raises(PdefmError) as err:
        read_rows(bad, "t.csv")
    assert "\n" not in str(err.value) and "column 'seed' must be a whole number" in str(err.value)


def test_absent_protocol_columns_become_none():
    data = {k: v for k, v in cells().items() if k not in PROTOCOL_COLUMNS}
    row = ResultRow.from_json(data)
    assert all(getattr(row, c) is None for c in PROTOCOL_COLUMNS)
    # a table written before the protocol columns existed
    old = io.StringIO()
    writer = csv.DictWriter(old, fieldnames=[c for c in COLUMNS if c not in PROTOCOL_COLUMNS])
    writer.writeheader()
    writer.writerow({k: v for k, v in row.to_json().items() if k not in PROTOCOL_COLUMNS})
    (back,) = read_rows(io.StringIO(old.getvalue()), "old.csv")
    assert back == row and back.converged is None and back.lrs_tried is None
    new = io.StringIO()
    write_rows([back], new)  # written back, the protocol cells are empty
    assert new.getvalue().splitlines()[1].count(",,") >= 1


def test_mapping_view_for_dict_callers():
    row = ResultRow.from_json(cells())
    assert row["test_rel_l2"] == row.test_rel_l2 and row.get("status") == "completed"
    assert dict(row) == row.to_json() and "seed" in row and "nope" not in row
    with pytest.raises(KeyError):
        row["nope"]


def test_report_entry_points_still_take_dict_rows(tmp_path):
    from pdefm.report import headline, write_report

    sizes = (8, 16, 32)
    rows = [cells(run_id=f"s{n}", method="scratch", init="scratch", init_family="none",
                  n_train=n, test_rel_l2=0.5 * (n / 8) ** -0.5, pretrain_low=None,
                  pretrain_high=None) for n in sizes]  # fmt: skip
    rows += [cells(run_id=f"f{n}", n_train=n, test_rel_l2=0.1 * (n / 8) ** -0.5) for n in sizes]
    typed = validate_rows(rows)
    assert headline(rows) == headline(typed) and headline(typed).startswith("On Poisson")
    out = write_report(rows, tmp_path / "rep")
    assert read_csv(out["csv"]) == typed


def test_shared_range_column_is_written_only_when_known():
    row = ResultRow.from_json(cells(**{**UNKNOWN_LATER, "shared_range": None}))
    assert row.shared_range is None
    plain = io.StringIO()
    write_rows([row], plain)  # unknown everywhere: left out, as in tables written before it
    assert "shared_range" not in plain.getvalue().splitlines()[0]
    known = io.StringIO()
    write_rows([replace(row, shared_range=True), row], known)
    assert known.getvalue().splitlines()[0].endswith(",shared_range")
    back = read_rows(io.StringIO(known.getvalue()), "t.csv")
    assert back[0].shared_range is True and back[1].shared_range is None


def test_datasets_sharing_family_and_range_are_found():
    from pdefm.study.results import _shared_ranges

    datasets = {
        "per": {"family": "darcy", "low": 1.0, "high": 10.0},
        "dir": {"family": "darcy", "low": 1.0, "high": 10.0},
        "wide": {"family": "darcy", "low": 1.0, "high": 20.0},
        "pois": {"family": "poisson", "low": 1.0, "high": 10.0},
    }
    assert _shared_ranges(datasets) == {"per", "dir"}


def test_pretrain_seed_column_is_written_only_when_known():
    row = ResultRow.from_json(cells(**UNKNOWN_LATER))
    plain = io.StringIO()
    write_rows([row], plain)  # unknown everywhere: left out, as in tables written before it
    assert "pretrain_seed" not in plain.getvalue().splitlines()[0]
    known = io.StringIO()
    scratch = replace(row, method="scratch", init="scratch", pretrain_seed=None)
    write_rows([replace(row, pretrain_seed=2), scratch], known)
    assert known.getvalue().splitlines()[0].endswith(",shared_range,pretrain_seed")
    back = read_rows(io.StringIO(known.getvalue()), "t.csv")
    assert back[0].pretrain_seed == 2 and type(back[0].pretrain_seed) is int
    assert back[1].pretrain_seed is None
    with pytest.raises(PdefmError, match="column 'pretrain_seed' must be a whole number"):
        ResultRow.from_json(cells(pretrain_seed="0"))


def test_a_table_without_pretrain_seed_writes_back_unchanged(tmp_path):
    # written just before the column existed: every column up to shared_range
    row = ResultRow.from_json(cells(**UNKNOWN_LATER))
    old = io.StringIO()
    before = COLUMNS[: COLUMNS.index("shared_range") + 1]
    writer = csv.DictWriter(old, fieldnames=before, extrasaction="ignore")
    writer.writeheader()
    writer.writerow(row.to_json())
    (back,) = read_rows(io.StringIO(old.getvalue()), "old.csv")
    assert back == row and back.pretrain_seed is None
    again = io.StringIO()
    write_rows([back], again)
    assert again.getvalue() == old.getvalue()


def test_a_record_gives_the_audit_columns():
    from pdefm.study.results import _audit_columns
    from pdefm.train.record import RunRecord

    record = RunRecord({
        "status": "completed", "protocol": 2, "device": "cpu", "start_kept": False,
        "config": {"loss": "rel_l2"}, "start": {"val_rel_l2": 0.061},
        "per_lr": {"0.001": {"best_val_rel_l2": 0.0533}, "0.003": {"best_val_rel_l2": 0.0512}},
        "test": {"rel_l2": 0.05, "per_output": {"u": 0.04, "v": 0.06}},
        "compute": {"flops": 1.5e12, "cpu_s": 40.5, "wall_s": 21.0},
    })  # fmt: skip
    cols = _audit_columns(record)
    assert cols["val_by_lr"] == "start:0.061 0.001:0.0533 0.003:0.0512"
    assert cols["test_per_output"] == "u:0.04 v:0.06" and cols["loss"] == "rel_l2"
    assert (cols["flops"], cols["core_s"], cols["device"]) == (1.5e12, 40.5, "cpu")
    assert (cols["protocol"], cols["start_kept"]) == (2, False)
    old = _audit_columns(RunRecord({"status": "completed", "config": {}}))  # before protocol 2
    assert (old["protocol"], old["loss"], old["flops"], old["core_s"]) == (1, "mse", None, None)
