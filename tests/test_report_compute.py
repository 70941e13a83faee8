"""pdefm.report.compute: the Compute section's numbers, checked by hand on constructed rows."""

from __future__ import annotations

import math

import pytest

from pdefm.report import write_report
from pdefm.report.analysis import savings_by_curve
from pdefm.report.compute import (
    AMBIGUOUS,
    BEYOND,
    NOT_RECORDED,
    break_even_rows,
    compute_blocks,
    downstream_cost_rows,
    equal_compute_rows,
    gains_rows,
    ops_text,
    pretrain_cost_rows,
    pretrain_rows,
    seconds_text,
    stage_cost,
)
from pdefm.report.table import build_curves
from pdefm.study.row import ResultRow

# scratch halves its error per doubling of N; fine-tuning reaches the same errors with half N
SCRATCH = {8: 0.4, 16: 0.2, 32: 0.1, 64: 0.05}
FINETUNE = {4: 0.4, 8: 0.2, 16: 0.1}
SCRATCH_OPS = {8: 1e11, 16: 2e11, 32: 5e11, 64: 1e12}
FINETUNE_OPS = {4: 0.5e11, 8: 1e11, 16: 2e11}
GENERATION = {"wall_s": 50.0, "cpu_s": 200.0}
DATASETS = {"pre": {"family": "poisson", "role": "pretrain", "generation": GENERATION}}


def row(method: str, n: int, err: float, seed: int = 0, **kw) -> ResultRow:
    """A completed downstream row of task "t" (fno-tiny), fine-tuned from poisson e in [1, 5]."""
    scratch = method == "scratch"
    base = dict(
        run_id=f"t-{method}-{n}-{seed}-{kw.get('check_of')}", kind="downstream",
        status="completed", task="t", family="poisson", parameter="e", task_low=5.0,
        task_high=10.0, method=method, init="scratch" if scratch else "pre_stage",
        init_family="none" if scratch else "poisson", mode="full", model="fno-tiny",
        params=70000, seed=seed, n_train=n, lr=1e-3, val_rel_l2=err, test_rel_l2=err,
        test_mse=err**2, test_residual=0.1, pretrain_low=None if scratch else 1.0,
        pretrain_high=None if scratch else 5.0, wall_time_s=1.0, converged=True,
    )  # fmt: skip
    base.update(kw)
    return ResultRow.from_json(base)


def pre_row(seed: int, flops: float | None, core_s: float | None = 100.0, **kw) -> ResultRow:
    """A completed pre-training run on dataset "pre" (poisson, e in [1, 5])."""
    base = dict(
        run_id=f"pre-{seed}", kind="pretrain", status="completed", task="pre", family="poisson",
        parameter="e", task_low=1.0, task_high=5.0, method="pretrain", init="scratch",
        init_family="none", mode="full", model="fno-tiny", params=70000, seed=seed,
        n_train=None, lr=3e-3, val_rel_l2=0.01, test_rel_l2=0.01, test_mse=1e-4,
        test_residual=0.1, pretrain_low=None, pretrain_high=None, wall_time_s=60.0,
        flops=flops, core_s=core_s, device="cpu", pretrain_seed=seed,
    )  # fmt: skip
    base.update(kw)
    return ResultRow.from_json(base)


def study(p_flops=(0.8e12, 1.2e12), ft_ops=FINETUNE_OPS) -> list[ResultRow]:
    """Pre-training (mean P = 1e12 by default), scratch and fine-tune curves with known costs;
    a core-second is 1e9 operations on every downstream run."""
    rows = [pre_row(s, f) for s, f in enumerate(p_flops)]
    rows += [row("scratch", n, e, flops=SCRATCH_OPS[n], core_s=SCRATCH_OPS[n] / 1e9)
             for n, e in SCRATCH.items()]  # fmt: skip
    rows += [row("finetune", n, e, flops=ft_ops[n], core_s=ft_ops[n] / 1e9)
             for n, e in FINETUNE.items()]  # fmt: skip
    return rows


def tables(rows: list[ResultRow], datasets=DATASETS):
    """(pairs, stages) as compute_blocks builds them."""
    pairs = savings_by_curve(build_curves(rows))
    stages = {ft.key: stage_cost(pretrain_rows(rows), ft, datasets) for ft, _, _ in pairs}
    return pairs, stages


def by_target(rows: list[list[str]]) -> dict[str, list[str]]:
    """Break-even rows keyed by their target cell."""
    return {r[2]: r for r in rows}


def test_number_formats():
    assert ops_text(1.234e12) == "1.23e12" and ops_text(3e11) == "3.00e11"
    assert ops_text(None) == NOT_RECORDED
    assert seconds_text(4.567) == "4.57" and seconds_text(12345.0) == "12300"
    assert seconds_text(None) == NOT_RECORDED


def test_break_even_by_hand():
    pairs, stages = tables(study())
    assert stages[pairs[0][0].key].ops == pytest.approx(1e12)
    got = by_target(break_even_rows(pairs, stages))
    # target 0.1: scratch needs N = 32 (5e11 ops), fine-tuning N = 16 (2e11): D = 3e11
    assert got["0.1"][3] == "3.00e11" and got["0.1"][4] == "3.33"
    # target 0.2: scratch 16 (2e11), fine-tuning 8 (1e11): k* = 1e12 / 1e11
    assert got["0.2"][4] == "10.0"
    # core-seconds: P_c = 100 (runs) + 200 (data generation), D = 300 -> k* = 1
    assert got["0.1"][5] == "1.00"
    # fine-tuning never reaches 0.05 by its largest N: D is an upper bound, k* a lower one
    assert got["0.05"][3] == "< 8.00e11" and got["0.05"][4] == "> 1.25"


