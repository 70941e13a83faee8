"""Advection-diffusion: -(1 - l) c div(K grad u) + l v . grad u = f, with |v| = 1.

The declared parameter is the advection-to-diffusion ratio of the solution,

    Psi = ||l v . grad u|| / ||(1 - l) c div(K grad u)||,

and the mixing weight l is *solved for* per sample so that every realised Psi equals its drawn
target (the reference code picks l from a lookup table and misses the range for 12-19% of
samples). With r = l / (1 - l), the symbol is sigma = (1 - l)(c q + i r p), q = k^T K k,
p = v . k, and by Parseval (w_k = |f_hat_k|^2 with rfft weights)

    ||adv||^2 = sum_k w_k r^2 p^2 / (c^2 q^2 + r^2 p^2),   ||diff||^2 = sum_k w_k c^2 q^2 / (...).

The two add up to W = sum_k w_k, so Psi^2 / (1 + Psi^2) = N(rho) / W with
N(rho) = sum_k w_k t_k rho / (1 + t_k rho), t_k = p^2 / (c q)^2, rho = r^2: one increasing
function of rho per sample, solved by safeguarded Newton in log rho on the spectrum already in
hand (no extra FFT).
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

_NEWTON_TOL = 1e-13  # on log Psi^2
_NEGLIGIBLE_ENERGY = 1e-24  # share of a sample's energy below which a mode is dropped
_NEWTON_MAX_ITER = 200
_LOG_RHO_BRACKET = (-90.0, 90.0)
_LOG_T_FLOOR = -400.0  # t = 0 (no advection) kept finite so exp(-x) stays finite


@dataclass(frozen=True)
class AdvectionDiffusion(PDEFamily):
    """-(1-l) c div(K grad u) + l v.grad u = f; Psi declared, l solved per sample.

    ``eigenvalue_range`` is the law U[a, b] of K's eigenvalue ratio e (the study's [1, 5])."""

    c: float = 0.01
    eigenvalue_range: tuple[float, float] = (1.0, 5.0)

    name: ClassVar[str] = "advection_diffusion"
    coefficient_names: ClassVar[tuple[str, ...]] = (
        "psi",
        "e",
        "theta",
        "phi",
        "k11",
        "k22",
        "k12",
        "vx",
        "vy",
        "l",
    )

    def validate_range(self, low: float, high: float) -> None:
        super().validate_range(low, high)
        if low <= 0:
            raise ValueError(f"psi must be positive, got low={low}")

    def sample_coefficients(
        self, gen: torch.Generator, parameter: torch.Tensor, f_hat: torch.Tensor, grid: Grid
    ) -> Coefficients:
        lo, hi = self.eigenvalue_range
        shape, f64 = parameter.shape, torch.float64
        e = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=f64)
        theta = 2 * math.pi * torch.rand(shape, generator=gen, dtype=f64)
        phi = 2 * math.pi * torch.rand(shape, generator=gen, dtype=f64)
        k11, k22, k12 = rotated_tensor(e, theta)
        coeffs = {"psi": parameter, "e": e, "theta": theta, "phi": phi}
        coeffs.update(k11=k11, k22=k22, k12=k12, vx=torch.cos(phi), vy=torch.sin(phi))
        coeffs["l"] = self.mixing_for_ratio(parameter, f_hat, coeffs, grid)
        return coeffs

    def _spectral_parts(self, coeffs: Coefficients, grid: Grid) -> tuple[torch.Tensor, ...]:
        """c q(k) (diffusion) and p(k) = v . k (advection), each (B, n, n//2+1)."""
        cq = self.c * diffusion_symbol(coeffs["k11"], coeffs["k22"], coeffs["k12"], grid)
        b = (-1, 1, 1)
        p = coeffs["vx"].reshape(b) * grid.kx_odd + coeffs["vy"].reshape(b) * grid.ky_odd
        return cq, p

    def mixing_for_ratio(
        self, psi: torch.Tensor, f_hat: torch.Tensor, coeffs: Coefficients, grid: Grid
    ) -> torch.Tensor:
        """The l in (0, 1) giving each sample the ratio psi (B,); f_hat is (B, n, n//2+1).

        Only modes holding more than 1e-24 of some sample's energy enter the sums (smooth
        sources leave most of the spectrum empty), which changes Psi by less than 1e-20."""
        weight = (f_hat.real**2 + f_hat.imag**2) * grid.parseval_weights
        weight[..., 0, 0] = 0.0  # the mean is not in the range of L (and f has none)
        weight = weight.flatten(1)
        share = weight / weight.sum(dim=1, keepdim=True)
        modes = (share > _NEGLIGIBLE_ENERGY).any(dim=0).nonzero().squeeze(1)
        kx = grid.kx.expand(grid.spectral_shape).flatten()[modes]
        ky = grid.ky.expand(grid.spectral_shape).flatten()[modes]
        kx_odd = grid.kx_odd.expand(grid.spectral_shape).flatten()[modes]
        ky_odd = grid.ky_odd.expand(grid.spectral_shape).flatten()[modes]
        col = (-1, 1)
        q = coeffs["k11"].reshape(col) * kx**2 + coeffs["k22"].reshape(col) * ky**2
        q = q + 2 * coeffs["k12"].reshape(col) * kx * ky
        p = coeffs["vx"].reshape(col) * kx_odd + coeffs["vy"].reshape(col) * ky_odd
        # log t = log(p^2 / (c q)^2); a mode with p = 0 never advects (t = 0, kept finite).
        log_t = (2 * (torch.log(p.abs()) - torch.log(self.c * q))).clamp(min=_LOG_T_FLOOR)
        log_rho = _solve_increasing(weight[:, modes], log_t, psi**2)
        r = torch.exp(0.5 * log_rho)
        return r / (1 + r)

    def symbol(self, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        cq, p = self._spectral_parts(coeffs, grid)
        l = coeffs["l"].reshape(-1, 1, 1)  # noqa: E741 (the study's name)
        return torch.complex((1 - l) * cq, l * p)

    def channel_values(self, coeffs: Coefficients) -> torch.Tensor:
        d = 1 - coeffs["l"]
        l = coeffs["l"]  # noqa: E741
        return torch.stack(
            [
                d * coeffs["k11"],
                d * coeffs["k22"],
                d * coeffs["k12"],
                l * coeffs["vx"],
                l * coeffs["vy"],
            ],
            dim=1,
        )

    def ratio(self, u_hat: torch.Tensor, coeffs: Coefficients, grid: Grid) -> torch.Tensor:
        """Realised Psi of solutions given by their spectra u_hat (B, n, n//2+1), shape (B,)."""
        cq, p = self._spectral_parts(coeffs, grid)
        l = coeffs["l"].reshape(-1, 1, 1)  # noqa: E741
        adv = grid.spectral_norm_sq(l * p * u_hat)
        diff = grid.spectral_norm_sq((1 - l) * cq * u_hat)
        return torch.sqrt(adv / diff)


def _solve_increasing(weight: torch.Tensor, log_t: torch.Tensor, target: torch.Tensor):
    """Solve Psi^2(s) = N / (W - N) = target for s = log rho, per row, where
    N(s) = sum_k weight_k sigmoid(s + log_t_k) and W - N = sum_k weight_k sigmoid(-s - log_t_k).

    weight, log_t: (B, M); target = Psi^2: (B,). Newton runs on F(s) = log N - log(W - N), which
    is exactly s + log t for a single mode and close to linear in general, so it converges in a
    few steps; a bracket [lo, hi] is kept and a step that leaves it is replaced by bisection.
    Raises ValueError when a target is beyond reach of the source.
    """
    log_target = torch.log(target)
    lo = torch.full_like(target, _LOG_RHO_BRACKET[0])
    hi = torch.full_like(target, _LOG_RHO_BRACKET[1])
    # Start from the one-mode model Psi^2 = t_bar rho, t_bar the energy-weighted mean of t.
    t_bar = (weight * log_t.exp()).sum(dim=1) / weight.sum(dim=1)
    s = (log_target - torch.log(t_bar)).clamp(lo, hi)
    inv_t = torch.exp(-log_t)  # e^{-x} = e^{-s} / t: one multiply per iteration
    sums = _RatioSums(weight)
    for _ in range(_NEWTON_MAX_ITER):
        f, df = sums(inv_t, s)
        g = f - log_target
        done = g.abs() <= _NEWTON_TOL
        if done.all():
            return s
        lo = torch.where(g < 0, s, lo)
        hi = torch.where(g > 0, s, hi)
        if ((hi - lo < 1e-9) & (g < 0) & (hi >= _LOG_RHO_BRACKET[1])).any():
            raise ValueError(
                "an advection-diffusion ratio is out of reach of a source; lower the range"
            )
        step = s - g / df
        bad = ~((step >= lo) & (step <= hi))  # also catches NaN
        # Converged rows stay put: a further step of rounding size could leave the bracket.
        s = torch.where(done, s, torch.where(bad, 0.5 * (lo + hi), step))
    raise RuntimeError("advection-diffusion mixing solve did not converge")


class _RatioSums:
    """F(s) = log(N / (W - N)) and dF/ds for each row (see ``_solve_increasing``).

    With e = exp(-(s + log t)), a = sigmoid(s + log t) = 1 / (1 + e) and b = 1 - a = e a
    (no cancellation when a is near 1). The three weighted sums N = w.a, W - N = w.b and
    dN/ds = w.(a b) are one batched dot product with the weights (a batched matrix product with
    a single column is 2-3x slower on CPU); the work buffer is reused across iterations.
    """

    def __init__(self, weight: torch.Tensor):
        self.weight = weight.unsqueeze(1)  # (B, 1, M)
        self.buf = torch.empty(weight.shape[0], 3, weight.shape[1], dtype=weight.dtype)

    def __call__(self, inv_t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, ab = self.buf[:, 0], self.buf[:, 1], self.buf[:, 2]
        torch.mul(inv_t, torch.exp(-s).unsqueeze(1), out=b)  # e
        torch.add(b, 1.0, out=a)
        a.reciprocal_()
        b.mul_(a)
        torch.mul(a, b, out=ab)
        n, rest, dn = torch.linalg.vecdot(self.buf, self.weight).unbind(1)
        return torch.log(n) - torch.log(rest), dn / n + dn / rest
