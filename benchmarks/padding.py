"""Domain padding benchmark: does padding the Fourier layers help on non-periodic data?

The data: zero-Dirichlet Darcy flow on the unit square,

    -div(a(x) grad u) = 1 in (0, 1)^2,   u = 0 on the boundary,

with smooth random coefficient fields a of contrast max a / min a = 10
(``pdefm.pdes.random_fields.coefficient_field``, length scale 0.2) solved by
``pdefm.pdes.elliptic.solve`` at the n x n interior points, imported with
``pdefm.data.importer.import_dataset(..., boundary="dirichlet")`` as the inputs
``source`` = 1 (a constant), ``diffusion_xx`` = ``diffusion_yy`` = a (fields) and
``diffusion_xy`` = 0 (a constant), target u.

For each padding (default: 0, 0.1 and auto, which resolves to ``AUTO_PADDING`` of n on this
non-periodic dataset) and each seed, fno-micro trains from scratch with ``pdefm.train.loop``
under one budget (epochs, the same for every run), every learning rate of a small grid, the
rate chosen on validation error as `pdefm train` does; the table shows the test relative L2
error of the selected model, mean and per seed, and the wall time. Seeds change the
initialisation and the order of the examples; the dataset is the same for every run.

Run ``python benchmarks/padding.py --help`` for the options; ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _markdown import (  # the benchmarks' directory is on sys.path as a script
    add_write_option,
    git_commit,
    publish,
    section,
)

import pdefm
from pdefm._malloc import keep_freed_memory
from pdefm.data.card import load_card
from pdefm.data.importer import import_dataset
from pdefm.pdes import elliptic, random_fields
from pdefm.train import loop
from pdefm.train.config import AUTO_PADDING, RunConfig

SECTION = "## Domain padding on zero-Dirichlet Darcy flow (benchmarks/padding.py)"
INPUTS = ["diffusion_xx", "diffusion_yy", "diffusion_xy"]
MODEL = "fno-micro"


# -- options -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(
        description=(
            "Train fno-micro from scratch on zero-Dirichlet Darcy flow (smooth coefficients of "
            "contrast 10, forcing 1) with each --paddings value and each seed, the learning "
            "rate chosen on validation from --lrs, one budget for all; print the test relative "
            "L2 error (mean and per seed) and wall time per padding."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=32, help="grid size (n x n interior points)")
    parser.add_argument("--n-train", type=int, default=256, help="training examples")
    parser.add_argument("--n-eval", type=int, default=64, help="validation and test examples each")
    parser.add_argument("--contrast", type=float, default=10.0, help="max a / min a")
    parser.add_argument(
        "--paddings", nargs="+", default=["0", "0.1", "auto"], help="padding settings compared"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-2, 3e-2])
    parser.add_argument(
        "--lr-extend",
        type=int,
        default=1,
        help="grow the rate grid past an edge up to K times, as `pdefm train --lr-extend K`",
    )
    parser.add_argument("--epochs", type=int, default=100, help="budget of every run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    add_write_option(parser, SECTION)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 64 training examples, 16 eval, 5 epochs, one seed, one rate",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_eval, args.epochs, args.seeds = 64, 16, 5, [0]
        args.lrs, args.lr_extend = [3e-3], 0
    if min(args.n_train, args.n_eval, args.epochs, args.batch_size, args.threads) < 1:
        parser.error("--n-train, --n-eval, --epochs, --batch-size and --threads must be >= 1")
    if args.lr_extend < 0:
        parser.error("--lr-extend must be >= 0")
    return args


# -- the dataset -------------------------------------------------------------------------------
def darcy_arrays(n_samples: int, n: int, contrast: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays of ``n_samples`` zero-Dirichlet Darcy problems -div(a grad u) = 1 on n x n
    interior points, in ``pdefm import``'s layout (fields (N, n, n), constants (N,); x is
    array axis 0). Every solve is checked to have converged."""
    gen = torch.Generator().manual_seed(seed)
    a = random_fields.coefficient_field(gen, n_samples, n, contrast, boundary="dirichlet")
    solution = elliptic.solve(a, torch.ones_like(a), "dirichlet")
    if not bool(solution.converged.all()):
        raise RuntimeError("a Darcy solve did not converge; lower --contrast")
    return {
        "source": np.ones(n_samples),
        "solution": solution.u.numpy(),
        "diffusion_xx": a.numpy(),
        "diffusion_yy": a.numpy(),
        "diffusion_xy": np.zeros(n_samples),
    }


def make_dataset(args: argparse.Namespace, root: Path) -> Path:
    """The imported Dirichlet dataset in ``root / "darcy"`` (train / val / test as asked)."""
    total = args.n_train + 2 * args.n_eval
    np.savez(root / "darcy.npz", **darcy_arrays(total, args.n, args.contrast))
    fraction = args.n_eval / total
    out = import_dataset(
        root / "darcy.npz",
        root / "darcy",
        family="darcy_dirichlet",
        inputs=INPUTS,
        x_axis=0,
        boundary="dirichlet",
        val_fraction=fraction,
        test_fraction=fraction,
        progress=False,
    )
    card = load_card(out)
    assert not card.periodic, "the dataset must be non-periodic"
    return out


