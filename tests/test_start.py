"""Protocol 2, step 0: a fine-tuning run scores its starting weights on validation, keeps them
when no learning rate beats them, and never follows a rate that lost to them downwards.
Protocol 1 runs keep their ids and their behaviour."""

from __future__ import annotations

import pytest

from conftest import quick_train as train
from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.pdes import GaussianLatticeSource
from pdefm.train.checkpoint import load_checkpoint
from pdefm.train.config import PROTOCOL, RunConfig

WIDE = GaussianLatticeSource(sigma=1 / 8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[str, str]:
    """A Poisson dataset and a model pre-trained on it (so its start is already good)."""
    root = tmp_path_factory.mktemp("start")
    spec = GenerationSpec(
        "poisson", 1, 5, 128, 16, 16, resolution=16, seed=3, source=WIDE, block_size=32
    )
    generate_dataset(spec, root / "data", progress=False)
    pre = train(str(root / "data"), root / "runs", lrs=(3e-3,), steps=300, run_name="pre")
    assert pre.completed
    return str(root / "data"), pre["checkpoint"]


def test_a_start_no_rate_beats_is_kept_and_the_grid_never_goes_below_a_losing_rate(setup, tmp_path):
    data, ckpt = setup
    zero = train(data, tmp_path, init=ckpt, mode="zero-shot", epochs=None, run_name="zero")
    # a rate this large wrecks the pre-trained weights in a few steps on four examples
    run = train(data, tmp_path, init=ckpt, n_train=4, lrs=(0.1,), lr_extend=2, steps=30,
                run_name="ft")  # fmt: skip
    assert run.completed and run.start_kept is True
    assert run.protocol == PROTOCOL == 2
    assert run.selected_lr is None and run.lr_at_edge is None and run.converged is None
    assert run.budget["steps_run"] == 0
    # 0.1 lost to the start, so 0.03 (next below) was never tried; 0.3 above may have been
    assert min(run.lrs_tried) == pytest.approx(0.1)
    assert all(r["best_val_rel_l2"] >= run.start_val for r in run["per_lr"].values())
    # the answer is the start: the checkpoint's own validation and test errors
    assert run.start_val == pytest.approx(zero.val["rel_l2"], rel=1e-5)
    assert run.test["rel_l2"] == pytest.approx(zero.test["rel_l2"], rel=1e-5)
    model, card, _ = load_checkpoint(run["checkpoint"])
    assert card.to_json()["metrics"]["lr"] is None


def test_a_rate_that_beats_the_start_is_selected_as_before(setup, tmp_path):
    data, ckpt = setup
    # fine-tuning on another task: the pre-trained start is far from right there
    other = tmp_path / "other"
    spec = GenerationSpec(
        "poisson", 10, 20, 64, 16, 16, resolution=16, seed=4, source=WIDE, block_size=32
    )
    generate_dataset(spec, other, progress=False)
    run = train(str(other), tmp_path, init=ckpt, n_train=32, lrs=(3e-3,), steps=200)
    assert run.start_kept is False and run.selected_lr == pytest.approx(3e-3)
    assert run["per_lr"]["0.003"]["best_val_rel_l2"] < run.start_val
    assert run.val["rel_l2"] < run.start_val


def test_protocol_1_keeps_its_ids_and_does_not_score_the_start(setup, tmp_path):
    data, ckpt = setup
    old = RunConfig(data=data, init=ckpt, protocol=1).resolved("d", "c")
    new = RunConfig(data=data, init=ckpt).resolved("d", "c")
    assert "protocol" not in old and new["protocol"] == 2
    assert RunConfig.run_id(old) != RunConfig.run_id(new)
    run = train(data, tmp_path, init=ckpt, n_train=4, lrs=(0.1,), steps=30, protocol=1)
    assert run.protocol == 1 and run.start_kept is None and run.start_val is None
    assert run.selected_lr == pytest.approx(0.1)  # protocol 1 returns a trained model


def test_scratch_runs_never_score_a_start(setup, tmp_path):
    data, _ = setup
    run = train(data, tmp_path, n_train=8, lrs=(3e-3,), steps=5)
    assert run.start_kept is None and "start" not in run
