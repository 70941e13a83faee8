"""Successive halving against the full learning-rate grid, on the demo's data and protocol.

The demo study (``pdefm.study.demo.yaml``: Poisson 16 x 16, fno-micro, downstream N = 4 to
32, 800 epochs, its rate grids grown past an edge up to twice, seeds 0-2, scratch and
fine-tuning from the demo's pre-trained model): its datasets and pre-training are made once,
then every trained downstream run (method, N, seed) is run with ``lr_search`` "grid" and
"halving" (``pdefm.train.search``), on the demo's grid and on a wider one (``--wide``, 5 rates
3e-4 to 3e-2, same extension). Printed: how often halving selects the grid's rate, the test
error change where it does not, and the optimiser steps and training wall time of each search
(summed over their rates) with their ratio. Protocol 2 runs that keep the pre-trained start
select no rate (None); halving agrees when it keeps the start too.

Every training runs in its own process with one thread; ``--workers`` processes at a time
(default 2), the grid and halving runs interleaved so that both meet the same contention.

    python benchmarks/lr_halving.py [--workers 2] [--out DIR] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from importlib.resources import as_file, files
from pathlib import Path

from _markdown import add_write_option, git_commit, publish, section

SECTION = "## Learning-rate search: successive halving vs the full grid (benchmarks/lr_halving.py)"
WIDE = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SEARCHES = ("grid", "halving")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def prepare(root: Path) -> list:
    """Make the demo's datasets and pre-trained model in ``root``; the RunConfigs of its
    trained downstream runs (zero-shot left out: it trains nothing)."""
    from pdefm.study.execute import execute
    from pdefm.study.runner import task_for
    from pdefm.study.spec import load_study

    with as_file(files("pdefm.study") / "demo.yaml") as path:
        study = load_study(path)
    for run in study.runs:
        if run.kind in ("data", "pretrain"):
            summary = execute(task_for(study, run, root))
            print(f"{run.kind} {run.id}: {summary.status} ({summary.seconds:.0f} s)", flush=True)
    return [
        task_for(study, r, root)
        for r in study.runs
        if r.kind == "downstream" and r.labels["method"] != "zero-shot"
    ]


def train_one(config) -> dict:
    """Train ``config`` (in a worker); what the comparison reads of its record."""
    from pdefm.train.loop import train

    record = train(config)
    per_lr = record["per_lr"].values()
    return {
        "lr": record.selected_lr,
        "test": record.test["rel_l2"],
        "steps": sum(e["steps"] for e in per_lr),
        "wall": sum(e["wall_s"] for e in per_lr),
        "rates": len(record.lrs_tried),
    }


def jobs_for(tasks: list, out: Path, wide: bool, quick: bool) -> list[tuple[tuple, object]]:
    """((grid name, method, N, seed, search), config) for every run, search and grid
    (``quick``: seed 0 and 40 epochs, a smoke test)."""
    grids = {"demo": None, **({"wide": WIDE} if wide else {})}
    jobs = []
    for task in tasks:
        labels = task.labels
        if quick and labels["seed"] != 0:
            continue
        for name, lrs in grids.items():
            for how in SEARCHES:
                config = replace(task.config, out=str(out), run_name=None, progress=False)
                config = replace(config, lr_search=how, **({"lrs": lrs} if lrs else {}))
                config = replace(config, epochs=40) if quick else config
                key = (name, labels["method"], labels["n_train"], labels["seed"], how)
                jobs.append((key, config))
    return jobs


def run_all(jobs: list, workers: int) -> dict[tuple, dict]:
    """Every job in ``workers`` spawned one-thread processes; {key: summary}."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {key: pool.submit(train_one, config) for key, config in jobs}
        done = {}
        for key, future in futures.items():
            done[key] = future.result()
            s = done[key]
            name = " ".join(map(str, key))
            line = f"lr {s['lr']}, test {s['test']:.4f}, {s['steps']} steps, {s['wall']:.1f} s"
            print(f"{name}: {line}", flush=True)
    return done


def rungs(jobs: list) -> str:
    """The halving rungs (epochs) of each grid, as the search plans them."""
    from pdefm.train.search import max_rates, rung_epochs

    seen = {}
    for key, config in jobs:
        if key[-1] == "halving" and key[0] not in seen:
            rates = max_rates(config)
            limits = rung_epochs(config.plan(config.n_train), rates)
            seen[key[0]] = f"{key[0]} grid R = {rates}: " + " / ".join(map(str, limits))
    return "; ".join(seen.values())


