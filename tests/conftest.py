"""Shared fixtures: small datasets generated once per test session (64 x 64, a few blocks)."""

from __future__ import annotations

import pytest
import torch

from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec

RANGES = {"poisson": (1.0, 5.0), "advection_diffusion": (0.2, 1.0), "helmholtz": (3.0, 8.0)}


def small_spec(family: str, **overrides) -> GenerationSpec:
    """A fast spec: 64 x 64, blocks of 16, 48/16/16 samples."""
    low, high = overrides.pop("range", RANGES[family])
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
