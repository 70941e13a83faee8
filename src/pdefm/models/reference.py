"""The public reference Fourier layer, written plainly: the yardstick for ``SpectralConv2d``.

Used only by ``benchmarks/train_step.py`` and by the test that checks both layers compute the
same function. Four real weight tensors (real and imaginary part per corner), one
``torch.einsum`` per corner and per real/imaginary part, ``torch.stack`` to complex, a
zero-filled full-size output spectrum and a full ``irfft2``:

    out_ft[:, :, :m, :m]  = u_hat[:, :, :m, :m]  * (W1r + i W1i)   (summed over C_in)
    out_ft[:, :, -m:, :m] = u_hat[:, :, -m:, :m] * (W2r + i W2i)
"""

from __future__ import annotations

import torch
from torch import nn

from pdefm.models.spectral import SpectralConv2d


class ReferenceSpectralConv2d(nn.Module):
    """Reference-style layer: (B, C_in, H, W) -> (B, C_out, H, W); weights (C_in, C_out, m, m)."""

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        scale = 1.0 / (in_channels * out_channels)
        shape = (in_channels, out_channels, modes, modes)
        self.weights1_real = nn.Parameter(scale * torch.rand(shape))
        self.weights1_imag = nn.Parameter(scale * torch.rand(shape))
        self.weights2_real = nn.Parameter(scale * torch.rand(shape))
        self.weights2_imag = nn.Parameter(scale * torch.rand(shape))

    @staticmethod
    def compl_mul2d(x: torch.Tensor, w_real: torch.Tensor, w_imag: torch.Tensor) -> torch.Tensor:
        """(B, C_in, m, m) complex times (C_in, C_out, m, m) -> (B, C_out, m, m) complex."""
        real = torch.einsum("bixy,ioxy->boxy", x.real, w_real) - torch.einsum(
            "bixy,ioxy->boxy", x.imag, w_imag
        )
        imag = torch.einsum("bixy,ioxy->boxy", x.real, w_imag) + torch.einsum(
            "bixy,ioxy->boxy", x.imag, w_real
        )
        return torch.view_as_complex(torch.stack([real, imag], dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        m = self.modes
        x_ft = torch.fft.rfft2(x)
        out_ft = torch.zeros(
            batch, self.out_channels, height, width // 2 + 1, dtype=x_ft.dtype, device=x.device
        )
        out_ft[:, :, :m, :m] = self.compl_mul2d(
            x_ft[:, :, :m, :m], self.weights1_real, self.weights1_imag
        )
        out_ft[:, :, -m:, :m] = self.compl_mul2d(
            x_ft[:, :, -m:, :m], self.weights2_real, self.weights2_imag
        )
        return torch.fft.irfft2(out_ft, s=(height, width))


@torch.no_grad()
def copy_weights(src: SpectralConv2d, dst: ReferenceSpectralConv2d) -> None:
    """Make ``dst`` compute the same function as ``src`` (weights copied, dtype of ``dst``)."""
    w = src.weight
    dst.weights1_real.copy_(w[0, ..., 0])
    dst.weights1_imag.copy_(w[0, ..., 1])
    dst.weights2_real.copy_(w[1, ..., 0])
    dst.weights2_imag.copy_(w[1, ..., 1])


def use_reference_layers(model: nn.Module) -> nn.Module:
    """Swap every ``SpectralConv2d`` of an FNO for a ``ReferenceSpectralConv2d`` with the same
    weights (in place; returns the model). For the benchmark only."""
    for layer in model.layers:
        fast = layer.spectral
        ref = ReferenceSpectralConv2d(fast.in_channels, fast.out_channels, fast.modes)
        copy_weights(fast, ref)
        layer.spectral = ref.to(fast.weight.device, fast.weight.dtype)
    return model
