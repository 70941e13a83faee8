"""Training one learning rate: the epoch loop (AdamW, cosine schedule, reshuffled batches,
best-validation checkpoint, a resumable state every validation epoch), the step, convergence
and divergence checks.

``train_one_lr`` reads the run config once and hands the loop only what it uses: the step
plan (``FitPlan``), the step rule (``StepRule``), the state it advances (``FitState``, saved
with the weights) and the model, optimiser and batches (``_Training``). It returns an
``LrResult``."""

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
from pdefm.train.checkpoint import ChannelMap, save_checkpoint
from pdefm.train.config import FitPlan, RunConfig, StepRule
from pdefm.train.cost import training_flops
from pdefm.train.evaluate import evaluate_model
from pdefm.train.metrics import relative_l2
from pdefm.train.normalise import Normaliser
from pdefm.train.setup import build, checkpoint_card
from pdefm.train.state import (
    STATE,
    FitState,
    SegmentClock,
    converged,
    load_state,
    save_state,
)

DIVERGENCE_FACTOR = 1e4  # loss this many times its first value counts as divergence
COST_FIELDS = ("wall_s", "cpu_s", "samples", "evaluated", "segments")  # of a FitState
CHECK_EVERY_CUDA = 25  # steps between loss checks on a GPU (each one waits for the GPU)


class DivergedError(RuntimeError):
    """Training produced a non-finite or exploding loss."""


@dataclass(frozen=True)
class LrResult:
    """What training one learning rate found: the summary fields (the run record's "per_lr"
    entry, ``summary_json``), the validation history, the channel map and the step plan."""

    status: str
    reason: str | None
    best_val_rel_l2: float
    epochs: int
    steps: int
    stopped_early: bool
    converged: bool | None
    trainable_parameters: int
    trainable_names: int
    history: list[dict]
    cmap: ChannelMap
    plan: FitPlan
    cost: dict  # wall_s, cpu_s, samples, evaluated, segments (summed over processes), flops
    fresh: tuple[float, float] = (0.0, 0.0)  # wall and CPU seconds this process added

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def summary_json(self) -> dict:
        """The summary as the run record keeps it under "per_lr" (keys in this order)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "best_val_rel_l2": self.best_val_rel_l2,
            "epochs": self.epochs,
            "steps": self.steps,
            "stopped_early": self.stopped_early,
            "converged": self.converged,
            "trainable_parameters": self.trainable_parameters,
            "trainable_names": self.trainable_names,
            **self.cost,
        }


# -- one learning rate -------------------------------------------------------------------------
@dataclass
class _Training:
    """What one learning rate trains and how: ``model`` (evaluated, saved: never wrapped),
    ``net`` (the network that is stepped: ``model`` itself, or in DDP and/or compiled), the
    optimiser, the train and validation batches, the step plan, the peak learning rate, the
    step rule, the data order's seed and the patience (None: none)."""

    model: torch.nn.Module
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    train_b: SplitBatches
    val_b: SplitBatches
    plan: FitPlan
    lr: float
    rule: StepRule
    seed: int
    patience: int | None


@dataclass(frozen=True)
class _Saver:
    """Where one learning rate writes, on rank 0 only: its best checkpoint and its state."""

    lr_dir: Path
    card: dict
    main: bool

    def best(self, t: _Training) -> None:
        if self.main:
            save_checkpoint(self.lr_dir / "best", t.model, self.card)

    def state(self, t: _Training, state: FitState) -> None:
        if self.main:
            save_state(self.lr_dir / STATE, t.model, t.opt, state)


