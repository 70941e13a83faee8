"""Datasets on disk: card, determinism, independence, resume, atomicity, honoured laws."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import small_spec
from pdefm import catalogue
from pdefm.data.blocks import generate_block
from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError


def file_digests(root: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()
        for name in ("train.h5", "val.h5", "test.h5")
    }


@pytest.mark.parametrize("family", catalogue.family_names())
def test_card_describes_the_dataset(datasets, family):
    spec, root = datasets[family]
    card = load_card(root).to_json()
    assert card["family"] == family and card["counts"] == {"train": 48, "val": 16, "test": 16}
    assert card["channels"]["inputs"][0] == "source"
    assert card["grid"]["resolution"] == 64
    assert GenerationSpec.from_dict(card["spec"]) == spec
    for split in ("train", "val", "test"):
        realised = card["realised"][split]
        assert realised["parameter"]["inside_declared_range"]
        assert (
            sorted(realised["sparsity_counts"].values())[-1]
            - min(realised["sparsity_counts"].values())
            <= 1
        )
    norm = card["normalisation"]
    assert norm["split"] == "train" and norm["source_norm"]["median"] > 0
    assert set(norm["channels"]) == set(card["channels"]["inputs"][1:])


@pytest.mark.parametrize("family", catalogue.family_names())
def test_every_stored_parameter_is_inside_the_declared_range(datasets, family):
    spec, root = datasets[family]
    for split in ("train", "val", "test"):
        params = PDEDataset(root, split).parameters()
        assert ((params >= spec.low) & (params <= spec.high)).all()
        if family == "helmholtz":
            assert np.all(params == np.round(params))


@pytest.mark.parametrize("family", catalogue.family_names())
def test_float32_data_match_the_float64_solution(datasets, family):
    spec, root = datasets[family]
    block = generate_block(spec, "val", 0)  # regenerate in float64
    ds = PDEDataset(root, "val")
    x, y = ds.batch(np.arange(spec.block_size))
    u64, f64 = block.solution, block.source
    rel_u = (y[:, 0].double() - u64).flatten(1).norm(dim=1) / u64.flatten(1).norm(dim=1)
    rel_f = (x[:, 0].double() - f64).flatten(1).norm(dim=1) / f64.flatten(1).norm(dim=1)
    assert rel_u.max() < 1e-6 and rel_f.max() < 1e-6
    card = load_card(root)
    at = [card.input_channels.index(c) for c in card.constant_channels]
    consts = x[:, at, 0, 0].double()
    torch.testing.assert_close(consts, block.channels, rtol=1e-6, atol=1e-7)
    assert (x[:, at].flatten(2).std(dim=2) == 0).all()  # constant channels are constant
    for name, field in block.fields.items():  # input fields (darcy's a) are stored as solved
        k = card.input_channels.index(name)
        torch.testing.assert_close(x[:, k].double(), field, rtol=1e-6, atol=0)


def test_same_spec_gives_identical_bytes(tmp_path, datasets):
    spec, root = datasets["poisson"]
    generate_dataset(spec, tmp_path / "again", progress=False)
    assert file_digests(tmp_path / "again") == file_digests(root)
    assert load_card(tmp_path / "again").content_hash == load_card(root).content_hash


def test_from_card_regenerates_the_dataset(tmp_path, datasets):
    from pdefm.cli import main

    _, root = datasets["helmholtz"]
    assert (
        main(
            [
                "generate",
                "--from-card",
                str(root / "card.json"),
                "--out",
                str(tmp_path / "c"),
                "--quiet",
            ]
        )
        == 0
    )
    assert file_digests(tmp_path / "c") == file_digests(root)


def test_different_ranges_and_splits_never_share_sources(tmp_path, datasets):
    spec, root = datasets["poisson"]
    shifted = small_spec("poisson", range=(5.0, 10.0))
    generate_dataset(shifted, tmp_path / "shifted", progress=False)
    a = PDEDataset(root, "train").batch(np.arange(48))[0][:, 0].flatten(1)
    b = PDEDataset(tmp_path / "shifted", "train").batch(np.arange(48))[0][:, 0].flatten(1)
    c = PDEDataset(root, "test").batch(np.arange(16))[0][:, 0].flatten(1)
    for other in (b, c):
        closest = torch.cdist(a, other).min()
        assert closest > 1.0  # no source repeats (distinct sources are ~10 apart)
    assert spec.split_seed("train") != shifted.split_seed("train")


def test_seed_does_not_depend_on_resolution():
    """Same spec at two resolutions draws the same continuous sources (resolution transfer)."""
    lo = generate_block(small_spec("poisson", resolution=64), "train", 0)
    hi = generate_block(small_spec("poisson", resolution=128), "train", 0)
    # Sources are max-normalised and mean-free on their own grid, so the coarse samples of the
    # fine source are an affine image of the coarse source: correlation exactly 1.
    a, b = hi.source[:, ::2, ::2].flatten(1), lo.source.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert (corr > 1 - 1e-12).all()
    torch.testing.assert_close(hi.parameter, lo.parameter)


class InterruptError(Exception):
    pass


def test_resume_after_interruption_gives_the_identical_dataset(tmp_path, datasets):
    spec, root = datasets["advection_diffusion"]
    out = tmp_path / "resumed"

    def stop_in_train(split, block):
        if split == "train" and block == 1:
            raise InterruptError

    with pytest.raises(InterruptError):
        generate_dataset(spec, out, progress=False, on_block=stop_in_train)
    assert not (out / "card.json").exists() and not (out / "train.h5").exists()
    with pytest.raises(PdefmError, match="unfinished dataset; rerun pdefm generate"):
        PDEDataset(out, "train")
    calls = []
    generate_dataset(spec, out, progress=False, on_block=lambda s, b: calls.append((s, b)))
    assert calls[0] == ("train", 2)  # blocks 0 and 1 were not generated again
    assert file_digests(out) == file_digests(root)


def test_resume_after_a_real_kill(tmp_path):
    """Kill a real `pdefm generate` process mid-split, rerun it, get the same bytes."""
    args = [
        "--range",
        "1",
        "5",
        "--n-train",
        "1536",
        "--n-val",
        "64",
        "--n-test",
        "64",
        "--resolution",
        "64",
        "--quiet",
    ]
    cmd = [sys.executable, "-m", "pdefm.cli", "generate", "poisson", *args]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(out)], stderr=subprocess.PIPE)
    progress = out / ".pdefm-progress.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        if (
            progress.exists()
            and len(json.loads(progress.read_text())["splits"]["train"]["blocks"]) >= 3
        ):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "card.json").exists()
    subprocess.run([*cmd, "--out", str(out)], check=True)
    subprocess.run([*cmd, "--out", str(tmp_path / "clean")], check=True)
    assert file_digests(out) == file_digests(tmp_path / "clean")
    assert not (out / ".pdefm-progress.json").exists()
    assert not list(out.glob("*.partial"))


def test_rerunning_a_finished_dataset_does_nothing(datasets):
    spec, root = datasets["poisson"]
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    generate_dataset(spec, root, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before


def test_another_spec_into_a_finished_dataset_is_refused(datasets):
    spec, root = datasets["poisson"]
    before = file_digests(root)
    other = small_spec("poisson", seed=7)
    with pytest.raises(PdefmError, match="already holds a different dataset"):
        generate_dataset(other, root, progress=False)
    assert file_digests(root) == before


def test_splits_are_written_in_one_sample_chunks(datasets):
    _, root = datasets["poisson"]
    with h5py.File(root / "train.h5") as h5:
        assert h5["source"].chunks == (1, 64, 64) and h5["source"].dtype == np.float32


def test_helmholtz_unsampleable_value_is_an_error_unless_dropped(tmp_path):
    spec = small_spec("helmholtz", range=(1.0, 4.0))
    pattern = r"w = 2 is unsampleable within the redraw budget of 2,000.*--drop-unsampleable"
    with pytest.raises(PdefmError, match=pattern):
        generate_dataset(spec, tmp_path / "fail", progress=False)
    assert not (tmp_path / "fail").exists()
    drop = tmp_path / "drop"
    card = generate_dataset(spec, drop, progress=False, drop_unsampleable=True).to_json()
    assert card["parameter"]["declared"]["support"] == [1, 3, 4]
    assert card["parameter"]["declared"]["excluded"] == [2]
    assert card["warnings"] and "dropped" in card["warnings"][0]
    counts = card["realised"]["train"]["parameter"]["counts"]
    assert set(counts) == {"1", "3", "4"} and min(counts.values()) > 0
    assert card["realised"]["train"]["acceptance"]["4"]["rate"] < 1.0


def test_helmholtz_law_of_w_is_honoured(tmp_path):
    """The reference's rejection loop skews w; pdefm's realised w stays uniform."""
    spec = small_spec("helmholtz", range=(3.0, 6.0), n_train=2048, block_size=256)
    w = torch.cat(
        [generate_block(spec, "train", b).parameter for b in range(spec.n_blocks("train"))]
    )
    shares = torch.bincount(w.long())[3:7].double() / len(w)
    assert (shares - 0.25).abs().max() < 0.04  # 4 sd of a multinomial share at n = 2048


def test_concurrent_generation_into_one_directory_is_refused(tmp_path):
    from filelock import FileLock

    from pdefm.data.io import LOCK_NAME

    out = tmp_path / "busy"
    out.mkdir()
    held = FileLock(str(out / LOCK_NAME))  # what another generating process holds
    held.acquire()
    try:
        with pytest.raises(PdefmError, match="another process"):
            generate_dataset(small_spec("poisson"), out, progress=False)
    finally:
        held.release()
