"""ONE loop for pre-training, fine-tuning, training from scratch and zero-shot evaluation.

``train(config)`` trains one model per learning rate in ``config.lrs`` (AdamW, cosine schedule,
MSE loss, or mean relative L2 with ``loss="rel_l2"``, on normalised data, the training examples
reshuffled every epoch, best-validation checkpoint), picks the learning rate with the lowest
validation error, reports the test error of that model, and writes the run record. Every epoch
ends with an atomic training-state file, so running the same config again after a kill continues
where it stopped and ends with the same metrics. A finished run is not repeated: its record is
returned.

Under ``torchrun`` the same loop trains one model data-parallel (see ``distributed``): each rank
takes its share of every global batch, DDP averages the gradients, metrics are reduced over
ranks, and only rank 0 writes (record, checkpoints, training states); every rank resumes from
the state rank 0 wrote. On CUDA: optional bf16 autocast (the Fourier layers' DFTs stay float32),
TF32 matmuls, optional ``torch.compile``, and no host-device sync per step (the loss is checked
every ``CHECK_EVERY_CUDA`` steps and at the end of each epoch).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pdefm import __version__
from pdefm.checks import check_int, check_memory, human_bytes
from pdefm.data.dataset import PDEDataset
from pdefm.data.io import directory_lock, is_empty_dir, temp_path, write_json_atomic
from pdefm.errors import PdefmError
from pdefm.train import distributed
from pdefm.train.adapt import configure_mode
from pdefm.train.batches import BatchCache, SplitBatches
from pdefm.train.checkpoint import (
    CARD,
    load_checkpoint,
    map_channels,
    save_checkpoint,
    unseen_channels,
)
from pdefm.train.checkpoint_card import (
    CheckpointCard,
    arch_parameter_count,
    checkpoint_hash,
    training_bytes,
)
from pdefm.train.config import DEVICE_PATTERN, RunConfig
from pdefm.train.metrics import mse, relative_l2
from pdefm.train.normalise import Normaliser
from pdefm.train.record import RunRecord
from pdefm.train.state import load_state, save_state

RECORD = "record.json"
EVAL_BATCH = 64
DIVERGENCE_FACTOR = 1e4  # loss this many times its first value counts as divergence
CHECK_EVERY_CUDA = 25  # steps between loss checks on a GPU (each one waits for the GPU)


class DivergedError(RuntimeError):
    """Training produced a non-finite or exploding loss."""


# -- entry point ---------------------------------------------------------------------------------
@dataclass
class _Init:
    """The checkpoint a run starts from, loaded and checked once per run: its model (on the
    CPU; every learning rate trains a copy), card, normaliser and content hash."""

    model: torch.nn.Module
    card: CheckpointCard
    norm: Normaliser
    hash: str


def train(config: RunConfig) -> RunRecord:
    """Run ``config`` (see module doc); returns the run record.

    Everything that can be refused is checked before the run folder is created or the record
    written: the config, the dataset (and subset), the checkpoint, the channel mapping, the
    grid, the device and the memory. The run folder is then locked: a second process on the
    same run is refused at once (``_run_lock``), and a run finished meanwhile is returned."""
    config.validate()
    device = resolve_device(config.device)
    splits = _open_splits(config)
    init = _load_init(config)
    _check_fit(config, splits["train"], init, device)
    resolved = config.resolved(splits["train"].card.data_hash, init.hash if init else None)
    run_id = RunConfig.run_id(resolved)
    run_dir = Path(config.out) / (config.run_name or run_id)
    done = _finished_record(run_dir)
    if done is not None:
        return done
    with distributed.process_group(device) as device, _run_lock(run_dir, run_id):
        done = _finished_record(run_dir)  # another process may have finished it meanwhile
        if done is not None:
            return done
        return _execute(config, splits, init, run_dir, device, resolved, run_id)


def _execute(config, splits, init, run_dir: Path, device, resolved: dict, run_id: str) -> RunRecord:
    """Train (or resume) in the locked ``run_dir``; a diverged run is recorded as failed."""
    _configure_cuda(device, config)
    record = _new_record(config, resolved, run_id, device)
    if distributed.is_main():
        write_json_atomic(run_dir / RECORD, record)
    start = time.perf_counter()
    try:
        _run(config, splits, init, run_dir, device, record)
        record["status"] = "completed"
    except DivergedError as exc:
        record.update(status="failed", reason=str(exc))
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    if distributed.is_main():
        write_json_atomic(run_dir / RECORD, record)
    return RunRecord(record, run_dir / RECORD)


@contextlib.contextmanager
def _run_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """Create and lock ``run_dir`` (rank 0; the other ranks never write). A second process
    on the same run is refused in one line rather than made to wait: a rerun afterwards
    returns the finished record at once. Temp files a killed writer left are removed."""
    if not distributed.is_main():
        if not _all_ranks_agree(True):  # rank 0 was refused: leave now, not at a timeout
            raise PdefmError(
                f"rank 0 could not take run {run_id} (in {run_dir}); see its error above"
            )
        yield
        return
    try:
        stack = _lock_run_dir(run_dir, run_id)
    except PdefmError:
        _all_ranks_agree(False)
        raise
    _all_ranks_agree(True)
    with stack:
        _remove_stale_temps(run_dir)
        yield


def _lock_run_dir(run_dir: Path, run_id: str) -> contextlib.ExitStack:
    """Create ``run_dir`` and take its lock (held by the returned stack); a refusal removes
    the folder again if this call created it."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PdefmError(
            f"cannot create the run folder {run_dir} ({exc.strerror or exc}); give --out a "
            "writable directory"
        ) from None
    busy = (
        f"run {run_id} is being trained by another process (in {run_dir}); wait for it to "
        "finish, then rerun this command to get its record"
    )
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(directory_lock(run_dir, busy))
    except PdefmError:
        if created and is_empty_dir(run_dir):  # refused: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return stack


