"""Darcy flow: -c div(a(x) grad u) = f, a(x) a random coefficient field in [1, contrast].

The declared parameter is the contrast max a / min a (the axis of distribution shift; at
contrast 1, a = 1 and the problem is Poisson with K = I). a is a smooth or a two-phase
(thresholded) function of a Gaussian random field (:mod:`pdefm.pdes.random_fields`), drawn
per sample with its own contrast.

Constants (recorded in the card): ``c`` (0.01, as the other families), ``boundary``
("dirichlet": u = 0 on the boundary, interior points x_i = (i + 1) / (n + 1); or "periodic",
x_i = i / n), ``forcing`` ("constant": f = 1, the classic Darcy benchmark, Dirichlet only; or
"lattice": the study's Gaussian lattice sources, rendered on the periodic grid, with zero mean
when periodic), ``field`` ("smooth" or "threshold"), ``length_scale`` of the field and the PCG
tolerance ``tol``.

Solutions are the 5-point finite-volume solutions of :mod:`pdefm.pdes.elliptic`, in float64 by
batched preconditioned conjugate gradients to a relative residual ``tol``. Every sample's PCG
residual and iteration count are stored with it (coefficients ``pcg_residual``,
``pcg_iterations``); a sample that does not converge is an error, never dropped.

Channels: ``diffusion_xx`` = ``diffusion_yy`` = a (fields) and ``diffusion_xy`` = 0 (a
constant): the names of the Poisson family's diffusion tensor K, so a Poisson checkpoint reads
darcy data by name. The operator here is the 5-point one, Poisson's is spectral: at contrast 1
the two solutions differ by the discretisation error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from pdefm.pdes import elliptic
from pdefm.pdes.base import Coefficients, PDEFamily
from pdefm.pdes.grid import Grid
from pdefm.pdes.random_fields import FIELD_KINDS, coefficient_field

FORCINGS = ("constant", "lattice")
FIELD = "diffusion_xx"  # the channel that carries a (diffusion_yy holds the same field)


@dataclass(frozen=True)
class Darcy(PDEFamily):
    """-c div(a grad u) = f with a random field a in [1, contrast] (see the module doc)."""

    c: float = 0.01
    boundary: str = "dirichlet"
    forcing: str = "constant"
    field: str = "smooth"
    # correlation range of the field: 0.5 leaves a few features per unit length, resolved on
    # the CPU studies' 16 x 16 grids (at 0.2 a 16 x 16 field is close to pixel noise); the
    # classic Darcy benchmark's covariance (9 - Laplacian)^-2 is length_scale 0.94
    length_scale: float = 0.5
    tol: float = 1e-10

    name: ClassVar[str] = "darcy"
    coefficient_names: ClassVar[tuple[str, ...]] = ("contrast", "pcg_iterations", "pcg_residual")

    def __post_init__(self) -> None:
        _choice("boundary", self.boundary, elliptic.BOUNDARIES)
        _choice("forcing", self.forcing, FORCINGS)
        _choice("field", self.field, FIELD_KINDS)
        if self.forcing == "constant" and self.boundary == "periodic":
            raise ValueError(
                "forcing 'constant' has no periodic solution (f must have zero mean); use "
                "boundary 'dirichlet' or forcing 'lattice'"
            )
        for key in ("c", "length_scale", "tol"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise ValueError(f"darcy constant {key} must be a positive number, got {value!r}")

    @property
    def remove_mean(self) -> bool:  # the lattice sources: zero mean only on the torus
        return self.boundary == "periodic"

    @property
    def uses_source_law(self) -> bool:
        return self.forcing == "lattice"

    def validate_range(self, low: float, high: float) -> None:
        super().validate_range(low, high)
        if low < 1:
            raise ValueError(f"the contrast max a / min a is at least 1, got low={low}")

    # -- generation ------------------------------------------------------------------------
    def sample_source(self, law, gen: torch.Generator, sparsity: torch.Tensor, grid: Grid):
        if self.forcing == "constant":
            return torch.ones((len(sparsity), *grid.shape), dtype=torch.float64)
        return law.sample(gen, sparsity, grid, self.remove_mean)

    def sample_solution(
        self, gen: torch.Generator, parameter: torch.Tensor, f: torch.Tensor, grid: Grid
    ) -> tuple[Coefficients, dict[str, torch.Tensor], torch.Tensor]:
        """Fields a (B, n, n) with the declared contrasts, then the PCG solve; a sample that
        does not reach ``tol`` is a ValueError naming its contrast."""
        a = coefficient_field(
            gen, len(parameter), grid.n, parameter, self.field, self.length_scale, self.boundary
        )
        sol = elliptic.solve(self.c * a, f, self.boundary, tol=self.tol)
        if not bool(sol.converged.all()):
            bad = int((~sol.converged).nonzero()[0, 0])
            raise ValueError(
                f"darcy: PCG did not reach relative residual {self.tol:g} for a sample of "
                f"contrast {float(parameter[bad]):g} (residual {float(sol.residual[bad]):.2e}); "
                "lower the contrast range or raise the tolerance tol"
            )
        coeffs = {
            "contrast": parameter,
            "pcg_iterations": sol.iterations.to(torch.float64),
            "pcg_residual": sol.residual,
        }
        return coeffs, {FIELD: a, "diffusion_yy": a}, sol.u

    def sample_coefficients(self, gen, parameter, f_hat, grid) -> Coefficients:
        raise NotImplementedError("darcy draws its coefficient fields in sample_solution")

    def channel_values(self, coeffs: Coefficients) -> torch.Tensor:
        """The one constant channel, diffusion_xy = 0: (B, 1)."""
        return torch.zeros((len(coeffs["contrast"]), 1), dtype=torch.float64)

    def grid_entry(self, n: int) -> dict:
        if self.boundary == "periodic":
            return super().grid_entry(n)
        return {
            "resolution": n,
            "domain": [[0.0, 1.0], [0.0, 1.0]],
            "periodic": False,
            "points": "x_i = (i + 1) / (n + 1), interior points; u = 0 on the boundary",
            "point_range": [[1 / (n + 1), n / (n + 1)], [1 / (n + 1), n / (n + 1)]],
            "x_axis": 0,
            "boundary": dict.fromkeys(("x_low", "x_high", "y_low", "y_high"), "dirichlet"),
        }

    # -- the operator ----------------------------------------------------------------------
    def symbol(self, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        raise NotImplementedError("darcy's operator varies in space: it has no Fourier symbol")

    def solve(self, f: torch.Tensor, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """PCG solve of -c div(a grad u) = f, a = coeffs["diffusion_xx"] (B, n, n)."""
        return elliptic.solve(self.c * _field(coeffs), f, self.boundary, tol=self.tol).u

    def apply(self, u: torch.Tensor, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """-c div_h(a grad_h u) by 5-point finite volumes: (B, n, n) -> (B, n, n)."""
        return elliptic.apply_operator(self.c * _field(coeffs), u, self.boundary)


def _field(coeffs: Coefficients) -> torch.Tensor:
    a = coeffs.get(FIELD)
    if a is None or a.dim() != 3:
        raise ValueError(f"darcy needs the coefficient field {FIELD} (B, n, n) in coeffs")
    return a.to(torch.float64)


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"darcy constant {key} is {value!r}; use one of {', '.join(allowed)}")
