"""`pdefm train | evaluate`: one training or evaluation run, and its three-line report."""

from __future__ import annotations

import argparse
import sys

from pdefm.errors import PdefmError

TRAIN_EPILOG = """\
modes (what is trained; --init says where the weights come from):
  full             every parameter (the only mode from scratch)
  head             only the two-layer head
  frozen-spectral  everything but the Fourier weights
  lora             low-rank updates of lift, skips, head and Fourier weights (--lora-rank)
  zero-shot        nothing: evaluate --init on the data (same as `pdefm evaluate`)

examples:
  pdefm train data/poisson-1-5 --model fno-1m --lr 1e-3 3e-4 --epochs 100 --out runs
  pdefm train data/poisson-5-10 --init runs/ID/checkpoint --n-train 64 --lr 1e-4 3e-4 1e-3
  pdefm train data/poisson-5-10 --n-train 64 --lr 1e-3 --epochs 200      # scratch baseline
  torchrun --nproc_per_node 4 -m pdefm.cli train data/poisson-1-5 --model fno-67m --bf16
                                        # data-parallel on 4 GPUs (docs/cluster.md)

Several --lr values train one model each; the one with the lowest validation error is kept and
its test error reported. Up to 64 examples train full-batch. Rerunning the same command after an
interruption resumes it; rerunning a finished one prints its record; the same command started
while it runs is refused (wait for the first, then rerun). Bad options, datasets and checkpoints
are refused before anything is written. Every run writes OUT/ID/record.json; the selected model
is OUT/ID/checkpoint (model.safetensors + card.json + config.json, loadable with
pdefm.load_model).
"""


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="pre-train, fine-tune or train from scratch (one loop, several lrs)",
        description="Train a neural operator on a pdefm dataset: pre-training or training from "
        "scratch (--init scratch) or adapting a checkpoint (--init DIR) with an explicit --mode.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "data", nargs="?", help="dataset directory (from `pdefm generate`, `mix` or `import`)"
    )
    p.add_argument("--data", dest="data_flag", metavar="DATA", help="the same, as a flag")
    p.add_argument(
        "--model",
        default="fno-tiny",
        help="model preset for --init scratch (see `pdefm train --list-models`)",
    )
    p.add_argument("--list-models", action="store_true", help="print the presets and exit")
    p.add_argument("--init", default="scratch", help="scratch (default) or a checkpoint directory")
    # no torch here: keeps --help fast
    from pdefm.train.config import DEFAULT_EPOCHS, DEFAULT_LRS, RunConfig, cli_settings
    from pdefm.train.settings import add_flags

    p.add_argument(
        "--lr",
        type=float,
        nargs="+",
        default=list(DEFAULT_LRS),
        help=f"learning rate(s); the best on validation is kept (default {DEFAULT_LRS[0]:g})",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--epochs",
        type=int,
        help=f"epochs (default {DEFAULT_EPOCHS}); steps grow with the data: ceil(N / batch) per "
        "epoch",
    )
    budget.add_argument("--steps", type=int, help="optimiser steps instead of epochs")
    # every other setting: its flag, default and help come from RunConfig's declaration
    add_flags(p, RunConfig, cli_settings())
    p.add_argument("--out", default="runs", help="runs directory (default runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_train)


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a dataset (any resolution)",
        description="Relative L2 error, MSE and physics residual of a checkpoint's predictions "
        "on the validation and test splits of a dataset (zero-shot; any resolution).",
    )
    p.add_argument("checkpoint", help="checkpoint directory (model.safetensors + card.json)")
    p.add_argument("data", help="dataset directory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--out", default="runs", help="runs directory for the record (default runs)")
    p.add_argument(
        "--padding",
        default="auto",
        metavar="P",
        help="domain padding of the Fourier layers: auto keeps the checkpoint's, a fraction "
        "P in [0, 1] evaluates with that padding instead (default auto)",
    )
    p.set_defaults(run=_run_evaluate)


