"""Mixed-physics datasets and models: the union layout and masks, per-family normalisation,
channel mapping by name, fresh lift columns, and a tiny mixed pre-training used zero-shot."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest
import torch

from pdefm.cli import main
from pdefm.data.dataset import PDEDataset
from pdefm.data.generate import generate_dataset
from pdefm.data.mixture import MixtureSpec, member_quotas, mix_datasets, union_channels
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.models import add_input_channels, create_model
from pdefm.pdes import GaussianLatticeSource
from pdefm.train import loop
from pdefm.train.checkpoint import load_checkpoint, map_channels
from pdefm.train.config import RunConfig

WIDE = GaussianLatticeSource(sigma=1 / 16)
RANGES = {"poisson": (1.0, 5.0), "advection_diffusion": (0.2, 1.0), "helmholtz": (1.0, 10.0)}


def _generate(root, family, n_train, seed=0):
    low, high = RANGES[family]
    spec = GenerationSpec(
        family, low, high, n_train, 32, 32, resolution=32, seed=seed, source=WIDE, block_size=32
    )
    generate_dataset(spec, root, progress=False, drop_unsampleable=True)
    return root


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    base = tmp_path_factory.mktemp("members")
    return {f: _generate(base / f, f, 192) for f in RANGES}


@pytest.fixture(scope="module")
def mixture(members, tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "mix"
    spec = MixtureSpec(tuple((str(p), 1.0) for p in members.values()), 384, 48, 48, masks=True)
    mix_datasets(spec, out, progress=False)
    return out


def run(data_dir, out, **kw) -> dict:
    return loop.train(RunConfig(data=str(data_dir), out=str(out), progress=False, **kw))


# -- the union layout ---------------------------------------------------------------------------
def test_union_layout_has_the_documented_order_and_masks():
    lists = [
        ["source", "helmholtz_c", "helmholtz_w"],
        ["source", "diffusion_xx", "diffusion_yy", "diffusion_xy"],
    ]
    assert union_channels(lists) == [
        "source",
        "diffusion_xx",
        "diffusion_yy",
        "diffusion_xy",
        "helmholtz_c",
        "helmholtz_w",
    ]
    masked = union_channels(lists + [["source", "mine"]], masks=True)
    assert masked[6] == "mine" and masked[7:] == [
        "has_diffusion_xx",
        "has_diffusion_yy",
        "has_diffusion_xy",
        "has_helmholtz_c",
        "has_helmholtz_w",
        "has_mine",
    ]


def test_member_quotas_follow_the_weights():
    assert member_quotas([1, 1, 1], 10) == [4, 3, 3]
    assert member_quotas([2, 1], 9) == [6, 3]
    assert sum(member_quotas([0.3, 0.3, 0.4], 1001)) == 1001


def test_mixture_maps_every_member_onto_the_union_layout(members, mixture):
    card = json.loads((mixture / "card.json").read_text())
    assert card["families"] == list(RANGES)
    assert card["counts"] == {"train": 384, "val": 48, "test": 48}
    assert card["realised"]["train"]["families"] == {f: 128 for f in RANGES}
    ds = PDEDataset(mixture, "train")
    channels = ds.input_channels
    with h5py.File(mixture / "train.h5") as h5:
        member, origin = h5["member"][:], h5["origin_row"][:]
    for i in (0, 1, 2, 5, 100, 383):
        family = card["members"][member[i]]["family"]
        src = PDEDataset(members[family], "train")
        x_src, y_src = src[int(origin[i])]
        x, y = ds[i]
        torch.testing.assert_close(y, y_src)
        torch.testing.assert_close(x[0], x_src[0])
        for c, name in enumerate(channels[1:], start=1):
            own = src.input_channels
            if name in own:
                torch.testing.assert_close(x[c], x_src[own.index(name)])
            elif name.startswith("has_"):
                assert float(x[c, 0, 0]) == float(name[4:] in own)
            else:
                assert float(x[c].abs().max()) == 0.0, (family, name)
    assert set(ds.families()) == set(RANGES)


def test_mixture_records_normalisation_per_family(members, mixture):
    card = json.loads((mixture / "card.json").read_text())
    per_family = card["normalisation"]["families"]
    for family, root in members.items():
        member = json.loads((root / "card.json").read_text())["normalisation"]
        mine = per_family[family]
        # the mixture holds 128 of the member's 192 train samples: medians close, not equal
        ratio = mine["source_norm"]["median"] / member["source_norm"]["median"]
        assert 0.8 < ratio < 1.25
        for name, stats in member["channels"].items():
            assert mine["channels"][name]["median_abs"] == pytest.approx(
                stats["median_abs"], rel=0.3, abs=1e-9
            )


def test_mixture_rerun_is_a_no_op_and_verifies(members, mixture, capsys):
    before = (mixture / "train.h5").read_bytes()
    spec = MixtureSpec(tuple((str(p), 1.0) for p in members.values()), 384, 48, 48, masks=True)
    mix_datasets(spec, mixture, progress=False)
    assert (mixture / "train.h5").read_bytes() == before
    assert main(["inspect", str(mixture), "--verify"]) == 0
    assert "mixture" in capsys.readouterr().out


def test_mixture_bad_input_is_one_line(members, tmp_path):
    p, hh = str(members["poisson"]), str(members["helmholtz"])
    with pytest.raises(PdefmError, match="has 192 train samples but the mixture needs 300"):
        mix_datasets(MixtureSpec(((p, 1.0), (hh, 1.0)), 600, 8, 8), tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    with pytest.raises(PdefmError, match="at least two member datasets"):
        mix_datasets(MixtureSpec(((p, 1.0),), 8, 8, 8), tmp_path / "b", progress=False)
    other = _generate(tmp_path / "p64", "poisson", 32)
    card = json.loads((other / "card.json").read_text())
    card["grid"]["resolution"] = 64
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(PdefmError, match="different resolutions"):
        mix_datasets(MixtureSpec(((p, 1.0), (str(other), 1.0)), 8, 8, 8), tmp_path / "c")


def test_cli_mix(members, tmp_path, capsys):
    args = [f"{members['poisson']}:2", f"{members['helmholtz']}"]
    out = tmp_path / "m"
    assert (
        main(["mix", *args, "--out", str(out), "--n-train", "30", "--n-val", "6", "--n-test", "6"])
        == 0
    )
    card = json.loads((out / "card.json").read_text())
    assert card["realised"]["train"]["families"] == {"poisson": 20, "helmholtz": 10}
    assert "masks" not in "".join(card["channels"]["inputs"])
    assert main(["mix", str(members["poisson"]), "--out", str(tmp_path / "n")]) == 2
    assert "at least two" in capsys.readouterr().err


# -- channel mapping ------------------------------------------------------------------------------
def test_channel_map_zero_fills_and_masks():
    cmap = map_channels(["source", "a", "b", "has_a", "has_b"], ["source", "b"], "the model")
    assert cmap.describe() == {
        "source": "source",
        "a": "zero",
        "b": "b",
        "has_a": "zero",
        "has_b": "one",
    }
    x = torch.randn(2, 2, 4, 4)
    y = cmap.apply(x)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    torch.testing.assert_close(y[:, 2], x[:, 1])
    assert (
        float(y[:, 1].abs().max()) == 0 and float(y[:, 4].min()) == 1 and float(y[:, 3].max()) == 0
    )
    with pytest.raises(PdefmError, match="never seen the dataset's channel.*'c'|never seen.*c"):
        map_channels(["source", "a"], ["source", "c"], "the model")


def _reorder_channels(src, dst, order):
    """A copy of dataset ``src`` whose coefficient channels are stored in another order."""
    shutil.copytree(src, dst)
    card = json.loads((dst / "card.json").read_text())
    names = card["channels"]["inputs"]
    card["channels"]["inputs"] = [names[0]] + [names[1:][i] for i in order]
    (dst / "card.json").write_text(json.dumps(card))
    for split in ("train", "val", "test"):
        with h5py.File(dst / f"{split}.h5", "r+") as h5:
            h5["channels"][...] = h5["channels"][...][:, order]
    return dst


@pytest.fixture(scope="module")
def mixed_model(mixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed-runs")
    record = run(mixture, out, model="fno-tiny", lrs=(3e-3,), epochs=30)
    assert record["status"] == "completed", record
    return record


def test_reordered_channels_give_identical_predictions(members, mixed_model, tmp_path):
    ad = members["advection_diffusion"]
    swapped = _reorder_channels(ad, tmp_path / "swapped", [4, 2, 0, 3, 1])
    a = run(ad, tmp_path / "r", init=mixed_model["checkpoint"], mode="zero-shot", epochs=None)
    b = run(swapped, tmp_path / "r", init=mixed_model["checkpoint"], mode="zero-shot", epochs=None)
    assert a["test"]["rel_l2"] == b["test"]["rel_l2"]
    assert a["channels"]["velocity_y"] == "velocity_y" and a["channels"]["helmholtz_w"] == "zero"
    assert a["channels"]["has_velocity_x"] == "one" and a["channels"]["has_helmholtz_c"] == "zero"


def test_mixed_model_serves_every_member_family_zero_shot(members, mixed_model, tmp_path):
    """Zero-shot error of the mixed model on each member family (its own test split, not the
    mixture's) is far below an untrained model's on the same inputs."""
    _, card, _ = load_checkpoint(mixed_model["checkpoint"])
    torch.manual_seed(0)
    untrained = create_model("fno-tiny", len(card.input_channels), 1)
    for family, root in members.items():
        zero = run(
            root, tmp_path / family, init=mixed_model["checkpoint"], mode="zero-shot", epochs=None
        )
        ds = PDEDataset(root, "test")
        x, y = ds.batch(range(len(ds)))
        cmap = map_channels(card.input_channels, ds.input_channels, "the model")
        with torch.no_grad():
            pred = untrained(cmap.apply(x))
        base = float(((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean())
        # measured: poisson 0.12 vs 1.0, advection-diffusion 0.28 vs 1.1, helmholtz (the
        # hardest at 128 examples a family) 0.86 vs 1.7
        assert zero["test"]["rel_l2"] < 0.6 * base, (family, zero["test"]["rel_l2"], base)
        assert zero["test"]["residual"] > 0


def test_checkpoint_records_vocabulary_and_per_family_normalisation(mixed_model):
    model, card, norm = load_checkpoint(mixed_model["checkpoint"])
    assert card.input_channels[:3] == ["source", "diffusion_xx", "diffusion_yy"]
    assert "has_helmholtz_w" in card.input_channels
    assert set(card.to_json()["normalisation"]["families"]) == set(RANGES)
    assert norm.family_names == list(RANGES)


# -- channels a checkpoint never saw ---------------------------------------------------------------
def test_new_input_channels_start_from_the_pretrained_function():
    torch.manual_seed(0)
    model = create_model("fno-micro", 3, 1)
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    add_input_channels(model, 2)
    after = model(torch.cat([x, torch.randn(2, 2, 16, 16)], 1))
    torch.testing.assert_close(before, after)
    assert model.arch["in_channels"] == 5 and model.lift.weight.shape[1] == 5
    rebuilt = create_model(**model.arch)
    rebuilt.load_state_dict(model.state_dict())


def test_fine_tuning_a_single_family_model_on_new_channels(members, tmp_path):
    poisson = run(members["poisson"], tmp_path, model="fno-micro", lrs=(3e-3,), epochs=2)
    ad = members["advection_diffusion"]
    with pytest.raises(PdefmError, match="never seen.*velocity_x.*--new-channels init"):
        run(ad, tmp_path, init=poisson["checkpoint"], n_train=16, epochs=2)
    tuned = run(ad, tmp_path, init=poisson["checkpoint"], n_train=16, epochs=3, new_channels="init")
    assert tuned["status"] == "completed"
    model, card, norm = load_checkpoint(tuned["checkpoint"])
    assert card.input_channels[-2:] == ["velocity_x", "velocity_y"]
    assert norm.family_names == ["poisson", "advection_diffusion"]
    new_columns = model.lift.weight[:, -2:].detach()
    assert float(new_columns.abs().max()) > 0  # learned, not left at their zero init