def compare(done: dict[tuple, dict]) -> tuple[str, list[str]]:
    """The summary table (per grid, per method and both) and the runs where the rates differ."""
    lines = [
        "| grid | method | runs | same rate | test change where not (mean / worst) | steps "
        "grid | steps halving | ratio | wall grid (s) | wall halving (s) | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pairs = sorted({k[:4] for k in done})
    for grid in sorted({k[0] for k in pairs}):
        for method in ("scratch", "finetune", "all"):
            keys = [k for k in pairs if k[0] == grid and method in (k[1], "all")]
            both = [(done[(*k, "grid")], done[(*k, "halving")]) for k in keys]
            lines.append(_row(grid, method, both))
    differ = [_differ(k, done) for k in pairs if _changed(done, k) is not None]
    return "\n".join(lines), differ


def _changed(done: dict, key: tuple) -> float | None:
    """Halving's relative test error change where it chose another rate than the grid."""
    g, h = done[(*key, "grid")], done[(*key, "halving")]
    return None if g["lr"] == h["lr"] else h["test"] / g["test"] - 1


def _row(grid: str, method: str, pairs: list[tuple[dict, dict]]) -> str:
    """One table row over (grid run, halving run) pairs."""
    changes = [h["test"] / g["test"] - 1 for g, h in pairs if g["lr"] != h["lr"]]
    change = "-"
    if changes:
        worst = max(changes, key=abs)
        change = f"{100 * statistics.mean(changes):+.1f}% / {100 * worst:+.1f}%"
    steps = [sum(p[i]["steps"] for p in pairs) for i in (0, 1)]
    wall = [sum(p[i]["wall"] for p in pairs) for i in (0, 1)]
    same = sum(g["lr"] == h["lr"] for g, h in pairs)
    return (
        f"| {grid} | {method} | {len(pairs)} | {same} | {change} | {steps[0]} | {steps[1]} | "
        f"{steps[1] / steps[0]:.2f} | {wall[0]:.0f} | {wall[1]:.0f} | {wall[1] / wall[0]:.2f} |"
    )


def _differ(key: tuple, done: dict) -> str:
    g, h = done[(*key, "grid")], done[(*key, "halving")]
    return (
        f"{key[0]} grid, {key[1]} N={key[2]} seed {key[3]}: grid lr {g['lr']} (test "
        f"{g['test']:.4f}), halving lr {h['lr']} (test {h['test']:.4f}, "
        f"{100 * _changed(done, key):+.1f}%)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="processes at a time")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--no-wide", dest="wide", action="store_false", help="the demo's grid only")
    parser.add_argument("--quick", action="store_true", help="smoke test: seed 0, 40 epochs")
    add_write_option(parser, SECTION)
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    load = os.getloadavg()[0]
    _one_thread()
    with tempfile.TemporaryDirectory(prefix="pdefm-halving-") as tmp:
        root = args.out or Path(tmp)
        tasks = prepare(root / "demo")
        jobs = jobs_for(tasks, root / "runs", args.wide, args.quick)
        done = run_all(jobs, args.workers)
    table, differ = compare(done)
    notes = [
        "Halving: ETA = 2, rungs e_k = E / 2^(K-k) rounded down to a validation epoch, "
        "K = ceil(log2 R) for R = the most rates the search may train (grid + lr_extend); "
        f"rungs in epochs: {rungs(jobs)}. Extension happens at the first rung.",
        "Same rate: halving selected the rate the grid selected (None = both kept the "
        "pre-trained start). Where it selected the winner's rate, its model is the grid's "
        "bit for bit (tests/test_halving.py), so the test errors are equal.",
        "Steps and wall time: summed over every rate each search trained (training only; "
        "wall time per process, noisy on shared cores).",
        *(["Runs where halving chose another rate: " + "; ".join(differ)] if differ else []),
    ]
    machine = (
        f"{platform.machine()}, os.cpu_count()={os.cpu_count()} (shared: other jobs may be "
        f"running; load average {load:.1f} at the start), Python {platform.python_version()}, "
        f"{args.workers} processes of 1 thread, commit {git_commit()}"
    )
    publish(section(SECTION, table, notes, machine, started), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
