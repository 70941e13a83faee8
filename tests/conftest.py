"""Shared fixtures: small datasets generated once per test session (64 x 64, a few blocks)."""

from __future__ import annotations

import os

import pytest

# Tests run with a fixed thread count: the automatic choice samples the machine's load for a
# quarter second on every CLI call (tested on its own in test_threads.py).
os.environ.setdefault("PDEFM_THREADS", "2")

import torch  # noqa: E402

from pdefm import catalogue
from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec

RANGES = {
    "poisson": (1.0, 5.0),
    "advection_diffusion": (0.2, 1.0),
    "helmholtz": (3.0, 8.0),
    "darcy": (1.0, 10.0),
}


def small_spec(family: str, **overrides) -> GenerationSpec:
    """A fast spec: 64 x 64, blocks of 16, 48/16/16 samples."""
    low, high = overrides.pop("range", RANGES.get(family) or catalogue.family(family).default_range)
    kw = dict(n_train=48, n_val=16, n_test=16, resolution=64, block_size=16)
    kw.update(overrides)
    return GenerationSpec(family, low, high, **kw)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    """family -> (spec, directory) of a generated small dataset."""
    out = {}
    for family in RANGES:
        spec = small_spec(family)
        root = tmp_path_factory.mktemp(family)
        generate_dataset(spec, root, progress=False, drop_unsampleable=True)
        out[family] = (spec, root)
    return out


def tree_snapshot(root) -> dict:
    """Relative path -> content digest (None for folders) of everything under ``root``."""
    import hashlib
    from pathlib import Path

    root = Path(root)
    if not root.exists():
        return {}
    snap = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        snap[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return snap


@pytest.fixture
def refused(capsys, tmp_path):
    """``refused(argv, *needles, watch=(paths...))`` runs ``pdefm ARGV`` in-process and asserts
    the refusal contract: exit code 2, exactly one stderr line ``error: ...`` holding every
    needle, no traceback, and every watched tree (default: the test's tmp_path) unchanged."""
    from pdefm.cli import main

    def check(argv, *needles, watch=None):
        roots = [tmp_path] if watch is None else list(watch)
        before = [tree_snapshot(r) for r in roots]
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert code == 2, (code, captured.err, captured.out)
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        for needle in needles:
            assert needle in lines[0], lines[0]
        after = [tree_snapshot(r) for r in roots]
        assert after == before, f"refusal changed files: {lines[0]}"
        return lines[0]

    return check


def tiny_run(data, out, run_name: str, **kw):
    """A few steps of fno-micro on ``data`` into ``out/run_name`` (a quick pre-train or
    fine-tune for tests that need a checkpoint); returns the run record."""
    from pdefm.train.config import RunConfig
    from pdefm.train.loop import train

    settings = dict(model="fno-micro", lrs=(1e-3,), epochs=None, steps=2, progress=False,
                    device="cpu")  # fmt: skip
    return train(RunConfig(data=str(data), out=str(out), run_name=run_name, **{**settings, **kw}))


def quick_train(data, out, **kw):
    """``loop.train`` of fno-micro on the CPU without a progress bar into ``out`` (a budget
    of ``steps`` replaces the default epochs); returns the run record."""
    from pdefm.train.config import RunConfig
    from pdefm.train.loop import train

    kw = {"progress": False, "model": "fno-micro", "device": "cpu", **kw}
    if "steps" in kw:
        kw["epochs"] = None
    return train(RunConfig(data=str(data), out=str(out), **kw))
