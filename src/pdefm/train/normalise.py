"""Input normalisation of the study, from a dataset card's train statistics.

Each example's source f is divided by s = ||f|| / median_train ||f|| (||a|| = sqrt(mean(a^2)));
the PDEs are linear, so the target u is divided by the same s and the prediction multiplied
back: in original units nothing changes, but every example reaches the network at a common
scale. Each constant coefficient channel is divided by its train-split median |value|. The
same statistics (the pre-training set's, for a fine-tuned model) are applied to train, val and
test, and are stored in the checkpoint card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Normaliser:
    """Per-example source scaling plus per-channel coefficient scaling (see module doc)."""

    channels: tuple[str, ...]  # input channel names, source first
    source_norm_median: float
    channel_scale: tuple[float, ...]  # one per coefficient channel (channels[1:])

    @classmethod
    def from_card(cls, card: dict) -> Normaliser:
        stats = card["normalisation"]
        names = tuple(card["channels"]["inputs"])
        scale = tuple(_safe(stats["channels"][name]["median_abs"]) for name in names[1:])
        return cls(names, _safe(stats["source_norm"]["median"]), scale)

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        return cls(tuple(d["channels"]), float(d["source_norm_median"]), tuple(d["channel_scale"]))

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def example_scale(self, inputs: torch.Tensor) -> torch.Tensor:
        """s = ||f|| / median for each example: (B, C, H, W) -> (B, 1, 1, 1)."""
        norm = inputs[:, :1].square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
        return (norm / self.source_norm_median).clamp_min(1e-12)

    def inputs(self, inputs: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Normalised inputs: source / s, coefficient channels / their scale; (B, C, H, W)."""
        coeff = torch.tensor(self.channel_scale, dtype=inputs.dtype, device=inputs.device)
        return torch.cat([inputs[:, :1] / scale, inputs[:, 1:] / coeff.reshape(1, -1, 1, 1)], 1)


def _safe(value: float) -> float:
    """A scale of 0 (a channel that is always 0) would divide by zero; leave it unscaled."""
    return float(value) if value > 0 else 1.0