def _all_ranks_agree(ok: bool) -> bool:
    """Whether every rank says ``ok`` (a collective under torchrun; ``ok`` alone otherwise).
    Rank 0 takes the run lock alone; this tells the other ranks whether it got it."""
    if not distributed.active():
        return ok
    flag = torch.tensor([1.0 if ok else 0.0])
    return int(distributed.all_reduce_sum(flag).item()) == distributed.world_size()


def _remove_stale_temps(run_dir: Path) -> None:
    """Temp files and folders (``.NAME.PID.RANDOM.tmp``) under a run folder whose lock we
    hold were left by a killed writer: nobody else can be writing them."""
    for path in sorted(run_dir.rglob(".*.tmp"), reverse=True):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _configure_cuda(device: torch.device, config: RunConfig) -> None:
    """TF32 matmuls and convolutions on CUDA (10-bit mantissa products, float32 sums) if
    ``config.tf32``; nothing to do on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32


def _run(config, splits, init: _Init | None, run_dir: Path, device, record: dict) -> None:
    batches = BatchCache(splits, device)
    if config.mode == "zero-shot":
        test = splits["test"]
        cmap = map_channels(
            init.card.input_channels, test.input_channels, f"checkpoint {config.init}"
        )
        norm = init.norm.with_dataset(test.card)
        model = init.model.to(device)
        _finish(record, model, cmap, norm, batches, lr=None, history=[], trainable=0)
        return
    results = _search_lrs(config, batches, run_dir, init)
    record["per_lr"] = {f"{lr:g}": r["summary"] for lr, r in sorted(results.items())}
    record["lrs_tried"] = sorted(results)
    ok = {lr: r for lr, r in results.items() if r["summary"]["status"] == "completed"}
    if not ok:
        reasons = "; ".join(f"lr {lr:g}: {r['summary']['reason']}" for lr, r in results.items())
        raise DivergedError(f"every learning rate failed ({reasons})")
    best_lr = _best_lr(ok)
    record["lr_at_edge"] = grid_edge(best_lr, list(results))
    best_dir = run_dir / f"lr-{best_lr:g}" / "best"
    distributed.barrier()  # rank 0 may still be writing the best checkpoint every rank reads
    model, _, norm = load_checkpoint(best_dir, device)
    best = ok[best_lr]
    record["budget"] = _budget_record(config, best)
    record["converged"] = best["summary"]["converged"]
    trainable = best["summary"]["trainable_parameters"]
    _finish(record, model, best["cmap"], norm, batches, best_lr, best["history"], trainable)
    record["checkpoint"] = str(run_dir / "checkpoint")
    if distributed.is_main():
        _publish_checkpoint(best_dir, run_dir / "checkpoint", record)


# -- learning-rate search ------------------------------------------------------------------------
LADDER = (1.0, 3.0)  # learning rates the grid grows by: 1e-4, 3e-4, 1e-3, 3e-3, ...


def _search_lrs(config: RunConfig, batches: BatchCache, run_dir: Path, init) -> dict:
    """Train every rate of ``config.lrs``; then, up to ``config.lr_extend`` times, while the
    best rate (on validation) is the largest or smallest rate tried, train the next rate past
    that edge (``next_lr``). Every decision depends only on finished runs, so a resumed run
    makes the same ones. Returns {lr: result of ``_train_one_lr``}."""
    results: dict[float, dict] = {}
    grid = list(config.lrs)
    for _ in range(config.lr_extend + 1):
        for lr in grid:
            if lr not in results:
                results[lr] = _train_one_lr(config, lr, batches, run_dir / f"lr-{lr:g}", init)
        ok = {lr: r for lr, r in results.items() if r["summary"]["status"] == "completed"}
        if not ok:
            break
        best = _best_lr(ok)
        edge = grid_edge(best, list(results))
        if edge is None:
            break
        grid = [
            next_lr(best, up) for up in ((True, False) if edge == "both" else (edge == "high",))
        ]
        grid = [lr for lr in grid if lr not in results]
        if not grid:
            break
    return results


def _best_lr(ok: dict) -> float:
    """The rate with the lowest best validation error (ties: the smaller rate)."""
    return min(sorted(ok), key=lambda lr: ok[lr]["summary"]["best_val_rel_l2"])


def grid_edge(lr: float, tried: list[float]) -> str | None:
    """Where ``lr`` sits in the rates tried (diverged ones included: a rate that diverged
    bounds the search): "high", "low", "both" (the only one) or None (inside)."""
    high, low = lr >= max(tried), lr <= min(tried)
    if high and low:
        return "both"
    return "high" if high else "low" if low else None


def next_lr(lr: float, up: bool) -> float:
    """The next rate past ``lr`` on the ladder 1, 3, 10, 30, ... x 10^k, at least a factor of
    1.5 away: 3e-3 -> 1e-2 upwards, 1e-3 -> 3e-4 downwards (a factor of about 3; from a rate
    off the ladder, the nearest ladder rate that far)."""
    k = math.floor(math.log10(lr)) - 2
    ladder = [m * 10.0**e for e in range(k, k + 5) for m in LADDER]
    ladder = [float(f"{x:.12g}") for x in ladder]
    if up:
        return min(x for x in ladder if x >= 1.5 * lr * (1 - 1e-9))
    return max(x for x in ladder if x <= lr / 1.5 * (1 + 1e-9))


def _budget_record(config: RunConfig, best: dict) -> dict:
    """The selected rate's budget: the rule, what was planned and what was run."""
    plan, summary = best["plan"], best["summary"]
    rule = "steps" if config.steps is not None else "patience" if config.patience else "epochs"
    return {
        "rule": rule,
        "batch": plan["batch"],
        "steps_per_epoch": plan["per_epoch"],
        "epochs": plan["epochs"],
        "steps": plan["steps"],
        "patience": config.patience,
        "epochs_run": summary["epochs"],
        "steps_run": summary["steps"],
        "stopped_early": summary["stopped_early"],
    }


