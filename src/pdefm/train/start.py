"""Step 0 of a fine-tuning run (protocol 2): the starting weights are a candidate answer.

A pre-trained model may already be as good on the new task as fine-tuning can make it with a
few examples (near its pre-training range, or when every rate over-fits). Protocol 1 always
returned a fine-tuned model and, when the smallest rate won, grew the grid downwards without
end, chasing the start. Protocol 2 scores the start on validation before any step: a run whose
rates all end above that score returns the start (``start_kept``), and a rate that lost to it
is not followed downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pdefm.train.batches import BatchCache
from pdefm.train.checkpoint import ChannelMap
from pdefm.train.config import RunConfig
from pdefm.train.evaluate import evaluate_model
from pdefm.train.normalise import Normaliser
from pdefm.train.setup import build, checkpoint_card


@dataclass(frozen=True)
class Start:
    """The starting weights of a fine-tuning run, as the run would train them (padding and
    new channel columns applied: neither changes the function), with their validation
    relative L2 error ``val`` and the card a checkpoint of them would carry."""

    val: float
    model: torch.nn.Module
    cmap: ChannelMap
    norm: Normaliser
    card: dict

    def beats(self, trained: dict) -> bool:
        """Whether no trained rate ({lr: LrResult}, completed ones) has a best validation
        error below the start's (ties keep the start: it costs no steps)."""
        return all(r.best_val_rel_l2 >= self.val for r in trained.values())


def scores_start(config: RunConfig) -> bool:
    """Whether ``config`` scores its start: protocol 2 or later, from a checkpoint, training."""
    return config.protocol >= 2 and config.init != "scratch" and config.mode != "zero-shot"


def score_start(config: RunConfig, batches: BatchCache, init) -> Start | None:
    """The start of a run that scores it (``scores_start``), evaluated on validation in the
    units every rate is scored in; None otherwise. Deterministic, so a resumed run scores the
    same start."""
    if not scores_start(config):
        return None
    train_ds = batches.splits["train"]
    model, norm, cmap, base = build(config, train_ds, init)
    model.to(batches.device)
    val = evaluate_model(model, batches("val", cmap, norm))["rel_l2"]
    card = checkpoint_card(config, train_ds, norm, base, None, init)
    return Start(val, model, cmap, norm, card)