def train_one_lr(
    config: RunConfig, lr: float, batches: BatchCache, lr_dir: Path, init, until: int | None = None
) -> LrResult:
    """Train (or resume, or find finished) the model for one learning rate; with ``until``,
    stop after that epoch (a validation epoch, so its state is saved) still "running": a
    later call continues it on the same schedule, exactly as if it had not stopped."""
    torch.manual_seed(config.seed)
    train_ds = batches.splits["train"]
    model, norm, cmap, base = build(config, train_ds, init)
    trainable = configure_mode(model, config.mode, config.lora_rank)
    t, state = _start(config, lr, model, batches, cmap, norm, lr_dir)
    card = checkpoint_card(config, train_ds, norm, base, lr, init)
    before = (state.wall_s, state.cpu_s)
    _fit_with_progress(t, state, lr_dir, card, config.progress, until)
    return LrResult(
        status=state.status,
        reason=state.reason,
        best_val_rel_l2=state.best,
        epochs=state.epoch,
        steps=state.step,
        stopped_early=state.stopped_early,
        converged=converged(state.history, t.plan.epochs, state.stopped_early),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        trainable_names=len(trainable),
        history=state.history,
        cmap=cmap,
        plan=t.plan,
        cost={
            **{k: getattr(state, k) for k in COST_FIELDS},
            "flops": training_flops(
                model.arch,
                train_ds.resolution,
                trainable,
                t.plan.batch,
                state.samples,
                state.evaluated,
            ),
        },
        fresh=(state.wall_s - before[0], state.cpu_s - before[1]),
    )


def _start(
    config: RunConfig,
    lr: float,
    model: torch.nn.Module,
    batches: BatchCache,
    cmap: ChannelMap,
    norm: Normaliser,
    lr_dir: Path,
) -> tuple[_Training, FitState]:
    """The ``_Training`` of ``model`` (on the device, with AdamW on its trainable parameters)
    and its ``FitState``: fresh, or the one saved in ``lr_dir`` (weights and optimiser then
    restored)."""
    model.to(batches.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    train_b = batches("train", cmap, norm)
    state = FitState()
    distributed.barrier()  # rank 0 may still be saving the state a halving rung resumes
    if (lr_dir / STATE).is_file():  # every rank resumes from the state rank 0 wrote
        state = load_state(lr_dir / STATE, model, opt)
    net = distributed.wrap(model, batches.device)  # after loading: DDP broadcasts rank 0's
    net = torch.compile(net) if config.compile else net
    plan = config.plan(len(train_b))
    val_b = batches("val", cmap, norm)
    rule = StepRule.of(config)
    t = _Training(model, net, opt, train_b, val_b, plan, lr, rule, config.seed, config.patience)
    return t, state


def _fit_with_progress(
    t: _Training, state: FitState, lr_dir: Path, card: dict, progress: bool, until: int | None
) -> None:
    """``_fit`` into ``lr_dir`` (written by rank 0) until epoch ``until`` (None: the plan's
    end), with a progress bar if ``progress``."""
    main = distributed.is_main()
    if main:
        lr_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=t.plan.steps,
        initial=state.step,
        disable=not (progress and main),
        desc=f"lr {t.lr:g}",
        unit="step",
        leave=False,
    )
    try:
        _fit(t, state, _Saver(lr_dir, card, main), bar, until)
    finally:
        bar.close()


def _fit(t: _Training, state: FitState, save: _Saver, bar, until: int | None = None) -> None:
    """Epochs until the plan is done (or epoch ``until``), patience runs out or the loss
    diverges; the best model and the state (with this process's time added) are saved at each
    validation epoch (and the state when it diverged)."""
    stop = t.plan.epochs if until is None else min(until, t.plan.epochs)
    if state.status != "running" or state.epoch >= stop:
        return  # nothing to train: no new segment for a rate already at its limit
    clock = SegmentClock(state)
    try:
        while state.status == "running" and state.epoch < stop:
            if not _epoch(t, state, bar):
                continue  # state is saved on validation epochs; a resume replays from there
            if _improved(state):
                save.best(t)
            _settle(state, t.plan.epochs, t.patience)
            clock.update(state)
            save.state(t, state)
    except DivergedError as exc:
        state.status, state.reason = "failed", str(exc)
        clock.update(state)
        save.state(t, state)


