"""The Fourier neural operator (FNO) of the study, in 2-D.

    h_0     = P u                      lift, 1x1 conv, (B, C_in, H, W) -> (B, w, H, W)
    h_{l+1} = GELU(K_l h_l + S_l h_l)  Fourier layer l = 0..L-1 (no GELU after the last)
    out     = Q_2 GELU(Q_1 h_L)        head, 1x1 convs w -> 2w -> C_out

K_l is a ``SpectralConv2d`` (m x m modes in both corner blocks), S_l a 1x1 conv with bias.
Submodule names are part of the interface: parameter names start with ``lift.``,
``layers.{l}.spectral.``, ``layers.{l}.skip.`` and ``head.``; training selects adaptation
modes by these prefixes.
"""

from __future__ import annotations

import torch
from torch import nn

from pdefm.errors import PdefmError
from pdefm.models.spectral import SpectralConv2d, check_grid


class Pointwise(nn.Conv2d):
    """1x1 convolution y_o = sum_i W_oi x_i + b_o on (B, C_in, H, W) -> (B, C_out, H, W).

    A ``nn.Conv2d`` (same parameters, same state-dict keys), computed as one batched matmul
    with the bias fused (``baddbmm``): on CPU this is faster than the generic 1x1 convolution.
    With LoRA enabled the weight is W + scale * lora_b @ lora_a.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)
        self.lora_scale = 0.0

    def matrix(self) -> torch.Tensor:
        """The (C_out, C_in) weight matrix, LoRA delta included if enabled."""
        weight = self.weight.view(self.out_channels, self.in_channels)
        if hasattr(self, "lora_a"):
            weight = weight + self.lora_scale * (self.lora_b @ self.lora_a)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        weight = self.matrix().unsqueeze(0).expand(batch, -1, -1)
        bias = self.bias.view(1, -1, 1).expand(batch, -1, 1)
        out = torch.baddbmm(bias, weight, x.reshape(batch, self.in_channels, height * width))
        return out.view(batch, self.out_channels, height, width)


class FourierLayer(nn.Module):
    """K h + S h: spectral convolution plus 1x1 skip, (B, w, H, W) -> (B, w, H, W)."""

    def __init__(self, width: int, modes: int) -> None:
        super().__init__()
        self.spectral = SpectralConv2d(width, width, modes)
        self.skip = Pointwise(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectral(x) + self.skip(x)


class FNO2d(nn.Module):
    """FNO: lift, ``n_layers`` Fourier layers, two-layer head (see module docstring).

    Input (B, in_channels, H, W) float, any H, W >= 2 * modes (resolution transfer);
    output (B, out_channels, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        modes: int,
        n_layers: int = 4,
        head_width: int | None = None,
    ) -> None:
        super().__init__()
        head_width = 2 * width if head_width is None else head_width
        _check_sizes(
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            modes=modes,
            n_layers=n_layers,
            head_width=head_width,
        )
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        # the resolved constructor arguments; create_model copies them into model.arch
        self.hparams = {
            "width": width,
            "modes": modes,
            "n_layers": n_layers,
            "head_width": head_width,
        }
        self.lift = Pointwise(in_channels, width)
        self.layers = nn.ModuleList(FourierLayer(width, modes) for _ in range(n_layers))
        self.head = nn.Sequential(
            Pointwise(width, head_width), nn.GELU(), Pointwise(head_width, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        self._check_input(x)
        h = self.lift(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:  # the reference FNO has no activation after the last Fourier layer
                h = torch.nn.functional.gelu(h)
        return self.head(h)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise PdefmError(
                f"model input has shape {tuple(x.shape)}; expected (batch, {self.in_channels}, "
                "height, width)"
            )
        check_grid(x.shape[-2], x.shape[-1], self.modes)


def _check_sizes(**sizes: object) -> None:
    """One-line error for a size that is not a positive integer."""
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PdefmError(f"model {key} must be a positive integer, got {value!r}")
