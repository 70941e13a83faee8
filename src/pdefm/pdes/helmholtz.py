"""Helmholtz: -c lap u - w u = f, an indefinite operator with integer wavenumber w.

Symbol: sigma(k) = c |k|^2 - w. When w is close to an eigenvalue c |k|^2 of -c lap, the solution
is huge; the study rejects samples with max |u| > 2. Rejecting the *sample* would skew the law
of w (at c = 0.01, w = 2 sits next to the eigenvalue 0.395 * 5 = 1.97 and only about 1 source
in 4,000 to 1 in 80, depending on the sparsity level, is accepted). pdefm keeps w and redraws
the source instead, so the declared law of w is honoured. Each sample may draw up to
``redraw_budget`` sources; a value whose measured acceptance makes that budget too small is
reported before generation (``pdefm.data.probe``) and is either given a larger budget or
dropped explicitly (``exclude``), which the dataset card records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from pdefm.pdes.base import Coefficients, PDEFamily
from pdefm.pdes.grid import Grid


@dataclass(frozen=True)
class Helmholtz(PDEFamily):
    """-c lap u - w u = f, w integer, samples with max |u| > max_abs_u rejected (source redrawn,
    up to ``redraw_budget`` sources per sample).

    ``exclude`` lists wavenumbers removed from the declared support (opt-in, recorded)."""

    c: float = 0.01
    max_abs_u: float = 2.0
    exclude: tuple[int, ...] = ()
    redraw_budget: int = 2000

    name: ClassVar[str] = "helmholtz"
    coefficient_names: ClassVar[tuple[str, ...]] = ("w", "c")
    remove_mean: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(sorted(int(w) for w in self.exclude)))

    def full_support(self, low: float, high: float) -> list[int]:
        """Integers in [low, high] before exclusions."""
        return list(range(math.ceil(low), math.floor(high) + 1))

    def support(self, low: float, high: float) -> list[int]:
        """Integers in [low, high], minus ``exclude``: the values actually drawn."""
        return [w for w in self.full_support(low, high) if w not in self.exclude]

    def validate_range(self, low: float, high: float) -> None:
        super().validate_range(low, high)
        if not self.full_support(low, high):
            raise ValueError(f"w range [{low}, {high}] holds no integer")
        if not self.support(low, high):
            raise ValueError(f"every integer w in [{low}, {high}] is excluded ({self.exclude})")
        if min(self.full_support(low, high)) <= 0:
            raise ValueError(f"w must be a positive integer, got low={low}")

    def declared_distribution(self, low: float, high: float) -> dict:
        return {
            "kind": "uniform_integer",
            "low": float(low),
            "high": float(high),
            "support": self.support(low, high),
            "excluded": list(self.exclude),
        }

    def sample_parameter(
        self, gen: torch.Generator, batch: int, low: float, high: float
    ) -> torch.Tensor:
        support = torch.tensor(self.support(low, high), dtype=torch.float64)
        pick = torch.randint(len(support), (batch,), generator=gen)
        return support[pick]

    def sample_coefficients(
        self, gen: torch.Generator, parameter: torch.Tensor, f_hat: torch.Tensor, grid: Grid
    ) -> Coefficients:
        return {"w": parameter, "c": torch.full_like(parameter, self.c)}

    def symbol(self, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        lap = grid.kx**2 + grid.ky**2
        return coeffs["c"].reshape(-1, 1, 1) * lap - coeffs["w"].reshape(-1, 1, 1)

    def channel_values(self, coeffs: Coefficients) -> torch.Tensor:
        return torch.stack([coeffs["c"], coeffs["w"]], dim=1)

    def accept(self, u: torch.Tensor) -> torch.Tensor:
        return u.abs().amax(dim=(-2, -1)) <= self.max_abs_u
