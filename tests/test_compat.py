"""Stores written by an earlier pdefm still load, and their runs keep their ids.

``tests/fixtures/store-0.1`` was written before the typed contracts (DatasetCard,
CheckpointCard, RunRecord) and the settings schema (see its make.py): a dataset, a
pre-training run with its checkpoint, a fine-tuning run with the rel_l2 loss and a zero-shot
evaluation. Asking today's code for the same three runs must find them finished (same ids, no
training), which is what lets published results be reused rather than recomputed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pdefm.data.card import load_card
from pdefm.train import loop
from pdefm.train.checkpoint import load_checkpoint
from pdefm.train.checkpoint_card import checkpoint_hash
from pdefm.train.config import RunConfig
from pdefm.train.record import RunRecord

FIXTURE = Path(__file__).parent / "fixtures" / "store-0.1"
RESULTS = Path(__file__).parents[1] / "results"
PRETRAIN, FINETUNE, ZERO_SHOT = "989ba8cbeda6c957", "afbb3615136b4441", "29f0532ad0db265d"


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("make.py"))
    return root


def configs() -> dict[str, RunConfig]:
    """The three runs exactly as make.py asked for them, from the folder holding ``store``.

    The data path is part of a run id as given (a checkpoint init enters by its content
    hash), so the paths are make.py's own. They ran under protocol 1, which is how today's
    code is asked for them (at protocol 2 the fine-tuning run is another run: ``test_start``)."""
    ckpt = f"store/runs/{PRETRAIN}/checkpoint"
    common = dict(data="store/data/poisson", out="store/runs", progress=False, protocol=1)
    return {
        PRETRAIN: RunConfig(model="fno-micro", lrs=(3e-3,), epochs=3, **common),
        FINETUNE: RunConfig(init=ckpt, n_train=8, lrs=(1e-3,), epochs=2, loss="rel_l2", **common),
        ZERO_SHOT: RunConfig(init=ckpt, mode="zero-shot", epochs=None, **common),
    }


def test_an_old_dataset_card_loads_as_a_typed_card(store):
    card = load_card(store / "data" / "poisson")
    assert card.kind == "generated" and card.family == "poisson"
    assert card.counts == {"train": 16, "val": 4, "test": 4}
    assert card.input_channels == ["source", "diffusion_xx", "diffusion_yy", "diffusion_xy"]
    written = json.loads((store / "data" / "poisson" / "card.json").read_text())
    assert card.to_json() == written  # nothing added or dropped on read


def test_old_run_records_and_checkpoint_load(store):
    for run_id in (PRETRAIN, FINETUNE, ZERO_SHOT):
        record = RunRecord.read(store / "runs" / run_id / "record.json")
        assert record.id == run_id and record.completed
        assert 0 < record.test["rel_l2"] < 10
    model, card, norm = load_checkpoint(store / "runs" / PRETRAIN / "checkpoint")
    assert card.input_channels == list(norm.channels) and card.arch["name"] == "fno-micro"
    assert len(checkpoint_hash(store / "runs" / PRETRAIN / "checkpoint", card)) == 16


def test_the_same_runs_asked_again_keep_their_ids_and_are_not_rerun(store, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again: its id changed")

    monkeypatch.setattr(loop, "_execute", no_training)
    monkeypatch.chdir(store.parent)
    for run_id, config in configs().items():
        record = loop.train(config)
        assert record.id == run_id
        written = json.loads((store / "runs" / run_id / "record.json").read_text())
        assert record.to_json() == written


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in RESULTS.glob("*/results.csv")))
def test_published_results_keep_their_run_ids(folder):
    """Every unrefined run of a published result is still a run of its study file, by id:
    rerunning the study finds it instead of training it again."""
    import csv

    from pdefm.study.spec import load_study

    ids = {run.id for run in load_study(RESULTS / folder / "study.yaml").runs}
    with open(RESULTS / folder / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("budget_factor", "1") in ("", "1")]
    assert rows and {r["run_id"] for r in rows} <= ids
