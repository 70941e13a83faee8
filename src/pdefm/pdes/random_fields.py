"""Random coefficient fields for variable-coefficient problems: functions of a Gaussian random
field with a declared contrast max a / min a (the physics parameter of such a family).

z is a zero-mean, unit-variance Gaussian field with covariance (tau^2 - Laplacian)^(-alpha),
sampled spectrally on the periodic grid; a is either a smooth increasing function of z with
values in [1, contrast] or a two-phase threshold of z. float64, (B, n, n), x is axis 0.
"""

from __future__ import annotations

import math

import torch

from pdefm.errors import PdefmError
from pdefm.pdes.elliptic import check_boundary, per_sample

FIELD_KINDS = ("smooth", "threshold")
ALPHA = 2.0  # smoothness exponent of the covariance (tau^2 - Laplacian)^-alpha


def gaussian_field(
    generator: torch.Generator, batch: int, n: int, length_scale: float
) -> torch.Tensor:
    """Samples z of a zero-mean Gaussian field on the periodic n x n grid x_i = i / n, with
    covariance (tau^2 - Laplacian)^(-alpha), alpha = 2, normalised to unit pointwise variance;
    (B, n, n) float64.

    z = C^(1/2) w for white noise w: on the periodic grid C is diagonal in Fourier space with
    eigenvalues lambda(k) = (tau^2 + |k|^2)^(-alpha), k = 2 pi m, so Var z_ij = mean_k lambda(k)
    exactly, which the normalisation divides out. tau = sqrt(8 nu) / length_scale with
    nu = alpha - 1 the Matern smoothness in 2-D: length_scale is the Matern practical range,
    the distance at which the correlation falls to about 0.13.
    """
    tau = math.sqrt(8.0 * (ALPHA - 1.0)) / length_scale
    k = 2 * math.pi * torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    lam = (tau**2 + k.reshape(-1, 1) ** 2 + k.reshape(1, -1) ** 2) ** (-ALPHA)
    amplitude = (lam / lam.mean()).sqrt()[:, : n // 2 + 1]  # the rfft2 half of the full grid
    w = torch.randn((batch, n, n), generator=generator, dtype=torch.float64)
    w_hat = torch.view_as_complex(torch.view_as_real(torch.fft.rfft2(w)) * amplitude.unsqueeze(-1))
    return torch.fft.irfft2(w_hat, s=(n, n))


def _contrast_tensor(contrast: float | torch.Tensor, batch: int) -> torch.Tensor:
    """contrast as (B,) float64; PdefmError unless every value is finite and >= 1."""
    c = torch.as_tensor(contrast, dtype=torch.float64)
    if c.dim() == 0:
        c = c.expand(batch)
    if c.shape != (batch,):
        raise PdefmError(
            f"contrast has shape {tuple(c.shape)}; pass a number or a tensor of shape ({batch},)"
        )
    if not (torch.isfinite(c).all() and (c >= 1).all()):
        raise PdefmError(
            f"contrast must be >= 1 (the ratio max a / min a), got min {c.min().item():.3g}; "
            "pass a value >= 1"
        )
    return c


def coefficient_field(
    generator: torch.Generator,
    batch: int,
    n: int,
    contrast: float | torch.Tensor,
    kind: str = "smooth",
    length_scale: float = 0.2,
    boundary: str = "periodic",
) -> torch.Tensor:
    """Random coefficient fields a with values in [1, contrast], shape (batch, n, n) float64.

    z is :func:`gaussian_field` (unit variance, correlation range ``length_scale``), then

    * ``"smooth"``: a = contrast ** Phi(z), Phi the standard normal CDF; log a is a smooth
      increasing function of a Gaussian field and a lies in (1, contrast). (Phi(z) is uniform
      on (0, 1), so pointwise log a is uniform on (0, log contrast): a log-uniform marginal.)
    * ``"threshold"``: a = contrast where z > 0, else 1: a two-phase medium as in the classic
      Darcy benchmarks.

    ``contrast`` (the ratio max a / min a, >= 1) is a number or a (batch,) tensor, one per
    sample. The grid is that of ``boundary``: periodic x_i = i / n, or the Dirichlet interior
    points (i + 1) / (n + 1), where the periodic field sampled on the (n + 1)-point grid is used
    without its row and column at 0. Deterministic given the generator's state.
    """
    check_boundary(boundary)
    if kind not in FIELD_KINDS:
        raise PdefmError(f"unknown kind {kind!r}; use one of {', '.join(map(repr, FIELD_KINDS))}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PdefmError(f"batch must be a whole number >= 1, got {batch!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise PdefmError(f"grid size n must be a whole number >= 2, got {n!r}")
    if not (isinstance(length_scale, (int, float)) and 0 < length_scale < math.inf):
        raise PdefmError(f"length_scale must be a positive number, got {length_scale!r}")
    c = per_sample(_contrast_tensor(contrast, batch))
    if boundary == "periodic":
        z = gaussian_field(generator, batch, n, length_scale)
    else:
        z = gaussian_field(generator, batch, n + 1, length_scale)[:, 1:, 1:]
    if kind == "smooth":
        phi = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
        return c**phi
    return torch.where(z > 0, c, torch.ones_like(c)).expand(batch, n, n).contiguous()