def _finish(record, model, cmap, norm, batches: BatchCache, lr, history, trainable) -> None:
    """Final validation and test metrics of the selected model, into the record."""
    record["selected_lr"] = lr
    record["history"] = history
    record["channels"] = cmap.describe()
    record["val"] = evaluate_model(model, batches("val", cmap, norm))
    record["test"] = evaluate_model(model, batches("test", cmap, norm), residual=True)
    record["parameters"] = {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": trainable,
    }


def _publish_checkpoint(best_dir: Path, target: Path, record: dict) -> None:
    """Copy the selected model to ``run_dir/checkpoint`` with the final metrics in its card
    (through a temp folder unique to this process, removed if anything fails)."""
    tmp = temp_path(target)
    try:
        shutil.copytree(best_dir, tmp)
        card_path = tmp / CARD
        card = json.loads(card_path.read_text())
        metrics = {"val": record["val"], "test": record["test"], "lr": record["selected_lr"]}
        card["metrics"] = metrics
        write_json_atomic(card_path, card)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _train_one_lr(config: RunConfig, lr: float, batches: BatchCache, lr_dir: Path, init) -> dict:
    """Train (or resume, or find finished) the model for one learning rate."""
    torch.manual_seed(config.seed)
    splits = batches.splits
    model, norm, cmap, base = _build(config, splits["train"], init)
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
    card = _checkpoint_card(config, splits["train"], norm, base, lr, init)
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


