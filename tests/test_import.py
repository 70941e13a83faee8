"""`pdefm import`: own data (NPZ / HDF5) -> a pdefm dataset that reads, verifies and trains;
every bad input is a one-line error naming the array, before anything is written."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdefm import catalogue
from pdefm.cli import build_parser, main
from pdefm.data import importer, store
from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.errors import PdefmError

N, RES = 20, 16
NAMES = ["diffusion_xx", "diffusion_yy", "diffusion_xy"]


def own_arrays(n: int = N, res: int = RES, seed: int = 0) -> dict:
    """Known arrays in the import format; parameter values are distinct (they identify rows)."""
    rng = np.random.default_rng(seed)
    return {
        "source": rng.normal(size=(n, res, res)),
        "solution": rng.normal(size=(n, 1, res, res)).astype(np.float32),
        "coefficients": rng.uniform(0.5, 2.0, size=(n, len(NAMES))),
        "coefficient_names": np.array(NAMES),
        "parameter": rng.permutation(n) + rng.uniform(0, 0.5, size=n),
        "parameter_name": np.array("e"),
        "family": np.array("darcy-own"),
        "x_axis": np.array(0),
    }


def write_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def write_h5(path: Path, arrays: dict) -> Path:
    with h5py.File(path, "w") as h5:
        for key, value in arrays.items():
            if value.dtype.kind == "U":  # h5py stores text as (variable-length) strings
                value = np.array(value.tolist(), dtype=h5py.string_dtype())
            h5[key] = value
    return path


WRITERS = {"npz": write_npz, "h5": write_h5}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def left_behind(root: Path, keep: set[str]) -> list[str]:
    """Entries of ``root`` other than ``keep`` (hidden temporary directories included)."""
    return sorted(p.name for p in root.iterdir() if p.name not in keep)


# -- round trip ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_round_trip_keeps_every_sample(tmp_path, capsys, fmt):
    arrays = own_arrays()
    path = WRITERS[fmt](tmp_path / f"own.{fmt}", arrays)
    out = tmp_path / "data"
    code, text, err = cli(capsys, "import", str(path), "--out", str(out), "--quiet")
    assert code == 0, err
    assert "16/2/2 train/val/test at 16x16" in text and f"pdefm train {out} --init" in text

    seen = []
    for split in ("train", "val", "test"):
        ds = PDEDataset(out, split)
        assert ds.input_channels == ["source", *NAMES]
        x, y = ds.batch(np.arange(len(ds)))
        for k, value in enumerate(ds.parameters()):
            i = int(np.flatnonzero(arrays["parameter"] == value)[0])  # the row it came from
            seen.append(i)
            np.testing.assert_array_equal(x[k, 0].numpy(), arrays["source"][i].astype(np.float32))
            coeff = arrays["coefficients"][i].astype(np.float32)[:, None, None]
            np.testing.assert_array_equal(x[k, 1:].numpy(), np.broadcast_to(coeff, (3, RES, RES)))
            np.testing.assert_array_equal(y[k].numpy(), arrays["solution"][i])
        ds.close()
    assert sorted(seen) == list(range(N))  # a partition: every sample once

    card = load_card(out).to_json()
    assert card["counts"] == {"train": 16, "val": 2, "test": 2}
    assert card["family"] == "darcy-own" and card["parameter"]["name"] == "e"
    assert card["channels"] == {
        "inputs": ["source", *NAMES],
        "fields": ["source"],
        "outputs": ["solution"],
    }
    assert card["spec"]["source_sha256"] == importer.file_sha256(path)
    assert card["parameter"]["declared"]["low"] == arrays["parameter"].min()


def test_card_normalisation_is_the_train_split_statistics(tmp_path):
    arrays = own_arrays()
    path = write_npz(tmp_path / "own.npz", arrays)
    out = importer.import_dataset(path, tmp_path / "d", progress=False)
    ds = PDEDataset(out, "train")
    rows = [int(np.flatnonzero(arrays["parameter"] == v)[0]) for v in ds.parameters()]
    ds.close()
    f = arrays["source"][rows].astype(np.float32).astype(np.float64)
    norm = load_card(out).to_json()["normalisation"]
    assert norm["source_norm"]["median"] == pytest.approx(
        np.median(np.sqrt((f**2).mean(axis=(1, 2)))), rel=1e-12
    )
    for j, name in enumerate(NAMES):
        expected = np.median(np.abs(arrays["coefficients"][rows, j]))
        assert norm["channels"][name]["median_abs"] == pytest.approx(expected, rel=1e-12)


def test_split_is_seeded_and_sorted():
    a = importer.split_indices(100, 0.1, 0.2, seed=3)
    assert [len(a[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    assert all((np.diff(v) > 0).all() for v in a.values())
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    b = importer.split_indices(100, 0.1, 0.2, seed=4)
    assert not np.array_equal(a["val"], b["val"])
    np.testing.assert_array_equal(a["val"], importer.split_indices(100, 0.1, 0.2, seed=3)["val"])


def test_minimal_file_and_verify(tmp_path, capsys):
    """source and solution only: one input channel, parameter 'none'; inspect --verify passes
    (train spans three hash blocks), and a changed value is caught by it."""
    rng = np.random.default_rng(1)
    fields = {"source": rng.normal(size=(200, 8, 8)), "solution": rng.normal(size=(200, 8, 8))}
    out = tmp_path / "d"
    path = write_npz(tmp_path / "m.npz", fields)
    code, _, err = cli(capsys, "import", str(path), "--out", str(out), "--quiet")
    assert_one_line_error(code, err, "which array axis of the fields is x", "--x-axis 0")
    assert not out.exists()
    assert main(["import", str(path), "--out", str(out), "--x-axis", "0", "--quiet"]) == 0
    card = load_card(out).to_json()
    assert card["channels"]["inputs"] == ["source"] and card["parameter"]["name"] == "none"
    assert card["grid"]["boundary"] == dict.fromkeys(("x_low", "x_high", "y_low", "y_high"),
                                                     "periodic")  # fmt: skip
    assert card["grid"]["periodic"] and "--x-axis 0" in card["command"]
    assert card["family"] == "custom" and card["counts"]["train"] > 2 * importer.BLOCK_SIZE
    code, text, err = cli(capsys, "inspect", str(out), "--verify")
    assert code == 0, err
    assert "verified: every split matches" in text
    with h5py.File(out / "train.h5", "r+") as h5:
        h5["solution"][0, 0, 0] += 1.0
    code, _, err = cli(capsys, "inspect", str(out), "--verify")
    assert_one_line_error(code, err, "does not match its card's content hash", "pdefm import")


def test_flags_override_the_file(tmp_path):
    path = write_h5(tmp_path / "own.h5", own_arrays())
    out = importer.import_dataset(
        path, tmp_path / "d", family="heat-own", equation="u_t = lap u", progress=False
    )
    card = load_card(out).to_json()
    assert (card["family"], card["equation"]) == ("heat-own", "u_t = lap u")
    assert "--family heat-own --equation='u_t = lap u'" in card["command"]


def test_generate_from_an_imported_card_points_to_import(tmp_path, capsys):
    path = write_npz(tmp_path / "own.npz", own_arrays())
    out = importer.import_dataset(path, tmp_path / "d", progress=False)
    code, _, err = cli(capsys, "generate", "--from-card", str(out), "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, "was imported", "pdefm import")
    assert not (tmp_path / "x").exists()


def test_a_registered_family_name_is_refused_for_imported_data(tmp_path):
    """Imported data named like a registered family would get that family's residual."""
    path = write_npz(tmp_path / "own.npz", own_arrays())
    for name in catalogue.family_names():
        with pytest.raises(PdefmError, match="registered pdefm family"):
            importer.import_dataset(path, tmp_path / "d", family=name.upper(), progress=False)
    assert not (tmp_path / "d").exists()


