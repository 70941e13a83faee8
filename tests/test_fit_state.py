"""The training loop's state and results as dataclasses: ``FitState`` (what the state file keeps,
also as pdefm wrote it before FitState), ``FitPlan``, ``LrResult``, and zero-shot as one call of
``evaluate_checkpoint``.

``tests/fixtures/state-0.1`` holds the state of a run interrupted after its third epoch, written
before FitState (see its make.py): the same run asked again must resume from it and end as an
uninterrupted run does.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from pdefm.errors import PdefmError
from pdefm.train import fit, loop
from pdefm.train.config import FitPlan, RunConfig
from pdefm.train.evaluate import evaluate_checkpoint
from pdefm.train.fit import LrResult
from pdefm.train.setup import load_init, open_splits
from pdefm.train.state import STATE, FitState, load_state, save_state

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "store-0.1" / "data" / "poisson"
OLD_STATE = FIXTURES / "state-0.1" / "lr-0.003"
CHECKPOINT = FIXTURES / "store-0.1" / "runs" / "989ba8cbeda6c957" / "checkpoint"
OVERRIDES = {"width": 4, "modes": 2, "n_layers": 2}  # as make.py trained it


# -- FitState -------------------------------------------------------------------------------------
def test_an_old_fresh_info_takes_the_defaults():
    """The dict the loop started from before FitState had no best_epoch, reason or
    stopped_early: they were set only when they happened."""
    old = {"epoch": 0, "step": 0, "history": [], "best": math.inf, "status": "running"}
    assert FitState.from_json(old) == FitState()
    state = FitState.from_json(json.loads(json.dumps(old)))  # "Infinity" in the file
    assert state.best == math.inf and state.best_epoch == 0
    assert state.reason is None and state.stopped_early is False


def test_an_old_failed_info_keeps_its_reason():
    old = {"epoch": 2, "step": 6, "history": [{"epoch": 2, "val_rel_l2": 0.5}], "best": 0.5}
    old.update(status="running", best_epoch=2)
    old.update(status="failed", reason="loss became nan at step 1 of the epoch")
    state = FitState.from_json(old)
    assert (state.epoch, state.step, state.best, state.best_epoch) == (2, 6, 0.5, 2)
    assert state.status == "failed" and state.reason.startswith("loss became nan")
    assert state.history == old["history"] and state.stopped_early is False


def test_state_json_round_trip_and_unknown_keys():
    state = FitState(3, 9, [{"epoch": 3, "val_rel_l2": 0.25}], 0.25, 3, "completed", None, True)
    assert FitState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert list(state.to_json()) == [
        "epoch", "step", "history", "best", "best_epoch", "status", "reason", "stopped_early",
        "wall_s", "cpu_s", "samples", "evaluated", "segments",
    ]  # fmt: skip
    assert FitState.from_json({**state.to_json(), "from_the_future": 1}) == state


def test_a_state_file_whose_info_is_not_an_object_is_damaged(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    path = tmp_path / STATE
    save_state(path, model, opt, FitState(epoch=1))
    assert load_state(path, model, opt) == FitState(epoch=1)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={**meta, "info": "[1, 2]"})
    with pytest.raises(PdefmError, match="is damaged"):
        load_state(path, model, opt)


# -- a run interrupted before FitState resumes ----------------------------------------------------
def _config(data: Path, out: Path, **kw) -> RunConfig:
    return RunConfig(
        data=str(data),
        model="fno-micro",
        model_overrides=OVERRIDES,
        lrs=(3e-3,),
        epochs=6,
        out=str(out),
        progress=False,
        **kw,
    )


def test_a_run_interrupted_before_fit_state_resumes_and_ends_the_same(tmp_path, monkeypatch):
    data = tmp_path / "poisson"
    shutil.copytree(DATA, data)
    old_dir = tmp_path / "a" / "old" / "lr-0.003"
    shutil.copytree(OLD_STATE, old_dir)
    with safe_open(str(old_dir / STATE), framework="pt") as fh:
        old_info = json.loads(fh.metadata()["info"])
    assert "stopped_early" not in old_info and old_info["epoch"] == 3  # written by the old code

    real_epoch, epochs_run = fit._epoch, []

    def counted(*args, **kwargs):
        epochs_run.append(1)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(fit, "_epoch", counted)
    resumed = loop.train(_config(data, tmp_path / "a", run_name="old"))
    assert len(epochs_run) == 3  # epochs 4 to 6: the first three came from the state
    full = loop.train(_config(data, tmp_path / "b"))
    assert resumed.completed and resumed.id == full.id
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert resumed.history[:3] == old_info["history"]  # taken from the state, not retrained
    for h_resumed, h_full in zip(resumed.history, full.history, strict=True):
        assert h_resumed["val_rel_l2"] == pytest.approx(h_full["val_rel_l2"], rel=1e-5)
    assert resumed.test["rel_l2"] == pytest.approx(full.test["rel_l2"], rel=1e-5)
    assert resumed.budget == full.budget


# -- plan and result ------------------------------------------------------------------------------
def test_the_plan_is_a_fit_plan_and_states_the_budget():
    plan = RunConfig(data="d", epochs=3, batch_size=32).plan(100)
    assert plan == FitPlan(batch=32, per_epoch=4, epochs=3, steps=12, validate_every=1)
    assert plan.to_json() == {"batch": 32, "steps_per_epoch": 4, "epochs": 3, "steps": 12}


def test_the_per_lr_summary_keeps_its_keys_in_order():
    plan = RunConfig(data="d", epochs=2).plan(8)
    cost = {"wall_s": 1.0, "cpu_s": 2.0, "samples": 16, "evaluated": 8, "segments": 1,
            "flops": 100}  # fmt: skip
    result = LrResult("completed", None, 0.5, 2, 2, False, None, 10, 4, [], None, plan, cost)
    assert list(result.summary_json()) == [
        "status", "reason", "best_val_rel_l2", "epochs", "steps", "stopped_early", "converged",
        "trainable_parameters", "trainable_names", "wall_s", "cpu_s", "samples", "evaluated",
        "segments", "flops",
    ]  # fmt: skip
    assert result.completed


# -- zero-shot is evaluation ----------------------------------------------------------------------
def test_a_zero_shot_run_records_what_evaluate_checkpoint_finds(tmp_path):
    data = tmp_path / "poisson"
    shutil.copytree(DATA, data)
    config = RunConfig(
        data=str(data), init=str(CHECKPOINT), mode="zero-shot", epochs=None,
        out=str(tmp_path / "runs"), progress=False,
    )  # fmt: skip
    record = loop.train(config)
    final = evaluate_checkpoint(load_init(config), open_splits(config), torch.device("cpu"))
    assert record.completed and record["selected_lr"] is None and record["history"] == []
    assert record["val"] == final.val and record["test"] == final.test
    assert record["channels"] == final.channels
    assert record["parameters"] == {"total": final.total_parameters, "trainable": 0}
    assert "budget" not in record and "checkpoint" not in record
