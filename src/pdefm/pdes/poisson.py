"""Anisotropic Poisson: -c div(K grad u) = f, K = R(-t) diag(1, e) R(t).

The declared parameter is the eigenvalue ratio e ~ U[a, b] (the shift axis); the orientation
t ~ U[0, 2 pi) is always random. Symbol: sigma(k) = c k^T K k (zero at k = 0, so f has zero
mean and u is the zero-mean solution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from pdefm.pdes.base import (
    Coefficients,
    PDEFamily,
    diffusion_symbol,
    rotated_tensor,
)
from pdefm.pdes.grid import Grid


@dataclass(frozen=True)
class Poisson(PDEFamily):
    """-c div(K grad u) = f with K symmetric positive definite, eigenvalues (1, e)."""

    c: float = 0.01

    name: ClassVar[str] = "poisson"
    coefficient_names: ClassVar[tuple[str, ...]] = ("e", "theta", "k11", "k22", "k12")

    def validate_range(self, low: float, high: float) -> None:
        super().validate_range(low, high)
        if low <= 0:
            raise ValueError(f"e must be positive for K to be positive definite, got low={low}")

    def sample_coefficients(
        self, gen: torch.Generator, parameter: torch.Tensor, f_hat: torch.Tensor, grid: Grid
    ) -> Coefficients:
        theta = 2 * math.pi * torch.rand(parameter.shape, generator=gen, dtype=torch.float64)
        k11, k22, k12 = rotated_tensor(parameter, theta)
        return {"e": parameter, "theta": theta, "k11": k11, "k22": k22, "k12": k12}

    def symbol(self, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        return self.c * diffusion_symbol(coeffs["k11"], coeffs["k22"], coeffs["k12"], grid)

    def channel_values(self, coeffs: Coefficients) -> torch.Tensor:
        return torch.stack([coeffs["k11"], coeffs["k22"], coeffs["k12"]], dim=1)
