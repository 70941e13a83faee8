"""Domain padding of the FNO's Fourier layers (non-periodic data): padding 0 is the unpadded
model bit for bit, a padded model keeps the input's shape at any resolution and trains every
parameter, its arch survives a checkpoint, and ``--padding auto`` follows the training data's
boundary (from scratch and when fine-tuning a periodic checkpoint on Dirichlet data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pdefm
from pdefm.data.card import load_card
from pdefm.data.generate import generate_dataset
from pdefm.data.importer import import_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.models import FNO2d, create_model
from pdefm.models.fno import pad_high
from pdefm.models.registry import with_padding
from pdefm.pdes import GaussianLatticeSource, elliptic, random_fields
from pdefm.train import loop
from pdefm.train.adapt import configure_mode
from pdefm.train.checkpoint import load_checkpoint, save_checkpoint
from pdefm.train.config import AUTO_PADDING, RunConfig
from pdefm.train.normalise import FamilyScale, Normaliser
from pdefm.train.setup import load_init, resolve_padding

N = 32  # grid of the datasets
INPUTS = ["diffusion_xx", "diffusion_yy", "diffusion_xy"]


def unpadded_forward(model: FNO2d, x: torch.Tensor) -> torch.Tensor:
    """The FNO's forward pass as it was before padding existed: lift, layers, head."""
    h = model.lift(x)
    for i, layer in enumerate(model.layers):
        h = layer(h)
        if i < len(model.layers) - 1:
            h = torch.nn.functional.gelu(h)
    return model.head(h)


def seeded(padding: float = 0.0, **kw) -> FNO2d:
    torch.manual_seed(0)
    return create_model("fno-micro", 3, 1, padding=padding, **kw)


# -- the model -----------------------------------------------------------------------------------
def test_padding_zero_is_the_unpadded_model_bit_for_bit():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain, zero = seeded(), seeded(0.0)
    assert torch.equal(plain(x), unpadded_forward(plain, x))
    assert torch.equal(zero(x), plain(x))
    assert plain.arch == zero.arch and "padding" not in plain.arch
    padded = seeded(0.25)
    assert not torch.equal(padded(x), plain(x))
    with_padding(padded, 0)  # back to none: the same function and arch as never padded
    assert torch.equal(padded(x), plain(x)) and padded.arch == plain.arch


@pytest.mark.parametrize("n", [16, 24])
def test_padded_output_has_the_input_shape(n):
    model = seeded(0.25)
    x = torch.randn(2, 3, n, n)
    assert model(x).shape == (2, 1, n, n)
    # round(p n) zero rows and columns after the last ones, per axis
    h = torch.ones(1, 2, n, n - 8)  # not square: each axis is padded by its own length
    padded = pad_high(h, 0.25)
    assert padded.shape == (1, 2, n + round(0.25 * n), h.shape[-1] + round(0.25 * h.shape[-1]))
    assert torch.equal(padded[..., :n, : h.shape[-1]], h)
    assert padded[..., n:, :].abs().sum() == 0 and padded[..., h.shape[-1] :].abs().sum() == 0


def test_gradients_reach_every_parameter_with_padding():
    model = seeded(0.25)
    model(torch.randn(2, 3, 16, 16)).square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_padding_adds_no_parameters_and_lora_still_selects_by_name():
    plain, padded = seeded(), seeded(0.25, lora={"rank": 2, "alpha": 2.0})
    names = [n for n, _ in padded.named_parameters() if "lora_" not in n]
    assert names == [n for n, _ in plain.named_parameters()]
    trainable = configure_mode(padded, "lora")
    assert trainable and all("lora_" in n for n in trainable)
    rebuilt = create_model(**json.loads(json.dumps(padded.arch)))
    assert rebuilt.padding == 0.25 and rebuilt.arch == padded.arch


@pytest.mark.parametrize("bad", [-0.1, 2, "yes", float("nan"), True])
def test_model_padding_out_of_range_is_refused(bad):
    with pytest.raises(PdefmError, match=r"padding must be a fraction of the grid in \[0, 1\]"):
        create_model("fno-micro", 3, padding=bad)


