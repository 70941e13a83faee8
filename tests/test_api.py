"""The Python API (load_model, predict, finetune, stage_checkpoint) and the README example,
which runs here as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import pdefm
from pdefm.data.dataset import PDEDataset
from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource
from pdefm.train import loop
from pdefm.train.config import RunConfig

README = Path(__file__).resolve().parents[1] / "README.md"
WIDE = GaussianLatticeSource(sigma=1 / 16)


def _poisson(root, low, high, n_train, seed):
    spec = GenerationSpec(
        "poisson", low, high, n_train, 32, 32, resolution=32, seed=seed, source=WIDE, block_size=32
    )
    generate_dataset(spec, root, progress=False)
    return root


def _fake_demo(root: Path, data: Path) -> Path:
    """A study directory like `pdefm demo`'s, with a (briefly) pre-trained stage poisson_1-5."""
    plan = {
        "name": "demo",
        "datasets": {},
        "runs": [{"id": "stage0", "kind": "pretrain", "labels": {"stage": "poisson_1-5"}}],
    }
    root.mkdir()
    (root / "plan.json").write_text(json.dumps(plan))
    config = RunConfig(
        data=str(data),
        model="fno-tiny",
        lrs=(3e-3,),
        epochs=20,
        out=str(root / "runs"),
        run_name="stage0",
        progress=False,
    )
    assert loop.train(config)["status"] == "completed"
    return root


def _own_data_npz(path: Path, dataset: Path) -> Path:
    """A user's file: fields and named constants, as a researcher would save them."""
    ds = PDEDataset(dataset, "train")
    x, y = ds.batch(range(len(ds)))
    np.savez(
        path,
        source=x[:, 0].numpy(),
        solution=y[:, 0].numpy(),
        coefficients=x[:, 1:, 0, 0].double().numpy(),
        coefficient_names=np.array(ds.input_channels[1:]),
    )
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    pre = _poisson(base / "pre", 1, 5, 512, seed=0)
    _fake_demo(base / "pdefm-demo", pre)
    own = _poisson(base / "own", 5, 10, 80, seed=3)
    _own_data_npz(base / "my_data.npz", own)
    return base


def _readme_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- readme-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its example block"
    return match.group(1)


def test_readme_example_runs(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    namespace: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)
    record = namespace["record"]
    assert record["status"] == "completed" and record["test"]["rel_l2"] < 0.3
    u, data = namespace["u"], namespace["data"]
    assert u.shape == (4, 1, 32, 32)
    err = np.linalg.norm(u[:, 0] - data["solution"][:4]) / np.linalg.norm(data["solution"][:4])
    assert err < 0.3
    assert "test relative L2 after fine-tuning" in capsys.readouterr().out


