"""The savings check: a savings factor is settled only when retraining the runs it rests on
with twice the budget moves it by at most 15% (or its paired-seed interval) and keeps it on
the same side of 1; otherwise it is printed as a range, never as one number."""

from __future__ import annotations

import math

import pytest

from pdefm.report.savings_check import (
    BUDGET_BOUND,
    INCOMPLETE,
    SETTLED,
    UNCHECKED,
    check_savings,
    crossing_sizes,
    verdict_line,
)
from pdefm.report.table import build_curves
from pdefm.study.row import ResultRow

SIZES = (8, 16, 32, 64, 128)
SEEDS = (0, 1, 2)


def row(method: str, n: int, err: float, seed: int, tag: str = "") -> ResultRow:
    scratch = method == "scratch"
    return ResultRow.from_json(dict(
        run_id=f"{method}-{n}-{seed}{tag}", kind="downstream", status="completed", task="t",
        family="poisson", parameter="e", task_low=5.0, task_high=10.0, method=method,
        init="scratch" if scratch else "pre", init_family="none" if scratch else "poisson",
        mode="full", model="fno-micro", params=9000, seed=seed, n_train=n, lr=1e-3,
        val_rel_l2=err, test_rel_l2=err, test_mse=err**2, test_residual=0.1,
        pretrain_low=None if scratch else 1.0, pretrain_high=None if scratch else 5.0,
        wall_time_s=1.0,
    ))  # fmt: skip


def noise(seed: int) -> float:
    return 1 + 0.01 * (seed - 1)  # a little seed spread, the same in both arms


def curves(scratch_scale: float = 1.0, ft_scale: float = 1.0, tag: str = ""):
    """Scratch err = N^-1/2, fine-tuning err = (4 N)^-1/2: S = 4 wherever both reach."""
    rows = [row("scratch", n, scratch_scale * n**-0.5 * noise(s), s, tag)
            for n in SIZES for s in SEEDS]  # fmt: skip
    rows += [row("finetune", n, ft_scale * (4 * n) ** -0.5 * noise(s), s, tag)
             for n in SIZES for s in SEEDS]  # fmt: skip
    return build_curves(rows)


def pair(cs):
    sc = next(c for c in cs.values() if c.key.method == "scratch")
    ft = next(c for c in cs.values() if c.key.method == "finetune")
    return ft, sc


def doubled_map(cs2) -> dict:
    """Every run of ``cs2`` under the key of the run it reruns."""
    return {(c.key, int(r.n_train), r.seed): r for c in cs2.values() for r in c.rows}


def test_unchecked_savings_are_marked_as_such():
    ft, sc = pair(curves())
    checks = check_savings(ft, sc)
    inside = [c for c in checks if c.base["relation"] == "="]
    assert inside and all(c.verdict == UNCHECKED for c in checks)
    assert all(c.base["savings"] == pytest.approx(4.0) for c in inside)
    assert all("unchecked" in c.text() for c in checks)


def test_a_saving_that_holds_at_twice_the_budget_is_settled_and_printed_as_a_number():
    ft, sc = pair(curves())
    # both arms 5% better with twice the budget: the factor stays 4
    twice = doubled_map(curves(0.95, 0.95, tag="-2B"))
    checks = [c for c in check_savings(ft, sc, twice) if c.base["relation"] == "="]
    assert checks and all(c.verdict == SETTLED for c in checks)
    for c in checks:
        assert c.doubled["savings"] == pytest.approx(4.0, rel=1e-6)
        assert c.text() == c.base["text"] == "4"


