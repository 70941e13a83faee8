"""Fourier layer of the FNO: a learned linear map on the lowest Fourier modes.

For an input u (B, C_in, H, W) with real FFT u_hat(k) = rfft2(u)(k), the layer computes

    v_hat_o(k) = sum_i W_io(k) u_hat_i(k)   for k in K_m,   v_hat_o(k) = 0 otherwise,
    v = irfft2(v_hat)                        (B, C_out, H, W)

where K_m holds the m x m modes of the two corner blocks of the rfft2 spectrum: rows 0..m-1
(non-negative k_y) and rows H-m..H-1 (negative k_y), columns 0..m-1 (k_x >= 0; the other half
of the spectrum follows by conjugate symmetry of a real field).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

from pdefm.errors import PdefmError


def check_grid(height: int, width: int, modes: int) -> None:
    """One-line error if an H x W grid cannot hold ``modes`` modes per direction.

    Both corner blocks need 2m distinct rows (H >= 2m) and the rfft keeps W//2 + 1 >= m
    columns; requiring min(H, W) >= 2m covers both and keeps the message simple.
    """
    if min(height, width) < 2 * modes:
        raise PdefmError(
            f"grid {height}x{width} is too small for {modes} Fourier modes; use a grid of at "
            f"least {2 * modes} or fewer modes"
        )


@lru_cache(maxsize=32)
def dft_bases(
    height: int, width: int, modes: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated DFT matrices for the retained modes (cached; constants, not parameters).

    With kx = 0..m-1 and ky in (0..m-1, H-m..H-1), the 2m retained rows:
      fw (W, 2m) real     [cos | -sin](2 pi x kx / W)       forward along W
      fh (H, 2m) complex  exp(-2 pi i y ky / H)             forward along H
      ih (2m, H) complex  exp(+2 pi i ky y / H) / H         inverse along H
      iw (2m, W) real     [c cos ; -c sin](2 pi kx x / W)   inverse along W, c_0 = 1/W, c_k = 2/W
    iw is irfft(n=W) of m columns (conjugate symmetry doubles kx >= 1; m - 1 < W / 2 so the
    Nyquist column is never retained; the imaginary part of kx = 0 is ignored, as irfft does).
    """
    f64, c128 = torch.float64, torch.complex128
    kx, x = torch.arange(modes, dtype=f64), torch.arange(width, dtype=f64)
    ky = torch.cat([torch.arange(modes), torch.arange(height - modes, height)]).to(f64)
    y = torch.arange(height, dtype=f64)
    ang_w = 2 * math.pi * torch.outer(x, kx) / width  # (W, m)
    ang_h = 2 * math.pi * torch.outer(y, ky) / height  # (H, 2m)
    c = torch.full((modes, 1), 2.0 / width, dtype=f64)
    c[0] = 1.0 / width
    fw = torch.cat([torch.cos(ang_w), -torch.sin(ang_w)], dim=1)
    iw = torch.cat([c * torch.cos(ang_w.T), -c * torch.sin(ang_w.T)], dim=0)
    fh = torch.exp(-1j * ang_h.to(c128))
    ih = torch.exp(1j * ang_h.T.to(c128)) / height
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    real = [t.to(device=device, dtype=dtype) for t in (fw, iw)]
    cplx = [t.to(device=device, dtype=complex_dtype) for t in (fh, ih)]
    return real[0], cplx[0], cplx[1], real[1]