def test_predict_by_name_and_by_array_agree(workspace):
    model = pdefm.load_model(pdefm.stage_checkpoint(workspace / "pdefm-demo", "poisson_1-5"))
    ds = PDEDataset(workspace / "pre", "test")
    x, y = ds.batch(range(6))
    by_array = model.predict(x)
    assert isinstance(by_array, torch.Tensor) and by_array.shape == y.shape == (6, 1, 32, 32)
    named = {name: x[:, i, 0, 0].numpy() for i, name in enumerate(ds.input_channels)}
    named["source"] = x[:, 0].numpy()
    reordered = dict(reversed(list(named.items())))
    by_name = model.predict(reordered)
    assert isinstance(by_name, np.ndarray)
    np.testing.assert_allclose(by_name, by_array.numpy(), rtol=1e-5, atol=1e-6)
    rel = (by_array - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    assert float(rel.mean()) < 0.3  # the pre-trained model actually predicts u
    single = model.predict(x[0])
    torch.testing.assert_close(single[0], by_array[0])


def test_predict_bad_input_is_one_line(workspace):
    model = pdefm.load_model(pdefm.stage_checkpoint(workspace / "pdefm-demo", "poisson_1-5"))
    with pytest.raises(PdefmError, match=r"expected \(B, 4, n, n\) with channels source"):
        model.predict(np.zeros((2, 3, 32, 32)))
    with pytest.raises(PdefmError, match="no 'source'"):
        model.predict({"diffusion_xx": 1.0})
    full = {"source": np.zeros((2, 32, 32)), **dict.fromkeys(model.input_channels[1:], 1.0)}
    with pytest.raises(PdefmError, match="never seen.*helmholtz_w"):
        model.predict({**full, "helmholtz_w": 3.0})
    with pytest.raises(PdefmError, match="diffusion_xx has 3 values for 2 samples"):
        model.predict({**full, "diffusion_xx": [1, 2, 3]})
    with pytest.raises(PdefmError, match="inputs lack 'diffusion_xy'.*give every coefficient"):
        model.predict({k: v for k, v in full.items() if k != "diffusion_xy"})
    with pytest.raises(PdefmError, match="source holds NaN"):
        model.predict({**full, "source": np.full((2, 32, 32), np.nan)})
    with pytest.raises(PdefmError, match="no normalisation statistics for family 'helmholtz'"):
        model.predict(np.zeros((1, 4, 32, 32)), family="helmholtz")


def test_stage_checkpoint_errors(workspace, tmp_path):
    with pytest.raises(PdefmError, match="no pre-training stage 'nope'.*poisson_1-5"):
        pdefm.stage_checkpoint(workspace / "pdefm-demo", "nope")
    with pytest.raises(PdefmError, match="not a study directory"):
        pdefm.stage_checkpoint(tmp_path, "poisson_1-5")


def test_import_pdefm_stays_light():
    import subprocess
    import sys

    code = "import sys, pdefm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predict_matches_the_targets_shape(workspace):
    """predict(x) - y is an error field, never a broadcast (B, B, n, n) block."""
    model = pdefm.load_model(pdefm.stage_checkpoint(workspace / "pdefm-demo", "poisson_1-5"))
    x, y = PDEDataset(workspace / "pre", "val").batch(range(3))
    u = model.predict(x.numpy())
    assert u.shape == tuple(y.shape) and (u - y.numpy()).shape == tuple(y.shape)
    assert model.output_channels == ["solution"]


def test_save_pretrained_round_trip(workspace, tmp_path):
    ckpt = pdefm.stage_checkpoint(workspace / "pdefm-demo", "poisson_1-5")
    model = pdefm.load_model(ckpt)
    saved = model.save_pretrained(tmp_path / "hf")
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    assert config["architecture"] == "fno-tiny" and config["arch_args"]["width"] == 16
    assert config["input_channels"] == model.input_channels and config["family"] == "poisson"
    again = pdefm.Model.from_pretrained(saved)
    x, _ = PDEDataset(workspace / "pre", "test").batch(range(4))
    torch.testing.assert_close(again.predict(x), model.predict(x), rtol=0, atol=0)
    assert pdefm.load_model(saved).families == model.families


def test_checkpoints_with_only_a_card_still_load(workspace, tmp_path):
    """A checkpoint written before config.json existed: card.json + model.safetensors."""
    ckpt = pdefm.stage_checkpoint(workspace / "pdefm-demo", "poisson_1-5")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("card.json", "model.safetensors"):
        (old / name).write_bytes((ckpt / name).read_bytes())
    x, _ = PDEDataset(workspace / "pre", "test").batch(range(2))
    a, b = pdefm.Model.from_pretrained(old).predict(x), pdefm.load_model(ckpt).predict(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_api_names_are_visible():
    listed = dir(pdefm)
    for name in ("load_model", "Model", "finetune", "stage_checkpoint", "import_dataset"):
        assert name in listed and name in pdefm.__doc__
    assert (Path(pdefm.__file__).parent / "py.typed").is_file()


def test_api_user_errors_are_pdefm_errors(workspace, tmp_path):
    ckpt = pdefm.stage_checkpoint(workspace / "pdefm-demo", "poisson_1-5")
    with pytest.raises(PdefmError, match="does not exist"):
        pdefm.load_model(tmp_path / "nowhere")
    with pytest.raises(PdefmError, match="must be a path"):
        pdefm.load_model(42)
    with pytest.raises(PdefmError, match="--device must be"):
        pdefm.load_model(ckpt, device="tpu")
    with pytest.raises(PdefmError, match="finetune\\(\\) has no option 'epoch'"):
        pdefm.finetune(ckpt, workspace / "own", epoch=3)
    (tmp_path / "plan.json").write_text("[1, 2]")
    with pytest.raises(PdefmError, match="plan.json is damaged"):
        pdefm.stage_checkpoint(tmp_path, "poisson_1-5")
    model = pdefm.load_model(ckpt)
    with pytest.raises(PdefmError, match="holds a `pdefm train` checkpoint"):
        model.save_pretrained(ckpt)
