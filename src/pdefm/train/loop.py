"""ONE loop for pre-training, fine-tuning, training from scratch and zero-shot evaluation.

``train(config)`` trains one model per learning rate in ``config.lrs`` (AdamW, cosine schedule,
MSE loss, or mean relative L2 with ``loss="rel_l2"``, on normalised data, the training examples
reshuffled every epoch, best-validation checkpoint; the rates searched by ``search``: each for
the whole budget, or by successive halving), picks the learning rate with the lowest
validation error, reports the test error of that model, and writes the run record. Every epoch
ends with an atomic training-state file, so running the same config again after a kill continues
where it stopped and ends with the same metrics. A finished run is not repeated: its record is
returned. A zero-shot run (mode "zero-shot", also `pdefm evaluate`) trains nothing: it is the
same checks, run folder and record around one call of ``evaluate_checkpoint``.

Under ``torchrun`` the same loop trains one model data-parallel (see ``distributed``): each rank
takes its share of every global batch, DDP averages the gradients, metrics are reduced over
ranks, and only rank 0 writes (record, checkpoints, training states); every rank resumes from
the state rank 0 wrote. On CUDA: optional bf16 autocast (the Fourier layers' DFTs stay float32),
TF32 matmuls, optional ``torch.compile``, and no host-device sync per step (the loss is checked
every ``CHECK_EVERY_CUDA`` steps and at the end of each epoch).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from pdefm.data.io import temp_path, write_json_atomic
from pdefm.train import distributed
from pdefm.train.batches import BatchCache
from pdefm.train.checkpoint import CARD, load_checkpoint, save_checkpoint
from pdefm.train.config import FitPlan, RunConfig
from pdefm.train.cost import evaluation_flops
from pdefm.train.evaluate import evaluate_checkpoint, evaluate_final
from pdefm.train.fit import DivergedError, LrResult, train_one_lr
from pdefm.train.record import RunRecord
from pdefm.train.run_dir import RecordDraft, finished_record, run_lock
from pdefm.train.search import best_lr, grid_edge, search_lrs
from pdefm.train.setup import InitCheckpoint, check_fit, load_init, open_splits, resolve_device
from pdefm.train.start import Start, score_start


def train(config: RunConfig) -> RunRecord:
    """Run ``config`` (see module doc); returns the run record.

    Everything that can be refused is checked before the run folder is created or the record
    written: the config, the dataset (and subset), the checkpoint, the channel mapping, the
    grid, the device and the memory. The run folder is then locked: a second process on the
    same run is refused at once (``run_lock``), and a run finished meanwhile is returned."""
    config.validate()
    device = resolve_device(config.device)
    splits = open_splits(config)
    init = load_init(config)
    check_fit(config, splits["train"], init, device)
    resolved = config.resolved(splits["train"].card.data_hash, init.hash if init else None)
    run_id = RunConfig.run_id(resolved)
    run_dir = Path(config.out) / (config.run_name or run_id)
    done = finished_record(run_dir)
    if done is not None:
        return done
    with distributed.process_group(device) as device, run_lock(run_dir, run_id):
        done = finished_record(run_dir)  # another process may have finished it meanwhile
        if done is not None:
            return done
        return _execute(config, splits, init, run_dir, device, resolved, run_id)


def _execute(config, splits, init, run_dir: Path, device, resolved: dict, run_id: str) -> RunRecord:
    """Train (or resume) in the locked ``run_dir``; a diverged run is recorded as failed."""
    _configure_cuda(device, config)
    record = RecordDraft(config, resolved, run_id, device)
    record.write()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    failure = None
    try:
        _run(config, splits, init, run_dir, device, record)
    except DivergedError as exc:
        failure = str(exc)
    record.ended(time.perf_counter() - wall0, time.process_time() - cpu0, failure)
    record.write()
    return record.record()


def _configure_cuda(device: torch.device, config: RunConfig) -> None:
    """TF32 matmuls and convolutions on CUDA (10-bit mantissa products, float32 sums) if
    ``config.tf32``; nothing to do on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32


def _run(
    config, splits, init: InitCheckpoint | None, run_dir: Path, device, record: RecordDraft
) -> None:
    """What the run found, into ``record``: zero-shot evaluates the checkpoint as it is; any
    other mode trains every learning rate and evaluates the selected model."""
    if config.mode == "zero-shot":
        final = evaluate_checkpoint(init, splits, device)
        _count_scoring(record, init.model, splits, final.val["n"] + final.test["n"])
        record.evaluated(None, [], final, trainable=0)
    else:
        _train_and_select(config, splits, init, run_dir, device, record)


