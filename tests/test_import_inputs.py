"""Named inputs in `pdefm import`: fields and constants by name (NPZ, HDF5, torch.save dict),
a constant source, the card's field list and statistics, and a checkpoint trained with a
constant channel fine-tuning on data where that channel is a field, by name."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdefm.cli import main
from pdefm.data import importer
from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.errors import PdefmError

N, RES = 24, 16
INPUTS = ["diffusion_xx", "diffusion_yy", "diffusion_xy"]


def darcy_like(n: int = N, res: int = RES, seed: int = 0) -> dict:
    """A coefficient field a (diffusion_xx = diffusion_yy), a zero diffusion_xy constant, a
    constant forcing and a stand-in solution; parameter values identify rows."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(1.0, 10.0, size=(n, res, res))
    return {
        "source": rng.uniform(0.5, 2.0, size=n),
        "solution": rng.normal(size=(n, res, res)),
        "diffusion_xx": a,
        "diffusion_yy": a,
        "diffusion_xy": np.zeros(n),
        "parameter": rng.permutation(n) + 0.25,
        "x_axis": np.array(0),
    }


def write(path: Path, arrays: dict) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix == ".h5":
        with h5py.File(path, "w") as h5:
            for key, value in arrays.items():
                if np.asarray(value).dtype.kind == "U":
                    value = np.array(np.asarray(value).tolist(), dtype=h5py.string_dtype())
                h5[key] = value
    else:
        torch.save({k: _torch_value(v) for k, v in arrays.items()}, path)
    return path


def _torch_value(value):
    value = np.asarray(value)
    if value.dtype.kind == "U":
        return value.tolist()
    return torch.from_numpy(value)


def rows_of(ds: PDEDataset, arrays: dict) -> list[int]:
    return [int(np.flatnonzero(arrays["parameter"] == v)[0]) for v in ds.parameters()]


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".pt"])
def test_fields_and_constants_by_name_round_trip(tmp_path, suffix):
    arrays = darcy_like()
    path = write(tmp_path / f"own{suffix}", arrays)
    out = importer.import_dataset(path, tmp_path / "d", inputs=INPUTS, progress=False)
    card = load_card(out)
    assert card.input_channels == ["source", *INPUTS]
    assert card.field_channels == ["source", "diffusion_xx", "diffusion_yy"]
    assert card.constant_channels == ["diffusion_xy"]
    ds = PDEDataset(out, "train")
    x, y = ds.batch(np.arange(len(ds)))
    rows = rows_of(ds, arrays)
    f32 = np.float32
    for k, i in enumerate(rows):
        source = np.full((RES, RES), arrays["source"][i], f32)
        np.testing.assert_array_equal(x[k, 0].numpy(), source)
        np.testing.assert_array_equal(x[k, 1].numpy(), arrays["diffusion_xx"][i].astype(f32))
        np.testing.assert_array_equal(x[k, 2].numpy(), arrays["diffusion_yy"][i].astype(f32))
        assert (x[k, 3] == 0).all()
        np.testing.assert_array_equal(y[k, 0].numpy(), arrays["solution"][i].astype(f32))
    # a field's scale is the median of its per-sample RMS (what |value| is for a constant)
    a = arrays["diffusion_xx"][rows].astype(f32).astype(np.float64)
    stats = card.normalisation["channels"]["diffusion_xx"]
    assert stats["median_abs"] == pytest.approx(np.median(np.sqrt((a**2).mean((1, 2)))), rel=1e-12)
    assert card.normalisation["channels"]["diffusion_xy"]["median_abs"] == 0.0
    ds.close()


def test_input_names_in_the_file_and_verify_covers_fields(tmp_path, capsys):
    arrays = {**darcy_like(), "input_names": np.array(INPUTS)}
    path = write(tmp_path / "own.h5", arrays)
    out = tmp_path / "d"
    assert main(["import", str(path), "--out", str(out), "--quiet"]) == 0
    assert load_card(out).field_channels == ["source", "diffusion_xx", "diffusion_yy"]
    assert main(["inspect", str(out), "--verify", "--png", str(tmp_path / "i.png")]) == 0
    assert "verified" in capsys.readouterr().out
    with h5py.File(out / "train.h5", "r+") as h5:  # a changed field value is caught
        h5["fields/diffusion_xx"][0, 0, 0] += 1.0
    assert main(["inspect", str(out), "--verify"]) == 2
    assert "content hash" in capsys.readouterr().err


