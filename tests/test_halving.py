"""Successive halving for the learning-rate search (``lr_search: halving``): fewer steps than
the grid, the winner's model exactly the grid's for that rate, the same answer after a kill
anywhere, every budget rule, protocol 2's start, and run ids that do not move."""

from __future__ import annotations

import pytest
import torch

from conftest import quick_train as train
from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource
from pdefm.study.spec import load_study
from pdefm.train import fit, search
from pdefm.train.config import RunConfig

WIDE = GaussianLatticeSource(sigma=1 / 8)
RATES = (1e-3, 3e-3, 1e-2, 3e-2)
# 50 epochs validate every 2: the rungs E/4 and E/2 round down to validation epochs 12 and 24
KW = dict(n_train=16, epochs=50, lrs=RATES)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: these models are tiny, and two threads on shared cores run many times
    slower whenever another job holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("halving") / "data"
    spec = GenerationSpec(
        "poisson", 1, 5, 96, 16, 16, resolution=16, seed=3, source=WIDE, block_size=32
    )
    generate_dataset(spec, root, progress=False)
    return str(root)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict:
    """The same four rates searched both ways (same data, subset and seed)."""
    out = tmp_path_factory.mktemp("runs")
    return {how: train(data, out, lr_search=how, **KW) for how in ("grid", "halving")}


def test_rungs_are_validation_epochs_halving_the_budget():
    plan = RunConfig(data="d", **KW).plan(16)
    assert plan.validate_every == 2
    assert search.rung_epochs(plan, 4) == [12, 24, 50]
    assert search.rung_epochs(plan, 2) == [24, 50] and search.rung_epochs(plan, 1) == [50]
    assert search.max_rates(RunConfig(data="d", lrs=(1e-3,), lr_extend=2)) == 4  # 2 + 1 + 1


def test_halving_trains_fewer_steps_and_only_the_winner_finishes(runs):
    grid, halving = runs["grid"], runs["halving"]
    assert halving["config"]["lr_search"] == "halving" and "lr_search" not in grid["config"]
    steps = {how: sum(e["steps"] for e in r["per_lr"].values()) for how, r in runs.items()}
    assert steps["grid"] == 4 * 50 and steps["halving"] == 12 + 12 + 24 + 50 < steps["grid"]
    per_lr = halving["per_lr"]
    winner = per_lr[f"{halving.selected_lr:g}"]
    assert winner["status"] == "completed" and winner["epochs"] == 50
    assert halving.budget["epochs_run"] == 50 and halving.budget["steps_run"] == 50
    losers = sorted(e["epochs"] for e in per_lr.values() if e is not winner)
    assert losers == [12, 12, 24]
    assert all(e["status"] == "stopped" for e in per_lr.values() if e is not winner)
    assert all("successive halving" in e["reason"] for e in per_lr.values() if e is not winner)
    assert halving.lrs_tried == grid.lrs_tried == list(RATES)


def test_the_winner_is_the_grids_model_for_that_rate(runs, data, tmp_path):
    halving = runs["halving"]
    lr = halving.selected_lr
    alone = train(data, tmp_path, **{**KW, "lrs": (lr,)})  # the grid's training of that rate
    assert halving.test["rel_l2"] == pytest.approx(alone.test["rel_l2"], rel=1e-5, abs=1e-7)
    assert halving["history"] == alone["history"]
    full = runs["grid"]["per_lr"][f"{lr:g}"]
    assert halving["per_lr"][f"{lr:g}"]["best_val_rel_l2"] == full["best_val_rel_l2"]
    assert halving.converged == alone.converged
    assert halving.lr_at_edge == search.grid_edge(lr, list(RATES))


