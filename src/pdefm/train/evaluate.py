"""Evaluation: a model's relative L2 error, MSE and (optionally) physics residual on one split,
in original units (``evaluate_model``: validation during training), and a model's final
metrics on a run's data (``evaluate_final``: the selected model of a training run, and the
checkpoint as it is for zero-shot and `pdefm evaluate`, ``evaluate_checkpoint``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pdefm.data.dataset import PDEDataset
from pdefm.train import distributed
from pdefm.train.batches import BatchCache, SplitBatches
from pdefm.train.checkpoint import ChannelMap, map_channels
from pdefm.train.metrics import mse, relative_l2
from pdefm.train.normalise import Normaliser
from pdefm.train.setup import InitCheckpoint, check_outputs

EVAL_BATCH = 64


# -- a run's final metrics ----------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """A model's final metrics on a run's data: the channel mapping (model channel -> data
    channel, ``ChannelMap.describe``), the validation and test metrics (``evaluate_model``;
    the test ones with the physics residual) and the model's total parameter count."""

    channels: dict[str, str]
    val: dict
    test: dict
    total_parameters: int


def evaluate_checkpoint(
    init: InitCheckpoint, splits: dict[str, PDEDataset], device: torch.device
) -> Evaluation:
    """Zero-shot: the checkpoint ``init`` as it is on the validation and test splits, its
    channels mapped onto the data's by name and the data's family statistics added to its
    normaliser (those of a family it was trained on are kept)."""
    test = splits["test"]
    check_outputs(init.card.output_channels, test.output_channels, init.path)
    cmap = map_channels(init.card.input_channels, test.input_channels, f"checkpoint {init.path}")
    norm = init.norm.with_dataset(test.card)
    return evaluate_final(init.model.to(device), cmap, norm, BatchCache(splits, device))


def evaluate_final(
    model: torch.nn.Module, cmap: ChannelMap, norm: Normaliser, batches: BatchCache
) -> Evaluation:
    """``model``'s final metrics on the validation and test splits of ``batches``."""
    return Evaluation(
        channels=cmap.describe(),
        val=evaluate_model(model, batches("val", cmap, norm)),
        test=evaluate_model(model, batches("test", cmap, norm), residual=True),
        total_parameters=sum(p.numel() for p in model.parameters()),
    )


# -- one split ------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_model(model, batches: SplitBatches, residual: bool = False) -> dict:
    """Mean per-sample relative L2 (the study's metric), MSE and, optionally, the physics
    residual ||L u_pred - f|| / ||f|| of the predictions, in original units (the residual is
    left out for a family pdefm has no operator for). Under torchrun each rank evaluates its
    share of the samples and the sums are reduced: every rank gets the whole split's means."""
    model.eval()
    rel, err, res, per = [], [], [], []
    share = distributed.shard(np.arange(len(batches)))
    for a in range(0, len(share), EVAL_BATCH):
        positions = share[a : a + EVAL_BATCH]
        x, y, s = batches.get(positions)
        pred, y = model(x).float() * s, y * s
        rel.append(relative_l2(pred, y))
        err.append(mse(pred, y))
        if y.shape[1] > 1:  # several outputs: each one's error too
            per.append(torch.stack([relative_l2(pred[:, k], y[:, k]) for k in range(y.shape[1])]))
        if residual:
            res.append(batches.residual(pred[:, 0], x[:, 0] * s[:, 0], positions))
    out = {"rel_l2": _mean(rel), "mse": _mean(err), "n": len(batches)}
    if per:
        names = batches.ds.output_channels
        out["per_output"] = {
            name: _mean([p[k] for p in per]) for k, name in enumerate(names)
        }  # fmt: skip
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
