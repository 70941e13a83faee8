"""Bad input on the data side (generate, mix, import, inspect, dataset cards): one `error:` line
naming the option or field and the fix, exit code 2, nothing written, inputs unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import small_spec
from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.data.generate import generate_dataset
from pdefm.data.importer import import_dataset
from pdefm.data.inspect import inspect_dataset
from pdefm.data.mixture import MixtureSpec, mix_datasets
from pdefm.data.probe import MAX_DRAWS, probe_acceptance
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError

SMALL = ["--n-train", "16", "--n-val", "4", "--n-test", "4", "--resolution", "64", "--quiet"]


# -- generate ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,needles",
    [
        (["poisson", "--sigma", "0"], ["--sigma", "> 0"]),
        (["poisson", "--sigma", "-0.1"], ["--sigma", "> 0"]),
        (["poisson", "--sigma", "inf"], ["--sigma", "finite"]),
        (["poisson", "--sigma", "nan"], ["--sigma", "finite"]),
        (["poisson", "--sigma", "0.9"], ["--sigma", "<= 0.5"]),
        (["poisson", "--sigma", "1e-6"], ["--sigma", ">= 0.000488"]),
        (["poisson", "--resolution", "1000000"], ["--resolution", "<= 4096"]),
        (["poisson", "--resolution", "0"], ["--resolution", ">= 4"]),
        (["poisson", "--resolution", "-64"], ["--resolution", ">= 4"]),
        (["poisson", "--resolution", "65"], ["--resolution", "even", "66"]),
        (["poisson", "--n-train", "1000000000000"], ["--n-train", "<= 100000000"]),
        (["poisson", "--n-val", "0"], ["--n-val", "positive integer"]),
        (["poisson", "--n-test", "-1"], ["--n-test", "positive integer"]),
        (["poisson", "--seed", "-1"], ["--seed", ">= 0"]),
        (["poisson", "--seed", str(2**64)], ["--seed", "<="]),
        (["poisson", "--range", "1", "1e300"], ["--range", "e <= 10000", "lower HIGH"]),
        (["poisson", "--range", "nan", "2"], ["--range LOW", "finite"]),
        (["poisson", "--range", "1", "inf"], ["--range HIGH", "finite"]),
        (["poisson", "--range", "inf", "inf"], ["--range LOW", "finite"]),
        (["advection_diffusion", "--range", "0.2", "5000"], ["psi <= 1000"]),
        (["helmholtz", "--range", "1", "1e9"], ["w <= 1000"]),
        (["helmholtz", "--range", "0", "3"], ["--range", "positive"]),
        (["helmholtz", "--max-abs-u", "0"], ["--max-abs-u", "> 0"]),
        (["helmholtz", "--max-abs-u", "nan"], ["--max-abs-u", "finite"]),
        (["helmholtz", "--redraw-budget", "0"], ["--redraw-budget", ">= 1"]),
        (["helmholtz", "--redraw-budget", "10000000000"], ["--redraw-budget", "<="]),
        (["poisson", "--redraw-budget", "5"], ["--redraw-budget", "helmholtz only"]),
        (["poisson", "--n-train", "90000000", "--resolution", "128"], ["of disk", "--n-train"]),
        (["poisson", "--resolution", "4096"], ["of memory", "--resolution"]),
    ],
)
def test_generate_refuses_bad_options(refused, tmp_path, args, needles):
    out = tmp_path / "deep" / "o"
    refused(["generate", *SMALL, *args, "--out", out], *needles)
    assert not (tmp_path / "deep").exists()


def test_generate_refuses_an_output_that_is_a_file(refused, tmp_path):
    (tmp_path / "f").write_text("mine")
    refused(["generate", "poisson", *SMALL, "--out", tmp_path / "f"], "--out", "is a file")
    refused(
        ["generate", "poisson", *SMALL, "--out", tmp_path / "f" / "sub" / "o"],
        "--out",
        "is a file, not a folder",
    )


def test_every_command_refuses_an_output_under_a_file(refused, tmp_path, npz, members):
    (tmp_path / "f").write_text("mine")
    out = ["--out", tmp_path / "f" / "o", "--quiet"]
    refused(["import", npz, *out], "--out", "not a folder")
    refused(["mix", *members, *out], "--out", "not a folder", watch=[tmp_path, *members])


@pytest.fixture
def copy_of(datasets, tmp_path):
    """A private copy of a session dataset whose card a test may garble."""

    def make(family: str = "poisson") -> Path:
        dst = tmp_path / f"copy-{family}"
        shutil.copytree(datasets[family][1], dst)
        return dst

    return make


def edit_card(root: Path, change) -> None:
    card = json.loads((root / "card.json").read_text())
    card = change(card)
    (root / "card.json").write_text(json.dumps(card))


def test_from_card_that_is_a_list_is_refused(refused, copy_of, tmp_path):
    root = copy_of()
    (root / "card.json").write_text("[1, 2, 3]")
    refused(
        ["generate", "--from-card", root / "card.json", "--out", tmp_path / "o"],
        "card.json",
        "JSON object",
    )


def test_from_card_with_a_spec_missing_its_source_law_is_refused(refused, copy_of, tmp_path):
    root = copy_of()
    edit_card(root, lambda c: {**c, "spec": {k: v for k, v in c["spec"].items() if k != "source"}})
    refused(["generate", "--from-card", root, "--out", tmp_path / "o"], "field spec", "'source'")


def test_from_card_with_counts_many_is_refused(refused, copy_of, tmp_path):
    root = copy_of()
    edit_card(root, lambda c: {**c, "spec": {**c["spec"], "n_train": "many"}})
    refused(["generate", "--from-card", root, "--out", tmp_path / "o"], "--n-train", "'many'")


# -- the Python API gets the same checks ---------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"n_train": True}, "--n-train must be a positive integer, got True"),
        ({"n_train": 16.0}, "--n-train must be a positive integer, got 16.0"),
        ({"n_val": "16"}, "--n-val must be a positive integer"),
        ({"resolution": 64.0}, "--resolution must be a whole number"),
        ({"seed": -5}, "--seed must be >= 0"),
        ({"seed": 1.5}, "--seed must be a whole number"),
        ({"block_size": 0}, "block size must be >= 1"),
        ({"range": ("a", 5.0)}, "--range LOW must be a number"),
        ({"range": (1.0, float("nan"))}, "--range HIGH must be a finite number"),
        ({"family_config": {"c": -1.0}}, "the constant c must be > 0"),
        ({"family_config": {"nonsense": 1}}, "bad constants"),
    ],
)
def test_spec_validate_refuses_bad_fields(overrides, needle):
    family = overrides.pop("family", "poisson")
    spec = small_spec(family, **overrides)
    with pytest.raises(PdefmError) as exc:
        spec.validate()
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "config,needle",
    [
        ({"max_abs_u": "2"}, "--max-abs-u must be a number"),
        ({"max_abs_u": float("inf")}, "--max-abs-u must be a finite number"),
        ({"redraw_budget": 2.5}, "--redraw-budget must be a whole number"),
        ({"redraw_budget": True}, "--redraw-budget must be a whole number"),
        ({"exclude": "2"}, "exclude must be a list"),
        ({"exclude": [2.5]}, "an excluded value must be a whole number"),
    ],
)
def test_helmholtz_constants_are_checked(config, needle):
    with pytest.raises(PdefmError, match=needle):
        small_spec("helmholtz", family_config=config).validate()


def test_generate_dataset_refuses_a_non_spec_and_writes_nothing(tmp_path):
    with pytest.raises(PdefmError, match="GenerationSpec"):
        generate_dataset({"family": "poisson"}, tmp_path / "o", progress=False)
    with pytest.raises(PdefmError, match="--n-train must be a positive integer"):
        generate_dataset(small_spec("poisson", n_train=0), tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_from_dict_names_the_missing_field():
    with pytest.raises(PdefmError, match="lacks the field 'source'"):
        GenerationSpec.from_dict({"family": "poisson"})
    with pytest.raises(PdefmError, match="must be a JSON object"):
        GenerationSpec.from_dict(["poisson"])


# -- mix -----------------------------------------------------------------------------------------
@pytest.fixture
def members(datasets):
    return [datasets["poisson"][1], datasets["helmholtz"][1]]


@pytest.mark.parametrize(
    "weights,args,needles",
    [
        (["", ""], ["--n-train", "0"], ["--n-train", ">= 1"]),
        (["", ""], ["--n-val", "-5"], ["--n-val", ">= 1"]),
        (["", ""], ["--seed", "-1"], ["--seed", ">= 0"]),
        ([":nan", ""], [], ["weight", "finite"]),
        ([":inf", ""], [], ["weight", "finite"]),
        ([":0", ""], [], ["weight", "> 0"]),
        ([":-1", ""], [], ["weight", "> 0"]),
        ([":abc", ""], [], ["weight after ':' must be a number"]),
        (["", ""], ["--n-train", "100000"], ["train samples", "--n-train"]),
    ],
)
def test_mix_refuses_bad_options(refused, tmp_path, members, weights, args, needles):
    argv = [f"{m}{w}" for m, w in zip(members, weights, strict=True)]
    refused(
        ["mix", *argv, *args, "--out", tmp_path / "mix", "--quiet"],
        *needles,
        watch=[tmp_path, *members],
    )


def test_mix_refuses_missing_duplicate_single_and_file_members(refused, tmp_path, members):
    out = ["--out", tmp_path / "mix", "--quiet"]
    watch = [tmp_path, *members]
    refused(
        ["mix", members[0], tmp_path / "nope", *out], "nope", "not a pdefm dataset", watch=watch
    )
    refused(["mix", members[0], f"{members[0]}:2", *out], "listed twice", watch=watch)
    refused(["mix", members[0], *out], "at least two", watch=watch)
    (tmp_path / "file").write_text("x")
    refused(["mix", members[0], tmp_path / "file", *out], "is a file", watch=watch)


def test_mix_api_refuses_bad_types(tmp_path, members):
    bad = [
        (MixtureSpec(((str(members[0]), 1.0), (str(members[1]), 1.0)), 0, 4, 4), "--n-train"),
        (MixtureSpec(((str(members[0]), True), (str(members[1]), 1.0)), 8, 4, 4), "weight"),
        (MixtureSpec(((str(members[0]), 1.0), (str(members[1]), 1.0)), 8.0, 4, 4), "--n-train"),
        (MixtureSpec(((str(members[0]), 1.0), (str(members[1]), 1.0)), 8, 4, 4, "yes"), "masks"),
    ]
    for spec, needle in bad:
        with pytest.raises(PdefmError, match=needle):
            mix_datasets(spec, tmp_path / "mix", progress=False)
    assert not (tmp_path / "mix").exists()


# -- import --------------------------------------------------------------------------------------
@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, source=rng.normal(size=(10, 8, 8)), solution=rng.normal(size=(10, 8, 8)))
    return path


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--val-fraction", "0"], ["--val-fraction", "between 0 and 1"]),
        (["--val-fraction", "nan"], ["--val-fraction", "finite"]),
        (["--test-fraction", "1.5"], ["--test-fraction", "between 0 and 1"]),
        (["--test-fraction=-inf"], ["--test-fraction", "finite"]),
        (["--val-fraction", "0.6", "--test-fraction", "0.5"], ["leave no training samples"]),
        (["--seed", "-3"], ["--seed", "non-negative"]),
    ],
)
def test_import_refuses_bad_options(refused, tmp_path, npz, args, needles):
    refused(["import", npz, "--out", tmp_path / "d", "--quiet", *args], *needles)


def test_import_refuses_a_missing_file(refused, tmp_path):
    refused(["import", tmp_path / "none.npz", "--out", tmp_path / "d"], "does not exist")


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"val_fraction": "0.1"}, "--val-fraction must be a number"),
        ({"test_fraction": True}, "--test-fraction must be a number"),
        ({"seed": 1.5}, "--seed must be a non-negative integer"),
        ({"seed": 2**70}, "--seed must be <="),
    ],
)
def test_import_api_refuses_bad_types(tmp_path, npz, kwargs, needle):
    with pytest.raises(PdefmError, match=needle):
        import_dataset(npz, tmp_path / "d", progress=False, **kwargs)
    assert not (tmp_path / "d").exists()


# -- inspect -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,needles",
    [
        (["--examples", "0"], ["--examples", ">= 1"]),
        (["--examples", "-3"], ["--examples", ">= 1"]),
        (["--examples", "1000"], ["--examples", "<= 32"]),
        (["--png", "{tmp}/missing/fig.png"], ["missing", "does not exist"]),
        (["--png", "{tmp}/fig.txt"], ["--png", "must end in .png"]),
        (["--png", "{tmp}/adir.png"], ["--png", "is a directory"]),
    ],
)
def test_inspect_refuses_bad_options_and_writes_no_png(refused, copy_of, tmp_path, args, needles):
    root = copy_of()
    (tmp_path / "adir.png").mkdir()
    args = [a.format(tmp=tmp_path) for a in args]
    refused(["inspect", root, *args], *needles)
    assert not (root / "inspect.png").exists()


def test_inspect_api_refuses_a_bool_example_count(copy_of):
    with pytest.raises(PdefmError, match="--examples must be a whole number"):
        inspect_dataset(copy_of(), n_examples=True)


# -- garbled and escaping cards ------------------------------------------------------------------
def _drop(key):
    return lambda c: {k: v for k, v in c.items() if k != key}


def _set(path: str, value):
    def change(card):
        *parents, last = path.split(".")
        node = card
        for key in parents:
            node = node[key]
        node[last] = value
        return card

    return change


CARD_CASES = [
    ("list", lambda c: [c], ["card.json", "JSON object", "list"]),
    ("null", lambda c: None, ["card.json", "JSON object"]),
    ("format", _set("format", "other"), ["not a pdefm dataset card"]),
    ("counts-many", _set("counts.train", "many"), ["counts.train", "'many'"]),
    ("counts-negative", _set("counts.val", -1), ["counts.val", "non-negative"]),
    ("counts-float", _set("counts.test", 1.5), ["counts.test", "whole number"]),
    ("counts-bool", _set("counts.train", True), ["counts.train", "whole number"]),
    ("counts-list", _set("counts", [48, 16, 16]), ["'counts'", "JSON object"]),
    ("counts-missing-split", lambda c: {**c, "counts": {"train": 48}}, ["counts.val"]),
    ("no-counts", _drop("counts"), ["lacks the field 'counts'"]),
    ("no-files", _drop("files"), ["lacks the field 'files'"]),
    ("no-grid", _drop("grid"), ["lacks the field 'grid'"]),
    ("no-family", _drop("family"), ["lacks the field 'family'"]),
    ("family-number", _set("family", 3), ["'family'", "a string"]),
    ("parent-path", _set("files.train", "../elsewhere/train.h5"), ["files.train", "leaves"]),
    ("absolute-path", _set("files.val", "/etc/passwd"), ["files.val", "leaves"]),
    ("windows-path", _set("files.val", "C:\\data\\val.h5"), ["files.val", "leaves"]),
    ("number-path", _set("files.test", 42), ["files.test", "relative path"]),
    ("empty-path", _set("files.train", ""), ["files.train", "relative path"]),
    ("null-path", _set("files.train", None), ["files.train", "relative path"]),
    ("resolution-text", _set("grid.resolution", "64"), ["grid.resolution", "whole number"]),
    ("resolution-zero", _set("grid.resolution", 0), ["grid.resolution"]),
    ("no-resolution", lambda c: {**c, "grid": {}}, ["grid.resolution"]),
    ("inputs-text", _set("channels.inputs", "source"), ["channels.inputs", "list of names"]),
    ("inputs-empty", _set("channels.inputs", []), ["channels.inputs"]),
    ("no-block-size", _set("spec", {}), ["lacks the field 'block_size'"]),
    ("no-realised", _drop("realised"), ["lacks the field 'realised'"]),
]


@pytest.mark.parametrize("name,change,needles", CARD_CASES, ids=[c[0] for c in CARD_CASES])
def test_garbled_card_is_one_line_and_no_png(refused, copy_of, tmp_path, name, change, needles):
    root = copy_of()
    edit_card(root, change)
    refused(["inspect", root, "--verify"], *needles)
    assert not (root / "inspect.png").exists()


def test_card_paths_are_never_followed_outside_the_dataset(refused, copy_of, tmp_path):
    root = copy_of()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(root / "train.h5", elsewhere / "train.h5")  # a readable file to be lured to
    edit_card(root, _set("files.train", "../elsewhere/train.h5"))
    refused(["inspect", root, "--verify"], "files.train", "leaves its folder")
    with pytest.raises(PdefmError, match="files.train.*leaves its folder"):
        PDEDataset(root, "train")
    with pytest.raises(PdefmError, match="leaves its folder"):
        load_card(root)


def test_card_path_through_a_symlink_is_refused(refused, copy_of, tmp_path):
    root = copy_of()
    outside = tmp_path / "outside.h5"
    shutil.copy(root / "val.h5", outside)
    os.symlink(outside, root / "val-link.h5")
    edit_card(root, _set("files.val", "val-link.h5"))
    refused(["inspect", root], "files.val", "outside")
    with pytest.raises(PdefmError, match="through a link"):
        PDEDataset(root, "val")


def test_mixing_a_member_with_an_escaping_card_is_refused(refused, copy_of, tmp_path, datasets):
    root = copy_of()
    edit_card(root, _set("files.test", "../../x.h5"))
    other = datasets["helmholtz"][1]
    refused(
        ["mix", root, other, "--out", tmp_path / "mix", "--quiet"],
        "files.test",
        "leaves",
        watch=[tmp_path, other],
    )


# -- Helmholtz w = 2: rare, not impossible --------------------------------------------------------
def test_probe_measures_the_rare_acceptance_of_w2():
    """w = 2 sits next to the eigenvalue 1.97 of -c lap: about 1 source in 4,000 passes at the
    densest level. The probe sees it (it can see rates down to 1e-4) and calls it unsampleable
    only for the default budget of 2,000 draws, not for 100,000."""
    config = {"redraw_budget": 200_000}
    probe = probe_acceptance(small_spec("helmholtz", range=(2.0, 2.0), family_config=config))[2.0]
    assert set(probe.levels) == {0.2, 0.4, 0.6, 0.8}
    assert all(accepted > 0 for accepted, _ in probe.levels.values())
    assert 1e-5 < probe.min_rate < 2e-3
    assert not probe.sampleable(2000) and probe.sampleable(200_000)
    assert max(drawn for _, drawn in probe.levels.values()) <= MAX_DRAWS
    # With the default budget the densest level already decides: the others are not probed.
    short = probe_acceptance(small_spec("helmholtz", range=(2.0, 2.0)))[2.0]
    assert list(short.levels) == [0.2] and not short.sampleable(2000)


def test_w2_refusal_states_rate_and_budget(refused, tmp_path):
    line = refused(
        ["generate", "helmholtz", "--range", "1", "3", *SMALL, "--out", tmp_path / "h"],
        "w = 2 is unsampleable within the redraw budget of 2,000 sources per sample",
        "accepts about 1 source in",
        "--redraw-budget",
        "--drop-unsampleable",
    )
    assert "impossible" not in line and "no source gives" not in line


def test_w2_is_generated_with_a_larger_budget_and_the_card_records_it(tmp_path):
    spec = small_spec(
        "helmholtz",
        range=(1.0, 3.0),
        n_train=12,
        n_val=4,
        n_test=4,
        family_config={"redraw_budget": 200_000},
    )
    card = generate_dataset(spec, tmp_path / "h", progress=False).to_json()
    assert card["parameter"]["declared"]["support"] == [1, 2, 3]
    assert "--redraw-budget 200000" in card["command"]
    acceptance = card["realised"]["train"]["acceptance"]
    assert acceptance["2"]["accepted"] > 0 and acceptance["2"]["rate"] < 0.05
    probe = card["acceptance_probe"]
    assert probe["redraw_budget"] == 200_000 and probe["values"]["2"]["min_rate"] > 0
    w = PDEDataset(tmp_path / "h", "train").parameters()
    assert (w == 2).any()


def test_w2_dropped_on_request_names_the_rate(tmp_path, capsys):
    spec = small_spec("helmholtz", range=(1.0, 3.0), n_train=8, n_val=4, n_test=4)
    card = generate_dataset(spec, tmp_path / "h", progress=False, drop_unsampleable=True).to_json()
    assert card["parameter"]["declared"]["excluded"] == [2]
    assert "accepts about 1 source in" in card["warnings"][0]
    assert "redraw budget of 2,000" in capsys.readouterr().err


def test_value_with_no_accepted_source_is_reported_with_a_bound(refused, tmp_path):
    refused(
        [
            "generate", "helmholtz", "--range", "2", "2", "--max-abs-u", "0.01", *SMALL,
            "--out", tmp_path / "h",
        ],
        "no accepted source in 32,768 probed",
        "acceptance below 9e-05",
    )  # fmt: skip


def test_exhausted_budget_during_generation_leaves_nothing(tmp_path, monkeypatch):
    """A refusal that can only come during generation removes what that call created."""
    import pdefm.data.unsampleable as unsampleable

    monkeypatch.setattr(unsampleable, "probe_acceptance", lambda spec: {})
    spec = small_spec("helmholtz", range=(2.0, 2.0), family_config={"redraw_budget": 1})
    with pytest.raises(PdefmError, match="whole redraw budget of 1 sources"):
        generate_dataset(spec, tmp_path / "new" / "h", progress=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(PdefmError, match="nothing was kept"):
        generate_dataset(spec, tmp_path / "empty", progress=False)
    assert [p.name for p in (tmp_path / "empty").iterdir()] in ([], [".pdefm.lock"])


def test_npz_member_larger_than_memory_is_refused_from_its_header(refused, tmp_path):
    """NPZ members load whole: one whose header promises more than the free memory is refused
    before a byte of it is read (the file here holds only the header)."""
    import zipfile

    npz = tmp_path / "huge.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**7, 1024, 1024)}
    with zipfile.ZipFile(npz, "w") as zf:
        for name in ("source", "solution"):
            with zf.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array_header_1_0(fh, header)
    args = ["import", npz, "--x-axis", "0", "--out", tmp_path / "o"]
    refused(args, "source", "of memory", "HDF5")


def test_a_resumed_generation_needs_only_the_disk_it_has_left(tmp_path, monkeypatch):
    """Free space for the rest of a dataset is enough to resume it; less is refused."""
    import collections

    import pdefm.checks

    spec, out = small_spec("poisson"), tmp_path / "ds"

    def stop(split, block):
        if split == "train" and block == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_dataset(spec, out, progress=False, on_block=stop)
    written = sum(f.stat().st_size for f in out.glob("*.h5*"))
    assert 0 < written < spec.disk_bytes()
    usage = collections.namedtuple("usage", "total used free")

    def free(bytes_free):
        monkeypatch.setattr(pdefm.checks.shutil, "disk_usage", lambda p: usage(0, 0, bytes_free))

    free(spec.disk_bytes() - written - 1)
    with pytest.raises(PdefmError, match="of disk"):
        generate_dataset(spec, out, progress=False)
    free(spec.disk_bytes() - written + 1)
    card = generate_dataset(spec, out, progress=False).to_json()
    assert card["counts"]["train"] == spec.n_train
