"""Bad input: a one-line error that names the problem and the fix; nothing on disk damaged."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from pdefm.cli import main
from pdefm.data.dataset import PDEDataset
from pdefm.data.inspect import inspect_dataset


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


SMALL = ["--n-train", "16", "--n-val", "4", "--n-test", "4", "--resolution", "64", "--quiet"]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["heat"], ["unknown PDE family 'heat'", "poisson"]),
        (["poisson", "--range", "5", "1"], ["inverted", "--range 1 5"]),
        (["poisson", "--range", "3", "3"], ["empty"]),
        (["helmholtz", "--range", "2.2", "2.8"], ["holds no integer"]),
        (["poisson", "--range", "-1", "2"], ["positive"]),
        (["poisson", "--n-train", "0"], ["--n-train must be a positive integer"]),
        (["poisson", "--n-val", "-3"], ["--n-val must be a positive integer"]),
        (["poisson", "--resolution", "32"], ["too coarse", "--resolution 64"]),
        (["poisson", "--resolution", "63"], ["even"]),
        (["poisson", "--max-abs-u", "3"], ["helmholtz only"]),
        ([], ["give a FAMILY"]),
    ],
)
def test_bad_generate_arguments(capsys, tmp_path, args, needles):
    # later options win, so the bad ones come after the small defaults
    code, err = run_cli(capsys, "generate", *SMALL, *args, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists()


def test_existing_non_pdefm_directory_is_refused_untouched(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    code, err = run_cli(capsys, "generate", "poisson", *SMALL, "--out", str(out))
    assert_one_line_error(code, err, "not a pdefm dataset", "new or empty directory")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "precious"


def test_output_path_that_is_a_file_is_refused(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    code, err = run_cli(capsys, "generate", "poisson", *SMALL, "--out", str(target))
    assert_one_line_error(code, err, "is a file")


@pytest.fixture
def copy_of(datasets, tmp_path):
    def make(family):
        dst = tmp_path / family
        shutil.copytree(datasets[family][1], dst)
        return dst

    return make


def test_truncated_hdf5_is_a_clear_error(capsys, copy_of):
    root = copy_of("poisson")
    path = root / "train.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(Exception, match="corrupt or truncated.*regenerate"):
        PDEDataset(root, "train")
    code, err = run_cli(capsys, "inspect", str(root))
    assert_one_line_error(code, err, "train.h5", "corrupt or truncated")


def test_garbage_hdf5_is_a_clear_error(capsys, copy_of):
    root = copy_of("poisson")
    (root / "val.h5").write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(Exception, match="val.h5 is corrupt or truncated"):
        PDEDataset(root, "val")


def test_missing_split_file_and_wrong_count_are_clear_errors(copy_of):
    root = copy_of("poisson")
    (root / "test.h5").unlink()
    with pytest.raises(Exception, match="test.h5 is missing"):
        PDEDataset(root, "test")
    shutil.copy(root / "val.h5", root / "train.h5")
    with pytest.raises(Exception, match="holds 16 samples but its card says 48"):
        PDEDataset(root, "train")


def test_tampered_data_fails_verification(capsys, copy_of):
    import h5py

    root = copy_of("poisson")
    with h5py.File(root / "val.h5", "r+") as h5:
        h5["solution"][3, 0, 0] += 1.0
    code, err = run_cli(capsys, "inspect", str(root), "--verify")
    assert_one_line_error(code, err, "does not match its card", "pdefm generate poisson")


def test_not_a_dataset_and_bad_split(capsys, tmp_path, datasets):
    code, err = run_cli(capsys, "inspect", str(tmp_path))
    assert_one_line_error(code, err, "not a pdefm dataset", "pdefm generate")
    with pytest.raises(Exception, match="unknown split 'training'"):
        PDEDataset(datasets["poisson"][1], "training")


def test_corrupt_card_is_a_clear_error(capsys, copy_of):
    root = copy_of("poisson")
    (root / "card.json").write_text("{ half a card")
    code, err = run_cli(capsys, "inspect", str(root))
    assert_one_line_error(code, err, "card.json is not valid JSON")


def test_inspect_writes_a_figure_and_reports_the_law(capsys, datasets, tmp_path):
    _, root = datasets["helmholtz"]
    text = inspect_dataset(root, png=tmp_path / "fig.png", verify=True)
    assert "declared uniform_integer" in text and "verified" in text
    png = (tmp_path / "fig.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert hashlib.sha256(png).hexdigest()  # written in full
