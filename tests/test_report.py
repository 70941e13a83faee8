"""pdefm.report: scaling fits, data savings, headline, the written report; no torch needed."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from pdefm.report import data_savings, fit_power_law, headline, write_report
from pdefm.study.row import ResultRow

SIZES = [8, 16, 32, 64, 128, 256, 512]


def test_fit_power_law_recovers_law_and_ci_contains_truth():
    rng = np.random.default_rng(0)
    n = np.tile(np.array(SIZES, dtype=float), 3)
    seeds = np.repeat([0, 1, 2], len(SIZES))
    err = (2.0 * n**-0.5 + 0.01) * np.exp(0.02 * rng.standard_normal(n.size))
    fit = fit_power_law(n, err, seeds)
    assert fit.interval == "95% CI" and fit.n_seeds == 3
    assert abs(fit.b - 0.5) < 0.1
    assert abs(fit.a - 2.0) < 0.3 and 0.0 <= fit.c < 0.03
    for name, truth in (("a", 2.0), ("b", 0.5), ("c", 0.01)):
        lo, hi = fit.ci[name]
        assert lo <= truth <= hi, (name, lo, hi)


def test_fit_power_law_exact_and_one_seed_has_no_interval():
    n = np.array(SIZES, dtype=float)
    fit = fit_power_law(n, 3.0 * n**-0.7)  # noiseless: exact recovery
    assert fit.interval == "none" and fit.ci == {}
    assert fit.c == pytest.approx(0.0, abs=1e-12) and fit.b == pytest.approx(0.7, abs=1e-9)
    assert fit.a == pytest.approx(3.0, rel=1e-9)


def curve(n, scale=1.0):
    """err = (scale N)^-1/2 at the given sizes."""
    n = np.asarray(n, dtype=float)
    return n, (scale * n) ** -0.5


def test_data_savings_exact_inside_both_ranges():
    scratch, ft = curve(SIZES), curve(SIZES, 16.0)
    # scratch errors at N in (128, 512] are inside the fine-tune curve's range too
    targets = [150**-0.5, 256**-0.5, 400**-0.5, 512**-0.5]
    for r in data_savings(scratch, ft, targets):
        assert r["relation"] == "=" and r["savings"] == pytest.approx(16.0, rel=1e-9)
        assert r["text"] == "16"


def test_data_savings_bounds():
    scratch, ft = curve(SIZES), curve(SIZES, 16.0)
    only_ft = 2048**-0.5  # fine-tuning reaches it at N = 128, scratch not by 512
    neither = 1e5**-0.5
    low, none = data_savings(scratch, ft, [only_ft, neither])
    assert low["relation"] == ">" and low["text"] == "> 4"
    assert low["savings"] == pytest.approx(512 / 128) and low["scratch_found"] == "not_reached"
    assert none["relation"] == "neither" and math.isnan(none["savings"])
    assert none["text"] == "neither reaches"
    # a fine-tune curve that stalls: reached by scratch only -> an upper bound
    stall = (np.array(SIZES, float), np.maximum(curve(SIZES, 16.0)[1], 0.1))
    (up,) = data_savings(scratch, stall, [0.05])
    assert up["relation"] == "<" and up["savings"] == pytest.approx(400 / 512)


def row(task, method, n, err, seed=0, model="fno-tiny", init=None, **kw) -> ResultRow:
    """A completed downstream row with sensible defaults."""
    lo, hi = kw.pop("task_range", (5.0, 10.0))
    pre = kw.pop("pretrain_range", (None, None) if method == "scratch" else (1.0, 5.0))
    init = init or ("scratch" if method == "scratch" else "poisson_1-5")
    init_family = kw.pop("init_family", "none" if method == "scratch" else "poisson")
    mode = {"scratch": "full", "finetune": "full", "zero-shot": "zero-shot"}[method]
    base = dict(
        run_id=f"{task}-{method}-{init}-{model}-{n}-{seed}", kind="downstream",
        status="completed", task=task, family="poisson", parameter="e", task_low=lo,
        task_high=hi, method=method, init=init, init_family=init_family, mode=mode, model=model,
        params={"fno-micro": 9000, "fno-tiny": 70000}[model], seed=seed, n_train=n,
        lr=None if method == "zero-shot" else 1e-3, val_rel_l2=err, test_rel_l2=err,
        test_mse=err**2, test_residual=0.1, pretrain_low=pre[0], pretrain_high=pre[1],
        wall_time_s=1.0, lrs_tried="" if method == "zero-shot" else "0.0003 0.001 0.003",
        lr_at_edge="", epochs=None if method == "zero-shot" else 200,
        steps=None if method == "zero-shot" else 200 * max(1, n // 16), batch_size=16,
        budget_rule="epochs", converged=None if method == "zero-shot" else True, budget_factor=1,
    )  # fmt: skip
    base.update(kw)
    return ResultRow.from_json(base)


def test_headline_states_the_interpolated_crossing_seeds_and_budget():
    rows = [row("b_task", "scratch", n, 0.5) for n in (8, 16)]
    rows += [row("a_task", "scratch", n, (n / 8) ** -0.5, seed=s) for n in SIZES for s in (0, 1)]
    ft = [row("a_task", "finetune", n, 0.25 * (n / 8) ** -0.5, seed=s) for n in (8, 16, 32)
          for s in (0, 1)]  # fmt: skip
    text = headline(rows + ft)
    # 25% is crossed between scratch N=64 (35.4%) and N=128 (25.0%): log-log interpolation
    assert text.startswith(
        "On Poisson, e in [5, 10] (fno-tiny, fine-tuned from Poisson, e in [1, 5]): "
        "fine-tuning reached 25.0% test error with 8 examples (mean of 2 seeds); training from "
        "scratch needed about 128 (interpolated between N=64 at 35.4% and N=128 at 25.0%)."
    ), text
    assert "Budget: 200 epochs per run" in text and "from 0.0003, 0.001, 0.003" in text
    assert "budget-limited" not in text
    # scratch that stops at 64 examples only gives a bound, and says so
    short = [r for r in rows if not (r.method == "scratch" and r.n_train > 64)]
    assert "did not reach it with up to 64 examples" in headline(short + ft)
    assert "savings are more than 8x" in headline(short + ft)


def test_headline_one_seed_says_no_spread_and_counts_flagged_runs():
    rows = [row("t", "scratch", n, (n / 8) ** -0.5) for n in SIZES]
    rows += [row("t", "finetune", n, 0.25 * (n / 8) ** -0.5) for n in (8, 16)]
    rows[-1] = replace(rows[-1], converged=False)
    rows[0] = replace(rows[0], lr_at_edge="high")
    text = headline(rows)
    assert "(one seed, so no spread)" in text
    assert "2 of the 9 runs behind it were budget-limited or chose a learning rate" in text


def test_headline_never_above_zero_shot_or_one():
    scratch = [row("t", "scratch", n, 2.0 * (n / 8) ** -0.5) for n in SIZES]
    # fine-tuning at 8 (40%) is worse than zero-shot (30%): the target moves to N=16 (20%)
    ft = [row("t", "finetune", 8, 0.4), row("t", "finetune", 16, 0.2)]
    zs = [row("t", "zero-shot", 0, 0.3)]
    text = headline(scratch + ft + zs)
    assert (
        "reached 20.0% test error with 16 examples" in text and "zero-shot it scores 30.0%" in text
    )
    # nowhere below zero-shot: no headline, and the sentence says why
    worse = [row("t", "finetune", 8, 0.5), row("t", "finetune", 16, 0.35)]
    text = headline(scratch + worse + zs)
    assert "did not beat the pre-trained model used zero-shot (30.0%" in text
    assert "reached" not in text
    # errors above 1 (worse than predicting zero) are never a target
    bad = [row("t", "finetune", 8, 1.43), row("t", "finetune", 16, 1.2)]
    text = headline(scratch + bad)
    assert "no fine-tuned model got below 100% test error (best 120%)" in text
    assert "reached" not in text


def test_summary_table_single_seed_spread_is_na():
    from pdefm.report.table import build_curves, summary_rows

    rows = [row("t", "scratch", 8, 0.5), row("t", "scratch", 16, 0.4, seed=0)]
    rows += [row("t", "scratch", 16, 0.3, seed=1)]
    cells = {r[3]: r[-1] for r in summary_rows(build_curves(rows))}
    assert cells["8"] == "0.5 ± n/a" and cells["16"].startswith("0.35 ± 0.071")


def test_learning_rate_selected_on_validation():
    rows = [row("t", "scratch", n, 1.0) for n in SIZES]
    rows += [row("t", "finetune", 8, 0.5), row("t", "finetune", 16, 0.4)]
    # same run with another lr: better test error but worse validation error -> not chosen
    rows.append(row("t", "finetune", 8, 0.01, val_rel_l2=0.9, lr=1e-2, run_id="other-lr"))
    assert "reached 50.0% test error" in headline(rows)


TASKS = {"poisson_10-20": (10.0, 20.0), "poisson_5-10": (5.0, 10.0)}
INITS = {"poisson_1-5": (1.0, 5.0), "poisson_1-2.5": (1.0, 2.5)}


def synthetic_err(rng, n_eff: float, gain: float) -> float:
    """gain (0.9 n_eff^-0.4 + 0.02) with 3% multiplicative noise; n_eff = 0 means zero-shot."""
    clean = 0.5 if n_eff == 0 else 0.9 * n_eff**-0.4 + 0.02
    return gain * clean * math.exp(0.03 * rng.standard_normal())


def fixture_rows() -> list[ResultRow]:
    """2 tasks x (scratch, finetune from 2 pre-training ranges, zero-shot) x 2 models x 2 seeds
    x sizes 8..512, one failed run and one pre-training run."""
    rng = np.random.default_rng(1)
    rows = []
    grid = [(t, m, g, s) for t in TASKS for m, g in (("fno-micro", 1.0), ("fno-tiny", 0.8))
            for s in (0, 1)]  # fmt: skip
    for task, model, gain, seed in grid:
        common = dict(seed=seed, model=model, task_range=TASKS[task])
        for n in SIZES:
            rows.append(row(task, "scratch", n, synthetic_err(rng, n, gain), **common))
        for init, pre in INITS.items():
            # transfer helps less the further the pre-training range lies from the task
            boost = 30.0 / (1 + abs(sum(TASKS[task]) - sum(pre)) / 10)
            ft = dict(common, init=init, pretrain_range=pre)
            for n in SIZES:
                rows.append(row(task, "finetune", n, synthetic_err(rng, boost * n, gain), **ft))
            rows.append(row(task, "zero-shot", 0, synthetic_err(rng, 0, gain), **ft))
    fail = row("poisson_5-10", "finetune", 8, float("nan"), seed=7, status="failed")
    pre = row("poisson_1-5", "scratch", 4096, 0.01, kind="pretrain", run_id="pretrain-1")
    return rows + [fail, pre]


DATASETS = {
    "poisson_1-5": {"family": "poisson", "parameter": "e", "low": 1, "high": 5,
                    "role": "pretrain",
                    "histogram": {"edges": [1, 2, 3, 4, 5], "counts": [10, 12, 9, 11]}},
    "poisson_10-20": {"family": "poisson", "parameter": "e", "low": 10, "high": 20,
                      "role": "downstream",
                      "histogram": {"edges": [10, 15, 20], "counts": [5, 6]}},
    "helmholtz_1-10": {"family": "helmholtz", "parameter": "w", "low": 1, "high": 10,
                       "role": "pretrain", "histogram": {"counts": {"1": 10, "3": 7, "10": 4}}},
    # integer law with its counts at the top level (the shape pdefm.study.results writes)
    "helmholtz_10-20": {"family": "helmholtz", "parameter": "w", "low": 10, "high": 20,
                        "role": "downstream", "counts": {"11": 3, "15": 5, "20": 2}},
}  # fmt: skip


def test_write_report_fixture(tmp_path):
    rows = fixture_rows()
    out = write_report(rows, tmp_path / "rep", title="fixture <study>", datasets=DATASETS)
    names = sorted(p.name for p in out["figures"])
    expected = ["error_vs_n.png", "model_size.png", "parameters.png", "savings.png", "shift.png"]
    assert names == expected
    for p in out["figures"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = out["html"].read_text()
    assert html.count('<img src="data:image/png;base64,') == len(names)
    assert out["headline"] in html.replace("&#x27;", "'") and "fixture &lt;study&gt;" in html
    assert not re.search(r'(src|href)="(http|//)', html)  # self-contained
    md = out["markdown"].read_text()
    assert out["headline"] in md
    for name in names:
        assert f"]({name})" in md
    assert "failed" in md and "Poisson, e in [10, 20]" in md
    with open(out["csv"], newline="") as fh:
        table = list(csv.reader(fh))
    assert len(table) == len(rows) + 1 and table[0][0] == "run_id"
    assert out["headline"].startswith("On Poisson, e in [5, 10] (")  # tasks in range order


def test_write_report_single_model_says_why(tmp_path):
    rows = [r for r in fixture_rows() if r.model == "fno-tiny"]
    out = write_report(rows, tmp_path)
    md = out["markdown"].read_text()
    assert "Only 1 model size" in md and "No dataset cards given" in md
    assert sorted(p.name for p in out["figures"]) == ["error_vs_n.png", "savings.png", "shift.png"]


def test_import_does_not_pull_torch():
    code = "import sys, pdefm.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_savings_targets_zero_shot_already_reaches_are_marked(tmp_path):
    rows = [row("t", "scratch", n, 0.5 * (n / 8) ** -0.5, seed=s) for n in SIZES for s in (0, 1)]
    rows += [row("t", "finetune", n, 0.1 * (n / 8) ** -0.5, seed=s) for n in SIZES for s in (0, 1)]
    rows.append(row("t", "zero-shot", 0, 0.3))
    md = write_report(rows, tmp_path)["markdown"].read_text()
    lines = [line for line in md.splitlines() if line.startswith("| Poisson, e in [5, 10] | fine")]
    marked = [line for line in lines if "zero-shot already reaches it (0.3)" in line]
    # scratch's targets 0.5 and 0.354 lie above the zero-shot error; 0.25 and below do not
    assert [line.split(" | ")[3] for line in marked] == ["0.5", "0.3536"]


def test_tasks_are_ordered_by_their_parameter_range():
    from pdefm.report.table import build_curves, by_task

    ranges = {"p_10-20": (10.0, 20.0), "p_2.5-7.5": (2.5, 7.5), "p_1-5": (1.0, 5.0)}
    rows = [row(t, "scratch", 8, 0.5, task_range=r) for t, r in ranges.items()]
    assert list(by_task(build_curves(rows))) == ["p_1-5", "p_2.5-7.5", "p_10-20"]


def test_run_time_sentence_counts_runs_and_refinements():
    from pdefm.report.setup import run_time_text

    text = run_time_text(
        {"runs": {"count": 40, "seconds": 5478.0}, "refinements": {"count": 1, "seconds": 90.6}}
    )
    assert text.startswith("Run time: 1.52 h summed over 40 runs, plus 1.5 min over 1 refinement")
    assert "parallel workers overlap" in text and "data generation not counted" in text
    alone = run_time_text({"runs": {"count": 1, "seconds": 30.0}, "refinements": {"count": 0}})
    assert alone.startswith("Run time: 0.5 min summed over 1 run (")


def test_savings_at_a_crossing_of_budget_limited_runs_say_so(tmp_path):
    def limited(n):
        return {"converged": False} if n == 512 else {}

    rows = [row("t", "scratch", n, 0.5 * (n / 8) ** -0.5, seed=s, **limited(n)) for n in SIZES
            for s in (0, 1)]  # fmt: skip
    rows += [row("t", "finetune", n, 0.1 * (n / 8) ** -0.5, seed=s) for n in SIZES for s in (0, 1)]
    md = write_report(rows, tmp_path)["markdown"].read_text()
    lines = [line for line in md.splitlines() if line.startswith("| Poisson, e in [5, 10] | fine")]
    notes = {line.split(" | ")[3]: line.split(" | ")[-1].rstrip(" |") for line in lines}
    # scratch's N = 512 error is the only target whose scratch crossing uses N = 512
    assert notes["0.0625"] == "scratch still improving at N = 512 (2 of 2 runs)"
    assert [t for t, note in notes.items() if "still improving" in note] == ["0.0625"]
    assert "for scratch the saving would shrink" in md


def test_runs_that_kept_their_starting_weights_are_named_with_the_smallest_rate_tried():
    from pdefm.report.setup import flags_blocks

    rows = [row("a_task", "scratch", n, 0.5 / n) for n in (8, 16)]
    rows += [row("a_task", "finetune", 8, 0.1, start_kept=True, lrs_tried="0.001 0.003")]
    rows += [row("a_task", "finetune", 16, 0.05, start_kept=False)]
    text = " ".join(str(b[-1]) for b in flags_blocks(rows, "hint") if b[0] == "p")
    assert "1 fine-tuning run(s) kept their starting weights" in text
    assert "a_task N = 8" in text and "smallest rate tried there was 0.001" in text
    assert "kept their starting" not in " ".join(
        str(b[-1]) for b in flags_blocks(rows[:2] + rows[3:], "hint")
    )
