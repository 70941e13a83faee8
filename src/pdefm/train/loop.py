"""ONE loop for pre-training, fine-tuning, training from scratch and zero-shot evaluation.

``train(config)`` trains one model per learning rate in ``config.lrs`` (AdamW, cosine schedule,
MSE loss on normalised data, the training examples reshuffled every epoch, best-validation
checkpoint), picks the learning rate with the lowest validation error, reports the test error of
that model, and writes the run record. Every epoch ends with an atomic training-state file, so
running the same config again after a kill continues where it stopped and ends with the same
metrics. A finished run is not repeated: its record is returned.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pdefm import __version__
from pdefm.data.dataset import PDEDataset
from pdefm.data.io import write_json_atomic
from pdefm.errors import PdefmError
from pdefm.train.adapt import configure_mode
from pdefm.train.batches import BatchCache, SplitBatches
from pdefm.train.checkpoint import channel_order, load_checkpoint, save_checkpoint
from pdefm.train.config import MAX_EVALUATIONS, RunConfig
from pdefm.train.metrics import mse, physics_residual, relative_l2
from pdefm.train.normalise import Normaliser
from pdefm.train.state import load_state, save_state

RECORD = "record.json"
EVAL_BATCH = 64
DIVERGENCE_FACTOR = 1e4  # loss this many times its first value counts as divergence


class DivergedError(RuntimeError):
    """Training produced a non-finite or exploding loss."""


# -- entry point ---------------------------------------------------------------------------------
def train(config: RunConfig) -> dict:
    """Run ``config`` (see module doc); returns the run record."""
    config.validate()
    splits = _open_splits(config)
    resolved = config.resolved(_data_hash(splits["train"].card))
    run_id = RunConfig.run_id(resolved)
    run_dir = Path(config.out) / (config.run_name or run_id)
    done = _finished_record(run_dir)
    if done is not None:
        return done
    device = resolve_device(config.device)
    record = _new_record(config, resolved, run_id, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RECORD, record)
    start = time.perf_counter()
    try:
        _run(config, splits, run_dir, device, record)
        record["status"] = "completed"
    except DivergedError as exc:
        record.update(status="failed", reason=str(exc))
    record["wall_time_s"] = round(time.perf_counter() - start + record.get("wall_time_s", 0), 3)
    write_json_atomic(run_dir / RECORD, record)
    return record


def _run(config, splits, run_dir: Path, device, record: dict) -> None:
    batches = BatchCache(splits, device)
    if config.mode == "zero-shot":
        model, ckpt_card, norm = load_checkpoint(config.init, device)
        order = channel_order(
            ckpt_card["input_channels"], splits["test"].input_channels, f"checkpoint {config.init}"
        )
        _finish(record, model, norm, order, batches, lr=None, history=[], trainable=0)
        return
    results = {lr: _train_one_lr(config, lr, batches, run_dir / f"lr-{lr:g}") for lr in config.lrs}
    record["per_lr"] = {f"{lr:g}": r["summary"] for lr, r in results.items()}
    ok = {lr: r for lr, r in results.items() if r["summary"]["status"] == "completed"}
    if not ok:
        reasons = "; ".join(f"lr {lr:g}: {r['summary']['reason']}" for lr, r in results.items())
        raise DivergedError(f"every learning rate failed ({reasons})")
    best_lr = min(ok, key=lambda lr: ok[lr]["summary"]["best_val_rel_l2"])
    best_dir = run_dir / f"lr-{best_lr:g}" / "best"
    model, _, norm = load_checkpoint(best_dir, device)
    order = ok[best_lr]["order"]
    best = ok[best_lr]
    trainable = best["summary"]["trainable_parameters"]
    _finish(record, model, norm, order, batches, best_lr, best["history"], trainable)
    _publish_checkpoint(best_dir, run_dir / "checkpoint", record)


def _finish(record, model, norm, order, batches: BatchCache, lr, history, trainable) -> None:
    """Final validation and test metrics of the selected model, into the record."""
    record["selected_lr"] = lr
    record["history"] = history
    record["val"] = evaluate_model(model, norm, batches("val", order))
    record["test"] = evaluate_model(model, norm, batches("test", order), residual=True)
    record["parameters"] = {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": trainable,
    }


def _publish_checkpoint(best_dir: Path, target: Path, record: dict) -> None:
    """Copy the selected model to ``run_dir/checkpoint`` with the final metrics in its card."""
    tmp = target.with_name(".checkpoint.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best_dir, tmp)
    card_path = tmp / "card.json"
    card = json.loads(card_path.read_text())
    card["metrics"] = {"val": record["val"], "test": record["test"], "lr": record["selected_lr"]}
    write_json_atomic(card_path, card)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    record["checkpoint"] = str(target)


# -- one learning rate -------------------------------------------------------------------------
def _train_one_lr(config: RunConfig, lr: float, batches: BatchCache, lr_dir: Path) -> dict:
    """Train (or resume, or find finished) the model for one learning rate."""
    torch.manual_seed(config.seed)
    splits = batches.splits
    model, norm, order, base = _build(config, splits["train"])
    trainable = configure_mode(model, config.mode, config.lora_rank)
    model.to(batches.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    train_b = batches("train", order)
    val_b = batches("val", order)
    plan = _plan(config, len(train_b))
    state_path = lr_dir / "state.safetensors"
    info = {"epoch": 0, "step": 0, "history": [], "best": math.inf, "status": "running"}
    if state_path.is_file():
        info = load_state(state_path, model, opt)
    lr_dir.mkdir(parents=True, exist_ok=True)
    card = _checkpoint_card(config, splits["train"], norm, base, lr)
    bar = tqdm(
        total=plan["steps"],
        initial=info["step"],
        disable=not config.progress,
        desc=f"lr {lr:g}",
        unit="step",
        leave=False,
    )
    try:
        while info["status"] == "running" and info["epoch"] < plan["epochs"]:
            if not _epoch(config, model, opt, norm, train_b, val_b, plan, lr, info, bar):
                continue  # state is saved on validation epochs; a resume replays from there
            if info["history"][-1]["val_rel_l2"] < info["best"]:
                info["best"] = info["history"][-1]["val_rel_l2"]
                save_checkpoint(lr_dir / "best", model, card)
            if info["epoch"] >= plan["epochs"]:
                info["status"] = "completed"
            save_state(state_path, model, opt, info)
    except DivergedError as exc:
        info.update(status="failed", reason=str(exc))
        save_state(state_path, model, opt, info)
    finally:
        bar.close()
    summary = {
        "status": info["status"],
        "reason": info.get("reason"),
        "best_val_rel_l2": info["best"],
        "epochs": info["epoch"],
        "steps": info["step"],
        "trainable_parameters": sum(p.numel() for p in params),
        "trainable_names": len(trainable),
    }
    return {"summary": summary, "history": info["history"], "order": order}


def _plan(config: RunConfig, n_train: int) -> dict:
    batch = config.batch_for(n_train)
    per_epoch = math.ceil(n_train / batch)
    if config.steps is not None:
        epochs, steps = math.ceil(config.steps / per_epoch), config.steps
    else:
        epochs, steps = config.epochs, config.epochs * per_epoch
    every = max(1, math.ceil(epochs / MAX_EVALUATIONS))
    return {
        "batch": batch,
        "per_epoch": per_epoch,
        "epochs": epochs,
        "steps": steps,
        "validate_every": every,
    }


def _epoch(config, model, opt, norm, train_b, val_b, plan, lr, info, bar) -> bool:
    """One pass over the training examples in a fresh order; validation every
    ``plan["validate_every"]`` epochs and at the last one. Returns whether it validated."""
    order = torch.randperm(len(train_b), generator=_epoch_generator(config.seed, info["epoch"]))
    model.train()
    losses = []
    for i in range(0, len(order), plan["batch"]):
        if info["step"] >= plan["steps"]:
            break
        for group in opt.param_groups:
            group["lr"] = _cosine(lr, info["step"], plan["steps"])
        losses.append(_step(model, opt, norm, *train_b.get(order[i : i + plan["batch"]]), config))
        _check_loss(losses)
        info["step"] += 1
        bar.update(1)
    info["epoch"] += 1
    if info["epoch"] % plan["validate_every"] and info["epoch"] < plan["epochs"]:
        return False
    val = evaluate_model(model, norm, val_b)
    info["history"].append(
        {
            "epoch": info["epoch"],
            "step": info["step"],
            "train_loss": float(np.mean(losses)) if losses else None,
            "val_rel_l2": val["rel_l2"],
            "lr": opt.param_groups[0]["lr"],
        }
    )
    bar.set_postfix(loss=f"{info['history'][-1]['train_loss']:.3g}", val=f"{val['rel_l2']:.3g}")
    return True


def _step(model, opt, norm: Normaliser, x, y, config: RunConfig) -> float:
    scale = norm.example_scale(x)
    with _autocast(x.device, config.bf16):
        pred = model(norm.inputs(x, scale))
    loss = torch.nn.functional.mse_loss(pred.float(), y / scale)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _check_loss(losses: list[float]) -> None:
    last = losses[-1]
    if not math.isfinite(last):
        raise DivergedError(
            f"loss became {last} at step {len(losses)} of the epoch; lower the learning rate"
        )
    if last > DIVERGENCE_FACTOR * max(losses[0], 1e-12):
        raise DivergedError(
            f"loss grew from {losses[0]:.3g} to {last:.3g}; lower the learning rate"
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
def evaluate_model(model, norm: Normaliser, batches: SplitBatches, residual: bool = False) -> dict:
    """Mean per-sample relative L2 (the study's metric), MSE and, optionally, the physics
    residual ||L u_pred - f|| / ||f|| of the predictions, in original units."""
    model.eval()
    rel, err, res = [], [], []
    for a in range(0, len(batches), EVAL_BATCH):
        positions = np.arange(a, min(a + EVAL_BATCH, len(batches)))
        x, y = batches.get(positions)
        scale = norm.example_scale(x)
        pred = model(norm.inputs(x, scale)).float() * scale
        rel.append(relative_l2(pred, y).cpu())
        err.append(mse(pred, y).cpu())
        if residual:
            coeffs = batches.coefficients(positions)
            res.append(physics_residual(pred[:, 0], x[:, 0], batches.ds.card, coeffs))
    out = {
        "rel_l2": float(torch.cat(rel).mean()),
        "mse": float(torch.cat(err).mean()),
        "n": len(batches),
    }
    if residual:
        out["residual"] = float(torch.cat(res).mean())
    return out


# -- building -------------------------------------------------------------------------------------
def _build(config: RunConfig, train_ds: PDEDataset):
    """Model, normaliser, channel order and the base checkpoint card (None from scratch)."""
    if config.init == "scratch":
        from pdefm.models import create_model

        channels = train_ds.input_channels
        model = create_model(config.model, len(channels), 1, **config.model_overrides)
        return model, Normaliser.from_card(train_ds.card), list(range(len(channels))), None
    model, card, norm = load_checkpoint(config.init)
    order = channel_order(
        card["input_channels"], train_ds.input_channels, f"checkpoint {config.init}"
    )
    return model, norm, order, card


def _checkpoint_card(config, train_ds: PDEDataset, norm: Normaliser, base: dict | None, lr):
    datasets = list(base["datasets"]) if base else []
    datasets.append(_abridged_card(train_ds))
    return {
        "input_channels": list(norm.channels),
        "output_channels": ["solution"],
        "normalisation": norm.to_dict(),
        "datasets": datasets,
        "run_config": {**config.resolved(_data_hash(train_ds.card)), "lr": lr},
        "pdefm_version": __version__,
    }


def _abridged_card(ds: PDEDataset) -> dict:
    c = ds.card
    keys = (
        "family",
        "equation",
        "family_config",
        "parameter",
        "grid",
        "channels",
        "counts",
        "content_hash",
        "seed",
        "command",
    )
    return {**{k: c[k] for k in keys}, "n_train_used": len(ds), "path": str(ds.root)}


def _open_splits(config: RunConfig) -> dict[str, PDEDataset]:
    train = PDEDataset(config.data, "train")
    if config.n_train is not None and config.mode != "zero-shot":
        train = train.subset(config.n_train, seed=config.subset_seed)
    return {
        "train": train,
        "val": PDEDataset(config.data, "val"),
        "test": PDEDataset(config.data, "test"),
    }


def _data_hash(card: dict) -> str:
    return hashlib.sha256("".join(card["content_hash"].values()).encode()).hexdigest()[:16]


def _finished_record(run_dir: Path) -> dict | None:
    path = run_dir / RECORD
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("status") in ("completed", "failed"):
            return record
    return None


def _new_record(config: RunConfig, resolved: dict, run_id: str, device) -> dict:
    return {
        "format": "pdefm.run",
        "id": run_id,
        "config": resolved,
        "status": "running",
        "device": str(device),
        "pdefm_version": __version__,
        "torch_version": torch.__version__,
        "out": str(Path(config.out) / (config.run_name or run_id)),
    }


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; an unavailable device is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PdefmError(f"--device {name} asked but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise PdefmError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
