"""Deterministic, nested, sparsity-balanced subsets of a split. Imports no torch.

Sample i of a split has sparsity level i mod L (``GaussianLatticeSource.sparsity_of_index``).
A subset of n takes ceil((n - j) / L) samples of level j, i.e. the levels differ by at most one,
from a fixed seeded permutation of that level's samples. Subsets are nested: the subset of n is
contained in the subset of 2n, which makes a downstream data-size ladder compare like with like.
"""

from __future__ import annotations

import numpy as np

from pdefm.errors import PdefmError


def balanced_subset(total: int, n: int, n_levels: int = 4, seed: int = 0) -> np.ndarray:
    """Sorted indices of n samples out of ``total``, balanced over ``n_levels`` levels."""
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise PdefmError(f"subset size must be a positive integer, got {n}")
    if n > total:
        raise PdefmError(
            f"subset of {n} asked from a split of {total} samples; use n <= {total}"
            " or generate a larger split"
        )
    rng = np.random.default_rng([seed, total, n_levels])
    picked = []
    for level in range(n_levels):
        pool = np.arange(level, total, n_levels)
        quota = -(-(n - level) // n_levels)  # ceil((n - level) / L), 0 if level >= n
        picked.append(pool[rng.permutation(len(pool))[:quota]])
    return np.sort(np.concatenate(picked))