@pytest.mark.parametrize("kill_at", [7, 55, 80])  # epochs into rung 0, rung 1, the last rung
def test_a_killed_search_resumes_to_the_same_record(runs, data, tmp_path, monkeypatch, kill_at):
    real_epoch, calls = fit._epoch, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(fit, "_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path, lr_search="halving", **KW)
    monkeypatch.setattr(fit, "_epoch", real_epoch)
    resumed = train(data, tmp_path, lr_search="halving", **KW)
    done = runs["halving"]
    assert resumed["id"] == done["id"] and resumed.selected_lr == done.selected_lr
    assert resumed.test["rel_l2"] == pytest.approx(done.test["rel_l2"], rel=1e-5)
    for key in ("status", "epochs", "steps", "best_val_rel_l2"):
        assert {k: e[key] for k, e in resumed["per_lr"].items()} == {
            k: e[key] for k, e in done["per_lr"].items()
        }


def test_a_steps_budget_halves_in_epochs_and_ends_at_the_step_count(data, tmp_path):
    # 80 examples in batches of 32: 3 steps an epoch, 40 steps = 14 epochs (the last cut short)
    run = train(data, tmp_path, n_train=80, steps=40, lrs=(3e-3, 1e-2), lr_search="halving")
    steps = sorted(e["steps"] for e in run["per_lr"].values())
    assert steps == [7 * 3, 40] and run.budget["steps_run"] == 40


def test_patience_may_end_a_rate_inside_a_rung(data, tmp_path, monkeypatch):
    real = fit.evaluate_model

    def stalled(model, batches, residual=False):
        out = real(model, batches, residual)
        return {**out, "rel_l2": 0.5} if not residual else out  # validation never improves

    monkeypatch.setattr(fit, "evaluate_model", stalled)
    run = train(data, tmp_path, n_train=16, epochs=60, patience=8, lrs=(3e-3, 1e-2),
                lr_search="halving")  # fmt: skip
    # rungs at 30 and 60 epochs; both rates stop at 10 (best at 2, then 8 more), inside rung 0
    assert [e["epochs"] for e in run["per_lr"].values()] == [10, 10]
    assert all(e["status"] == "completed" for e in run["per_lr"].values())
    assert run.budget["stopped_early"] is True and run.selected_lr == pytest.approx(3e-3)


def test_halving_keeps_protocol_2s_start(data, tmp_path):
    pre = train(data, tmp_path, lrs=(3e-3,), steps=200, run_name="pre")
    # 0.1 wrecks the pre-trained weights on four examples: it loses to the start at rung 0,
    # so the grid is not followed below it, and no rate beats the start at the end
    run = train(data, tmp_path, init=pre["checkpoint"], n_train=4, lrs=(0.1,), lr_extend=2,
                steps=30, lr_search="halving")  # fmt: skip
    assert run.start_kept is True and run.selected_lr is None
    assert min(run.lrs_tried) == pytest.approx(0.1)
    assert all(e["best_val_rel_l2"] >= run.start_val for e in run["per_lr"].values())


def test_grid_keeps_run_ids_and_halving_gets_its_own():
    plain = RunConfig(data="d").resolved("hash")
    assert "lr_search" not in plain
    assert RunConfig.run_id(plain) == RunConfig.run_id(
        RunConfig(data="d", lr_search="grid").resolved("hash")
    )
    halving = RunConfig(data="d", lr_search="halving").resolved("hash")
    assert halving["lr_search"] == "halving"
    assert RunConfig.run_id(halving) != RunConfig.run_id(plain)


def test_a_bad_lr_search_is_one_line_naming_the_choices():
    with pytest.raises(PdefmError) as err:
        RunConfig(data="d", lr_search="fast").validate()
    assert str(err.value) == "--lr-search must be one of grid, halving, got 'fast'"


STUDY = """\
name: halve
resolution: 16
sigma: 0.125
datasets:
  pre: {family: poisson, range: [1, 5], n_train: 64, n_val: 16, n_test: 16}
  down: {family: poisson, range: [5, 10], n_train: 32, n_val: 16, n_test: 16, seed: 1}
pretrain:
  p: {data: pre, model: fno-micro, epochs: 3, lrs: [3e-3], lr_search: halving}
downstream:
  tasks: [down]
  sizes: [8]
  inits: [scratch]
  models: [fno-micro]
  lrs: [3e-3, 1e-2]
  lr_search: halving
  seeds: [0]
  epochs: 3
"""


def test_a_study_sets_lr_search_per_stage_and_downstream(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    runs = [r for r in load_study(path).runs if r.kind in ("pretrain", "downstream")]
    assert {r.kind for r in runs} == {"pretrain", "downstream"}
    assert all(r.config["lr_search"] == "halving" for r in runs)
