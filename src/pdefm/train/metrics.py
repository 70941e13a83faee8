"""Metrics: the study's mean per-sample relative L2 error, MSE, and the physics residual of
predictions (using the families' operators from ``pdefm.pdes``)."""

from __future__ import annotations

import numpy as np
import torch

from pdefm import catalogue
from pdefm.data.card import DatasetCard
from pdefm.pdes import Grid, get_family


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||pred - target|| / ||target|| per sample: (B, C, H, W) x 2 -> (B,)."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(1e-30)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: (B,)."""
    return (pred - target).square().flatten(1).mean(dim=1)


def physics_residual(
    pred: torch.Tensor,
    source: torch.Tensor,
    family: str,
    family_config: dict,
    coefficients: dict[str, np.ndarray],
) -> torch.Tensor:
    """||L u_pred - f|| / ||f|| per sample, in float64 with the family's own operator
    (spectral; 5-point finite volumes for darcy).

    pred, source: (B, n, n); coefficients: name -> (B,) arrays as stored in the dataset, plus
    any coefficient field (B, n, n) by channel name. The operator is ``family`` with the
    constants ``family_config`` (as a card records them).
    """
    pde = get_family(family, **family_config)
    coeffs = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in coefficients.items()}
    u, f = pred.detach().double().cpu(), source.detach().double().cpu()
    if pde.remove_mean:
        u = u - u.mean(dim=(-2, -1), keepdim=True)  # L does not see the mean of u
    return pde.relative_residual(u, f, coeffs, Grid(u.shape[-1]))


def dataset_residual(
    pred: torch.Tensor, source: torch.Tensor, card: DatasetCard, vectors: dict[str, np.ndarray]
) -> torch.Tensor:
    """``physics_residual`` for a batch of any pdefm dataset: per member family for a mixture
    (``vectors["member"]``), NaN for a family pdefm has no operator for (imported data).

    pred, source (B, n, n); vectors: the split's per-sample arrays at the batch's rows."""
    prefix = "coefficients/"
    coeffs = {k[len(prefix) :]: v for k, v in vectors.items() if k.startswith(prefix)}
    out = torch.full((len(pred),), float("nan"), dtype=torch.float64)
    if not card.is_mixture:
        if catalogue.is_family(card.family):
            out = physics_residual(pred, source, card.family, card.family_config, coeffs)
        return out
    members = card.members
    for k in np.unique(vectors["member"]):
        at = np.flatnonzero(vectors["member"] == k)
        member = members[k]
        if not catalogue.is_family(member.family):
            continue
        # a mixture stores every member's coefficients, NaN for the samples of the others
        own = {n: v[at] for n, v in coeffs.items() if np.isfinite(v[at]).all()}
        out[torch.as_tensor(at)] = physics_residual(
            pred[at], source[at], member.family, member.family_config, own
        )
    return out