# -- building -------------------------------------------------------------------------------------
def _build(config: RunConfig, train_ds: PDEDataset, init: _Init | None):
    """Model, normaliser, channel map and the base checkpoint card (None from scratch)."""
    channels = train_ds.input_channels
    if init is None:
        from pdefm.models import create_model

        model = create_model(config.model, len(channels), 1, **config.model_overrides)
        cmap = map_channels(channels, channels, "the model")
        return model, Normaliser.from_card(train_ds.card), cmap, None
    model, norm = copy.deepcopy(init.model), init.norm
    unseen = unseen_channels(init.card.input_channels, channels)
    if unseen and config.new_channels == "init":
        from pdefm.models import add_input_channels

        add_input_channels(model, len(unseen))
        norm = norm.with_channels(unseen, train_ds.card)
    norm = norm.with_dataset(train_ds.card)
    cmap = map_channels(list(norm.channels), channels, f"checkpoint {config.init}")
    return model, norm, cmap, init.card


def _checkpoint_card(config, train_ds: PDEDataset, norm: Normaliser, base, lr, init) -> dict:
    datasets = base.datasets if base else []
    datasets.append(_abridged_card(train_ds))
    resolved = config.resolved(train_ds.card.data_hash, init.hash if init else None)
    return {
        "input_channels": list(norm.channels),
        "output_channels": ["solution"],
        "normalisation": norm.to_dict(),
        "datasets": datasets,
        "run_config": {**resolved, "lr": lr},
        "pdefm_version": __version__,
    }


def _abridged_card(ds: PDEDataset) -> dict:
    """What a checkpoint card records of a dataset it was trained on."""
    return {**ds.card.abridged(), "n_train_used": len(ds), "path": str(ds.root)}


# -- up-front checks -------------------------------------------------------------------------------
def _load_init(config: RunConfig) -> _Init | None:
    """The checkpoint ``config.init`` loaded and checked (None from scratch)."""
    if config.init == "scratch":
        return None
    model, card, norm = load_checkpoint(config.init)
    return _Init(model, card, norm, checkpoint_hash(config.init, card))


def _check_fit(config: RunConfig, train_ds: PDEDataset, init: _Init | None, device) -> None:
    """Refuse a run whose pieces do not fit together, before anything is written: an unknown
    preset or model option, channels the checkpoint never saw (without --new-channels init),
    a grid too small for the model's modes, a model and batch that cannot fit in memory."""
    if init is None:
        arch = _scratch_arch(config, len(train_ds.input_channels))
    else:
        channels = _init_channels(config, init, train_ds.input_channels)
        map_channels(channels, train_ds.input_channels, f"checkpoint {config.init}")
        arch = {**init.card.arch, "in_channels": len(channels)}
    n = train_ds.resolution
    if arch.get("modes"):
        from pdefm.models.spectral import check_grid

        check_grid(n, n, arch["modes"])
    if config.mode != "zero-shot":  # evaluation needs the weights, which are loaded already
        _check_training_memory(config, arch, config.batch_for(len(train_ds)), n, device)


