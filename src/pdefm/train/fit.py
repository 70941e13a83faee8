"""Training one learning rate: the epoch loop (AdamW, cosine schedule, reshuffled batches,
best-validation checkpoint, a resumable state every epoch), the step, convergence and
divergence checks."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pdefm.train import distributed
from pdefm.train.adapt import configure_mode
from pdefm.train.batches import BatchCache, SplitBatches
from pdefm.train.checkpoint import (
    save_checkpoint,
)
from pdefm.train.config import RunConfig
from pdefm.train.evaluate import evaluate_model
from pdefm.train.metrics import relative_l2
from pdefm.train.setup import build, checkpoint_card
from pdefm.train.state import load_state, save_state

DIVERGENCE_FACTOR = 1e4  # loss this many times its first value counts as divergence


CHECK_EVERY_CUDA = 25  # steps between loss checks on a GPU (each one waits for the GPU)


class DivergedError(RuntimeError):
    """Training produced a non-finite or exploding loss."""


# -- one learning rate -------------------------------------------------------------------------
@dataclass
class _Training:
    """What one learning rate trains: ``model`` (evaluated, saved: never wrapped), ``net`` (the
    network that is stepped: ``model`` itself, or in DDP and/or compiled), the optimiser, the
    train and validation batches and the step plan (see ``RunConfig.plan``)."""

    model: torch.nn.Module
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    train_b: SplitBatches
    val_b: SplitBatches
    plan: dict


def train_one_lr(config: RunConfig, lr: float, batches: BatchCache, lr_dir: Path, init) -> dict:
    """Train (or resume, or find finished) the model for one learning rate."""
    torch.manual_seed(config.seed)
    splits = batches.splits
    model, norm, cmap, base = build(config, splits["train"], init)
    trainable = configure_mode(model, config.mode, config.lora_rank)
    model.to(batches.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    train_b = batches("train", cmap, norm)
    state_path = lr_dir / "state.safetensors"
    info = {"epoch": 0, "step": 0, "history": [], "best": math.inf, "status": "running"}
    if state_path.is_file():  # every rank resumes from the state rank 0 wrote
        info = load_state(state_path, model, opt)
    net = distributed.wrap(model, batches.device)  # after loading: DDP broadcasts rank 0's
    net = torch.compile(net) if config.compile else net
    plan = config.plan(len(train_b))
    t = _Training(model, net, opt, train_b, batches("val", cmap, norm), plan)
    card = checkpoint_card(config, splits["train"], norm, base, lr, init)
    _fit(config, t, lr, info, lr_dir, card)
    summary = {
        "status": info["status"],
        "reason": info.get("reason"),
        "best_val_rel_l2": info["best"],
        "epochs": info["epoch"],
        "steps": info["step"],
        "stopped_early": info.get("stopped_early", False),
        "converged": converged(info["history"], plan["epochs"], info.get("stopped_early", False)),
        "trainable_parameters": sum(p.numel() for p in params),
        "trainable_names": len(trainable),
    }
    return {"summary": summary, "history": info["history"], "cmap": cmap, "plan": plan}


def _fit(config: RunConfig, t: _Training, lr: float, info: dict, lr_dir: Path, card) -> None:
    """Epochs until the plan is done or the loss diverges; the best model and the state are
    saved (by rank 0) at each validation epoch."""
    main = distributed.is_main()
    if main:
        lr_dir.mkdir(parents=True, exist_ok=True)
    state_path = lr_dir / "state.safetensors"
    bar = tqdm(
        total=t.plan["steps"],
        initial=info["step"],
        disable=not (config.progress and main),
        desc=f"lr {lr:g}",
        unit="step",
        leave=False,
    )
    try:
        while info["status"] == "running" and info["epoch"] < t.plan["epochs"]:
            if not _epoch(config, t, lr, info, bar):
                continue  # state is saved on validation epochs; a resume replays from there
            if info["history"][-1]["val_rel_l2"] < info["best"]:
                info["best"] = info["history"][-1]["val_rel_l2"]
                info["best_epoch"] = info["epoch"]
                if main:
                    save_checkpoint(lr_dir / "best", t.model, card)
            if _out_of_patience(config, info):
                info["stopped_early"] = True
                info["status"] = "completed"
            if info["epoch"] >= t.plan["epochs"]:
                info["status"] = "completed"
            if main:
                save_state(state_path, t.model, t.opt, info)
    except DivergedError as exc:
        info.update(status="failed", reason=str(exc))
        if main:
            save_state(state_path, t.model, t.opt, info)
    finally:
        bar.close()


def _out_of_patience(config: RunConfig, info: dict) -> bool:
    """Whether ``config.patience`` epochs have passed since the best validation error."""
    if config.patience is None:
        return False
    return info["epoch"] - info.get("best_epoch", 0) >= config.patience


# Validation gain over the budget's second half that counts as still improving. Measured on
# the demo's data, doubling a budget moved the test error by up to 1.5 times that gain (a
# cosine schedule flattens the end of every curve), so half of a 10% tolerance is used.
STILL_IMPROVING = 0.05


def converged(history: list[dict], epochs: int, stopped_early: bool = False) -> bool | None:
    """Whether training had stopped improving by the end of its budget.

    If the validation error falls like a power of the steps, err(t) ~ t^(-alpha), the gain
    over the second half of a budget, 1 - err(T) / err(T/2), is the gain that doubling the
    budget would bring (in practice up to about 1.5 times more). So a run counts as converged
    when its best validation error improved by less than STILL_IMPROVING over the second half
    of its epochs:
    min(val, epoch > E/2) >= (1 - STILL_IMPROVING) min(val, epoch <= E/2), or when patience
    stopped it. False: still improving (the budget limited the result). None: too few
    validations on either side of E/2 to tell."""
    if stopped_early:
        return True
    early = [h["val_rel_l2"] for h in history if h["epoch"] <= epochs / 2]
    late = [h["val_rel_l2"] for h in history if h["epoch"] > epochs / 2]
    if not early or not late:
        return None
    return bool(min(late) >= (1 - STILL_IMPROVING) * min(early))


def _epoch(config: RunConfig, t: _Training, lr: float, info: dict, bar) -> bool:
    """One pass over the training examples in a fresh order; validation every
    ``plan["validate_every"]`` epochs and at the last one. Returns whether it validated.

    Every rank draws the same order and steps on its share of each global batch."""
    plan, n = t.plan, len(t.train_b)
    order = torch.randperm(n, generator=_epoch_generator(config.seed, info["epoch"]))
    order = order.to(t.train_b.index_device)  # once per epoch, not once per batch
    t.net.train()
    losses = _Losses(1 if t.train_b.device.type == "cpu" else CHECK_EVERY_CUDA)
    for i in range(0, n, plan["batch"]):
        if info["step"] >= plan["steps"]:
            break
        for group in t.opt.param_groups:
            group["lr"] = _cosine(lr, info["step"], plan["steps"])
        batch = order[i : i + plan["batch"]]
        share = distributed.shard(batch)
        x, y, _ = t.train_b.get(share)
        weight = len(share) * distributed.world_size() / len(batch)
        losses.add(_step(t.net, t.opt, x, y, config, weight))
        info["step"] += 1
        bar.update(1)
    losses.flush()
    info["epoch"] += 1
    if info["epoch"] % plan["validate_every"] and info["epoch"] < plan["epochs"]:
        return False
    val = evaluate_model(t.model, t.val_b)
    info["history"].append(
        {
            "epoch": info["epoch"],
            "step": info["step"],
            "train_loss": float(np.mean(losses.values)) if losses.values else None,
            "val_rel_l2": val["rel_l2"],
            "lr": t.opt.param_groups[0]["lr"],
        }
    )
    bar.set_postfix(loss=f"{info['history'][-1]['train_loss']:.3g}", val=f"{val['rel_l2']:.3g}")
    return True


def _step(net, opt, x, y, config: RunConfig, weight: float = 1.0) -> torch.Tensor:
    """One optimiser step on this rank's share (x, y) of a normalised global batch; returns
    the loss, detached, on the device (reading it would wait for the GPU).

    The loss is L(net(x), y) * weight, L the batch mean of the per-sample MSE or relative L2
    (``config.loss``), with weight = share size * world size / global batch size (1 in one
    process), so that DDP's mean over ranks of the gradients is the gradient of the global
    batch's loss even when the shares differ in size. With ``config.grad_clip`` = C the
    gradient g of the trained parameters is scaled to g * min(1, C / ||g||_2) first."""
    with _autocast(x.device, config.bf16):
        pred = net(x)
    if len(x):
        if config.loss == "rel_l2":  # scale-free: ||pred - y|| / ||y|| is the same in any units
            loss = relative_l2(pred.float(), y).mean()
        else:
            loss = torch.nn.functional.mse_loss(pred.float(), y)
        loss = loss * weight if weight != 1 else loss
    else:
        loss = pred.float().sum()  # 0: an empty share must still join DDP's all-reduce
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:  # after backward: under DDP the gradients are all-reduced
        params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    opt.step()
    return loss.detach()


class _Losses:
    """The training losses of an epoch, global-batch values, checked for divergence.

    Step losses stay on the device and are read (summed over ranks: every rank then takes the
    same decision) every ``every`` steps and by ``flush``; on the CPU every step, as reading a
    CPU tensor costs nothing."""

    def __init__(self, every: int) -> None:
        self.every, self.values = every, []
        self._pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        self._pending.append(loss)
        if len(self._pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Read the pending losses and raise DivergedError if one of them diverged."""
        if not self._pending:
            return
        new = torch.stack(self._pending).float()
        self._pending = []
        if distributed.active():  # each rank's loss is weighted: their sum is world x global
            new = distributed.all_reduce_sum(new) / distributed.world_size()
        first = len(self.values)
        self.values.extend(new.tolist())
        _check_loss(self.values, first)


def _check_loss(losses: list[float], first: int = 0) -> None:
    """DivergedError at the first of ``losses[first:]`` that is not finite or exceeds
    DIVERGENCE_FACTOR times the epoch's first loss."""
    for k in range(first, len(losses)):
        value = losses[k]
        if not math.isfinite(value):
            raise DivergedError(
                f"loss became {value} at step {k + 1} of the epoch; lower the learning rate"
            )
        if value > DIVERGENCE_FACTOR * max(losses[0], 1e-12):
            raise DivergedError(
                f"loss grew from {losses[0]:.3g} to {value:.3g}; lower the learning rate"
            )


def _cosine(lr: float, step: int, total: int) -> float:
    """lr * (1 + cos(pi t / T)) / 2."""
    return lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data order of an epoch is a function of (seed, epoch): resume needs no order state."""
    digest = hashlib.sha256(f"pdefm-order:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
