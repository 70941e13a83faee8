"""The periodic unit square [0, 1)^2 sampled on an n x n grid, and its Fourier wavenumbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Grid:
    """An n x n periodic grid on [0, 1)^2 with points x_i = i / n (index 0 is x, 1 is y).

    Wavenumbers are angular, k = 2 pi m for integer m, laid out like ``torch.fft.rfft2``:
    ``kx`` has shape (n, 1) (full FFT axis), ``ky`` has shape (1, n // 2 + 1) (half axis).
    """

    n: int
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        if self.n < 4 or self.n % 2:
            raise ValueError(f"grid size must be an even integer >= 4, got {self.n}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def spectral_shape(self) -> tuple[int, int]:
        return (self.n, self.n // 2 + 1)

    @cached_property
    def coords(self) -> torch.Tensor:
        """1-D coordinates i / n, shape (n,)."""
        return torch.arange(self.n, dtype=self.dtype) / self.n

    @cached_property
    def kx(self) -> torch.Tensor:
        """Angular wavenumbers of the full axis, shape (n, 1)."""
        m = torch.fft.fftfreq(self.n, d=1.0 / self.n, dtype=self.dtype)
        return (2 * math.pi * m).reshape(-1, 1)

    @cached_property
    def ky(self) -> torch.Tensor:
        """Angular wavenumbers of the half axis, shape (1, n // 2 + 1)."""
        m = torch.fft.rfftfreq(self.n, d=1.0 / self.n, dtype=self.dtype)
        return (2 * math.pi * m).reshape(1, -1)

    @cached_property
    def kx_odd(self) -> torch.Tensor:
        """``kx`` with the Nyquist mode zeroed, for odd (first) derivatives of real fields.

        The Nyquist coefficient of a real field is real, so i k u_hat there has no real
        counterpart; zeroing it keeps first derivatives real and Parseval sums exact.
        """
        k = self.kx.clone()
        k[self.n // 2] = 0.0
        return k

    @cached_property
    def ky_odd(self) -> torch.Tensor:
        """``ky`` with the Nyquist mode zeroed (see ``kx_odd``)."""
        k = self.ky.clone()
        k[0, -1] = 0.0
        return k

    @cached_property
    def parseval_weights(self) -> torch.Tensor:
        """Weights w such that sum(w |rfft2(a)|^2) / n^2 = sum(a^2) for real a, shape (1, n//2+1).

        Interior columns of the half spectrum stand for two conjugate modes; column 0 and the
        Nyquist column stand for one.
        """
        w = torch.full((1, self.n // 2 + 1), 2.0, dtype=self.dtype)
        w[0, 0] = 1.0
        w[0, -1] = 1.0
        return w

    def spectral_norm_sq(self, a_hat: torch.Tensor) -> torch.Tensor:
        """sum over the grid of a^2 from a's rfft2 coefficients; (B, n, n//2+1) -> (B,)."""
        power = a_hat.real**2 + a_hat.imag**2 if a_hat.is_complex() else a_hat**2
        return (power * self.parseval_weights).sum(dim=(-2, -1)) / self.n**2
