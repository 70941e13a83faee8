"""The one dataset writer, through its three block sources (generate, import, mix): an
interrupted write resumes block by block to the identical bytes, a folder holding something
else is refused untouched, and a resume never mixes data from changed inputs."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdefm.data import store
from pdefm.data.card import CARD_NAME, PROGRESS_NAME, load_card
from pdefm.data.generate import generate_dataset
from pdefm.data.importer import import_dataset
from pdefm.data.mixture import MixtureSpec, mix_datasets
from pdefm.data.spec import GenerationSpec
from pdefm.data.writer import split_hash
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource

WIDE = GaussianLatticeSource(sigma=1 / 8)


def _spec(family: str, low: float, high: float, seed: int = 0) -> GenerationSpec:
    return GenerationSpec(
        family, low, high, 96, 16, 16, resolution=16, seed=seed, source=WIDE, block_size=32
    )


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("members")
    out = [base / "p", base / "a"]
    generate_dataset(_spec("poisson", 1.0, 5.0), out[0], progress=False)
    generate_dataset(_spec("advection_diffusion", 0.2, 1.0), out[1], progress=False)
    return out


@pytest.fixture(scope="module")
def own_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("own") / "own.npz"
    fields = {k: rng.normal(size=(250, 16, 16)) for k in ("source", "solution")}
    np.savez(path, **fields, x_axis=0)
    return path


def _writers(members: list[Path], own_file: Path) -> dict:
    """Each source's write, as a function of the output folder."""
    mix = MixtureSpec(tuple((str(p), 1.0) for p in members), 150, 20, 20)
    return {
        "generate": lambda out: generate_dataset(_spec("poisson", 1.0, 5.0), out, progress=False),
        "import": lambda out: import_dataset(own_file, out, progress=False),
        "mix": lambda out: mix_datasets(mix, out, progress=False),
    }


def _digests(root: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()
        for name in ("train.h5", "val.h5", "test.h5")
    }


def _fail_at_write(monkeypatch, call: int) -> list[int]:
    """Make the ``call``-th block write (0-based) fail as a full disk would."""
    real, starts = store.write_rows, []

    def write_rows(h5, start, arrays):
        starts.append(start)
        if len(starts) == call + 1:
            raise OSError(28, "No space left on device")
        return real(h5, start, arrays)

    monkeypatch.setattr(store, "write_rows", write_rows)
    return starts


@pytest.mark.parametrize("kind", ["generate", "import", "mix"])
def test_an_interrupted_write_resumes_to_the_identical_dataset(
    kind, members, own_file, tmp_path, monkeypatch
):
    write = _writers(members, own_file)[kind]
    write(tmp_path / "clean")
    _fail_at_write(monkeypatch, call=2)
    out = tmp_path / "resumed"
    with pytest.raises(PdefmError, match="No space left on device.*rerun the same command"):
        write(out)
    progress = json.loads((out / PROGRESS_NAME).read_text())
    assert len(progress["splits"]["train"]["blocks"]) == 2 and not (out / "card.json").exists()
    with pytest.raises(PdefmError, match="unfinished dataset; rerun pdefm"):
        load_card(out)
    starts = _fail_at_write(monkeypatch, call=-1)
    write(out)
    assert starts[0] == 2 * load_card(out).block_size  # the two blocks written were kept
    assert _digests(out) == _digests(tmp_path / "clean")
    assert load_card(out).content_hash == load_card(tmp_path / "clean").content_hash
    assert sorted(p.name for p in out.iterdir()) == [".pdefm.lock", "card.json", *_h5_names()]


def _h5_names() -> list[str]:
    return ["test.h5", "train.h5", "val.h5"]


@pytest.mark.parametrize("kind", ["generate", "import", "mix"])
def test_a_folder_holding_something_else_is_refused_untouched(kind, members, own_file, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(PdefmError, match="not a pdefm dataset; give a new or empty directory"):
        _writers(members, own_file)[kind](out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kind", ["generate", "import", "mix"])
def test_rewriting_a_finished_dataset_changes_nothing(kind, members, own_file, tmp_path):
    write = _writers(members, own_file)[kind]
    write(tmp_path / "d")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "d").iterdir()}
    write(tmp_path / "d")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "d").iterdir()} == before