def _train_and_select(config, splits, init, run_dir: Path, device, record: RecordDraft) -> None:
    """Train the learning rates (``_search_lrs``), select the best on validation, evaluate
    its model and publish it as ``run_dir/checkpoint``; DivergedError if every rate failed.

    Protocol 2 fine-tuning also scores the starting weights (``score_start``): when no rate's
    best validation error is below the start's, the start is the selected model
    (``start_kept``), as it is when every rate diverged."""
    batches = BatchCache(splits, device)
    start = score_start(config, batches, init)
    if start is not None:
        _count_scoring(record, start.model, splits, len(splits["val"]))
    results = _search_lrs(config, batches, run_dir, init, start)
    per_lr = {f"{lr:g}": r.summary_json() for lr, r in sorted(results.items())}
    record.searched(per_lr, sorted(results), None if start is None else start.val)
    for r in results.values():
        record.trained_here(*r.fresh)
    ok = {lr: r for lr, r in results.items() if r.completed}
    if start is not None and start.beats(ok):
        _keep_start(config, start, results, batches, run_dir, record)
        return
    if not ok:
        reasons = "; ".join(f"lr {lr:g}: {r.reason}" for lr, r in results.items())
        raise DivergedError(f"every learning rate failed ({reasons})")
    chosen = best_lr({lr: r.best_val_rel_l2 for lr, r in ok.items()})
    best = ok[chosen]
    edge = grid_edge(chosen, list(results))
    record.selected(edge, _budget_record(config, best.plan, best), best.converged)
    best_dir = run_dir / f"lr-{chosen:g}" / "best"
    distributed.barrier()  # rank 0 may still be writing the best checkpoint every rank reads
    model, _, norm = load_checkpoint(best_dir, device)
    final = evaluate_final(model, best.cmap, norm, batches)
    _count_scoring(record, model, splits, final.val["n"] + final.test["n"])
    record.evaluated(chosen, best.history, final, best.trainable_parameters)
    _publish(best_dir, run_dir, record, final, chosen)


def _keep_start(config, start: Start, results, batches, run_dir: Path, record) -> None:
    """The starting weights are the run's answer: saved as ``run_dir/start`` (its card says
    lr null), evaluated and published like a trained rate's best model."""
    plan = config.plan(len(batches.splits["train"]))
    record.selected(None, _budget_record(config, plan, None), None, start_kept=True)
    start_dir = run_dir / "start"
    if distributed.is_main():
        save_checkpoint(start_dir, start.model, start.card)
    distributed.barrier()
    final = evaluate_final(start.model, start.cmap, start.norm, batches)
    _count_scoring(record, start.model, batches.splits, final.val["n"] + final.test["n"])
    trainable = max((r.trainable_parameters for r in results.values()), default=0)
    record.evaluated(None, [], final, trainable)
    _publish(start_dir, run_dir, record, final, None)


def _count_scoring(record: RecordDraft, model, splits, examples: int) -> None:
    """Record the forward passes of scoring ``examples`` examples outside training."""
    n = splits["train"].resolution
    record.scored(examples, evaluation_flops(model.arch, n, examples))


def _publish(best_dir: Path, run_dir: Path, record: RecordDraft, final, lr) -> None:
    """``best_dir`` becomes ``run_dir/checkpoint``, its card holding the final metrics."""
    record.published(run_dir / "checkpoint")
    if distributed.is_main():
        metrics = {"val": final.val, "test": final.test, "lr": lr}
        _publish_checkpoint(best_dir, run_dir / "checkpoint", metrics)


def _search_lrs(
    config: RunConfig, batches: BatchCache, run_dir: Path, init, start: Start | None = None
) -> dict[float, LrResult]:
    """The learning-rate search (``search.search_lrs``: the grid and its extension, or
    successive halving), each rate trained in ``run_dir/lr-X``; {lr: result}."""
    plan = config.plan(len(batches.splits["train"]))

    def train(lr: float, until: int | None) -> LrResult:
        return train_one_lr(config, lr, batches, run_dir / f"lr-{lr:g}", init, until)

    return search_lrs(config, plan, train, start)


def _budget_record(config: RunConfig, plan: FitPlan, best: LrResult | None) -> dict:
    """The selected model's budget: the rule, what was planned and what was run (nothing,
    ``best`` None, when the starting weights were kept)."""
    rule = "steps" if config.steps is not None else "patience" if config.patience else "epochs"
    return {
        "rule": rule,
        **plan.to_json(),
        "patience": config.patience,
        "epochs_run": best.epochs if best else 0,
        "steps_run": best.steps if best else 0,
        "stopped_early": best.stopped_early if best else False,
    }


def _publish_checkpoint(best_dir: Path, target: Path, metrics: dict) -> None:
    """Copy the selected model to ``run_dir/checkpoint`` with the final metrics in its card
    (through a temp folder unique to this process, removed if anything fails)."""
    tmp = temp_path(target)
    try:
        shutil.copytree(best_dir, tmp)
        card_path = tmp / CARD
        card = json.loads(card_path.read_text())
        card["metrics"] = metrics
        write_json_atomic(card_path, card)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