def _scratch_arch(config: RunConfig, in_channels: int) -> dict:
    """The arch ``create_model(config.model, in_channels, 1, **overrides)`` would record,
    computed without building it (unknown presets and options refused)."""
    from pdefm.models import model_info

    info = model_info(config.model)
    sizes = {k: v for k, v in info.items() if k not in ("name", "label")}
    for key, value in config.model_overrides.items():
        if key not in sizes:
            raise PdefmError(
                f"unknown option {key!r} for model {config.model!r}; choose from {', '.join(sizes)}"
            )
        check_int(value, f"model option {key}", minimum=1)
    sizes.update(config.model_overrides)
    return {"name": config.model, "in_channels": in_channels, "out_channels": 1, **sizes}


def _init_channels(config: RunConfig, init: _Init, data_channels: list[str]) -> list[str]:
    """The input channels the trained model will have: the checkpoint's, plus the data's
    unseen ones with --new-channels init (not for zero-shot, which changes nothing)."""
    channels = init.card.input_channels
    unseen = unseen_channels(channels, data_channels)
    if unseen and config.new_channels == "init" and config.mode != "zero-shot":
        if init.card.has_lora:
            raise PdefmError(
                f"checkpoint {config.init} has LoRA weights; --new-channels init needs a "
                "checkpoint without LoRA (fine-tune its base model instead)"
            )
        channels += unseen
    return channels


def _check_training_memory(config: RunConfig, arch: dict, batch: int, n: int, device) -> None:
    """A lower bound of what training needs (``training_bytes``) against the memory there is:
    the host's on the CPU, the GPU's total on CUDA. Only clear impossibilities are refused."""
    n_params = arch_parameter_count(arch)
    what = (
        f"training {arch['name']} (about {n_params:.3g} parameters) with batch {batch} at {n}x{n}"
    )
    fix = "use a smaller model or --batch-size, or a machine with more memory"
    if device.type == "cpu":
        check_memory(training_bytes(arch, n_params, batch, n), what, fix)
    elif device.type == "cuda":
        share = max(1, batch // distributed.env_world_size())  # each rank's part of a batch
        need = training_bytes(arch, n_params, share, n)
        total = torch.cuda.get_device_properties(device).total_memory
        if need > total:
            raise PdefmError(
                f"{what} needs about {human_bytes(need)} of GPU memory and {device} has "
                f"{human_bytes(total)}; {fix}"
            )


def _open_splits(config: RunConfig) -> dict[str, PDEDataset]:
    train = PDEDataset(config.data, "train")
    if config.n_train is not None and config.mode != "zero-shot":
        train = train.subset(config.n_train, seed=config.subset_seed)
    return {
        "train": train,
        "val": PDEDataset(config.data, "val"),
        "test": PDEDataset(config.data, "test"),
    }


def _finished_record(run_dir: Path) -> RunRecord | None:
    """The record of a finished run in ``run_dir`` (None if there is none, or it is running)."""
    path = run_dir / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        raise PdefmError(
            f"run record {path} is damaged (not JSON); delete {run_dir} to run it again"
        ) from None
    if isinstance(record, dict) and record.get("status") in ("completed", "failed"):
        return RunRecord.from_json(record, path)
    return None


def _new_record(config: RunConfig, resolved: dict, run_id: str, device) -> dict:
    return {
        "format": "pdefm.run",
        "id": run_id,
        "config": resolved,
        "status": "running",
        "device": str(device),
        "world_size": distributed.world_size(),
        "compile": config.compile,
        "pdefm_version": __version__,
        "torch_version": torch.__version__,
        "out": str(Path(config.out) / (config.run_name or run_id)),
        "init_path": None if config.init == "scratch" else str(Path(config.init).resolve()),
    }


def resolve_device(name: object) -> torch.device:
    """ "auto" -> cuda if available else cpu; an unknown or unavailable device is a one-line
    error."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise PdefmError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PdefmError(f"--device {name} asked but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if ":" in name and int(name.split(":")[1]) >= count:
            raise PdefmError(
                f"--device {name} asked but this machine has {count} GPU(s) (cuda:0 to "
                f"cuda:{count - 1}); pick one of those"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise PdefmError("--device mps asked but MPS is not available; use --device cpu")
    return torch.device(name)