# -- the runs ----------------------------------------------------------------------------------
@dataclass
class Result:
    """The runs of one padding setting: per seed the test rel. L2, chosen rate, wall time."""

    padding: str
    resolved: float = 0.0
    errors: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    tried: list[list[float]] = field(default_factory=list)
    edges: list[str | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    budget: dict = field(default_factory=dict)  # the last run's record["budget"]


def padding_value(text: str) -> str | float:
    """A --paddings entry as RunConfig takes it: "auto" or a number."""
    return text if text == "auto" else float(text)


def train_one(args, data: Path, out: Path, padding: str, seed: int) -> tuple[dict, float]:
    """One `pdefm train` run; returns its record and the padding its checkpoint records."""
    config = RunConfig(
        data=str(data),
        model=MODEL,
        lrs=tuple(args.lrs),
        lr_extend=args.lr_extend,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=seed,
        padding=padding_value(padding),
        device="cpu",
        out=str(out),
        progress=False,
    )
    record = loop.train(config)
    if not record.completed:
        raise RuntimeError(f"padding {padding} seed {seed} failed: {record.reason}")
    card = json.loads((Path(record.checkpoint) / "card.json").read_text())
    return record, float(card["arch"].get("padding", 0.0))


def measure(args: argparse.Namespace, data: Path, out: Path) -> list[Result]:
    """Every padding x seed, seeds outermost so paddings alternate in time (shared machines
    drift; interleaving keeps the wall times comparable)."""
    results = {p: Result(p) for p in args.paddings}
    for seed in args.seeds:
        for padding in args.paddings:
            start = time.perf_counter()
            record, resolved = train_one(args, data, out, padding, seed)
            r = results[padding]
            r.seconds.append(time.perf_counter() - start)
            r.resolved = resolved
            r.errors.append(record.test["rel_l2"])
            r.lrs.append(record.selected_lr)
            r.edges.append(record.lr_at_edge)
            r.tried.append(record.lrs_tried)
            r.budget = record.budget
            tried = ", ".join(f"{x:g}" for x in r.tried[-1])
            print(
                f"  padding {padding:>5} (= {resolved:g}) seed {seed}: test rel L2 "
                f"{r.errors[-1]:.4f}, lr {r.lrs[-1]:g} of {tried}, {r.seconds[-1]:.0f} s",
                flush=True,
            )
    return list(results.values())


# -- reporting ---------------------------------------------------------------------------------
def results_table(results: list[Result], n: int) -> str:
    """One row per padding: padded cells per axis at ``n``, mean (sd) and per-seed test rel.
    L2, chosen rates, wall time."""
    lines = [
        "| padding | cells per axis | test rel. L2 mean (sd) | per seed | lr chosen | "
        "wall time per run |",
        "|---|---:|---:|---|---|---:|",
    ]
    for r in results:
        sd = statistics.stdev(r.errors) if len(r.errors) > 1 else float("nan")
        per_seed = ", ".join(f"{e:.4f}" for e in r.errors)
        lrs = ", ".join(f"{lr:g}" for lr in r.lrs)
        label = f"auto (= {r.resolved:g})" if r.padding == "auto" else f"{float(r.padding):g}"
        mean = statistics.mean(r.errors)
        lines.append(
            f"| {label} | {round(r.resolved * n)} | {mean:.4f} ({sd:.4f}) | {per_seed} | {lrs} "
            f"| {statistics.mean(r.seconds):.0f} s |"
        )
    return "\n".join(lines)


def report(
    results: list[Result],
    args: argparse.Namespace,
    data: Path,
    started: dt.datetime,
    seconds: float,
) -> str:
    """The full markdown section: table, notes, command, machine, date."""
    card = load_card(data)
    counts = ", ".join(f"{s} {card.count(s)}" for s in ("train", "val", "test"))
    budget = results[0].budget
    edges = sum(e is not None for r in results for e in r.edges)
    notes = [
        f"Data: zero-Dirichlet Darcy flow -div(a grad u) = 1 at {args.n} x {args.n} interior "
        f"points, smooth coefficient fields of contrast {args.contrast:g} (length scale 0.2), "
        f"float64 PCG solves; inputs source = 1, diffusion_xx = diffusion_yy = a, "
        f"diffusion_xy = 0; {counts} examples (one dataset for every run).",
        f"Model {MODEL} from scratch; budget {budget['epochs']} epochs of "
        f"{budget['steps_per_epoch']} steps ({budget['steps']} steps, batch {budget['batch']}) "
        "for every run and learning rate, AdamW, cosine schedule, MSE on normalised data; learning "
        f"rates {', '.join(f'{lr:g}' for lr in args.lrs)} each trained, the grid grown past "
        f"an edge up to {args.lr_extend} time(s) (--lr-extend), the rate with the lowest "
        f"validation error kept (at an edge of the rates tried in {edges} of "
        f"{sum(len(r.edges) for r in results)} runs); seeds "
        f"{', '.join(map(str, args.seeds))} (initialisation and data order).",
        "padding p: the lifted features get round(p n) zero rows and columns after the last "
        "ones before the Fourier layers and are cropped after them; auto resolves to "
        f"{AUTO_PADDING:g} on this non-periodic dataset (0 on periodic data). Wall time per "
        "run covers every learning rate and the final evaluation; the whole benchmark (data "
        f"included) took {seconds / 60:.1f} min.",
    ]
    machine = (
        f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"Python {platform.python_version()}, pdefm {pdefm.__version__} ({git_commit()})"
    )
    return section(SECTION, results_table(results, args.n), notes, machine, started)


def main(argv: list[str] | None = None) -> int:
    """Make the dataset, train every padding and seed, print the section (and write it)."""
    args = parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    print(f"pdefm domain-padding benchmark, {torch.get_num_threads()} thread(s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="pdefm-padding-") as tmp:
        data = make_dataset(args, Path(tmp))
        results = measure(args, data, Path(tmp) / "runs")
        seconds = time.perf_counter() - clock
        text = report(results, args, data, started, seconds)
    print(f"total wall time {seconds:.0f} s")
    publish(text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