def test_help_teaches_the_format(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "--help"])
    text = capsys.readouterr().out
    for needle in ("coefficient_names", "np.savez", "diffusion_xx", "pdefm train", "linear"):
        assert needle in text


# -- bad input ----------------------------------------------------------------------------
def _set(key, value):
    return lambda a: {**a, key: value(a) if callable(value) else value}


def _drop(*keys):
    return lambda a: {k: v for k, v in a.items() if k not in keys}


def _poison(key, index, value=np.nan):
    def mutate(a):
        bad = np.array(a[key], dtype=np.float64)
        bad[index] = value
        return {**a, key: bad}

    return mutate


def _both_fields(shape):
    rng = np.random.default_rng(2)
    return lambda a: {**a, "source": rng.normal(size=shape), "solution": rng.normal(size=shape)}


BAD = {
    "missing source": (_drop("source"), ["`source`", "(N, n, n)"]),
    "missing solution": (_drop("solution"), ["`solution`"]),
    "source rank": (
        _set("source", np.zeros((N, RES))),
        ["source has shape (20, 16): expected (N, n, n) or (N, 1, n, n)"],
    ),
    "solution rank": (_set("solution", np.zeros((N, RES, RES, 2, 2))), ["solution has shape"]),
    "two outputs": (
        _set("solution", np.zeros((N, 2, RES, RES))),
        ["solution has shape", "--outputs u,v"],
    ),
    "two sources": (_set("source", np.zeros((N, 2, RES, RES))), ["source has shape", "one"]),
    "sample counts": (
        _set("solution", lambda a: a["solution"][:-1]),
        ["solution has 19 samples but source has 20"],
    ),
    "grids differ": (_set("solution", np.zeros((N, 18, 18))), ["solution grid", "differs"]),
    "non-square": (_both_fields((N, RES, 12)), ["not square"]),
    "too small": (_both_fields((N, 4, 4)), ["too small", "8 x 8"]),
    "too few samples": (
        lambda a: {k: v[:2] for k, v in a.items() if v.ndim and len(v) == N},
        ["source has 2 samples", "at least 3"],
    ),
    "nan source": (_poison("source", (7, 3, 3)), ["source sample 7", "NaN or Inf"]),
    "inf solution": (_poison("solution", (3, 0, 1, 1), np.inf), ["solution sample 3"]),
    "huge source": (_poison("source", (5, 0, 0), 1e300), ["source sample 5", "float32"]),
    "nan coefficients": (_poison("coefficients", (5, 1)), ["coefficients sample 5"]),
    "nan parameter": (_poison("parameter", 11), ["parameter sample 11"]),
    "unnamed channels": (_drop("coefficient_names"), ["coefficients", "unnamed channels"]),
    "names without values": (_drop("coefficients"), ["coefficient_names", "without"]),
    "names count": (
        _set("coefficient_names", np.array(["diffusion_xx"])),
        ["coefficient_names has 1 names but coefficients has 3"],
    ),
    "coefficients 1-d": (
        _set("coefficients", np.ones(N)),
        ["coefficients has shape (20,)", "(N, K)"],
    ),
    "coefficients rows": (_set("coefficients", np.ones((N - 1, 3))), ["coefficients has shape"]),
    "duplicate names": (
        _set("coefficient_names", np.array(["a", "b", "a"])),
        ["coefficient_names", "'a' twice"],
    ),
    "empty name": (_set("coefficient_names", np.array(["a", "", "c"])), ["coefficient_names"]),
    "name source": (
        _set("coefficient_names", np.array(["a", "source", "c"])),
        ["coefficient_names", "'source'"],
    ),
    "numeric names": (_set("coefficient_names", np.arange(3)), ["coefficient_names", "strings"]),
    "parameter shape": (_set("parameter", np.ones((N, 2))), ["parameter has shape (20, 2)"]),
    "parameter count": (_set("parameter", np.ones(N + 1)), ["parameter has shape (21,)"]),
    "parameter name alone": (_drop("parameter"), ["parameter_name", "without parameter"]),
    "built-in family": (_set("family", np.array("poisson")), ["'poisson'", "poisson-own"]),
    "unknown array": (_set("paramter", np.ones(N)), ["unknown array `paramter`"]),
    "complex source": (
        _set("source", lambda a: a["source"] * 1j),
        ["source has dtype complex128", "real"],
    ),
}