def test_break_even_never_when_fine_tuning_costs_more():
    pairs, stages = tables(study(ft_ops={4: 0.5e11, 8: 3e11, 16: 6e11}))
    got = by_target(break_even_rows(pairs, stages))
    assert got["0.1"][3] == "-1.00e11" and got["0.1"][4] == "never"
    assert got["0.2"][4] == "never" and got["0.1"][5] == "never"


def test_break_even_without_generation_says_so():
    pairs, stages = tables(study(), datasets={})
    got = by_target(break_even_rows(pairs, stages))
    assert got["0.1"][5] == "0.333 (data generation not recorded)"  # P_c = 100, D = 300


def test_equal_compute_interpolates_and_says_beyond():
    pairs, stages = tables(study(p_flops=(2e11,)))
    got = {r[2]: r for r in equal_compute_rows(pairs, stages)}
    # N = 4: P + F = 2.5e11 lies between scratch N = 16 (2e11, 0.2) and N = 32 (5e11, 0.1)
    t = math.log(2.5e11 / 2e11) / math.log(5e11 / 2e11)
    err = math.exp(math.log(0.2) + t * math.log(0.1 / 0.2))
    n = math.exp(math.log(16) + t * math.log(2))
    assert got["4"][4] == "2.50e11"
    assert got["4"][5] == f"{err:#.3g}" and got["4"][6] == f"{n:.4g}"
    assert got["4"][7] == f"{err / 0.4:.3g}"
    # N = 16: 2e11 + 2e11 = 4e11 is still inside; with P = 1e12 every N is beyond
    pairs, stages = tables(study())
    assert all(r[5] == BEYOND for r in equal_compute_rows(pairs, stages))


def test_gains_accuracy_ratio_and_efficiency_from_the_savings_table():
    pairs, _ = tables(study())
    got = {r[2]: r for r in gains_rows(pairs, {})}
    # both ran N = 8 and 16: scratch 0.4 / fine-tune 0.2 and 0.2 / 0.1
    assert got["8"][4] == "2.00" and got["16"][4] == "2.00"
    assert "4" not in got and got["64"][4] == "-"  # fine-tuning alone ran 4: no gain to give
    # scratch reaches 0.1 at N = 32, fine-tuning at 16: savings 2, not yet checked
    assert got["32"][3] == "2 (unchecked)"


def test_not_recorded_and_check_reruns_ignored():
    rows = [row("scratch", n, e) for n, e in SCRATCH.items()]  # old rows: no flops, no core_s
    rows += [row("finetune", n, e) for n, e in FINETUNE.items()]
    rows += [pre_row(0, None, None, device=None, wall_time_s=None)]
    # a savings-check rerun at twice the budget: never counted
    rows.append(row("scratch", 8, 0.3, check_of="x", flops=9e15, core_s=9e5))
    (pre,) = pretrain_cost_rows(pretrain_rows(rows), {})
    assert pre[3:] == [NOT_RECORDED] * 6
    cost = {(r[1], r[2]): r for r in downstream_cost_rows(build_curves(rows))}
    assert cost[("trained from scratch (fno-tiny)", "8")][3:] == ["1", NOT_RECORDED, NOT_RECORDED]
    pairs, stages = tables(rows)
    assert all(r[4] == NOT_RECORDED for r in equal_compute_rows(pairs, stages))
    cells = {r[4] for r in break_even_rows(pairs, stages)}
    assert cells == {NOT_RECORDED, "-"}  # 0.4: both reach it at their smallest


def test_partly_recorded_mean_says_how_many():
    rows = study() + [row("scratch", 8, 0.4, seed=1)]  # a second seed without flops
    cost = {(r[1], r[2]): r for r in downstream_cost_rows(build_curves(rows))}
    cells = cost[("trained from scratch (fno-tiny)", "8")][3:]
    assert cells == ["2", "1.00e11 (1 of 2 runs)", "100 (1 of 2 runs)"]


def test_no_pretraining_run_is_said():
    rows = [r for r in study() if r.kind != "pretrain"]
    pairs, stages = tables(rows)
    cells = {r[4] for r in break_even_rows(pairs, stages)}
    assert cells == {"no pre-training run", "-"}


def test_write_report_has_compute_section(tmp_path):
    rows = study()
    blocks = compute_blocks(rows, build_curves(rows), DATASETS, {})
    assert blocks[0] == ("h2", "Compute")
    md = write_report(rows, tmp_path, datasets=DATASETS)["markdown"].read_text()
    section = md.split("## Compute", 1)[1].split("\n## ", 1)[0]
    assert "break-even" in section.lower() and "equal compute" in section.lower()
    assert "3.33" in section and "efficiency gain" in section and "accuracy gain" in section


def test_two_matching_pretraining_datasets_give_no_p():
    rows = study() + [pre_row(5, 1e9, task="pre_other", run_id="other")]
    pairs, stages = tables(rows)
    assert stages[pairs[0][0].key].ops is None
    assert {r[4] for r in break_even_rows(pairs, stages)} == {AMBIGUOUS, "-"}


def test_with_the_stage_column_a_curve_takes_its_own_stages_runs():
    """Tables with ``stage`` need no guess: another stage on the same data is not counted."""
    rows = [r for r in study() if r.kind != "pretrain"]
    rows += [pre_row(s, f, stage="pre_stage") for s, f in enumerate((0.8e12, 1.2e12))]
    rows += [pre_row(9, 5e13, stage="longer", run_id="longer")]  # same model, data and range
    pairs, stages = tables(rows)
    assert stages[pairs[0][0].key].ops == pytest.approx(1e12)