def test_a_saving_that_moves_by_30_percent_is_a_range_never_a_number():
    ft, sc = pair(curves())
    # scratch improves with twice the budget (errors x 1.3^-1/2), fine-tuning does not:
    # N_finetune(T) grows 1.3-fold, so S falls from 4 to 4 / 1.3
    twice = doubled_map(curves(1.3**-0.5, 1.0, tag="-2B"))
    checks = [c for c in check_savings(ft, sc, twice) if c.base["relation"] == "="]
    assert checks
    for c in checks:
        assert c.verdict == BUDGET_BOUND and c.drift == pytest.approx(1 / 1.3 - 1, rel=1e-6)
        text = c.text()
        assert text.startswith("[3.08, 4]") and "budget-bound" in text and "shrinks" in text
        assert text != c.base["text"]
        assert "budget-bound" in verdict_line(c) and "-23%" in verdict_line(c)


def test_the_paired_seed_interval_widens_the_tolerance():
    """With a wide seed spread a 30% drift is within the interval: settled."""
    rows = []
    for s, spread in zip(SEEDS, (0.7, 1.0, 1.4), strict=True):
        rows += [row("scratch", n, n**-0.5, s) for n in SIZES]
        rows += [row("finetune", n, (spread * 4 * n) ** -0.5, s) for n in SIZES]
    ft, sc = pair(build_curves(rows))
    twice = doubled_map(curves(1.3**-0.5, 1.0, tag="-2B"))
    checks = [c for c in check_savings(ft, sc, twice) if c.half_width is not None]
    assert checks and all(c.half_width > math.log(1.3) for c in checks)
    assert all(c.verdict == SETTLED for c in checks)


def test_a_saving_that_crosses_1_is_budget_bound_however_small_the_move():
    rows = [row("scratch", n, n**-0.5 * noise(s), s) for n in SIZES for s in SEEDS]
    rows += [row("finetune", n, (1.05 * n) ** -0.5 * noise(s), s) for n in SIZES for s in SEEDS]
    ft, sc = pair(build_curves(rows))
    twice_rows = [row("scratch", n, (1.2 * n) ** -0.5 * noise(s), s, "-2B")
                  for n in SIZES for s in SEEDS]  # fmt: skip
    twice_rows += [row("finetune", n, (1.05 * n) ** -0.5 * noise(s), s, "-2B")
                   for n in SIZES for s in SEEDS]  # fmt: skip
    checks = [c for c in check_savings(ft, sc, doubled_map(build_curves(twice_rows)))
              if c.base["relation"] == "="]  # fmt: skip
    assert checks
    for c in checks:
        assert c.base["savings"] > 1 > c.doubled["savings"]
        assert c.verdict == BUDGET_BOUND


def test_only_the_runs_a_saving_rests_on_are_needed_and_a_moved_crossing_is_incomplete():
    rows = [row("scratch", n, n**-0.5 * noise(s), s) for n in SIZES for s in SEEDS]
    rows += [row("finetune", n, (3 * n) ** -0.5 * noise(s), s) for n in SIZES for s in SEEDS]
    ft, sc = pair(build_curves(rows))  # S = 3
    assert crossing_sizes(ft, 16**-0.5) == [8]  # N_ft = 16 / 3: already there at N = 8
    assert crossing_sizes(ft, 128**-0.5) == [32, 64]  # N_ft = 128 / 3
    checks = check_savings(ft, sc)
    at_64 = next(c for c in checks if c.anchor.n == 64)  # T = 1/8: N_ft = 21.3
    want = {("scratch", 64), ("finetune", 16), ("finetune", 32)}
    assert {(k[0].method, k[1]) for k in at_64.runs} == want and len(at_64.runs) == 9
    # rerun only those runs, scratch much better: the crossing moves past N = 32
    twice = doubled_map(curves(0.5, 1.0, tag="-2B"))
    partial = {k: v for k, v in twice.items() if k in set(at_64.runs)}
    again = next(c for c in check_savings(ft, sc, partial) if c.anchor.n == 64)
    assert again.verdict == INCOMPLETE and "incomplete" in again.text()