def test_the_inputs_flag_is_in_the_command_and_a_rerun_is_a_no_op(tmp_path, capsys):
    path = write(tmp_path / "own.npz", darcy_like())
    out = tmp_path / "d"
    args = ["import", str(path), "--out", str(out), "--inputs", ",".join(INPUTS), "--quiet"]
    assert main(args) == 0
    card = json.loads((out / "card.json").read_text())
    assert "--inputs=diffusion_xx,diffusion_yy,diffusion_xy" in card["command"]
    before = (out / "train.h5").read_bytes()
    assert main(args) == 0  # finished: nothing rewritten
    assert (out / "train.h5").read_bytes() == before
    # another input list is another dataset: refused, the folder untouched
    assert main([*args[:4], "--inputs", "diffusion_xx,diffusion_yy,diffusion_xy,", "--quiet"]) == 0
    assert main([*args[:4], "--inputs", "diffusion_xy,diffusion_xx,diffusion_yy", "--quiet"]) == 2
    assert (out / "train.h5").read_bytes() == before


# -- a constant channel and a field channel of one name are one input ----------------------
def test_a_checkpoint_with_a_constant_channel_fine_tunes_on_its_field(tmp_path):
    from conftest import tiny_run

    rng = np.random.default_rng(3)
    const = {  # diffusion_xx constant per sample
        "source": rng.normal(size=(N, RES, RES)),
        "solution": rng.normal(size=(N, RES, RES)),
        "diffusion_xx": rng.uniform(1, 3, size=N),
        "x_axis": np.array(0),
    }
    a_const = importer.import_dataset(
        write(tmp_path / "c.npz", const), tmp_path / "c", inputs=["diffusion_xx"], progress=False
    )
    field = {**const, "diffusion_xx": rng.uniform(1, 3, size=(N, RES, RES))}
    a_field = importer.import_dataset(
        write(tmp_path / "f.npz", field), tmp_path / "f", inputs=["diffusion_xx"], progress=False
    )
    tiny_run(a_const, tmp_path / "r", "pre")
    init = str(tmp_path / "r" / "pre" / "checkpoint")
    record = tiny_run(a_field, tmp_path / "r", "ft", init=init, n_train=8)
    assert record["status"] == "completed"
    assert record["channels"] == {"source": "source", "diffusion_xx": "diffusion_xx"}


# -- bad input -----------------------------------------------------------------------------
def _import(tmp_path, arrays, inputs=INPUTS, suffix=".npz"):
    path = write(tmp_path / f"bad{suffix}", arrays)
    importer.import_dataset(path, tmp_path / "out", inputs=inputs, progress=False)