@pytest.mark.parametrize("fmt", ["npz", "h5"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case, fmt):
    mutate, needles = BAD[case]
    path = WRITERS[fmt](tmp_path / f"bad.{fmt}", mutate(own_arrays()))
    code, _, err = cli(capsys, "import", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert_one_line_error(code, err, *needles)
    assert left_behind(tmp_path, {path.name}) == []


def test_nan_beyond_the_first_block_names_its_sample(tmp_path):
    arrays = own_arrays(n=150)
    arrays["solution"][137, 0, 5, 5] = np.nan
    with pytest.raises(PdefmError, match="solution sample 137 holds NaN"):
        path = write_h5(tmp_path / "big.h5", arrays)
        importer.import_dataset(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _zip_of_text(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "not an array")


@pytest.mark.parametrize(
    "make,needles",
    [
        (
            lambda p: p.write_bytes(b"just some text\n"),
            ["neither NPZ, HDF5 nor torch.save", "np.savez"],
        ),
        (_zip_of_text, ["no array `source`", "found: notes.txt"]),
        (lambda p: p.mkdir(), ["is a directory"]),
        (lambda p: None, ["does not exist"]),
    ],
)
def test_unreadable_file(tmp_path, capsys, make, needles):
    path = tmp_path / "in.npz"
    make(path)
    code, _, err = cli(capsys, "import", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(path), *needles)
    assert not (tmp_path / "out").exists()


def test_truncated_npz_member(tmp_path, capsys):
    path = write_npz(tmp_path / "own.npz", own_arrays())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, _, err = cli(capsys, "import", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(path))
    assert left_behind(tmp_path, {path.name}) == []


@pytest.mark.parametrize(
    "flags,needles",
    [
        (["--val-fraction", "0"], ["--val-fraction must be between 0 and 1"]),
        (["--test-fraction", "1.5"], ["--test-fraction must be between 0 and 1"]),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], ["leave no training samples"]),
        (["--seed", "-1"], ["--seed must be a non-negative integer"]),
        (["--family", "poisson"], ["pick another name, e.g. poisson-own"]),
        (["--family", "has space"], ["family 'has space'"]),
    ],
)
def test_bad_options(tmp_path, capsys, flags, needles):
    path = write_npz(tmp_path / "own.npz", own_arrays())
    code, _, err = cli(capsys, "import", str(path), "--out", str(tmp_path / "out"), *flags)
    assert_one_line_error(code, err, *needles)
    assert left_behind(tmp_path, {path.name}) == []


def test_too_few_samples_for_the_fractions(tmp_path):
    arrays = _drop("parameter", "parameter_name")(own_arrays(n=4))
    with pytest.raises(PdefmError, match="4 samples leave no training samples"):
        importer.import_dataset(
            write_npz(tmp_path / "own.npz", arrays),
            tmp_path / "o",
            val_fraction=0.45,
            test_fraction=0.45,
            progress=False,
        )


def test_existing_output_is_refused_and_left_intact(tmp_path, capsys):
    path = write_npz(tmp_path / "own.npz", own_arrays())
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    code, _, err = cli(capsys, "import", str(path), "--out", str(out))
    assert_one_line_error(code, err, "not empty", "new or empty directory")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "precious"
    assert left_behind(tmp_path, {path.name, "mine"}) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import", str(path), "--out", str(empty), "--quiet"]) == 0  # empty is fine
    assert (empty / "card.json").is_file()


def test_a_failed_write_is_resumed_by_the_same_command(tmp_path, monkeypatch):
    calls = []
    real = store.write_rows

    def failing_write(h5, start, arrays):
        calls.append(start)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_rows", failing_write)
    path = write_npz(tmp_path / "own.npz", own_arrays())
    with pytest.raises(PdefmError, match="No space left on device.*rerun the same command"):
        importer.import_dataset(path, tmp_path / "out", progress=False)
    assert calls and not (tmp_path / "out" / "card.json").exists()
    monkeypatch.setattr(store, "write_rows", real)
    importer.import_dataset(path, tmp_path / "out", progress=False)
    assert main(["inspect", str(tmp_path / "out"), "--verify"]) == 0


# -- training on it -----------------------------------------------------------------------
def test_train_on_imported_data(tmp_path, capsys):
    arrays = own_arrays(n=24)
    out = tmp_path / "d"
    importer.import_dataset(write_npz(tmp_path / "own.npz", arrays), out, progress=False)
    runs = tmp_path / "runs"
    args = ["train", str(out), "--model", "fno-micro", "--epochs", "2", "--out", str(runs)]
    code, text, err = cli(capsys, *args, "--quiet")
    assert code == 0, err
    assert "test rel L2" in text
    record = json.loads(next(runs.glob("*/record.json")).read_text())
    assert record["status"] == "completed"
    assert np.isfinite(record["test"]["rel_l2"])


def test_card_command_recreates_the_dataset(tmp_path):
    import shlex

    path = write_h5(tmp_path / "own.h5", own_arrays())
    first = load_card(
        importer.import_dataset(path, tmp_path / "a", equation="-lap u = f", progress=False)
    ).to_json()
    args = shlex.split(first["command"])[1:]  # drop "pdefm"
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    again = load_card(tmp_path / "b").to_json()
    assert again["content_hash"] == first["content_hash"]
    assert again["equation"] == "-lap u = f" and again["spec"] == first["spec"]
