"""What every PDE family provides: parameter law, coefficients, Fourier symbol, solve, residual.

The study's families are linear, constant-coefficient operators on the periodic unit square, so
they are diagonal in Fourier space: L u = f becomes sigma(k) u_hat(k) = f_hat(k) with sigma the
operator's symbol. Solving is a division; the residual R(u) = L u - f is a multiplication.
Coefficients are a dict of float64 tensors of shape (B,), one value per sample.

A family whose coefficients vary in space (``darcy``) overrides the generation hooks
(``sample_source``, ``sample_solution``, ``grid_entry``) and the operator (``apply``); its
coefficient fields are inputs stored by channel name and passed to ``apply`` and ``residual``
in the coefficients dict as (B, n, n) tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from pdefm import catalogue
from pdefm.catalogue import FamilyEntry, ParameterSpec
from pdefm.pdes.grid import Grid

Coefficients = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PDEFamily(ABC):
    """Base class of a family. Subclasses are frozen dataclasses whose fields are the family's
    fixed constants (recorded in dataset cards), e.g. ``c = 0.01``. ``name`` keys the family's
    catalogue entry (:mod:`pdefm.catalogue`), which holds its equation, parameter, default range
    and channels; the class holds the physics."""

    name: ClassVar[str]
    coefficient_names: ClassVar[tuple[str, ...]]  # keys of the dict sample_coefficients returns
    remove_mean: ClassVar[bool] = True

    @property
    def entry(self) -> FamilyEntry:
        """This family's catalogue entry."""
        return catalogue.family(self.name)

    @property
    def equation(self) -> str:
        return self.entry.equation

    @property
    def parameter(self) -> ParameterSpec:
        return self.entry.parameter

    @property
    def default_range(self) -> tuple[float, float]:
        return self.entry.default_range

    @property
    def coefficient_channels(self) -> tuple[str, ...]:
        """Constant coefficient channels after ``source``, in order."""
        return self.entry.coefficient_channels

    @property
    def field_channels(self) -> tuple[str, ...]:
        """Input fields besides the source (coefficients that vary in space), in order."""
        return self.entry.field_channels

    @property
    def input_channels(self) -> tuple[str, ...]:
        """Named input channels: the source, the input fields, then each constant channel."""
        return self.entry.input_channels

    def config(self) -> dict:
        """The family's constants, as recorded in a dataset card (JSON-ready)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    # -- the parameter law -----------------------------------------------------------------
    def validate_range(self, low: float, high: float) -> None:
        """Raise ValueError (with the fix) if [low, high] is not a usable parameter range."""
        if not (low == low and high == high) or low > high:
            raise ValueError(f"{self.parameter.name} range [{low}, {high}] is empty or inverted")

    def declared_distribution(self, low: float, high: float) -> dict:
        """The declared law of the parameter, as written into the dataset card."""
        return {"kind": "uniform", "low": float(low), "high": float(high)}

    def sample_parameter(
        self, gen: torch.Generator, batch: int, low: float, high: float
    ) -> torch.Tensor:
        """Draw the declared parameter: U[low, high], shape (B,) float64."""
        return low + (high - low) * torch.rand(batch, generator=gen, dtype=torch.float64)

    # -- physics ---------------------------------------------------------------------------
    @abstractmethod
    def sample_coefficients(
        self, gen: torch.Generator, parameter: torch.Tensor, f_hat: torch.Tensor, grid: Grid
    ) -> Coefficients:
        """All per-sample coefficients given the declared parameter (B,) and the sources'
        spectra f_hat (B, n, n//2+1)."""

    @abstractmethod
    def symbol(self, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """Fourier symbol sigma(k) of L, shape (B, n, n//2+1), real or complex."""

    @abstractmethod
    def channel_values(self, coeffs: Coefficients) -> torch.Tensor:
        """Constant coefficient channels in ``coefficient_channels`` order, shape (B, C)."""

    # -- generation hooks (a spectral, constant-coefficient family keeps the defaults) ------
    @property
    def uses_source_law(self) -> bool:
        """Whether the forcing is drawn from the spec's source law (its width then limits
        the resolution)."""
        return True

    def sample_source(self, law, gen: torch.Generator, sparsity: torch.Tensor, grid: Grid):
        """The forcing f (B, n, n) of samples with these sparsity levels, from the source
        ``law`` (a ``GaussianLatticeSource``)."""
        return law.sample(gen, sparsity, grid, self.remove_mean)

    def sample_solution(
        self, gen: torch.Generator, parameter: torch.Tensor, f: torch.Tensor, grid: Grid
    ) -> tuple[Coefficients, dict[str, torch.Tensor], torch.Tensor]:
        """(coefficients name -> (B,), input fields channel -> (B, n, n), solution u (B, n, n))
        for forcings f and the declared parameter (B,): coefficients drawn given the sources'
        spectra, then the spectral solve."""
        f_hat = torch.fft.rfft2(f)
        coeffs = self.sample_coefficients(gen, parameter, f_hat, grid)
        u_hat = self.solve_spectral(f_hat, coeffs, grid)
        return coeffs, {}, torch.fft.irfft2(u_hat, s=grid.shape)

    def grid_entry(self, n: int) -> dict:
        """The card's ``grid``: the periodic unit square, x_i = i / n, x along axis 0;
        ``point_range`` is [first, last] grid point per axis."""
        return {
            "resolution": n,
            "domain": [[0.0, 1.0], [0.0, 1.0]],
            "periodic": True,
            "points": "x_i = i / n",
            "point_range": [[0.0, (n - 1) / n], [0.0, (n - 1) / n]],
            "x_axis": 0,
            "boundary": dict.fromkeys(("x_low", "x_high", "y_low", "y_high"), "periodic"),
        }

    def accept(self, u: torch.Tensor) -> torch.Tensor:
        """Which solutions (B, n, n) to keep, shape (B,) bool. Default: all."""
        return torch.ones(u.shape[0], dtype=torch.bool)

    # -- solve and residual ----------------------------------------------------------------
    def solve_spectral(self, f_hat: torch.Tensor, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """u_hat = f_hat / sigma. Where sigma(0) = 0 (no zeroth-order term) the mean of f is
        outside the range of L; the solve then returns the zero-mean solution of
        L u = f - mean(f)."""
        sigma = self.symbol(coeffs, grid)
        if self.remove_mean:
            sigma[..., 0, 0] = 1.0  # sigma is a fresh tensor; u_hat(0) is zeroed below
        if sigma.is_complex():
            u_hat = f_hat / sigma
        else:  # real symbol: scale real and imaginary parts, no complex division
            u_hat = torch.view_as_complex(torch.view_as_real(f_hat) / sigma.unsqueeze(-1))
        if self.remove_mean:
            u_hat[..., 0, 0] = 0.0
        return u_hat

    def solve(self, f: torch.Tensor, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """Solve L u = f spectrally: (B, n, n) -> (B, n, n)."""
        u_hat = self.solve_spectral(torch.fft.rfft2(f), coeffs, grid)
        return torch.fft.irfft2(u_hat, s=grid.shape)

    def apply(self, u: torch.Tensor, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """L u computed spectrally: (B, n, n) -> (B, n, n)."""
        return torch.fft.irfft2(self.symbol(coeffs, grid) * torch.fft.rfft2(u), s=u.shape[-2:])

    def residual(self, u: torch.Tensor, f: torch.Tensor, coeffs: Coefficients, grid: Grid):
        """R(u) = L u - f, shape (B, n, n)."""
        return self.apply(u, coeffs, grid) - f

    def relative_residual(
        self, u: torch.Tensor, f: torch.Tensor, coeffs: Coefficients, grid: Grid
    ) -> torch.Tensor:
        """||L u - f|| / ||f|| per sample, shape (B,)."""
        r = self.residual(u, f, coeffs, grid)
        return r.flatten(1).norm(dim=1) / f.flatten(1).norm(dim=1)


def rotated_tensor(e: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Entries (K11, K22, K12) of K = R(-theta) diag(1, e) R(theta), each of shape (B,).

    K is symmetric positive definite with eigenvalues 1 and e; theta rotates its axes.
    """
    c, s = torch.cos(theta), torch.sin(theta)
    return c * c + e * s * s, s * s + e * c * c, (e - 1.0) * s * c


def diffusion_symbol(
    k11: torch.Tensor, k22: torch.Tensor, k12: torch.Tensor, grid: Grid
) -> torch.Tensor:
    """q(k) = k^T K k, the symbol of -div(K grad .), shape (B, n, n//2+1)."""
    kx, ky = grid.kx, grid.ky
    b = (-1, 1, 1)
    return k11.reshape(b) * kx**2 + 2 * k12.reshape(b) * kx * ky + k22.reshape(b) * ky**2
