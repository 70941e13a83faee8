"""Adaptation modes: which parameters a run trains.

- ``full``: everything;
- ``head``: only the two-layer head (``head.*``);
- ``frozen-spectral``: everything but the Fourier weights (``*.spectral.*``);
- ``lora``: low-rank deltas on the lift, skips, head and spectral weights; the rest frozen;
- ``zero-shot``: nothing (evaluation only).

Selection is by parameter name, which the FNO's module names fix (``lift``, ``layers.i.spectral``,
``layers.i.skip``, ``head``).
"""

from __future__ import annotations

import torch

from pdefm.errors import PdefmError


def configure_mode(model: torch.nn.Module, mode: str, lora_rank: int = 4) -> list[str]:
    """Set ``requires_grad`` for ``mode`` (adding LoRA parameters if asked); return the names
    of the trainable parameters."""
    if mode == "lora":
        from pdefm.models import add_lora

        if not any("lora_" in name for name, _ in model.named_parameters()):
            add_lora(model, lora_rank)
    rule = _RULES.get(mode)
    if rule is None:
        raise PdefmError(f"unknown mode {mode!r}; choose one of {', '.join(_RULES)}")
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(rule(name))
        if param.requires_grad:
            trainable.append(name)
    return trainable


_RULES = {
    "full": lambda name: True,
    "head": lambda name: name.startswith("head."),
    "frozen-spectral": lambda name: ".spectral." not in name,
    "lora": lambda name: "lora_" in name,
    "zero-shot": lambda name: False,
}
