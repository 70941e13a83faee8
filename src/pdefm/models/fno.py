"""The Fourier neural operator (FNO) of the study, in 2-D.

    h_0     = pad(P u)                 lift, 1x1 conv, (B, C_in, H, W) -> (B, w, H', W')
    h_{l+1} = GELU(K_l h_l + S_l h_l)  Fourier layer l = 0..L-1 (no GELU after the last)
    out     = Q_2 GELU(Q_1 crop(h_L))  head, 1x1 convs w -> 2w -> C_out, on (B, w, H, W)

K_l is a ``SpectralConv2d`` (m x m modes in both corner blocks), S_l a 1x1 conv with bias.
Submodule names are part of the interface: parameter names start with ``lift.``,
``layers.{l}.spectral.``, ``layers.{l}.skip.`` and ``head.``; training selects adaptation
modes by these prefixes.

Domain padding (``padding`` = p in [0, 1], default 0: none, H' = H, W' = W). The Fourier
layers treat their input as one period of a periodic field, which data with Dirichlet or
Neumann boundaries are not. With p > 0 the lifted features get round(p H) zero rows and
round(p W) zero columns after the last ones (H' = H + round(p H), W' = W + round(p W)) and
are cropped back to H x W before the head, as in Li et al.'s FNO code and neuraloperator's
``domain_padding``: the periodic wrap then joins each boundary to the padding rather than to
the opposite boundary. The counts come from the input at each call, so a padded model stays
resolution-independent; padding adds no parameters.
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
    output (B, out_channels, H, W). ``padding`` is the domain padding fraction p (module
    docstring); it is recorded in ``hparams`` (and so in ``arch``) only when p > 0, so an
    unpadded model's arch is that of a model built before padding existed.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        modes: int,
        n_layers: int = 4,
        head_width: int | None = None,
        padding: float = 0.0,
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
        self.padding = 0.0
        set_padding(self, padding)
        self.lift = Pointwise(in_channels, width)
        self.layers = nn.ModuleList(FourierLayer(width, modes) for _ in range(n_layers))
        self.head = nn.Sequential(
            Pointwise(width, head_width), nn.GELU(), Pointwise(head_width, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        self._check_input(x)
        height, width = x.shape[-2:]
        h = pad_high(self.lift(x), self.padding)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:  # the reference FNO has no activation after the last Fourier layer
                h = torch.nn.functional.gelu(h)
        return self.head(h[..., :height, :width])

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise PdefmError(
                f"model input has shape {tuple(x.shape)}; expected (batch, {self.in_channels}, "
                "height, width)"
            )
        check_grid(x.shape[-2], x.shape[-1], self.modes)


def padding_cells(n: int, fraction: float) -> int:
    """Cells of domain padding on an axis of ``n`` points: round(fraction * n)."""
    return round(fraction * n)


def pad_high(h: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + round(p H), W + round(p W)), zeros after the last row and
    column; ``h`` itself (no copy) when both counts are 0, so p = 0 is the unpadded model."""
    rows, cols = padding_cells(h.shape[-2], fraction), padding_cells(h.shape[-1], fraction)
    if rows == 0 and cols == 0:
        return h
    return torch.nn.functional.pad(h, (0, cols, 0, rows))


def check_padding(fraction: object) -> float:
    """``fraction`` as a float in [0, 1], else a one-line PdefmError."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0.0 <= fraction <= 1.0  # also refuses NaN
    ):
        raise PdefmError(
            f"model padding must be a fraction of the grid in [0, 1], got {fraction!r}; use "
            "e.g. 0.25, or 0 for none"
        )
    return float(fraction)


def set_padding(model: FNO2d, fraction: float) -> FNO2d:
    """Give ``model`` the domain padding ``fraction`` (in [0, 1]; 0 is none), in place.

    Padding has no weights, so a trained model can take any padding (fine-tuning a periodic
    checkpoint on Dirichlet data pads it). ``hparams`` and, if set, ``arch`` follow, with the
    key left out at 0 (the arch of a model built without padding), so a checkpoint of the
    result rebuilds it."""
    model.padding = check_padding(fraction)
    for args in (model.hparams, getattr(model, "arch", None)):
        if not isinstance(args, dict):
            continue
        if model.padding:
            args["padding"] = model.padding
        else:
            args.pop("padding", None)
    return model


def _check_sizes(**sizes: object) -> None:
    """One-line error for a size that is not a positive integer."""
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PdefmError(f"model {key} must be a positive integer, got {value!r}")
