"""LoRA: low-rank trainable deltas on a frozen FNO.

Every weight matrix M (rows x cols) of the lift, the skips, the head's convs and the spectral
layers becomes M + (alpha / r) B A with A (r, cols) random (uniform, bound 1/sqrt(cols)) and
B (rows, r) zero, so the model is unchanged until B moves. The matrices:

- 1x1 convs: the (C_out, C_in) weight; names ``<module>.lora_a`` / ``<module>.lora_b``;
- spectral layers: the weight (2, C_in, C_out, m, m, 2) seen as a (C_in, 2 C_out m m 2) matrix
  (each input channel's whole transfer function, both corners, is one row), per layer;
  names ``layers.{l}.spectral.lora_a`` / ``lora_b``.

``add_lora`` freezes every existing parameter. The model's ``arch`` records the rank and alpha,
so ``create_model(**arch)`` rebuilds a model with the same parameter names and shapes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pdefm.errors import PdefmError
from pdefm.models.fno import Pointwise
from pdefm.models.spectral import SpectralConv2d


def add_lora(model: nn.Module, rank: int, alpha: float | None = None) -> list[str]:
    """Freeze ``model`` and add rank-``rank`` deltas (scale alpha / rank, alpha defaults to
    rank); return the names of the new trainable parameters (all contain ``lora_``)."""
    _check_rank(rank, alpha)
    if lora_parameters(model):
        raise PdefmError("model already has LoRA parameters; add LoRA once per model")
    alpha = float(rank if alpha is None else alpha)
    for param in model.parameters():
        param.requires_grad_(False)
    names = []
    for name, module in model.named_modules():
        shape = _matrix_shape(module)
        if shape is not None:
            _attach(module, shape, rank, alpha / rank)
            names += [f"{name}.lora_a", f"{name}.lora_b"]
    if isinstance(getattr(model, "arch", None), dict):
        model.arch["lora"] = {"rank": rank, "alpha": alpha}
    return names


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters of ``model`` (empty if it has none)."""
    return [param for name, param in model.named_parameters() if "lora_" in name]


def _matrix_shape(module: nn.Module) -> tuple[int, int] | None:
    """(rows, cols) of the matrix a module's LoRA delta is added to; None if it gets none."""
    if isinstance(module, Pointwise):
        return module.out_channels, module.in_channels
    if isinstance(module, SpectralConv2d):
        m = module.modes
        return module.in_channels, 2 * module.out_channels * m * m * 2
    return None


def _attach(module: nn.Module, shape: tuple[int, int], rank: int, scale: float) -> None:
    rows, cols = shape
    like = next(module.parameters())
    bound = 1.0 / math.sqrt(cols)
    a = torch.empty(rank, cols, dtype=like.dtype, device=like.device).uniform_(-bound, bound)
    b = torch.zeros(rows, rank, dtype=like.dtype, device=like.device)
    module.register_parameter("lora_a", nn.Parameter(a))
    module.register_parameter("lora_b", nn.Parameter(b))
    module.lora_scale = scale


def _check_rank(rank: int, alpha: float | None) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise PdefmError(f"LoRA rank must be a positive integer, got {rank!r}")
    if alpha is not None and not (isinstance(alpha, int | float) and alpha > 0):
        raise PdefmError(f"LoRA alpha must be a positive number, got {alpha!r}")