def _improved(state: FitState) -> bool:
    """Whether the last validation beat the best so far (then it becomes the best)."""
    val = state.history[-1]["val_rel_l2"]
    if val < state.best:
        state.best, state.best_epoch = val, state.epoch
        return True
    return False


def _settle(state: FitState, epochs: int, patience: int | None) -> None:
    """Completed once ``epochs`` are done, or stopped early once ``patience`` epochs have
    passed since the best validation error (None: no patience)."""
    if patience is not None and state.epoch - state.best_epoch >= patience:
        state.stopped_early = True
        state.status = "completed"
    if state.epoch >= epochs:
        state.status = "completed"


def _epoch(t: _Training, state: FitState, bar) -> bool:
    """One pass over the training examples (``_train_pass``); validation every
    ``plan.validate_every`` epochs and at the last one. Returns whether it validated."""
    losses = _train_pass(t, state, bar)
    state.epoch += 1
    if state.epoch % t.plan.validate_every and state.epoch < t.plan.epochs:
        return False
    val = evaluate_model(t.model, t.val_b)
    state.evaluated += len(t.val_b)
    state.history.append(
        {
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": float(np.mean(losses)) if losses else None,
            "val_rel_l2": val["rel_l2"],
            "lr": t.opt.param_groups[0]["lr"],
        }
    )
    bar.set_postfix(loss=f"{state.history[-1]['train_loss']:.3g}", val=f"{val['rel_l2']:.3g}")
    return True


def _train_pass(t: _Training, state: FitState, bar) -> list[float]:
    """The steps of epoch ``state.epoch`` (until ``plan.steps``), on the training examples in
    a fresh order, with the cosine learning rate; returns their global-batch losses.

    Every rank draws the same order and steps on its share of each global batch."""
    plan, n = t.plan, len(t.train_b)
    order = torch.randperm(n, generator=_epoch_generator(t.seed, state.epoch))
    order = order.to(t.train_b.index_device)  # once per epoch, not once per batch
    t.net.train()
    losses = _Losses(1 if t.train_b.device.type == "cpu" else CHECK_EVERY_CUDA)
    for i in range(0, n, plan.batch):
        if state.step >= plan.steps:
            break
        for group in t.opt.param_groups:
            group["lr"] = _cosine(t.lr, state.step, plan.steps)
        batch = order[i : i + plan.batch]
        share = distributed.shard(batch)
        x, y, _ = t.train_b.get(share)
        weight = len(share) * distributed.world_size() / len(batch)
        losses.add(_step(t.net, t.opt, x, y, t.rule, weight))
        state.step += 1
        state.samples += len(batch)
        bar.update(1)
    losses.flush()
    return losses.values


def _step(net, opt, x, y, rule: StepRule, weight: float = 1.0) -> torch.Tensor:
    """One optimiser step on this rank's share (x, y) of a normalised global batch; returns
    the loss, detached, on the device (reading it would wait for the GPU).

    The loss is L(net(x), y) * weight, L the batch mean of the per-sample MSE or relative L2
    (``rule.loss``), with weight = share size * world size / global batch size (1 in one
    process), so that DDP's mean over ranks of the gradients is the gradient of the global
    batch's loss even when the shares differ in size. With ``rule.grad_clip`` = C the
    gradient g of the trained parameters is scaled to g * min(1, C / ||g||_2) first."""
    with _autocast(x.device, rule.bf16):
        pred = net(x)
    if len(x):
        if rule.loss == "rel_l2":  # scale-free: ||pred - y|| / ||y|| is the same in any units
            loss = relative_l2(pred.float(), y).mean()
        else:
            loss = torch.nn.functional.mse_loss(pred.float(), y)
        loss = loss * weight if weight != 1 else loss
    else:
        loss = pred.float().sum()  # 0: an empty share must still join DDP's all-reduce
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if rule.grad_clip is not None:  # after backward: under DDP the gradients are all-reduced
        params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, rule.grad_clip)
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
