"""The training engine: transfer beats scratch, adaptation modes, resume, checkpoints, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource
from pdefm.train import fit, loop
from pdefm.train.adapt import configure_mode
from pdefm.train.checkpoint import load_checkpoint
from pdefm.train.config import RunConfig
from pdefm.train.normalise import FamilyScale, Normaliser

WIDE = GaussianLatticeSource(sigma=1 / 16)  # resolvable on 32 x 32 grids: fast CPU training


def tiny_data(root, family, low, high, n_train, seed=0, resolution=32):
    spec = GenerationSpec(
        family,
        low,
        high,
        n_train,
        32,
        32,
        resolution=resolution,
        seed=seed,
        source=WIDE,
        block_size=32,
    )
    generate_dataset(spec, root, progress=False)
    return str(root)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("train-data")
    return {
        "pre": tiny_data(base / "pre", "poisson", 1, 5, 512),
        "down": tiny_data(base / "down", "poisson", 5, 10, 64, seed=1),
        "down64": tiny_data(base / "down64", "poisson", 5, 10, 32, seed=1, resolution=64),
        "hh": tiny_data(base / "hh", "helmholtz", 3, 8, 64),
    }


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = RunConfig(
        data=data["pre"], model="fno-tiny", lrs=(3e-3,), epochs=25, out=str(out), progress=False
    )
    record = loop.train(config)
    assert record["status"] == "completed", record
    return record


def run(data_dir, out, **kw) -> dict:
    kw.setdefault("progress", False)
    return loop.train(RunConfig(data=data_dir, out=str(out), **kw))


def test_pretraining_learns_the_operator(pretrained):
    assert pretrained["test"]["rel_l2"] < 0.25  # an untrained model sits near 1
    assert pretrained["history"][-1]["val_rel_l2"] < pretrained["history"][0]["val_rel_l2"]
    assert pretrained["test"]["residual"] > 0 and pretrained["parameters"]["total"] > 0


def test_fine_tuning_beats_scratch_on_few_shifted_examples(data, pretrained, tmp_path):
    common = dict(n_train=16, lrs=(1e-3,), epochs=60)
    tuned = run(data["down"], tmp_path, init=pretrained["checkpoint"], mode="full", **common)
    scratch = run(data["down"], tmp_path, model="fno-tiny", **common)
    zero = run(data["down"], tmp_path, init=pretrained["checkpoint"], mode="zero-shot", epochs=None)
    assert tuned["test"]["rel_l2"] < 0.7 * scratch["test"]["rel_l2"], (
        tuned["test"],
        scratch["test"],
    )
    assert tuned["test"]["rel_l2"] < zero["test"]["rel_l2"]


@pytest.mark.parametrize("mode", ["head", "frozen-spectral", "lora"])
def test_each_mode_trains_exactly_its_parameters(data, pretrained, tmp_path, mode):
    before, _, _ = load_checkpoint(pretrained["checkpoint"])
    record = run(
        data["down"],
        tmp_path,
        init=pretrained["checkpoint"],
        mode=mode,
        n_train=16,
        lrs=(1e-3,),
        epochs=3,
    )
    after, card, _ = load_checkpoint(record["checkpoint"])
    old = dict(before.named_parameters())
    changed = {n for n, p in after.named_parameters() if n not in old or not torch.equal(p, old[n])}
    expect = {
        "head": lambda n: n.startswith("head."),
        "frozen-spectral": lambda n: ".spectral." not in n,
        "lora": lambda n: "lora_" in n,
    }[mode]
    assert changed and all(expect(n) for n in changed), sorted(changed)
    names = {n for n, _ in after.named_parameters()}
    assert names - changed == {n for n in names if not expect(n)} - changed


def test_configure_mode_sets_requires_grad():
    from pdefm.models import create_model

    model = create_model("fno-micro", 4, 1)
    assert len(configure_mode(model, "full")) == len(list(model.parameters()))
    head = configure_mode(model, "head")
    assert head and all(n.startswith("head.") for n in head)
    assert configure_mode(model, "zero-shot") == []


def test_resume_after_interruption_matches_an_uninterrupted_run(data, tmp_path, monkeypatch):
    kw = dict(model="fno-micro", n_train=32, lrs=(2e-3,), epochs=6, batch_size=8)
    full = run(data["down"], tmp_path / "a", **kw)
    real_epoch, calls = fit._epoch, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(fit, "_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(data["down"], tmp_path / "b", **kw)
    monkeypatch.setattr(fit, "_epoch", real_epoch)
    resumed = run(data["down"], tmp_path / "b", **kw)
    assert resumed["id"] == full["id"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5, 6]
    assert resumed["test"]["rel_l2"] == pytest.approx(full["test"]["rel_l2"], rel=1e-5)
    assert resumed["history"][-1]["train_loss"] == pytest.approx(
        full["history"][-1]["train_loss"], rel=1e-5
    )


def test_finished_run_is_not_repeated(data, pretrained):
    config = json.loads((loop.Path(pretrained["out"]) / "record.json").read_text())
    assert config["status"] == "completed"
    again = loop.train(
        RunConfig(
            data=data["pre"],
            model="fno-tiny",
            lrs=(3e-3,),
            epochs=25,
            out=str(loop.Path(pretrained["out"]).parent),
            progress=False,
        )
    )
    assert again == pretrained or again["id"] == pretrained["id"]


def test_learning_rate_is_chosen_on_validation(data, tmp_path):
    record = run(data["down"], tmp_path, model="fno-micro", n_train=16, lrs=(1e-5, 3e-3), epochs=15)
    per_lr = record["per_lr"]
    best = min(per_lr, key=lambda k: per_lr[k]["best_val_rel_l2"])
    assert f"{record['selected_lr']:g}" == best == "0.003"
    assert record["val"]["rel_l2"] == pytest.approx(per_lr[best]["best_val_rel_l2"], rel=1e-5)


def test_evaluation_at_another_resolution(data, pretrained, tmp_path):
    record = run(
        data["down64"], tmp_path, init=pretrained["checkpoint"], mode="zero-shot", epochs=None
    )
    assert record["status"] == "completed" and 0 < record["test"]["rel_l2"] < 2


def test_checkpoint_loads_without_unpickling(pretrained, monkeypatch):
    import pickle

    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, card, norm = load_checkpoint(pretrained["checkpoint"])
    assert card.input_channels == list(norm.channels)
    assert card.to_json()["metrics"]["test"]["rel_l2"] == pretrained["test"]["rel_l2"]


def test_normalisation_is_scale_free():
    norm = Normaliser(("source", "a"), (("poisson", FamilyScale(0.5, (2.0,))),))
    x = torch.randn(3, 2, 8, 8)
    x[:, 1] = 4.0
    y = torch.randn(3, 1, 8, 8)
    fam = np.array(["poisson"] * 3)
    triple = torch.tensor([3.0, 1.0]).reshape(1, 2, 1, 1)
    a, ya, s1 = norm.normalise(x, y, fam)
    b, yb, s3 = norm.normalise(x * triple, 3 * y, fam)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(s3, 3 * s1)
    assert torch.allclose(a[:, 1], torch.full_like(a[:, 1], 2.0))


def test_normalisation_is_per_family():
    """Each example is scaled with its own family's medians."""
    norm = Normaliser(
        ("source", "a"), (("p", FamilyScale(0.5, (2.0,))), ("q", FamilyScale(2.0, (8.0,))))
    )
    x = torch.ones(2, 2, 4, 4)
    xn, _, s = norm.normalise(x, None, np.array(["q", "p"]))
    torch.testing.assert_close(s.flatten(), torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(xn[:, 1, 0, 0], torch.tensor([1 / 8, 1 / 2]))
    with pytest.raises(PdefmError, match="no normalisation statistics for family 'r'"):
        norm.normalise(x, None, np.array(["r", "p"]))
    assert Normaliser.from_dict(norm.to_dict()) == norm


# -- bad input ---------------------------------------------------------------------------------
def test_unknown_preset_lists_the_valid_ones(data, tmp_path):
    with pytest.raises(PdefmError, match="unknown model preset 'fno-huge'.*fno-tiny"):
        run(data["down"], tmp_path, model="fno-huge", epochs=1)


def test_channel_mismatch_is_refused(data, pretrained, tmp_path):
    with pytest.raises(
        PdefmError, match="has never seen the dataset's channel.*helmholtz_c.*--new-channels init"
    ):
        run(data["hh"], tmp_path, init=pretrained["checkpoint"], mode="full", epochs=1)


def test_n_train_larger_than_the_split(data, tmp_path):
    with pytest.raises(PdefmError, match="subset of 100 asked from a split of 64"):
        run(data["down"], tmp_path, n_train=100, epochs=1)


def test_divergence_stops_the_run_and_records_why(data, tmp_path):
    record = run(data["down"], tmp_path, model="fno-micro", n_train=16, lrs=(1e4,), epochs=20)
    assert record["status"] == "failed"
    assert "lower the learning rate" in record["reason"]
    on_disk = json.loads((loop.Path(record["out"]) / "record.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["reason"] == record["reason"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "keys", "card"])
def test_damaged_checkpoint_is_a_clear_error(pretrained, tmp_path, damage):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(pretrained["checkpoint"], ckpt)
    weights = ckpt / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        match = "corrupt or truncated"
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 100)
        match = "corrupt or truncated"
    elif damage == "keys":
        from safetensors.torch import load_file, save_file

        state = load_file(str(weights))
        state["head.extra"] = torch.zeros(1)
        state.pop(next(iter(state)))
        save_file(state, str(weights))
        match = "does not match its card's architecture"
    else:
        (ckpt / "card.json").write_text("{")
        match = "not valid JSON"
    with pytest.raises(PdefmError, match=match):
        load_checkpoint(ckpt)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(mode="lora"), "adapts a pre-trained model"),
        (dict(mode="sideways"), "--mode must be one of"),
        (dict(lrs=(-1.0,)), "--lr must be > 0"),
        (dict(epochs=None, steps=None), "exactly one budget"),
        (dict(epochs=0), "--epochs must be >= 1"),
    ],
)
def test_bad_run_configs(data, tmp_path, kw, match):
    with pytest.raises(PdefmError, match=match):
        run(data["down"], tmp_path, **kw)