class SpectralConv2d(nn.Module):
    """Fourier layer with m x m retained modes in both corner blocks (see module docstring).

    Parameters: ``weight`` (2, C_in, C_out, m, m, 2), real; index 0 is the corner
    (0: rows 0..m-1, 1: rows H-m..H-1), the last index is (real, imag). It is stored real so
    that safetensors and DDP see an ordinary float tensor, and viewed as complex in forward.

    Speed: only the 2 m m retained modes are ever computed, by truncated DFTs written as
    matrix products (``dft_bases``) instead of full FFTs: along W a real GEMM
    (B C H, W) @ (W, 2m), along H one complex GEMM (B C kx, H) @ (H, 2m); then ONE batched
    complex matmul over the 2 m m modes ((B, C_in) @ (C_in, C_out) per mode); then the two
    inverse DFTs, the first again one GEMM (a broadcast 4-D ``@`` would be B C products on the
    CPU: 2x slower steps at 16 x 16, see BENCHMARKS.md). This is the
    same function as rfft2 -> zero-filled spectrum -> irfft2, without the full-size spectra,
    their zero fills and the slicing copies in the backward pass (measured about 1.3-1.5x
    faster than the FFT route on CPU at 128x128, m = 16). Computed in float32 or float64
    (autocast off: there is no complex bfloat16).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        scale = 1.0 / (in_channels * out_channels)  # as the reference FNO
        shape = (2, in_channels, out_channels, modes, modes, 2)
        self.weight = nn.Parameter(scale * torch.rand(shape))
        self.lora_scale = 0.0

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def complex_weight(self) -> torch.Tensor:
        """The weights as complex (2, C_in, C_out, m, m), LoRA delta included if enabled."""
        weight = self.weight
        if hasattr(self, "lora_a"):
            weight = weight + self.lora_delta()
        if weight.dtype not in (torch.float32, torch.float64):
            weight = weight.float()  # view_as_complex has no half / bfloat16
        return torch.view_as_complex(weight)

    def lora_delta(self) -> torch.Tensor:
        """Low-rank delta (2, C_in, C_out, m, m, 2): the weight seen as a (C_in, 2 C_out m m 2)
        matrix (input channel against everything else) gets ``scale * lora_b @ lora_a``."""
        delta = self.lora_scale * (self.lora_b @ self.lora_a)  # (C_in, 2 * C_out * m * m * 2)
        m = self.modes
        delta = delta.view(self.in_channels, 2, self.out_channels, m, m, 2)
        return delta.transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) real -> (B, C_out, H, W) real (float32, or float64 for float64)."""
        height, width = x.shape[-2:]
        check_grid(height, width, self.modes)
        with torch.autocast(x.device.type, enabled=False):
            x = x if x.dtype == torch.float64 else x.float()
            bases = dft_bases(height, width, self.modes, x.dtype, x.device)
            modes = self._forward_dft(x, bases[0], bases[1])  # (2 m m, B, C_in)
            m, c_in, c_out = self.modes, self.in_channels, self.out_channels
            weight = self.complex_weight().to(modes.dtype)  # (2, C_in, C_out, m, m)
            weight = weight.permute(0, 3, 4, 1, 2).reshape(2 * m * m, c_in, c_out)
            out = torch.bmm(modes, weight)  # (2 m m, B, C_out): the one contraction
            return self._inverse_dft(out, bases[2], bases[3], height, width)

    def _forward_dft(self, x: torch.Tensor, fw: torch.Tensor, fh: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> its 2 m m retained modes (2 m m, B, C), ordered (corner, ky, kx)."""
        batch, channels, height, width = x.shape
        m = self.modes
        a = (x.reshape(-1, width) @ fw).view(batch, channels, height, 2, m)
        a = torch.complex(a[:, :, :, 0], a[:, :, :, 1])  # (B, C, H, kx) = rfft along W
        # one (B C kx, H) @ (H, 2m) GEMM: a 4-D ``@`` would broadcast fh over B C, which
        # torch's CPU complex bmm runs as B C separate products (measured: most of a step)
        a = (a.transpose(2, 3).reshape(-1, height) @ fh).view(batch, channels, m, 2 * m)
        return a.permute(3, 2, 0, 1).reshape(2 * m * m, batch, channels)  # a: (B, C, kx, 2m ky)

    def _inverse_dft(
        self, out: torch.Tensor, ih: torch.Tensor, iw: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """(2 m m, B, C) retained modes -> (B, C, H, W) real field."""
        m = self.modes
        batch, channels = out.shape[1:]
        out = out.view(2 * m, m, batch, channels).permute(2, 3, 1, 0)  # (B, C, kx, 2m ky)
        out = (out.reshape(-1, 2 * m) @ ih).view(batch, channels, m, height)  # one GEMM, as above
        out = out.transpose(2, 3)  # (B, C, H, kx) = ifft along H
        out = torch.cat([out.real, out.imag], dim=-1).reshape(-1, 2 * m)
        return (out @ iw).view(batch, channels, height, width)