def test_arch_round_trips_through_a_checkpoint(tmp_path):
    model = seeded(0.25)
    norm = Normaliser(("source", "a", "b"), (("poisson", FamilyScale(0.5, (2.0, 3.0))),))
    card = {"input_channels": ["source", "a", "b"], "normalisation": norm.to_dict()}
    save_checkpoint(tmp_path / "ckpt", model, card)
    loaded, loaded_card, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded_card.arch == model.arch and loaded_card.arch["padding"] == 0.25
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # and through the API's save_pretrained / load_model (config.json)
    api_model = pdefm.load_model(tmp_path / "ckpt")
    api_model.save_pretrained(tmp_path / "hf")
    again = pdefm.load_model(tmp_path / "hf")
    assert again.network.arch == model.arch
    with torch.no_grad():
        assert torch.equal(again.network(x), model(x))


def test_a_damaged_padding_in_a_card_is_one_line(tmp_path):
    model = seeded(0.25)
    norm = Normaliser(("source", "a", "b"), (("poisson", FamilyScale(0.5, (2.0, 3.0))),))
    save_checkpoint(
        tmp_path / "c",
        model,
        {"input_channels": ["source", "a", "b"], "normalisation": norm.to_dict()},
    )
    card = json.loads((tmp_path / "c" / "card.json").read_text())
    card["arch"]["padding"] = 3
    (tmp_path / "c" / "card.json").write_text(json.dumps(card))
    with pytest.raises(PdefmError, match=r"arch.padding must be <= 1") as info:
        load_checkpoint(tmp_path / "c")
    assert "\n" not in str(info.value)


# -- the setting ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-0.1, 2, "yes", "-0.1", "2"])
def test_bad_padding_is_one_line_naming_the_setting_and_the_fix(bad):
    with pytest.raises(PdefmError) as info:
        RunConfig(data="d", padding=bad).validate()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--padding must be auto or a fraction of the grid in [0, 1]")
    assert "--padding 0.25" in message


def test_padding_keeps_run_ids_at_auto_and_numbers_are_one_id():
    assert "padding" not in RunConfig(data="d").resolved("hash")
    ids = {
        RunConfig.run_id(RunConfig(data="d", padding=p).resolved("hash"))
        for p in (0.25, "0.25", np.float64(0.25))
    }
    assert len(ids) == 1
    assert RunConfig.run_id(RunConfig(data="d").resolved("hash")) not in ids


def test_train_help_explains_padding():
    from pdefm.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(sub.format_help().split())
    assert "--padding P" in text and "non-periodic" in text
    assert f"auto ({AUTO_PADDING:g} if the data have a non-periodic side, else 0)" in text