def test_an_unfinished_dataset_of_another_kind_is_refused(members, own_file, tmp_path, monkeypatch):
    writers = _writers(members, own_file)
    _fail_at_write(monkeypatch, call=1)
    with pytest.raises(PdefmError):
        writers["import"](tmp_path / "d")
    with pytest.raises(PdefmError, match="unfinished import of another dataset.*pdefm import"):
        writers["generate"](tmp_path / "d")


def test_a_mix_whose_member_changed_restarts(members, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_dataset(_spec("poisson", 1.0, 5.0), a, progress=False)
    generate_dataset(_spec("advection_diffusion", 0.2, 1.0), b, progress=False)
    spec = MixtureSpec(((str(a), 1.0), (str(b), 1.0)), 150, 20, 20)
    _fail_at_write(monkeypatch, call=2)
    with pytest.raises(PdefmError):
        mix_datasets(spec, tmp_path / "mix", progress=False)
    for path in (a, b):  # the members are regenerated with another seed meanwhile
        _replace(path, _spec(load_card(path).family, *_range(path), seed=1))
    starts = _fail_at_write(monkeypatch, call=-1)
    mix_datasets(spec, tmp_path / "mix", progress=False)
    assert starts[0] == 0  # nothing of the stale blocks was kept
    clean = tmp_path / "clean"
    mix_datasets(spec, clean, progress=False)
    assert _digests(tmp_path / "mix") == _digests(clean)


def _range(path: Path) -> tuple[float, float]:
    declared = load_card(path).declared
    return declared["low"], declared["high"]


def _replace(path: Path, spec: GenerationSpec) -> None:
    for child in path.iterdir():
        child.unlink()
    generate_dataset(spec, path, progress=False)


def test_split_hash_recomputes_the_card_hash(members):
    card = load_card(members[0])
    for split in ("train", "val", "test"):
        with h5py.File(card.split_file(split), "r") as h5:
            assert split_hash(h5, card.count(split), card.block_size) == card.content_hash[split]


@pytest.mark.parametrize("kind", ["generate", "import", "mix"])
def test_the_card_records_the_generation_time(kind, members, own_file, tmp_path):
    _writers(members, own_file)[kind](tmp_path / "d")
    times = load_card(tmp_path / "d").generation
    assert times["wall_s"] > 0 and times["cpu_s"] > 0


@pytest.mark.parametrize("kind", ["generate", "import", "mix"])
def test_a_resumed_write_sums_the_time_of_its_segments(
    kind, members, own_file, tmp_path, monkeypatch
):
    """The card's time = what the killed segment recorded (in the progress file) + the
    resumed segment's, which lies inside the resuming call (wall and this process's CPU)."""
    write, out = _writers(members, own_file)[kind], tmp_path / "d"
    _fail_at_write(monkeypatch, call=2)
    with pytest.raises(PdefmError):
        write(out)
    first = json.loads((out / PROGRESS_NAME).read_text())["generation"]
    assert first["wall_s"] > 0 and first["cpu_s"] > 0
    _fail_at_write(monkeypatch, call=-1)
    wall, cpu = time.perf_counter(), time.process_time()
    write(out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = load_card(out).generation
    for key, call in (("wall_s", wall), ("cpu_s", cpu)):
        resumed = total[key] - first[key]
        assert 0 < resumed <= call + 1e-3  # the card rounds to the millisecond
        assert total[key] >= resumed and total[key] >= first[key]


def test_cards_and_progress_files_without_times_still_read(tmp_path, monkeypatch):
    """Written before the generation time was recorded: a card reads with ``generation``
    None, everything else unchanged; an unfinished folder resumes from 0 s."""
    spec = _spec("poisson", 1.0, 5.0)
    _fail_at_write(monkeypatch, call=2)
    with pytest.raises(PdefmError):
        generate_dataset(spec, tmp_path / "d", progress=False)
    progress = json.loads((tmp_path / "d" / PROGRESS_NAME).read_text())
    del progress["generation"]
    (tmp_path / "d" / PROGRESS_NAME).write_text(json.dumps(progress))
    _fail_at_write(monkeypatch, call=-1)
    card = generate_dataset(spec, tmp_path / "d", progress=False)
    assert card.generation["wall_s"] > 0
    old = card.to_json()
    del old["generation"]
    (tmp_path / "d" / CARD_NAME).write_text(json.dumps(old))
    loaded = load_card(tmp_path / "d")
    assert loaded.generation is None and loaded.content_hash == card.content_hash
    assert loaded.data_hash == card.data_hash