# -- a study, end to end ------------------------------------------------------------------------
STUDY = """
name: check
resolution: 16
sigma: 0.125
datasets:
  pre: {family: poisson, range: [1, 5], n_train: 128, n_val: 16, n_test: 16}
  down: {family: poisson, range: [5, 10], n_train: 32, n_val: 16, n_test: 16, seed: 1}
pretrain:
  pre: {data: pre, model: fno-micro, epochs: 40, lrs: [0.01]}
downstream:
  tasks: [down]
  sizes: [4, 32]
  inits: [scratch, pre]
  models: [fno-micro]
  lrs: [0.01]
  lr_extend: 0
  seeds: [0, 1]
  epochs: 60
"""


@pytest.mark.slow
def test_check_savings_reruns_what_the_factors_rest_on_and_prints_the_verdicts(tmp_path, capsys):
    from pdefm.cli import main
    from pdefm.report.analysis import study_checks
    from pdefm.report.table import build_curves
    from pdefm.study.doubling import load_doublings
    from pdefm.study.results import load_results

    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    root = tmp_path / "check"
    argv = ["study", "run", str(path), "--out", str(root), "--quiet"]
    assert main(argv) == 0
    before = load_results(root)
    assert main([*argv, "--check-savings"]) == 0
    out = capsys.readouterr().out
    assert "savings check" in out and "S(B)" in out and "S(2B)" in out
    entries = load_doublings(root)
    assert entries
    runs = {r.run_id: r for r in before}
    for e in entries.values():
        base = runs[e["of"]]  # a run of the study, rerun with twice its budget at its rate
        assert e["config"]["epochs"] == 120 and e["config"]["lrs"] == [0.01]
        assert base.lr in (0.01, None)  # None: the fine-tuning start was kept
        assert e["config"]["seed"] == base.seed and e["config"]["n_train"] == base.n_train
    rows = load_results(root)
    checks = [r for r in rows if r.check_of is not None]
    assert len(checks) == len(entries) and all(r.budget_factor == 2 for r in checks)
    # the reruns are compared with, never mixed into, the curves
    assert build_curves(rows).keys() == build_curves(before).keys()
    assert all(len(c.rows) == 4 for c in build_curves(rows).values())
    verdicts = study_checks(rows)
    assert verdicts and all(c.verdict != "unchecked" for c in verdicts)
    for c in verdicts:
        assert c.verdict in out.split(c.base["text"], 1)[-1] or c.verdict in out
    # asked again: nothing new to run
    assert main([*argv, "--check-savings"]) == 0
    assert load_doublings(root).keys() == entries.keys()
    capsys.readouterr()
    assert main(["study", "status", str(root)]) == 0
    status = capsys.readouterr().out
    assert f"{len(before)} training/evaluation runs: {len(before)} completed" in status
    assert f"(--check-savings): {len(entries)}: {len(entries)} completed" in status
    # the report shows each factor at both budgets with its verdict
    assert main(["report", str(root)]) == 0
    md = (root / "report" / "report.md").read_text()
    assert "| S(2B) | drift | verdict |" in md and "Savings check:" in md


def test_the_savings_figure_draws_unsettled_factors_hollow_with_their_range():
    from pdefm.report.figures import _savings_figure

    ft, sc = pair(curves())
    entry = {"target": 0.1, "savings": 4.0, "relation": "="}
    res = [
        {**entry, "verdict": "settled", "savings_2b": 4.1},
        {**entry, "target": 0.05, "verdict": "budget-bound", "savings_2b": 3.0},
        {**entry, "target": 0.02, "verdict": "unchecked", "savings_2b": None},
    ]
    fig = _savings_figure([(ft, sc, res)])
    dots = [ln for ln in fig.axes[0].lines if ln.get_marker() == "o"]
    faces = {float(ln.get_xdata()[0]): ln.get_markerfacecolor() for ln in dots}
    assert faces[0.02] == faces[0.05] == "none" and faces[0.1] != "none"
    bars = [ln for ln in fig.axes[0].lines if list(ln.get_xdata()) == [0.05, 0.05]]
    assert len(bars) == 1 and sorted(bars[0].get_ydata()) == [3.0, 4.0]
