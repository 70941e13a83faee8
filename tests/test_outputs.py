"""Several outputs: imported by name (--outputs), predicted together by one model, scored per
output and overall; checkpoints say what they predict and refuse data with other outputs."""

from __future__ import annotations

import numpy as np
import pytest

from pdefm.data import importer
from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.errors import PdefmError

N, RES = 24, 16


def two_outputs(n: int = N, res: int = RES, seed: int = 0) -> dict:
    """u = f smoothed, v = -u (both linear in f); parameter values identify rows."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, res, res))
    u = 0.5 * (f + np.roll(f, 1, axis=1))
    return {"source": f, "u": u, "v": -u, "parameter": rng.permutation(n) + 0.5, "x_axis": 0}


@pytest.fixture
def dataset(tmp_path):
    np.savez(tmp_path / "uv.npz", **two_outputs())
    return importer.import_dataset(tmp_path / "uv.npz", tmp_path / "d", outputs=["u", "v"],
                                   progress=False)  # fmt: skip


def test_outputs_are_stored_and_read_in_order(dataset, tmp_path):
    arrays = two_outputs()
    card = load_card(dataset)
    assert card.output_channels == ["u", "v"] and "--outputs=u,v" in card.command
    ds = PDEDataset(dataset, "train")
    x, y = ds.batch(np.arange(len(ds)))
    assert y.shape == (len(ds), 2, RES, RES)
    for k, value in enumerate(ds.parameters()):
        i = int(np.flatnonzero(arrays["parameter"] == value)[0])
        np.testing.assert_array_equal(y[k, 0].numpy(), arrays["u"][i].astype(np.float32))
        np.testing.assert_array_equal(y[k, 1].numpy(), arrays["v"][i].astype(np.float32))
    ds.close()


def test_one_model_predicts_every_output_and_is_scored_per_output(dataset, tmp_path):
    from pdefm import load_model
    from pdefm.train.config import RunConfig
    from pdefm.train.loop import train

    common = dict(model="fno-micro", lrs=(3e-3,), epochs=None, steps=3, out=str(tmp_path / "r"),
                  progress=False, device="cpu")  # fmt: skip
    record = train(RunConfig(data=str(dataset), run_name="uv", **common))
    assert set(record["test"]["per_output"]) == {"u", "v"}
    per = record["test"]["per_output"]
    assert all(np.isfinite(v) for v in per.values())
    model = load_model(tmp_path / "r" / "uv" / "checkpoint")
    assert model.output_channels == ["u", "v"]
    f = np.random.default_rng(1).normal(size=(3, RES, RES))
    assert model.predict({"source": f}).shape == (3, 2, RES, RES)
    # a one-output checkpoint cannot predict two outputs: refused before anything is written
    np.savez(tmp_path / "one.npz", **{k: v for k, v in two_outputs().items() if k != "v"})
    one = importer.import_dataset(tmp_path / "one.npz", tmp_path / "one", outputs=["u"],
                                  progress=False)  # fmt: skip
    train(RunConfig(data=str(one), run_name="u", **common))
    init = str(tmp_path / "r" / "u" / "checkpoint")
    with pytest.raises(PdefmError, match="predicts u but the dataset's outputs are u, v"):
        train(RunConfig(data=str(dataset), init=init, n_train=8, run_name="bad", **common))
    assert not (tmp_path / "r" / "bad").exists()


@pytest.mark.parametrize(
    "outputs,needle",
    [
        (["u", "u"], "output 'u' is listed twice"),
        (["u", "w"], "output 'w' is not an array"),
        (["source"], "output name 'source' is the name of a pdefm import array"),
    ],
)
def test_bad_outputs_are_one_line_errors(tmp_path, outputs, needle):
    np.savez(tmp_path / "uv.npz", **two_outputs())
    with pytest.raises(PdefmError, match=needle):
        importer.import_dataset(tmp_path / "uv.npz", tmp_path / "d", outputs=outputs,
                                progress=False)  # fmt: skip
    assert not (tmp_path / "d").exists()


def test_an_array_cannot_be_an_input_and_an_output(tmp_path):
    np.savez(tmp_path / "uv.npz", **two_outputs())
    with pytest.raises(PdefmError, match="'v' is listed as an input but it is an output"):
        importer.import_dataset(tmp_path / "uv.npz", tmp_path / "d", inputs=["v"],
                                outputs=["u", "v"], progress=False)  # fmt: skip


def test_several_outputs_survive_a_well_export_and_import(dataset, tmp_path):
    from pdefm.cli import main

    exported = tmp_path / "uv.h5"
    assert main(["export", str(dataset), "--format", "well", "--split", "train", "--out",
                 str(exported)]) == 0  # fmt: skip
    again = importer.import_dataset(exported, tmp_path / "again", progress=False)
    assert load_card(again).output_channels == ["u", "v"]
    a, b = PDEDataset(dataset, "train"), PDEDataset(again, "train")
    ya = a.batch(np.arange(len(a)))[1]
    order = {float(p): k for k, p in enumerate(a.parameters())}
    yb = b.batch(np.arange(len(b)))[1]
    for k, p in enumerate(b.parameters()):
        np.testing.assert_array_equal(yb[k].numpy(), ya[order[float(p)]].numpy())
    a.close(), b.close()
