"""The `pdefm` command. Heavy imports (torch) happen inside the subcommands that need them, so
`pdefm --help` and `pdefm inspect` stay fast."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from pdefm import __version__, catalogue
from pdefm.errors import PdefmError

GENERATE_EPILOG = """\
families and their physics parameter (the axis of distribution shift):
  poisson              -c div(K grad u) = f; e = eigenvalue ratio of K   (default range 1 5)
  advection_diffusion  -(1-l) c div(K grad u) + l v.grad u = f;
                       psi = advection-to-diffusion ratio, met exactly  (default range 0.2 1)
  helmholtz            -c lap u - w u = f; integer w, samples with max|u| > 2 redraw
                       their source so the law of w is kept             (default range 1 10)

helmholtz values of w next to a resonance accept few sources: w = 2 accepts about 1 source
in 6,000 at the densest sparsity level. Each sample may draw --redraw-budget sources (default
2000); a w whose measured acceptance is too low for that budget is refused before anything is
written, with the rate and the budget that would suffice. Drop such values with
--drop-unsampleable, or keep them with a larger --redraw-budget (slower: every draw is a solve).

limits: --resolution even, 4 to 4096; counts 1 to 100,000,000 per split; --sigma in
[2/4096, 0.5]; poisson e <= 1e4, advection_diffusion psi <= 1e3, helmholtz w <= 1000. Requests
needing more memory or disk than the machine has are refused with the estimate.

examples:
  pdefm generate poisson --out data/poisson-1-5
  pdefm generate poisson --range 5 10 --n-train 512 --seed 1 --out data/poisson-5-10
  pdefm generate helmholtz --resolution 64 --drop-unsampleable --out data/hh-1-10
  pdefm generate --from-card data/poisson-1-5/card.json --out copy   # bit-identical copy

