"""Mixed vs single-family pre-training: init_family in the results store, mixture datasets,
and the report's panel (synthetic rows, plans and cards; no training)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from pdefm.report import mixed, write_report
from pdefm.report.table import COLUMNS, build_curves, by_task
from pdefm.study import results
from pdefm.study.row import ResultRow

SIZES = (8, 32, 128)
#: task -> (family, low, high, its single-family stage); poisson in distribution, helmholtz OOD
TASKS = {
    "pois_1-5": ("poisson", 1.0, 5.0, "pre_pois"),
    "hh_10-20": ("helmholtz", 10.0, 20.0, "pre_hh"),
}
STAGES = {"pre_mix": "mixture", "pre_pois": "poisson", "pre_hh": "helmholtz"}
#: mean test error per role at N (the numbers the panel must show)
GAIN = {"pois_1-5": 1.0, "hh_10-20": 2.0}


def mean_of(task: str, role: str, n: int = 0) -> float:
    """The mean error put into the rows for (task, role, N); N = 0 for zero-shot."""
    base = {
        "mixed": 0.10, "single": 0.08, "cross": 0.5, "scratch": 0.40, "scratch_micro": 0.30,
        "zs_mixed": 0.60, "zs_single": 0.45,
    }[role]  # fmt: skip
    return GAIN[task] * base * (8 / n) ** 0.4 if n else GAIN[task] * base


def run_row(task, method, init, n, err, seed=0, model="fno-tiny", **kw) -> ResultRow:
    """A completed downstream row of the results schema."""
    family, lo, hi, _ = TASKS[task]
    mode = "zero-shot" if method == "zero-shot" else "full"
    base = dict(
        run_id=f"{task}-{method}-{init}-{model}-{n}-{seed}", kind="downstream",
        status="completed", task=task, family=family, parameter="e", task_low=lo, task_high=hi,
        method=method, init=init, init_family=STAGES.get(init, "none"), mode=mode, model=model,
        params=70000, seed=seed, n_train=n, lr=1e-3, val_rel_l2=err, test_rel_l2=err,
        test_mse=err**2, test_residual=0.1, pretrain_low=None, pretrain_high=None,
        wall_time_s=1.0,
    )  # fmt: skip
    base.update(kw)
    return ResultRow.from_json(base)


def seeded(task, method, init, role, n, **kw) -> list[ResultRow]:
    """Two seeds at mean +- 20%, so the panel must average them to get the mean back."""
    m = mean_of(task, role, n)
    return [
        run_row(task, method, init, n, m * (1 + d), seed=s, **kw) for s, d in ((0, 0.2), (1, -0.2))
    ]


def mixed_rows() -> list[ResultRow]:
    """2 tasks x (scratch of 2 presets, fine-tune from the mixture, from each family's stage,
    cross-family fine-tune from poisson on helmholtz, zero-shot of the mixture and the single)."""
    rows = []
    for task, (_, _, _, single) in TASKS.items():
        for n in SIZES:
            rows += seeded(task, "scratch", "scratch", "scratch", n)
            rows += seeded(task, "scratch", "scratch", "scratch_micro", n, model="fno-micro")
            rows += seeded(task, "finetune", "pre_mix", "mixed", n)
            rows += seeded(task, "finetune", single, "single", n)
        rows += seeded(task, "zero-shot", "pre_mix", "zs_mixed", 0)
        rows += seeded(task, "zero-shot", single, "zs_single", 0)
    rows += [r for n in SIZES for r in seeded("hh_10-20", "finetune", "pre_pois", "cross", n)]
    return rows


def test_panel_values_are_the_means_put_in():
    rows = mixed_rows()
    comps = mixed.comparisons(rows, by_task(build_curves(rows)))
    assert [(c.task, c.mixed_init, c.single_init) for c in comps] == [
        ("hh_10-20", "pre_mix", "pre_hh"),
        ("pois_1-5", "pre_mix", "pre_pois"),
    ]
    for c in comps:
        assert c.scratch.key.model == "fno-tiny" and c.label.endswith("[10, 20])") == (
            c.task == "hh_10-20"
        )
        for n, mix, one, scr, ratio in mixed.values(c):
            assert mix == pytest.approx(mean_of(c.task, "mixed", n), rel=1e-12)
            assert one == pytest.approx(mean_of(c.task, "single", n), rel=1e-12)
            assert scr == pytest.approx(mean_of(c.task, "scratch", n), rel=1e-12)
            assert ratio == pytest.approx(0.8, rel=1e-12)
        assert [v[0] for v in mixed.values(c)] == list(SIZES)
        assert [role for role, _ in c.curves()] == list(mixed.ROLES)  # what the panel draws
        assert mixed.zero_shot(c.zs_mixed) == pytest.approx(mean_of(c.task, "zs_mixed"))
        assert mixed.zero_shot(c.zs_single) == pytest.approx(mean_of(c.task, "zs_single"))


def test_sentence_is_computed():
    rows = mixed_rows()
    comps = mixed.comparisons(rows, by_task(build_curves(rows)))
    hh = next(c for c in comps if c.task == "hh_10-20")
    assert mixed.sentence(hh) == (
        "hh_10-20 (helmholtz [10, 20]): fine-tuning from the mixed model (pre_mix) reaches "
        "0.200 at N=8 vs 0.160 from the single-family model (pre_hh) and 0.800 from scratch "
        "(fno-tiny); over the 3 N both were fine-tuned with, the single-family error is 0.800x "
        "the mixed one (geometric mean); zero-shot: 1.20 (mixed) vs 0.900 (single-family)."
    )


def _table(md: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with ``first_header``."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header}"))
    body = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        body.append([c.strip() for c in ln.strip("|").split(" | ")])
    return body


def test_write_report_has_the_panel(tmp_path):
    out = write_report(mixed_rows(), tmp_path)
    fig = tmp_path / "mixed_vs_single.png"
    assert fig in out["figures"] and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md, html = out["markdown"].read_text(), out["html"].read_text()
    assert "## Mixed vs single-family pre-training" in md and "](mixed_vs_single.png)" in md
    assert "<h2>Mixed vs single-family pre-training</h2>" in html
    section = md.split("## Mixed vs single-family pre-training")[1]
    table = _table(section, "task | mixed stage | single-family stage")
    assert len(table) == len(TASKS) * len(SIZES)
    for task, _, single, mode, model, n, mix, one, scr, ratio in table:
        n = int(n)
        assert (single, mode, model) == (TASKS[task][3], "full", "fno-tiny")
        assert mix == f"{mean_of(task, 'mixed', n):.4g}"
        assert one == f"{mean_of(task, 'single', n):.4g}"
        assert scr == f"{mean_of(task, 'scratch', n):.4g}"
        assert ratio == "0.8"
    zs = _table(section, "task | mixed stage | zero-shot mixed")
    assert [r[2] for r in zs] == [f"{mean_of(t, 'zs_mixed'):.4g}" for t in sorted(TASKS)]
    assert [r[4] for r in zs] == [f"{mean_of(t, 'zs_single'):.4g}" for t in sorted(TASKS)]
    assert section.count("fine-tuning from the mixed model") == len(TASKS)


def test_panel_absent_without_a_mixture_stage(tmp_path):
    rows = [r for r in mixed_rows() if r.init_family != "mixture"]
    out = write_report(rows, tmp_path / "none")
    assert "Mixed vs single-family" not in out["markdown"].read_text()
    assert not (tmp_path / "none" / "mixed_vs_single.png").exists()
    # mixture runs planned but none completed: the section says so, with no figure
    todo = [replace(r, status="todo") for r in mixed_rows() if r.init_family == "mixture"]
    out = write_report(rows + todo, tmp_path / "todo")
    assert "No completed run from a mixture stage yet." in out["markdown"].read_text()
    assert not (tmp_path / "todo" / "mixed_vs_single.png").exists()


def test_report_csv_has_init_family(tmp_path):
    rows = mixed_rows()
    out = write_report(rows, tmp_path)
    with open(out["csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert "init_family" in table[0]
    assert {(r["init"], r["init_family"]) for r in table} == {
        ("scratch", "none"), ("pre_mix", "mixture"), ("pre_pois", "poisson"),
        ("pre_hh", "helmholtz"),
    }  # fmt: skip


# -- the results store: plan.json + records -> rows ------------------------------------------
def _stage(name: str, data: str, family: str, low, high) -> dict:
    labels = dict(stage=name, task=data, family=family, model="fno-tiny", low=low, high=high)
    return {"id": f"id-{name}", "kind": "pretrain", "labels": labels, "depends": []}


def _down(run_id: str, init: str, method: str, **extra) -> dict:
    labels = dict(
        task="down_hh", family="helmholtz", task_low=10.0, task_high=20.0, method=method,
        init=init, mode="zero-shot" if method == "zero-shot" else "full", model="fno-tiny",
        seed=0, n_train=0 if method == "zero-shot" else 8, **extra,
    )  # fmt: skip
    return {"id": run_id, "kind": "downstream", "labels": labels, "depends": []}


def write_study(root: Path, new_labels: bool) -> None:
    """A study dir with a mixture stage, a helmholtz stage and downstream runs from each;
    ``new_labels``: the runs carry init_family (else they are an older plan's)."""
    fam = (lambda f: {"init_family": f}) if new_labels else (lambda f: {})
    runs = [
        {"id": "d1", "kind": "data", "labels": {"name": "pre_mix"}, "depends": []},
        _stage("mix", "pre_mix", "mixture", None, None),
        _stage("hh", "pre_hh", "helmholtz", 1.0, 10.0),
        _down("r-scratch", "scratch", "scratch", **fam("none")),
        _down("r-mix", "mix", "finetune", **fam("mixture")),
        _down("r-hh", "hh", "finetune", **fam("helmholtz")),
        _down("r-zs", "mix", "zero-shot", **fam("mixture")),
    ]
    members = {"pre_pois": 1.0, "pre_ad": 1.0, "pre_hh": 1.0}
    datasets = {
        "pre_mix": dict(family="mixture", members=members, n_train=96, n_val=8, n_test=8,
                        masks=False),
        "pre_hh": dict(family="helmholtz", low=1.0, high=10.0, n_train=32, n_val=8, n_test=8),
        "down_hh": dict(family="helmholtz", low=10.0, high=20.0, n_train=32, n_val=8, n_test=8),
    }  # fmt: skip
    plan = {"name": "mixed", "datasets": datasets, "runs": runs}
    (root / "plan.json").write_text(json.dumps(plan))
    record = {"status": "completed", "test": {"rel_l2": 0.1, "mse": 0.01}, "val": {"rel_l2": 0.1}}
    record["parameters"] = {"total": 70000}
    for run_id in ("r-mix", "id-mix"):
        (root / "runs" / run_id).mkdir(parents=True)
        (root / "runs" / run_id / "record.json").write_text(json.dumps(record))


@pytest.mark.parametrize("new_labels", [True, False], ids=["init_family-label", "older-plan"])
def test_load_results_fills_init_family(tmp_path, new_labels):
    write_study(tmp_path, new_labels)
    rows = {r.run_id: r for r in results.load_results(tmp_path)}
    assert {k: r.init_family for k, r in rows.items()} == {
        "id-mix": "none", "id-hh": "none", "r-scratch": "none", "r-mix": "mixture",
        "r-hh": "helmholtz", "r-zs": "mixture",
    }  # fmt: skip
    assert rows["r-mix"].pretrain_low is None and rows["r-mix"].pretrain_high is None
    assert (rows["r-hh"].pretrain_low, rows["r-hh"].pretrain_high) == (1.0, 10.0)
    assert rows["id-mix"].parameter == "mixed" and rows["id-mix"].status == "completed"
    assert rows["r-mix"].test_rel_l2 == 0.1 and math.isnan(rows["r-hh"].test_rel_l2)
    path = results.write_csv(list(rows.values()), tmp_path / "rows.csv")
    with open(path, newline="") as fh:
        table = {r["run_id"]: r for r in csv.DictReader(fh)}
    assert table["r-zs"]["init_family"] == "mixture"


def test_results_columns_match_the_report_schema():
    assert list(results.COLUMNS) == list(COLUMNS) and "init_family" in COLUMNS


def _card(family: str, parameter: str, declared: dict, train: dict) -> dict:
    return {"family": family, "parameter": {"name": parameter, "declared": declared},
            "realised": {"train": train}}  # fmt: skip


def test_dataset_summaries_cope_with_a_mixture(tmp_path):
    write_study(tmp_path, new_labels=True)
    families = {"poisson": 32, "advection_diffusion": 32, "helmholtz": 32}
    cards = {
        "pre_mix": _card("mixture", "mixed", {"kind": "mixture", "low": None, "high": None},
                         {"families": families}),
        "pre_hh": _card("helmholtz", "w", {"kind": "integer", "low": 1, "high": 10},
                        {"parameter": {"counts": {"1": 10, "5": 12, "10": 10}}}),
        "down_hh": _card("helmholtz", "w", {"kind": "integer", "low": 10, "high": 20},
                         {"parameter": {"histogram": {"edges": [10, 15, 20], "counts": [4, 4]}}}),
    }  # fmt: skip
    for name, card in cards.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "card.json").write_text(json.dumps(card))
    summary = results.dataset_summaries(tmp_path)
    assert summary["pre_mix"] == {
        "family": "mixture", "parameter": "mixed", "low": None, "high": None,
        "role": "pretrain", "families": families,
    }  # fmt: skip
    assert summary["pre_hh"]["counts"] == {"1": 10, "5": 12, "10": 10}
    assert summary["down_hh"]["role"] == "downstream" and "histogram" in summary["down_hh"]
    # the report draws the ranged ones and lists the mixture's per-family counts
    out = write_report(results.load_results(tmp_path), tmp_path / "rep", datasets=summary)
    md = out["markdown"].read_text()
    assert (tmp_path / "rep" / "parameters.png").is_file()
    assert "| pre_mix | pretrain | poisson: 32, advection_diffusion: 32, helmholtz: 32 |" in md
