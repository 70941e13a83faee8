"""Random source functions: sums of Gaussians on a square lattice (the study's source law).

A source is f(x, y) = sum_ij a_ij m_ij g_i(x) g_j(y) with g_i(x) = exp(-d(x, c_i)^2 / (2 sigma^2)),
d the periodic distance, c_i the lattice centres, m_ij ~ Bernoulli(1 - vf) the active mask and
a_ij ~ U[a_min, a_max] the amplitudes. A 2-D Gaussian is the product of two 1-D ones, so the
whole batch is two matrix products, f = G^T (a * m) G with G of shape (L, n): no loop over
centres. f is then divided by its maximum and, where the operator needs it, its mean removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from pdefm.pdes.grid import Grid


@dataclass(frozen=True)
class GaussianLatticeSource:
    """The source law. Defaults are the study's: 12 x 12 centres 1/16 apart around (0.5, 0.5),
    sigma = 1/32, four sparsity levels (the probability vf that a centre is *inactive*),
    amplitudes U[1e-3, 1]."""

    lattice: int = 12
    spacing: float = 1.0 / 16
    sigma: float = 1.0 / 32
    sparsity_levels: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    amplitude: tuple[float, float] = (1e-3, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GaussianLatticeSource:
        return cls(
            lattice=int(d["lattice"]),
            spacing=float(d["spacing"]),
            sigma=float(d["sigma"]),
            sparsity_levels=tuple(float(v) for v in d["sparsity_levels"]),
            amplitude=(float(d["amplitude"][0]), float(d["amplitude"][1])),
        )

    def min_resolution(self) -> int:
        """Smallest even grid with at least two points per sigma (h <= sigma / 2)."""
        n = int(-(-2.0 // self.sigma))  # ceil(2 / sigma)
        return n + (n % 2)

    def centres(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """1-D lattice coordinates, shape (L,), symmetric about 0.5."""
        offsets = torch.arange(self.lattice, dtype=dtype) - (self.lattice - 1) / 2
        return 0.5 + self.spacing * offsets

    def profiles(self, grid: Grid) -> torch.Tensor:
        """1-D periodic Gaussians g_i(x_k), shape (L, n)."""
        d = grid.coords.reshape(1, -1) - self.centres(grid.dtype).reshape(-1, 1)
        d = torch.remainder(d + 0.5, 1.0) - 0.5  # periodic distance on the unit circle
        return torch.exp(-(d**2) / (2 * self.sigma**2))

    def sparsity_of_index(self, index: torch.Tensor) -> torch.Tensor:
        """Sparsity level of each sample by its index: levels cycle, so every split and every
        contiguous run of samples holds each level equally often (to within one)."""
        levels = torch.tensor(self.sparsity_levels, dtype=torch.float64)
        return levels[index % len(self.sparsity_levels)]

    def sample_weights(self, gen: torch.Generator, vf: torch.Tensor) -> torch.Tensor:
        """Lattice weights a * m, shape (B, L, L), for inactive probabilities vf of shape (B,).

        A sample whose mask came out empty (probability 0.8^144 at worst) keeps the centre with
        the largest draw, so every source is non-zero without extra random draws.
        """
        shape = (vf.shape[0], self.lattice, self.lattice)
        draws = torch.rand(shape, generator=gen, dtype=torch.float64)
        lo, hi = self.amplitude
        amplitude = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)
        active = draws >= vf.reshape(-1, 1, 1)
        empty = ~active.flatten(1).any(dim=1)
        if empty.any():
            flat = active.flatten(1)
            flat[empty, draws.flatten(1)[empty].argmax(dim=1)] = True
            active = flat.reshape(shape)
        return amplitude * active

    def render(self, weights: torch.Tensor, grid: Grid, remove_mean: bool) -> torch.Tensor:
        """Sources from lattice weights: (B, L, L) -> (B, n, n), max 1 before mean removal."""
        g = self.profiles(grid)
        f = g.T @ weights.to(grid.dtype) @ g
        f = f / f.amax(dim=(-2, -1), keepdim=True)
        if remove_mean:
            f = f - f.mean(dim=(-2, -1), keepdim=True)
        return f

    def sample(
        self, gen: torch.Generator, vf: torch.Tensor, grid: Grid, remove_mean: bool
    ) -> torch.Tensor:
        """Draw sources for inactive probabilities vf (B,); returns (B, n, n) float64."""
        return self.render(self.sample_weights(gen, vf), grid, remove_mean)