def _run_train(args: argparse.Namespace) -> int:
    if args.list_models:
        from pdefm.models import list_models, model_info

        for name in list_models():
            print(f"{name:10s} {model_info(name)}")
        return 0
    from pdefm.train.config import DEFAULT_EPOCHS, RunConfig, cli_settings

    no_budget = args.epochs is None and args.steps is None
    epochs = DEFAULT_EPOCHS if no_budget else args.epochs
    config = RunConfig(
        data=_data_arg(args),
        model=args.model,
        init=args.init,
        lrs=tuple(args.lr),
        epochs=epochs,
        steps=args.steps,
        out=args.out,
        progress=not args.quiet,
        **{name: getattr(args, name) for name in cli_settings()},
    )
    record = _train(config)
    from pdefm.train import distributed

    if not distributed.is_main():  # under torchrun rank 0 reports for all
        return 0 if record.completed else 1
    return _report(record)


def _data_arg(args: argparse.Namespace) -> str:
    if args.data and args.data_flag and args.data != args.data_flag:
        raise PdefmError("give the dataset once: DATA or --data DATA, not two different ones")
    if not (args.data or args.data_flag):
        raise PdefmError("no dataset given: pdefm train DATA (or --data DATA)")
    return args.data or args.data_flag


def _run_evaluate(args: argparse.Namespace) -> int:
    """A zero-shot run (as `pdefm train --mode zero-shot`): the same up-front checks, run id,
    folder and record as training, around ``evaluate_checkpoint`` (pdefm.train.evaluate)."""
    from pdefm.train.config import RunConfig

    config = RunConfig(
        data=args.data,
        init=args.checkpoint,
        mode="zero-shot",
        epochs=None,
        device=args.device,
        out=args.out,
        progress=False,
        padding=args.padding,
    )
    return _report(_train(config))


def _train(config):
    from pdefm.train.loop import train

    return train(config)


def _report(record) -> int:
    """Print a finished run (a ``RunRecord``) in three lines; 1 if it failed."""
    where = record.out
    if not record.completed:
        print(
            f"run {record.id} failed: {record.reason} (record: {where}/record.json)",
            file=sys.stderr,
        )
        return 1
    lr = record.selected_lr
    test, val = record.test, record.val
    chosen = f"lr {lr:g}: " if lr is not None else ""
    print(
        f"run {record.id}: {chosen}val rel L2 {val['rel_l2']:.4g}, test rel L2 "
        f"{test['rel_l2']:.4g} (MSE {test['mse']:.3g}"
        + (f", residual {test['residual']:.3g})" if "residual" in test else ")")
    )
    if "per_output" in test:
        parts = ", ".join(f"{name} {value:.4g}" for name, value in test["per_output"].items())
        print(f"test rel L2 per output: {parts}")
    if record.budget:
        print(_budget_line(record))
    print(
        f"record: {where}/record.json"
        + (f"; checkpoint: {record.checkpoint}" if record.checkpoint else "")
    )
    return 0


def _budget_line(record) -> str:
    """What the selected rate trained for, and whether that was enough."""
    b = record.budget
    lrs = ", ".join(f"{lr:g}" for lr in record.lrs_tried)
    line = f"budget: {b['epochs_run']} epochs, {b['steps_run']} steps at batch {b['batch']}"
    line += " (stopped by patience)" if b.get("stopped_early") else ""
    line += f"; lrs tried: {lrs}"
    if record.converged is False:
        line += "; validation was still improving at the end: try a larger budget"
    if record.lr_at_edge:
        line += "; the chosen lr is at the edge of the grid: try --lr-extend or a wider --lr"
    if record.start_kept:
        line += (
            f"; no rate beat the starting weights on validation (rel L2 "
            f"{record.start_val:.4g}): they are the result, unchanged"
        )
    c = record.compute
    if c.get("cpu_s") is not None:
        flops = "" if c.get("flops") is None else f", {c['flops']:.3g} operations"
        line += f"\ncost: {c['wall_s']:.3g} s wall, {c['cpu_s']:.3g} core-s{flops}"
    return line