BAD = {
    "grids differ": (
        lambda a: {**a, "diffusion_yy": np.ones((N, RES + 2, RES + 2))},
        INPUTS,
        "diffusion_yy grid (18, 18) differs from solution grid (16, 16)",
    ),
    "counts differ": (
        lambda a: {**a, "diffusion_xx": a["diffusion_xx"][:-1]},
        INPUTS,
        "diffusion_xx has 23 samples but solution has 24",
    ),
    "input is the output": (lambda a: a, ["solution"], "'solution' is listed as an input"),
    "listed twice": (lambda a: a, ["diffusion_xx", "diffusion_xx"], "listed twice"),
    "not in the file": (lambda a: a, ["diffusion_zz"], "input 'diffusion_zz' is not an array"),
    "undeclared array": (lambda a: a, ["diffusion_xx"], "unknown array `diffusion_yy`; list it"),
    "reserved name": (
        lambda a: {**a, "coefficients": np.ones((N, 1)), "coefficient_names": np.array(["k"])},
        ["coefficients", *INPUTS],
        "'coefficients' is the name of a pdefm import array",
    ),
    "nan in a field": (
        lambda a: {
            **a,
            "diffusion_yy": np.where(np.arange(N)[:, None, None] == 9, np.nan, 1.0)
            * np.ones((N, RES, RES)),
        },  # fmt: skip
        INPUTS,
        "diffusion_yy sample 9 holds NaN or Inf",
    ),
    "inf in a constant": (
        lambda a: {**a, "diffusion_xy": np.where(np.arange(N) == 4, np.inf, 0.0)},
        INPUTS,
        "diffusion_xy sample 4 holds NaN or Inf",
    ),
    "nan in a constant source": (
        lambda a: {**a, "source": np.where(np.arange(N) == 2, np.nan, 1.0)},
        INPUTS,
        "source sample 2 holds NaN or Inf",
    ),
    "two-channel field": (
        lambda a: {**a, "diffusion_xx": np.ones((N, 2, RES, RES))},
        INPUTS,
        "2 channels in one array",
    ),
    "constant of the wrong length": (
        lambda a: {**a, "diffusion_xy": np.zeros(N + 1)},
        INPUTS,
        "diffusion_xy has shape (25,)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, case):
    mutate, inputs, needle = BAD[case]
    with pytest.raises(PdefmError, match=".*".join(map(_escape, needle.split("*")))) as info:
        _import(tmp_path, mutate(darcy_like()), inputs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def _escape(text: str) -> str:
    import re

    return re.escape(text)


class _Boom:
    """Unpickling this would create a file: a loader that runs it is unsafe."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pt_file_that_needs_unpickling_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"source": torch.zeros(N, RES, RES), "solution": _Boom(str(marker))}, path)
    with pytest.raises(PdefmError, match="weights_only=True.*never unpickles"):
        importer.import_dataset(path, tmp_path / "out", progress=False)
    assert not marker.exists() and not (tmp_path / "out").exists()
    bare = tmp_path / "old.pt"  # a bare pickle (no zip container) is never opened by pickle
    bare.write_bytes(pickle.dumps({"source": np.zeros(3)}, protocol=2))
    with pytest.raises(PdefmError, match="bare pickle.*never unpickles"):
        importer.import_dataset(bare, tmp_path / "out", progress=False)
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], not_a_dict)
    with pytest.raises(PdefmError, match="holds a list, not a dict"):
        importer.import_dataset(not_a_dict, tmp_path / "out", progress=False)


def test_a_dataset_with_field_inputs_is_refused_as_a_mixture_member(tmp_path):
    from pdefm.data.mixture import mix_datasets
    from pdefm.data.mixture_spec import MixtureSpec

    path = write(tmp_path / "own.npz", darcy_like())
    a = importer.import_dataset(path, tmp_path / "a", inputs=INPUTS, progress=False)
    b = importer.import_dataset(path, tmp_path / "b", inputs=INPUTS, progress=False)
    spec = MixtureSpec(((str(a), 1.0), (str(b), 1.0)), n_train=8, n_val=2, n_test=2)
    with pytest.raises(PdefmError, match="input fields besides the source.*diffusion_xx"):
        mix_datasets(spec, tmp_path / "mix", progress=False)
    assert not (tmp_path / "mix").exists()


# -- the grid: which axis is x, the domain, the boundary of each side -----------------------
def test_fields_indexed_y_first_are_transposed_on_import(tmp_path):
    arrays = darcy_like()
    path = write(tmp_path / "yx.npz", {**arrays, "x_axis": np.array(1)})
    out = importer.import_dataset(path, tmp_path / "d", inputs=INPUTS, progress=False)
    ds = PDEDataset(out, "train")
    x, y = ds.batch([0])
    i = rows_of(ds, arrays)[0]
    np.testing.assert_array_equal(x[0, 1].numpy(), arrays["diffusion_xx"][i].T.astype(np.float32))
    np.testing.assert_array_equal(y[0, 0].numpy(), arrays["solution"][i].T.astype(np.float32))
    assert load_card(out).grid["x_axis"] == 0  # stored in pdefm's convention
    ds.close()


def test_coordinates_give_the_axis_and_the_domain(tmp_path):
    n = RES
    xs, ys = np.linspace(0.0, 2.0, n), np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(xs, ys)  # "xy" indexing: x varies along axis 1
    arrays = {k: v for k, v in darcy_like().items() if k != "x_axis"}
    path = write(tmp_path / "c.npz", {**arrays, "x": X, "y": Y, "boundary": np.array("dirichlet")})
    out = importer.import_dataset(path, tmp_path / "d", inputs=INPUTS, progress=False)
    card = load_card(out)
    assert card.grid["domain"] == [[0.0, 2.0], [-1.0, 1.0]] and not card.periodic
    assert card.boundary == dict.fromkeys(("x_low", "x_high", "y_low", "y_high"), "dirichlet")
    ds = PDEDataset(out, "train")
    i = rows_of(ds, arrays)[0]
    np.testing.assert_array_equal(ds.batch([0])[1][0, 0].numpy(), arrays["solution"][i].T
                                  .astype(np.float32))  # fmt: skip
    ds.close()
    with pytest.raises(PdefmError, match="x axis 0 contradicts the coordinate arrays.*axis 1"):
        importer.import_dataset(path, tmp_path / "e", inputs=INPUTS, x_axis=0, progress=False)
    # periodic: the domain ends one spacing after the last point
    path = write(tmp_path / "p.npz", {**arrays, "x": X.T, "y": Y.T})
    card = load_card(importer.import_dataset(path, tmp_path / "p", inputs=INPUTS, progress=False))
    step = 2.0 / (n - 1)
    assert card.grid["domain"][0] == pytest.approx([0.0, 2.0 + step]) and card.periodic


@pytest.mark.parametrize(
    "boundary,needle",
    [
        ("robin", "boundary 'robin' is not known; use one of periodic, dirichlet, neumann"),
        ("x=periodic,y_low=dirichlet", "no condition for y_high"),
        ("x_low=periodic,x_high=dirichlet,y=neumann", "periodic on one x side only"),
        ("z=dirichlet", "boundary side 'z' is not known"),
    ],
)
def test_bad_boundaries_are_one_line_errors(tmp_path, boundary, needle):
    path = write(tmp_path / "own.npz", darcy_like())
    with pytest.raises(PdefmError, match=_escape(needle)):
        importer.import_dataset(path, tmp_path / "d", inputs=INPUTS, boundary=boundary,
                                progress=False)  # fmt: skip
    assert not (tmp_path / "d").exists()


def test_mixed_boundaries_are_recorded_per_side(tmp_path):
    path = write(tmp_path / "own.npz", darcy_like())
    spec = "x=periodic,y_low=dirichlet,y_high=neumann"
    out = importer.import_dataset(path, tmp_path / "d", inputs=INPUTS, boundary=spec,
                                  progress=False)  # fmt: skip
    card = load_card(out)
    assert card.boundary == {"x_low": "periodic", "x_high": "periodic", "y_low": "dirichlet",
                             "y_high": "neumann"}  # fmt: skip
    assert not card.periodic and f"--boundary={spec}" in card.command


def test_the_boundary_is_part_of_the_data_hash_of_non_periodic_data(tmp_path):
    """The same arrays as periodic and as Dirichlet data are two datasets: runs on them must
    not share an id. Periodic data keep the hash of their samples alone (published ids)."""
    import hashlib

    path = write(tmp_path / "own.npz", darcy_like())
    kw = {"inputs": INPUTS, "progress": False}
    periodic = load_card(importer.import_dataset(path, tmp_path / "p", **kw))
    dirichlet = load_card(importer.import_dataset(path, tmp_path / "d", boundary="dirichlet", **kw))
    assert periodic.content_hash == dirichlet.content_hash
    assert periodic.data_hash != dirichlet.data_hash
    samples_only = "".join(periodic.content_hash.values()).encode()
    assert periodic.data_hash == hashlib.sha256(samples_only).hexdigest()[:16]
