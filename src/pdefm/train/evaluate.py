"""Evaluation: a model's relative L2 error, MSE and (optionally) physics residual on one split,
in original units (one path for validation, test and zero-shot)."""

from __future__ import annotations

import numpy as np
import torch

from pdefm.train import distributed
from pdefm.train.batches import SplitBatches
from pdefm.train.metrics import mse, relative_l2

EVAL_BATCH = 64


# -- evaluation -------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_model(model, batches: SplitBatches, residual: bool = False) -> dict:
    """Mean per-sample relative L2 (the study's metric), MSE and, optionally, the physics
    residual ||L u_pred - f|| / ||f|| of the predictions, in original units (the residual is
    left out for a family pdefm has no operator for). Under torchrun each rank evaluates its
    share of the samples and the sums are reduced: every rank gets the whole split's means."""
    model.eval()
    rel, err, res = [], [], []
    share = distributed.shard(np.arange(len(batches)))
    for a in range(0, len(share), EVAL_BATCH):
        positions = share[a : a + EVAL_BATCH]
        x, y, s = batches.get(positions)
        pred, y = model(x).float() * s, y * s
        rel.append(relative_l2(pred, y))
        err.append(mse(pred, y))
        if residual:
            res.append(batches.residual(pred[:, 0], x[:, 0] * s[:, 0], positions))
    out = {"rel_l2": _mean(rel), "mse": _mean(err), "n": len(batches)}
    value = _mean(res, skip_nan=True) if residual else None
    if value is not None:
        out["residual"] = value
    return out


def _mean(parts: list[torch.Tensor], skip_nan: bool = False) -> float | None:
    """Mean of the concatenated per-sample values over every rank (NaNs left out with
    ``skip_nan``; None when nothing is left)."""
    values = torch.cat(parts).cpu() if parts else torch.zeros(0)
    if not distributed.active():
        if skip_nan:
            return None if values.isnan().all() else float(values.nanmean())
        return float(values.mean())
    keep = ~values.isnan() if skip_nan else torch.ones_like(values, dtype=torch.bool)
    total = torch.stack([values[keep].double().sum(), keep.sum().double()])
    total = distributed.all_reduce_sum(total)
    return None if total[1] == 0 else float(total[0] / total[1])
