"""CPU data-parallel scaling of ``pdefm train`` under torchrun (gloo): 1 vs N processes.

The same small pre-training job (a Poisson set generated once, same global batch, same epochs)
runs as ``python -m torch.distributed.run --nproc_per_node P -m pdefm.cli train ...`` with
P = 1 and P = N processes of one torch thread each (and, with ``--threads-baseline``, one
process with N threads: on a busy shared machine its threads wait for each other).
Training samples/s = training samples x epochs / the run record's ``wall_time_s`` (training,
per-epoch validation and the final evaluation; not the interpreter start). The
configurations are interleaved within each repeat (the machine is shared and noisy) and the
median is reported, with the test error of each run: data-parallel training computes the
same function, so the errors agree to float rounding.

Run ``python benchmarks/ddp_cpu.py --help`` for the options; ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _markdown import (  # the benchmarks' directory is on sys.path as a script
    git_commit,
    publish,
    section,
)

SECTION = "## CPU data-parallel scaling (benchmarks/ddp_cpu.py)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=2, help="processes of the data-parallel run")
    p.add_argument("--model", default="fno-1m")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--batch", type=int, default=32, help="global batch size")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--threads-baseline", action="store_true", help="also 1 process with N torch threads"
    )
    p.add_argument("--quick", action="store_true", help="smoke test: fno-micro, 32x32")
    p.add_argument("--write", type=Path, help="markdown file to put the section in")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.resolution, args.n_train, args.epochs, args.repeats = (
            "fno-micro",
            32,
            128,
            2,
            1,
        )
    return args


def make_data(root: Path, args) -> Path:
    from pdefm.data.generate import generate_dataset
    from pdefm.data.spec import GenerationSpec
    from pdefm.pdes import GaussianLatticeSource

    source = GaussianLatticeSource(sigma=1 / 32 if args.resolution >= 64 else 1 / 16)
    spec = GenerationSpec(
        "poisson", 1, 5, args.n_train, 64, 64, resolution=args.resolution, source=source
    )
    generate_dataset(spec, root / "data", progress=False)
    return root / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(procs: int, data: Path, out: Path, args) -> list[str]:
    """The torchrun command line of one configuration (gloo on the CPU, localhost)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(procs),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "pdefm.cli",
        "train",
        str(data),
        "--model",
        args.model,
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]


def run_one(procs: int, threads: int, data: Path, out: Path, args) -> dict:
    """One training run; its samples/s and test error from the record."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = command(procs, data, out, args)
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    (path,) = out.glob("*/record.json")
    record = json.loads(path.read_text())
    rate = args.n_train * args.epochs / record["wall_time_s"]
    return {"rate": rate, "test": record["test"]["rel_l2"], "world": record["world_size"]}


CONFIGS = ("1 process x 1 thread", "1 process x N threads", "N processes x 1 thread")


def configs(n: int, threads_baseline: bool) -> dict[str, tuple[int, int]]:
    """name -> (processes, threads per process)."""
    out = {CONFIGS[0]: (1, 1), CONFIGS[2].replace("N", str(n)): (n, 1)}
    if threads_baseline:
        out[CONFIGS[1].replace("N", str(n))] = (1, n)
    return out


def measure(args) -> dict[str, list[dict]]:
    chosen = configs(args.procs, args.threads_baseline)
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory(prefix="pdefm-ddp-") as tmp:
        data = make_data(Path(tmp), args)
        for k in range(args.repeats):
            for name, (procs, threads) in chosen.items():
                out = Path(tmp) / f"runs-{k}-{procs}-{threads}"
                results[name].append(run_one(procs, threads, data, out, args))
                print(f"  {name}: {results[name][-1]['rate']:.1f} samples/s", flush=True)
    return results


def table(results: dict[str, list[dict]]) -> str:
    base = statistics.median(r["rate"] for r in next(iter(results.values())))
    lines = [
        "| configuration | training samples/s | speed-up vs 1 process x 1 thread | test rel L2 |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        test = ", ".join(f"{r['test']:.6f}" for r in runs)
        lines.append(f"| {name} | {rate:,.1f} | {rate / base:.2f}x | {test} |")
    return "\n".join(lines)


def notes(args) -> list[str]:
    return [
        f"`pdefm train` of {args.model} on a Poisson set at {args.resolution}x{args.resolution}"
        f", {args.n_train} training samples, global batch {args.batch}, {args.epochs} epochs, "
        "launched with `python -m torch.distributed.run --nproc_per_node P -m pdefm.cli train "
        "... --device cpu` (gloo), OMP_NUM_THREADS set per configuration.",
        "samples/s = training samples x epochs / the record's wall_time_s (training, validation "
        f"each epoch, final evaluation); median of {args.repeats} interleaved repeat(s).",
        "Every configuration trains the same model on the same global batches: the test errors "
        "agree to float rounding (summation order differs).",
        f"This machine has {os.cpu_count()} cores and may be shared with other jobs: N "
        "processes of one thread use N cores where the baseline uses one, so the speed-up is "
        "bounded by N, by the other jobs' share of the cores and by the gradient all-reduce.",
    ]


def machine() -> str:
    import torch

    import pdefm

    return (
        f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}, pdefm "
        f"{pdefm.__version__} ({git_commit()})"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    print(f"pdefm CPU data-parallel benchmark: 1 vs {args.procs} processes", flush=True)
    results = measure(args)
    text = section(SECTION, table(results), notes(args), machine(), started)
    publish(text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
