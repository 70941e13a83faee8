"""Input normalisation of the study, from a dataset card's train statistics, per PDE family.

Each example's source f is divided by s = ||f|| / median_train ||f|| (||a|| = sqrt(mean(a^2)));
the PDEs are linear, so the target u is divided by the same s and the prediction multiplied
back: in original units nothing changes, but every example reaches the network at a common
scale. Each constant coefficient channel is divided by its train-split median |value|.

The medians are kept per family (a mixed pre-training set has one set per member family, see
``pdefm.data.mixture``): each example is scaled with its own family's statistics. The same
statistics (the pre-training set's, for a fine-tuned model) are applied to train, val and test,
and are stored in the checkpoint card. A family the statistics do not know yet (fine-tuning on a
new family or on imported data) is added from that dataset's own train statistics, which are
computed from inputs only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pdefm.data.card import DatasetCard
from pdefm.errors import PdefmError


@dataclass(frozen=True)
class FamilyScale:
    """One family's medians: ||f|| and |value| of each coefficient channel (channels[1:])."""

    source_norm_median: float
    channel_scale: tuple[float, ...]


@dataclass(frozen=True)
class Normaliser:
    """Per-example source scaling plus per-channel coefficient scaling, per family."""

    channels: tuple[str, ...]  # input channel names, source first
    families: tuple[tuple[str, FamilyScale], ...]  # (family, its scales), in first-seen order

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_card(cls, card: DatasetCard) -> Normaliser:
        """The statistics of a dataset card (a mixture's per family, else its family's)."""
        names = tuple(card.input_channels)
        stats = card.normalisation
        per_family = stats.get("families") or {card.family: stats}
        return cls(names, tuple((f, _scales(s, names)) for f, s in per_family.items()))

    @classmethod
    def from_dict(cls, d: dict, family: str | None = None) -> Normaliser:
        """Inverse of ``to_dict``; a single-family dict of pdefm 0.1 needs its ``family``."""
        if "families" not in d:
            scale = FamilyScale(float(d["source_norm_median"]), tuple(d["channel_scale"]))
            return cls(tuple(d["channels"]), ((family or "unknown", scale),))
        families = tuple(
            (f, FamilyScale(float(s["source_norm_median"]), tuple(s["channel_scale"])))
            for f, s in d["families"].items()
        )
        return cls(tuple(d["channels"]), families)

    def to_dict(self) -> dict:
        return {
            "channels": list(self.channels),
            "families": {
                f: {
                    "source_norm_median": s.source_norm_median,
                    "channel_scale": list(s.channel_scale),
                }
                for f, s in self.families
            },
        }

    @property
    def family_names(self) -> list[str]:
        return [f for f, _ in self.families]

    def with_dataset(self, card: DatasetCard) -> Normaliser:
        """These statistics plus those of the families of ``card`` they lack, on these
        channels (a channel the dataset lacks gets scale 1: it is 0 or a mask there)."""
        other = Normaliser.from_card(card)
        known = set(self.family_names)
        added = tuple(
            (f, other._remap(s, self.channels)) for f, s in other.families if f not in known
        )
        return Normaliser(self.channels, self.families + added)

    def with_channels(self, new: list[str], card: DatasetCard) -> Normaliser:
        """These statistics with channels ``new`` appended (fresh lift columns): their scales
        come from ``card`` for its families and are 1 for the others."""
        other = Normaliser.from_card(card)
        extra = {f: other._remap(s, ("source", *new)).channel_scale for f, s in other.families}
        ones = (1.0,) * len(new)
        families = tuple(
            (f, FamilyScale(s.source_norm_median, s.channel_scale + extra.get(f, ones)))
            for f, s in self.families
        )
        return Normaliser((*self.channels, *new), families)

    def _remap(self, scale: FamilyScale, channels: tuple[str, ...]) -> FamilyScale:
        by_name = dict(zip(self.channels[1:], scale.channel_scale, strict=True))
        scales = tuple(by_name.get(c, 1.0) for c in channels[1:])
        return FamilyScale(scale.source_norm_median, scales)

    # -- application ---------------------------------------------------------------------------
    def scale_of(self, family: str) -> FamilyScale:
        for name, scale in self.families:
            if name == family:
                return scale
        raise PdefmError(
            f"no normalisation statistics for family {family!r} (known: "
            f"{', '.join(self.family_names)}); pass one of those families"
        )

    def normalise(
        self, inputs: torch.Tensor, target: torch.Tensor | None, families: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(inputs / scales, target / s, s) for a batch whose example b is of ``families[b]``.

        inputs (B, C, H, W) in ``self.channels`` order, target (B, 1, H, W) or None;
        s = ||f|| / median_family ||f|| has shape (B, 1, 1, 1)."""
        medians, coeff = self._tables(families, inputs)
        norm = inputs[:, :1].square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
        s = (norm / medians.reshape(-1, 1, 1, 1)).clamp_min(1e-12)
        x = torch.cat([inputs[:, :1] / s, inputs[:, 1:] / coeff[:, :, None, None]], 1)
        return x, (None if target is None else target / s), s

    def _tables(self, families: np.ndarray, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-example medians (B,) and coefficient scales (B, C - 1)."""
        names, inverse = np.unique(np.asarray(families), return_inverse=True)
        scales = [self.scale_of(str(f)) for f in names]
        med = torch.tensor([s.source_norm_median for s in scales], dtype=like.dtype)
        coeff = torch.tensor([s.channel_scale for s in scales], dtype=like.dtype)
        coeff = coeff.reshape(len(scales), len(self.channels) - 1)
        idx = torch.as_tensor(inverse.reshape(-1))
        return med[idx].to(like.device), coeff[idx].to(like.device)


def _scales(stats: dict, names: tuple[str, ...]) -> FamilyScale:
    channel = tuple(_safe(stats["channels"][name]["median_abs"]) for name in names[1:])
    return FamilyScale(_safe(stats["source_norm"]["median"]), channel)


def _safe(value: float) -> float:
    """A scale of 0 (a channel that is always 0) would divide by zero; leave it unscaled."""
    return float(value) if value > 0 else 1.0
