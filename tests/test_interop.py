"""Public layouts in `pdefm import` / `pdefm export`: a PDEBench 2D Darcy flow file read as a
Poisson-shaped dataset, and The Well-style HDF5 written from a dataset and read back."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pdefm.cli import main
from pdefm.data import importer, interop, interop_arrays
from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.errors import PdefmError

N, RES = 6, 16
DARCY_NAME = "2D_DarcyFlow_beta1.0_Train.hdf5"
SIDES = ("x_low", "x_high", "y_low", "y_high")


def pdebench_file(path, drop: str | None = None):
    """A file in PDEBench's 2D Darcy layout (cell-centred points); nu rows differ."""
    rng = np.random.default_rng(0)
    centres = (np.arange(RES) + 0.5) / RES
    arrays = {
        "nu": (rng.uniform(1, 10, (N, RES, RES)) + 100 * np.arange(N)[:, None, None]),
        "tensor": rng.normal(size=(N, 1, RES, RES)),
        "x-coordinate": centres,
        "y-coordinate": centres,
        "t-coordinate": np.array([0.0, 1.0]),
    }
    with h5py.File(path, "w") as h5:
        for key, value in arrays.items():
            if key != drop:
                h5[key] = value.astype(np.float32)
    return path, {k: v.astype(np.float32) for k, v in arrays.items()}