An interrupted run resumes where it stopped when the same command is run again.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with pdefm's error contract: one line, ``error: ...``, exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pdefm",
        description="Pre-train neural operators on PDE families, adapt them with few examples, "
        "and measure how that transfer scales.",
    )
    parser.add_argument("--version", action="version", version=f"pdefm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_generate(sub)
    _add_inspect(sub)
    _add_import(sub)
    _add_mix(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_study(sub)
    _add_results(sub)
    _add_report(sub)
    _add_demo(sub)
    _add_threads(sub)
    return parser


THREADS_HELP = (
    "torch CPU threads per process (default: the cores other processes leave free, shared "
    "among the workers; or PDEFM_THREADS / OMP_NUM_THREADS if set)"
)


def _add_threads(sub) -> None:
    """``--threads`` on every command that computes with torch (see pdefm.threads)."""
    for name in ("generate", "train", "evaluate", "demo"):
        sub.choices[name].add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    study_verbs = next(
        a for a in sub.choices["study"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    study_verbs.choices["run"].add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a dataset of one PDE family (train/val/test HDF5 + card)",
        description="Generate a dataset of one PDE family: sources are sums of Gaussians on a "
        "12x12 lattice at four sparsity levels, solved spectrally in float64, stored as float32.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("family", nargs="?", help=f"one of {', '.join(catalogue.family_names())}")
    p.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="declared range of the physics parameter (default: the study's "
        "pre-training range of the family)",
    )
    p.add_argument("--n-train", type=int, default=1024, help="training samples (default 1024)")
    p.add_argument("--n-val", type=int, default=128, help="validation samples (default 128)")
    p.add_argument("--n-test", type=int, default=128, help="test samples (default 128)")
    p.add_argument(
        "--resolution", type=int, default=128, help="grid size n for n x n (default 128)"
    )
    p.add_argument("--seed", type=int, default=0, help="user seed (default 0)")
    p.add_argument("--out", help="output directory (default data/FAMILY_LOW-HIGH_nRES)")
    p.add_argument("--sigma", type=float, help="Gaussian width of the sources (default 1/32)")
    p.add_argument(
        "--max-abs-u",
        type=float,
        help="helmholtz: redraw sources whose solution exceeds this (default 2)",
    )
    p.add_argument(
        "--drop-unsampleable",
        action="store_true",
        help="helmholtz: drop values of w whose measured acceptance is too low for the "
        "redraw budget instead of failing (the card records it)",
    )
    p.add_argument(
        "--redraw-budget",
        type=int,
        metavar="N",
        help="helmholtz: sources a sample may draw before it counts as unsampleable (default 2000)",
    )
    p.add_argument(
        "--from-card",
        metavar="CARD",
        help="regenerate exactly the dataset a card describes (other options ignored)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_generate)


def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a dataset and plot examples and parameter histograms",
        description="Print a dataset's card summary and write a PNG with source / solution "
        "examples (parameter value in each title) and the realised parameter histogram.",
    )
    p.add_argument("directory", help="dataset directory (holds card.json)")
    p.add_argument("--png", help="where to write the figure (default DIR/inspect.png)")
    p.add_argument("--examples", type=int, default=4, help="examples to plot (default 4)")
    p.add_argument(
        "--verify", action="store_true", help="also re-hash every split and compare with the card"
    )
    p.set_defaults(run=_run_inspect)


IMPORT_EPILOG = """\
the file (NPZ or HDF5; in HDF5 top-level datasets with these names):
  source             (N, n, n) or (N, 1, n, n)  the forcing field f, the one field input
  solution           (N, n, n) or (N, 1, n, n)  the target field u (one output per dataset)
  coefficients       (N, K)   optional: constant per-sample input channels
  coefficient_names  (K,)     strings, required with coefficients; to fine-tune a pdefm
                              checkpoint use its channel names (channels map by name):
                              diffusion_xx diffusion_yy diffusion_xy velocity_x velocity_y
                              helmholtz_c helmholtz_w
  parameter          (N,)     optional: the physics parameter per sample (the shift axis)
  parameter_name     string   optional name of the parameter
  family, equation   strings  optional descriptions (--family / --equation override them)

The grid is taken as periodic on the unit square, n >= 8. Training divides f and u by the same
per-example factor, which assumes u is linear in f. Samples are split at random (seeded) into
train/val/test; the card records the file's path and SHA-256.

example:
  np.savez("mydata.npz", source=f, solution=u,             # f, u: (N, 64, 64)
           coefficients=np.stack([kxx, kyy, kxy], 1),      # (N, 3)
           coefficient_names=np.array(["diffusion_xx", "diffusion_yy", "diffusion_xy"]),
           parameter=e, parameter_name="e", family="darcy-own")
  pdefm import mydata.npz --out data/mydata
  pdefm train data/mydata --init CHECKPOINT --n-train 64 --epochs 50

See docs/own-data.md.
"""


def _add_import(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import your own data (NPZ or HDF5 arrays) as a pdefm dataset",
        description="Validate an NPZ or HDF5 file of sources, solutions and optional "
        "coefficients and write it as a pdefm dataset (train/val/test HDF5 + card) to train "
        "or fine-tune on.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="the .npz or .h5 file to import")
    p.add_argument("--out", required=True, help="new (or empty) dataset directory")
    p.add_argument("--family", help="dataset family name (default: the file's, else custom)")
    p.add_argument("--equation", help="equation text for the card (default: the file's)")
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of samples for val (default 0.1)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.1, help="share of samples for test (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_import)


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


MIX_EPILOG = """\
The union channel layout (fixed order; a family's missing coefficients are 0):
  source, diffusion_xx, diffusion_yy, diffusion_xy, velocity_x, velocity_y,
  helmholtz_c, helmholtz_w     (then any other channel, e.g. from imported data)
--masks adds has_X for every coefficient X (1 where the sample's family has X).

example (the study's mixed pre-training set, SYS-4):
  pdefm mix data/poisson-1-5 data/ad-0.2-1 data/hh-1-10 --n-train 3072 --out data/mix
  pdefm train data/mix --model fno-tiny --epochs 50
"""


def _add_mix(sub) -> None:
    p = sub.add_parser(
        "mix",
        help="mix datasets of several families into one (mixed-physics pre-training)",
        description="Write a dataset that draws from several datasets (weights as "
        "DIR:WEIGHT, default 1) on the union channel layout, with normalisation statistics "
        "per family. Samples are copied; member splits must hold enough samples.",
        epilog=MIX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("members", nargs="+", metavar="DIR[:WEIGHT]", help="member datasets")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n-train", type=int, help="training samples (default: all members' sum)")
    p.add_argument("--n-val", type=int, help="validation samples (default: members' sum)")
    p.add_argument("--n-test", type=int, help="test samples (default: members' sum)")
    p.add_argument("--masks", action="store_true", help="add has_X presence channels")
    p.add_argument("--seed", type=int, default=0, help="which samples and order (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_mix)


def _run_mix(args: argparse.Namespace) -> int:
    from pdefm.data.card import load_card
    from pdefm.data.mixture import MixtureSpec, mix_datasets

    members = tuple(_member_arg(m) for m in args.members)
    given = {s: getattr(args, f"n_{s}") for s in ("train", "val", "test")}
    for split, n in given.items():  # 0 is a count to refuse, not "use the default"
        if n is not None and n < 1:
            raise PdefmError(f"--n-{split} must be >= 1, got {n}; omit it to use every sample")
    cards = [load_card(path) for path, _ in members]
    counts = {s: n if n is not None else sum(c.count(s) for c in cards) for s, n in given.items()}
    spec = MixtureSpec(
        members, counts["train"], counts["val"], counts["test"], args.masks, args.seed
    )
    card = mix_datasets(spec, args.out, progress=not args.quiet)
    families = ", ".join(f"{f} {n}" for f, n in card.realised("train")["families"].items())
    print(f"mixture {args.out}: train {families}; channels {', '.join(card.input_channels)}")
    print(f"train on it with: pdefm train {args.out} --model fno-tiny --epochs 50")
    return 0


def _member_arg(text: str) -> tuple[str, float]:
    from pathlib import Path

    if ":" not in text or Path(text).is_dir():  # a directory whose name holds ':' has weight 1
        return text, 1.0
    path, _, weight = text.rpartition(":")
    try:
        return path, float(weight)
    except ValueError:
        raise PdefmError(f"member {text!r}: the weight after ':' must be a number") from None


def _add_train(sub) -> None:
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


def _add_evaluate(sub) -> None:
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
    from pdefm.train.config import RunConfig

    config = RunConfig(
        data=args.data,
        init=args.checkpoint,
        mode="zero-shot",
        epochs=None,
        device=args.device,
        out=args.out,
        progress=False,
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
    return line


def _add_study(sub) -> None:
    p = sub.add_parser(
        "study",
        help="plan, run or check a scaling/transfer study (YAML)",
        description="A study file declares datasets, pre-training stages and a downstream grid "
        "(tasks x sizes x inits x modes x models x lrs x seeds); it expands into runs whose ids "
        "are hashes of their configs. `run` does what is missing in dependency order; rerun it "
        "after an interruption to continue. Examples: studies/cpu/*.yaml, studies/paper/*.yaml.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    plan = verbs.add_parser("plan", help="print the expanded runs and what is already done")
    plan.add_argument("file", help="study YAML")
    plan.add_argument("--out", help="study directory (default: ./NAME, the study's name)")
    plan.add_argument(
        "--estimate",
        action="store_true",
        help="also time one training step of each model, grid and batch the study uses and "
        "print how long its training should take here (a few seconds to measure)",
    )
    plan.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with --estimate: the --workers you will run with (default 1)",
    )
    plan.set_defaults(run=_run_study_plan)
    run = verbs.add_parser("run", help="run what is missing (data -> pre-train -> downstream)")
    run.add_argument("file", help="study YAML")
    run.add_argument("--out", help="study directory (default: ./NAME, the study's name)")
    run.add_argument(
        "--workers", type=int, default=1, help="runs side by side in separate processes (default 1)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--refine",
        type=int,
        nargs="?",
        const=2,
        metavar="FACTOR",
        help="then rerun the downstream runs the report flags (validation still improving at "
        "the end, or the chosen lr at the edge of those tried) with FACTOR times the budget "
        "(default 2) and the lr grid around the chosen rate; the report uses the new results",
    )
    _add_ray_options(run)
    run.set_defaults(run=_run_study_run)
    status = verbs.add_parser("status", help="summarise a study directory")
    status.add_argument("directory", help="study directory (holds plan.json)")
    status.set_defaults(run=_run_study_status)


def _add_ray_options(run) -> None:
    ray = run.add_argument_group(
        'Ray cluster (pip install "pdefm[ray]"; docs/cluster.md)',
        "every run becomes a Ray task; a task whose worker dies is retried and resumes; the "
        "study directory must be on storage every node sees under the same path",
    )
    ray.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine (--workers); ray: tasks on a Ray cluster",
    )
    ray.add_argument(
        "--address",
        help="Ray cluster: HOST:PORT, or auto (one started with `ray start`); default: "
        "RAY_ADDRESS, else a cluster started on this machine, else a new local one",
    )
    ray.add_argument(
        "--ray-cpus-per-run", type=float, metavar="N", help="CPUs each run asks for (default 1)"
    )
    ray.add_argument(
        "--ray-gpus-per-run",
        type=float,
        metavar="N",
        help="GPUs each training run asks for (default 1 if the cluster has GPUs, else 0)",
    )


def _add_results(sub) -> None:
    p = sub.add_parser(
        "results",
        help="a study's run records as one table",
        description="Load every run record of a study directory into one table "
        "(test metrics of the learning rate chosen on validation).",
    )
    p.add_argument("directory", help="study directory")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.set_defaults(run=_run_results)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a study's report (html, markdown, figures, csv)",
        description="Write DIR/report/report.html (self-contained), report.md, "
        "the PNG figures and results.csv for a study directory.",
    )
    p.add_argument("directory", help="study directory")
    p.add_argument("--out", help="report directory (default DIR/report)")
    p.set_defaults(run=_run_report)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the embedded demo study end to end on CPU",
        description="Pre-train a small FNO (fno-micro, 16 x 16 grids) on Poisson e in [1, 5], "
        "then fine-tune it and train from scratch on e in [5, 10] with 4 to 32 examples, three "
        "seeds, 800 epochs a run and the learning rate searched on validation; write the "
        "report and print the headline (under 5 minutes on 2 CPU cores). A second call "
        "returns at once from the cache.",
    )
    p.add_argument("--out", default="pdefm-demo", help="demo directory (default pdefm-demo)")
    p.add_argument(
        "--workers",
        type=int,
        help="runs side by side (default: one per CPU core, at most 4)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_demo)


def _run_study_plan(args: argparse.Namespace) -> int:
    from pdefm.checks import check_int
    from pdefm.study.estimate import estimate_seconds, plan_work, summary_lines
    from pdefm.study.runner import check_study_dir, plan_lines, study_dir_for
    from pdefm.study.spec import load_study

    check_int(args.workers, "--workers", minimum=1)
    study = load_study(args.file)
    root = study_dir_for(study, args.out)
    check_study_dir(root, study)  # the folder `study run` would refuse; plan writes nothing
    print(f"study {study.name} -> {root}")
    print("\n".join(plan_lines(study, root)))
    works = plan_work(study)
    seconds = None
    if args.estimate:  # timed with the threads each of the --workers processes would get
        from pdefm.threads import apply_threads, choose_threads

        apply_threads(choose_threads(workers=args.workers))
        seconds = estimate_seconds(works)
    print("\n".join(summary_lines(works, seconds, args.workers)))
    return 0


def _run_study_run(args: argparse.Namespace) -> int:
    from pdefm.study.runner import run_study

    root = run_study(
        args.file,
        args.out,
        workers=args.workers,
        progress=not args.quiet,
        executor=args.executor,
        address=args.address,
        cpus_per_run=args.ray_cpus_per_run,
        gpus_per_run=args.ray_gpus_per_run,
        refine=args.refine,
        command=args.command_line,
    )
    print(f"study done: {root}; report it with: pdefm report {root}")
    return 0


def _run_study_status(args: argparse.Namespace) -> int:
    from pdefm.study.results import load_results

    rows = load_results(args.directory)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(
        f"{args.directory}: {len(rows)} training/evaluation runs: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    )
    return 0


def _run_results(args: argparse.Namespace) -> int:
    from pdefm.checks import check_output_file
    from pdefm.study.results import load_results, write_csv

    if args.csv:  # refused before the table is printed: a missing folder is not created
        check_output_file(args.csv, "--csv")
    rows = load_results(args.directory)
    for row in rows:
        err = row["test_rel_l2"]
        err = f"{err:.4g}" if isinstance(err, (int, float)) else "-"
        print(
            f"{row['status']:9s} {row['task'] or '':14s} {row['method'] or '':9s} "
            f"{row['model'] or '':9s} n={row['n_train']!s:5s} seed={row['seed']} "
            f"lr={row['lr']!s:7s} test rel L2 {err}"
        )
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pdefm.checks import check_output_dir
    from pdefm.report import write_report
    from pdefm.report.samples import read_histories
    from pdefm.study.results import dataset_summaries, load_results, study_setup

    out = Path(args.out) if args.out else Path(args.directory) / "report"
    rows = load_results(args.directory)
    setup = {**study_setup(args.directory), "command": getattr(args, "command_line", None)}
    check_output_dir(out, "the report folder (--out)")
    paths = write_report(
        rows,
        out,
        title=f"pdefm study {setup['name']}",
        datasets=dataset_summaries(args.directory),
        setup=setup,
        histories=read_histories(args.directory, rows),
        samples=_samples(args.directory, rows),
    )
    (out / "headline.txt").write_text(paths["headline"] + "\n")
    print(paths["headline"])
    print(f"report: {paths['html']} (and {paths['markdown']}, {paths['csv']})")
    return 0


def _samples(root: str, rows: list[dict]) -> dict | None:
    """Test predictions of the first task that has fine-tune runs (else the first task)."""
    from pdefm.report.samples import predict_samples

    tasks = [r["task"] for r in rows if r["kind"] == "downstream" and r["status"] == "completed"]
    tuned = [r["task"] for r in rows if r.get("method") == "finetune" and r["task"] in tasks]
    task = min(tuned or tasks, default=None)
    return None if task is None else predict_samples(root, rows, task)


def _run_demo(args: argparse.Namespace) -> int:
    from importlib.resources import as_file, files

    from pdefm.study.runner import run_study

    with as_file(files("pdefm.study") / "demo.yaml") as spec:
        root = run_study(
            spec,
            args.out,
            workers=_demo_workers(args.workers),
            progress=not args.quiet,
            command=args.command_line,
        )
    cached = _fresh_report(root)
    if cached is not None:
        print(cached)
        print(f"report: {root / 'report' / 'report.html'} (cached; delete it to rebuild)")
        return 0
    args.directory, args.out = str(root), None
    return _run_report(args)


def _demo_workers(workers: int | None) -> int:
    """--workers, or one per usable core up to 4 (the demo's model is too small for one run
    to use several cores well: side-by-side runs finish sooner)."""
    if workers is not None:
        return workers
    from pdefm.threads import usable_cores

    return max(1, min(4, usable_cores()))


def _fresh_report(root) -> str | None:
    """The headline of ``root``'s report if it is newer than every run record."""
    headline, html = root / "report" / "headline.txt", root / "report" / "report.html"
    if not (headline.is_file() and html.is_file()):
        return None
    newest = max((p.stat().st_mtime for p in root.glob("runs/*/record.json")), default=0.0)
    return headline.read_text().strip() if html.stat().st_mtime >= newest else None


def _spec_from_args(args: argparse.Namespace):
    from pdefm.data.spec import GenerationSpec
    from pdefm.pdes import GaussianLatticeSource

    names = ", ".join(catalogue.family_names())
    if args.family is None:
        raise PdefmError(f"give a FAMILY ({names}) or --from-card CARD")
    if not catalogue.is_family(args.family):
        raise PdefmError(f"unknown PDE family {args.family!r}; choose one of {names}")
    low, high = args.range if args.range else catalogue.family(args.family).default_range
    config = {}
    if args.max_abs_u is not None:
        if args.family != "helmholtz":
            raise PdefmError("--max-abs-u applies to helmholtz only; remove it")
        config["max_abs_u"] = args.max_abs_u
    if args.redraw_budget is not None:
        if args.family != "helmholtz":
            raise PdefmError("--redraw-budget applies to helmholtz only; remove it")
        config["redraw_budget"] = args.redraw_budget
    source = (
        GaussianLatticeSource() if args.sigma is None else GaussianLatticeSource(sigma=args.sigma)
    )
    return GenerationSpec(
        args.family,
        low,
        high,
        args.n_train,
        args.n_val,
        args.n_test,
        resolution=args.resolution,
        seed=args.seed,
        family_config=config,
        source=source,
    )


def _default_out(spec) -> str:
    return f"data/{spec.family}_{spec.low:g}-{spec.high:g}_n{spec.resolution}"


def _run_generate(args: argparse.Namespace) -> int:
    from pdefm._malloc import keep_freed_memory
    from pdefm.data.generate import generate_dataset

    keep_freed_memory()
    if args.from_card:
        from pathlib import Path

        from pdefm.data.card import load_card
        from pdefm.data.spec import GenerationSpec

        card_path = Path(args.from_card)
        root = card_path if card_path.is_dir() else card_path.parent
        card = load_card(root)
        if card.kind == "imported":
            raise PdefmError(
                f"{root} was imported, not generated; recreate it with: {card.command} --out DIR"
            )
        spec = GenerationSpec.from_dict(card.spec, f"{root / 'card.json'} field spec")
        _warn_if_not_bit_identical(card, root)
    else:
        spec = _spec_from_args(args)
    out = args.out or _default_out(spec)
    card = generate_dataset(
        spec, out, drop_unsampleable=args.drop_unsampleable, progress=not args.quiet
    )
    counts = card.counts
    print(
        f"dataset {out}: {spec.family} {card.parameter_name} in "
        f"[{spec.low:g}, {spec.high:g}], {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test at {spec.resolution}x{spec.resolution}"
    )
    print(f"inspect it with: pdefm inspect {out}")
    return 0


def _warn_if_not_bit_identical(card, root) -> None:
    """Helmholtz cards written before the redraw budget existed (no ``redraw_budget`` in
    their family config) drew replacement sources in another order: the law of w is the same,
    but samples that needed redraws come out different."""
    if card.family == "helmholtz" and "redraw_budget" not in card.family_config:
        print(
            f"warning: {root} predates the Helmholtz redraw budget; samples that needed "
            "redrawing will differ from the original (same law of w, not the same bytes)",
            file=sys.stderr,
        )


def _run_inspect(args: argparse.Namespace) -> int:
    from pdefm.data.inspect import inspect_dataset

    print(
        inspect_dataset(args.directory, png=args.png, n_examples=args.examples, verify=args.verify)
    )
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from pdefm.data.card import load_card
    from pdefm.data.importer import import_dataset

    out = import_dataset(
        args.file,
        args.out,
        family=args.family,
        equation=args.equation,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        progress=not args.quiet,
    )
    card = load_card(out)
    counts, n = card.counts, card.resolution
    print(
        f"dataset {out}: {card.family}, {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test at {n}x{n}; inputs {', '.join(card.input_channels)}; "
        f"output {', '.join(card.output_channels)}"
    )
    print(f"inspect it with: pdefm inspect {out}")
    print(f"fine-tune on it with: pdefm train {out} --init CHECKPOINT --n-train 64 --epochs 50")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from pdefm.threads import prepare_environment

    prepare_environment()  # before anything imports torch: idle threads sleep, never spin
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error (_Parser.error)
        return int(exc.code or 0)
    args.command_line = shlex.join(["pdefm", *(sys.argv[1:] if argv is None else argv)])
    try:
        _set_threads(args)
        return args.run(args)
    except PdefmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (or the automatic choice) to this process; study runs hand an
    explicit count to their worker processes through ``PDEFM_THREADS``."""
    if not hasattr(args, "threads"):
        return
    from pdefm.threads import ENV_THREADS, apply_threads, choose_threads

    if args.command in ("generate", "train", "evaluate"):
        apply_threads(choose_threads(args.threads))
    elif args.threads is not None:  # study run, demo: the runner and its workers read it
        os.environ[ENV_THREADS] = str(choose_threads(args.threads))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