# -- datasets and runs ---------------------------------------------------------------------------
def darcy_arrays(n_samples: int = 40, n: int = N) -> dict:
    """Zero-Dirichlet Darcy flow -div(a grad u) = 1 with smooth coefficient fields of
    contrast 10, as pdefm import takes it (x is array axis 0)."""
    gen = torch.Generator().manual_seed(0)
    a = random_fields.coefficient_field(gen, n_samples, n, 10.0, boundary="dirichlet")
    u = elliptic.solve(a, torch.ones_like(a), "dirichlet").u
    return {
        "source": np.ones(n_samples),
        "solution": u.numpy(),
        "diffusion_xx": a.numpy(),
        "diffusion_yy": a.numpy(),
        "diffusion_xy": np.zeros(n_samples),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A periodic (generated Poisson) and a zero-Dirichlet (imported Darcy) dataset, 32 x 32."""
    base = tmp_path_factory.mktemp("padding-data")
    spec = GenerationSpec(
        "poisson", 1, 5, 32, 16, 16, resolution=N, block_size=16,
        source=GaussianLatticeSource(sigma=1 / 16),
    )  # fmt: skip
    generate_dataset(spec, base / "periodic", progress=False)
    np.savez(base / "darcy.npz", **darcy_arrays())
    dirichlet = import_dataset(
        base / "darcy.npz", base / "dirichlet", inputs=INPUTS, x_axis=0, boundary="dirichlet",
        progress=False,
    )  # fmt: skip
    return {"periodic": str(base / "periodic"), "dirichlet": str(dirichlet)}


def train(data_dir: str, out, **kw):
    kw = {"model": "fno-micro", "lrs": (1e-3,), "steps": 2, "epochs": None, **kw}
    record = loop.train(RunConfig(data=data_dir, out=str(out), progress=False, **kw))
    assert record["status"] == "completed", record
    return record


def arch_of(record) -> dict:
    return json.loads((Path(record.checkpoint) / "card.json").read_text())["arch"]


def test_auto_resolves_from_the_datasets_boundary(data):
    periodic, dirichlet = load_card(data["periodic"]), load_card(data["dirichlet"])
    assert periodic.periodic and not dirichlet.periodic
    assert dirichlet.boundary["x_low"] == "dirichlet"
    auto = RunConfig(data="d")
    assert resolve_padding(auto, periodic) == 0.0
    assert resolve_padding(auto, dirichlet) == AUTO_PADDING
    assert resolve_padding(RunConfig(data="d", padding=0.1), dirichlet) == 0.1
    assert resolve_padding(RunConfig(data="d", padding="0.5"), periodic) == 0.5


def test_scratch_runs_record_the_resolved_padding(data, tmp_path):
    assert "padding" not in arch_of(train(data["periodic"], tmp_path))
    assert arch_of(train(data["dirichlet"], tmp_path))["padding"] == AUTO_PADDING
    assert "padding" not in arch_of(train(data["dirichlet"], tmp_path, padding=0))


def test_fine_tuning_a_periodic_checkpoint_on_dirichlet_data_pads_it(data, tmp_path):
    pre = train(data["periodic"], tmp_path / "pre")
    assert "padding" not in arch_of(pre)
    tuned = train(data["dirichlet"], tmp_path / "tuned", init=pre.checkpoint)
    assert arch_of(tuned)["padding"] == AUTO_PADDING
    model = pdefm.load_model(tuned.checkpoint)
    assert model.network.padding == AUTO_PADDING
    # zero-shot evaluates a checkpoint as saved, unless a number is given
    ckpt = str(tuned.checkpoint)
    as_saved = load_init(RunConfig(data=data["periodic"], init=ckpt, mode="zero-shot"))
    assert as_saved.model.padding == AUTO_PADDING
    explicit = RunConfig(data=data["periodic"], init=ckpt, mode="zero-shot", padding=0)
    assert load_init(explicit).model.padding == 0.0


def test_evaluate_takes_a_padding(data, tmp_path, capsys):
    from pdefm.cli import main

    pre = train(data["periodic"], tmp_path / "pre")
    out = tmp_path / "eval"
    assert main(["evaluate", str(pre.checkpoint), data["dirichlet"], "--out", str(out)]) == 0
    assert main(["evaluate", str(pre.checkpoint), data["dirichlet"], "--out", str(out),
                 "--padding", "0.25"]) == 0  # fmt: skip
    records = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
    assert sorted(str(r["config"].get("padding", "auto")) for r in records) == ["0.25", "auto"]
    capsys.readouterr()
    assert main(["evaluate", str(pre.checkpoint), data["dirichlet"], "--padding", "2"]) == 2
    assert "--padding must be auto or a fraction" in capsys.readouterr().err


def test_the_training_memory_bound_counts_the_padded_grid():
    from pdefm.train.checkpoint_card import training_bytes

    arch = {"width": 8, "n_layers": 4, "head_width": 16}
    plain = training_bytes(arch, 1000, batch=4, resolution=32)
    padded = training_bytes({**arch, "padding": 0.25}, 1000, batch=4, resolution=32)
    # the Fourier layers' fields grow from 32 x 32 to 40 x 40; the head's stay at 32 x 32
    fields = 4 * 4 * 2 * 8  # batch x layers x 2 fields x width, float32 each
    assert padded - plain == pytest.approx(4.0 * fields * (40 * 40 - 32 * 32))
