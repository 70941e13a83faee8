"""Deterministic, balanced, nested subsets and random access."""

from __future__ import annotations

import numpy as np
import pytest

from pdefm.data.dataset import PDEDataset
from pdefm.data.subset import balanced_subset
from pdefm.errors import PdefmError


@pytest.mark.parametrize("n", [1, 3, 8, 13, 100, 1000])
def test_subset_is_balanced_over_sparsity_levels(n):
    idx = balanced_subset(1000, n)
    counts = np.bincount(idx % 4, minlength=4)
    assert counts.sum() == n == len(np.unique(idx))
    assert counts.max() - counts.min() <= 1


def test_subsets_are_deterministic_and_nested():
    ladder = [balanced_subset(4096, n, seed=3) for n in (8, 16, 64, 512)]
    assert np.array_equal(ladder[0], balanced_subset(4096, 8, seed=3))
    for small, big in zip(ladder[:-1], ladder[1:], strict=True):
        assert set(small) <= set(big)
    assert not np.array_equal(ladder[1], balanced_subset(4096, 16, seed=4))


def test_subset_larger_than_the_split_is_an_error():
    with pytest.raises(PdefmError, match="subset of 50 asked from a split of 48"):
        balanced_subset(48, 50)
    with pytest.raises(PdefmError, match="positive integer"):
        balanced_subset(48, 0)


def test_dataset_subset_reads_only_its_samples(datasets):
    _, root = datasets["poisson"]
    full = PDEDataset(root, "train")
    sub = full.subset(8, seed=1)
    assert len(sub) == 8
    sparsity = full.vectors()["sparsity"][sub.indices]
    assert sorted(np.unique(sparsity, return_counts=True)[1]) == [2, 2, 2, 2]
    x, y = sub[3]
    x_full, y_full = full[int(sub.indices[3])]
    assert (x == x_full).all() and (y == y_full).all()
    xb, _ = full.batch([5, 2, 5])  # any order, repeats allowed
    assert (xb[0] == xb[2]).all() and (xb[1] == full[2][0]).all()
    assert sub.parameters().shape == (8,)


def test_dataset_works_in_dataloader_workers(datasets):
    import torch

    _, root = datasets["poisson"]
    ds = PDEDataset(root, "val")
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (16, 4, 64, 64)
    assert (xs[7] == ds[7][0]).all()