def samples(root) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(parameter, inputs (C, n, n), target (1, n, n)) of every sample of every split."""
    out = []
    for split in ("train", "val", "test"):
        ds = PDEDataset(root, split)
        x, y = ds.batch(np.arange(len(ds)))
        out += [(float(p), x[i].numpy(), y[i].numpy()) for i, p in enumerate(ds.parameters())]
        ds.close()
    return out


# -- PDEBench 2D Darcy flow ----------------------------------------------------------------
@pytest.mark.parametrize("x_axis", [0, 1])
def test_a_pdebench_darcy_file_imports_by_rows_as_source_and_diffusion(
    tmp_path, monkeypatch, x_axis
):
    path, arrays = pdebench_file(tmp_path / DARCY_NAME)
    assert interop.detect_layout(path) == interop.PDEBENCH_DARCY

    def no_whole_field(self):
        raise AssertionError(f"{self.label} read whole")

    monkeypatch.setattr(interop_arrays.Rows, "whole", no_whole_field)
    out = importer.import_dataset(path, tmp_path / "d", x_axis=x_axis, progress=False)
    card = load_card(out)
    assert card.input_channels == ["source", "diffusion_xx", "diffusion_yy", "diffusion_xy"]
    assert card.field_channels == ["source", "diffusion_xx", "diffusion_yy"]
    assert card.output_channels == ["solution"]
    assert card.family == "pdebench-darcy" and "beta = 1.0" in card.equation
    assert card.boundary == dict.fromkeys(SIDES, "dirichlet") and not card.periodic
    ends = [float(arrays["x-coordinate"][0]), float(arrays["x-coordinate"][-1])]
    assert card.grid["domain"] == [ends, ends]
    assert card.parameter_name == "none"
    found = samples(out)
    assert len(found) == N
    for _, x, y in found:
        row = int(x[1].mean() // 100)  # nu rows are offset by 100 each
        turn = (lambda a: a.T) if x_axis == 1 else (lambda a: a)
        assert (x[0] == 1.0).all() and (x[3] == 0.0).all()
        np.testing.assert_array_equal(x[1], turn(arrays["nu"][row]))
        np.testing.assert_array_equal(x[2], turn(arrays["nu"][row]))
        np.testing.assert_array_equal(y[0], turn(arrays["tensor"][row, 0]))


def test_pdebench_beta_comes_from_the_flag_or_the_name_else_a_clear_error(tmp_path, capsys):
    path, _ = pdebench_file(tmp_path / "darcy.h5")
    out = tmp_path / "d"
    args = ["import", str(path), "--x-axis", "0", "--out", str(out), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "does not name the forcing beta" in err and "--beta" in err and err.count("\n") == 1
    assert not out.exists()
    assert main([*args, "--beta", "0.5"]) == 0
    assert "beta = 0.5" in load_card(out).equation
    assert all((x[0] == 0.5).all() for _, x, _ in samples(out))
    named, _ = pdebench_file(tmp_path / DARCY_NAME)
    with pytest.raises(PdefmError, match="contradicts"):
        importer.import_dataset(named, tmp_path / "e", x_axis=0, beta=2.0, progress=False)
    npz = tmp_path / "own.npz"
    np.savez(npz, source=np.ones(3))
    assert main(["import", str(npz), "--out", str(tmp_path / "f"), "--beta", "1"]) == 2
    assert "--beta applies to PDEBench" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


def test_a_pdebench_file_without_tensor_is_an_error_naming_it(tmp_path):
    path, _ = pdebench_file(tmp_path / DARCY_NAME, drop="tensor")
    with pytest.raises(PdefmError, match="no dataset `tensor`.*PDEBench stores tensor") as info:
        importer.import_dataset(path, tmp_path / "d", x_axis=0, progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "d").exists()


# -- The Well-style HDF5 -------------------------------------------------------------------
def own_dataset(tmp_path):
    """An import with a coefficient field, a constant input that is 0 everywhere, a parameter,
    per-side boundaries and coordinates that make a non-unit domain."""
    rng = np.random.default_rng(1)
    n = 24
    xs, ys = np.linspace(0.0, 2.0, RES), np.linspace(-1.0, 1.0, RES)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    path = tmp_path / "own.npz"
    np.savez(
        path,
        source=rng.normal(size=(n, RES, RES)),
        solution=rng.normal(size=(n, RES, RES)),
        diffusion_xx=rng.uniform(1, 3, (n, RES, RES)),
        diffusion_xy=np.zeros(n),
        helmholtz_w=rng.uniform(1, 2, n),
        input_names=np.array(["diffusion_xx", "diffusion_xy", "helmholtz_w"]),
        parameter=rng.permutation(n) + 0.5,
        parameter_name="e",
        family="darcy-own",
        equation="-div(a grad u) = f",
        x=X,
        y=Y,
        boundary="x=periodic,y_low=dirichlet,y_high=neumann",
    )
    return importer.import_dataset(path, tmp_path / "d1", progress=False)


def test_export_to_the_well_layout_and_import_it_back(tmp_path, capsys):
    d1 = own_dataset(tmp_path)
    exported = tmp_path / "own-train.h5"
    assert main(["export", str(d1), "--format", "well", "--out", str(exported),
                 "--split", "train"]) == 0  # fmt: skip
    assert "import it back" in capsys.readouterr().out
    assert interop.detect_layout(exported) == interop.WELL
    with h5py.File(exported) as h5:
        count = load_card(d1).count("train")
        assert h5.attrs["n_trajectories"] == count and h5.attrs["grid_type"] == "cartesian"
        assert list(h5.attrs["pdefm_inputs"]) == load_card(d1).input_channels
        assert h5.attrs["diffusion_xy"] == 0.0  # a constant parameter is also an attribute
        assert h5["t0_fields/diffusion_xx"].shape == (count, RES, RES)
        assert list(h5["dimensions"].attrs["spatial_dims"]) == ["x", "y"]
        assert {k: g.attrs["bc_type"] for k, g in h5["boundary_conditions"].items()} == {
            "x_periodic": "PERIODIC", "y_low_wall": "WALL", "y_high_open": "OPEN"
        }  # fmt: skip
    d2 = importer.import_dataset(exported, tmp_path / "d2", progress=False)
    card1, card2 = load_card(d1), load_card(d2)
    assert card2.data["channels"] == card1.data["channels"]
    assert card2.boundary == card1.boundary
    assert np.allclose(card2.grid["domain"], card1.grid["domain"], rtol=0, atol=1e-12)
    assert (card2.family, card2.equation) == (card1.family, card1.equation)
    assert card2.parameter_name == "e"
    before = {p: (x, y) for p, x, y in samples(d1)}
    after = samples(d2)
    assert len(after) == count
    for key, x, y in after:  # the parameter identifies the sample
        np.testing.assert_array_equal(x, before[key][0])
        np.testing.assert_array_equal(y, before[key][1])


def hand_written_well(path, fields=("source", "kappa", "solution"), inputs=None):
    """A Well-style file with only The Well's attributes (and pdefm_inputs if given): fields
    x first on a 16 x 8-spaced grid over [0, 3] x [0, 1], WALL in x, PERIODIC in y."""
    rng = np.random.default_rng(2)
    arrays = {name: rng.normal(size=(N, RES, RES)) for name in fields}
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"dataset_name": "hand-made", "grid_type": "cartesian",
                         "n_spatial_dims": 2, "n_trajectories": N})  # fmt: skip
        if inputs is not None:
            h5.attrs["pdefm_inputs"] = inputs
        dims = h5.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims["x"] = np.linspace(0.0, 3.0, RES)
        dims["y"] = np.arange(RES) / RES
        for name, bc in (("x", "WALL"), ("y", "PERIODIC")):
            group = h5.create_group(f"boundary_conditions/{name}_{bc.lower()}")
            group.attrs.update({"bc_type": bc, "associated_dims": [name]})
        for name, value in arrays.items():
            h5[f"t0_fields/{name}"] = value
        h5["scalars/re"] = np.arange(N) + 10.0
    return path, arrays


def test_a_hand_written_well_file_with_minimal_attributes_imports(tmp_path):
    path, arrays = hand_written_well(tmp_path / "hand.h5")
    out = importer.import_dataset(path, tmp_path / "d", progress=False)
    card = load_card(out)
    assert card.input_channels == ["source", "kappa", "re"]
    assert card.field_channels == ["source", "kappa"]
    assert card.family == "hand-made" and card.parameter_name == "none"
    assert card.boundary == {"x_low": "dirichlet", "x_high": "dirichlet",
                             "y_low": "periodic", "y_high": "periodic"}  # fmt: skip
    assert np.allclose(card.grid["domain"], [[0.0, 3.0], [0.0, 1.0]])
    for _, x, y in samples(out):
        row = int(x[2, 0, 0]) - 10  # re = row + 10
        np.testing.assert_array_equal(x[1], arrays["kappa"][row].astype(np.float32))
        np.testing.assert_array_equal(y[0], arrays["solution"][row].astype(np.float32))
    with pytest.raises(PdefmError, match="x axis 1 contradicts the coordinate arrays"):
        importer.import_dataset(path, tmp_path / "e", x_axis=1, progress=False)
    assert not (tmp_path / "e").exists()


def test_a_well_file_whose_pdefm_inputs_names_a_missing_field_is_a_clear_error(tmp_path):
    path, _ = hand_written_well(tmp_path / "hand.h5", inputs=["source", "kappa", "sigma"])
    with pytest.raises(PdefmError, match="'sigma' is listed in pdefm_inputs.*t0_fields/sigma"):
        importer.import_dataset(path, tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_a_given_beta_is_in_the_card_command(tmp_path):
    path, _ = pdebench_file(tmp_path / "darcy.h5")
    out = importer.import_dataset(path, tmp_path / "d", x_axis=0, beta=0.5, progress=False)
    assert "--beta 0.5" in load_card(out).command
