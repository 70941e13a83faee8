"""Contention benchmark: training speed on a CPU machine shared with one other busy process.

Two measurements, each compared inside this one run:

1. Step rate. An FNO training-step loop (fno-tiny by default) runs in a fresh process, quiet and
   then beside one competing busy process (a Python spin loop, one core), once with torch's
   own defaults (a thread per core, OpenMP's default wait policy) and once with pdefm's thread
   policy (``pdefm.threads``: passive waiting, threads from the cores left free). Target: with
   the competitor, pdefm's policy keeps at least 0.4x its quiet rate. Rounds alternate the
   configurations, and the median of each is reported.
2. Study workers. The wall time of one small study (data, pre-training, downstream runs) with
   ``pdefm study run --workers 1`` and ``--workers 2``, each from an empty folder. Target:
   ``--workers 2`` is no slower than ``--workers 1``.

Run it on an otherwise idle machine: ``python benchmarks/contention.py [--write BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _markdown import git_commit, section, write_section  # benchmarks/ is on sys.path

TITLE = "## Shared-CPU contention (benchmarks/contention.py)"
TARGET_RATIO = 0.4

STEP_LOOP = """
import os, sys, time
policy, model_name, res, batch, seconds = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
if policy == "pdefm":
    from pdefm.threads import apply_threads, choose_threads, prepare_environment
    prepare_environment()
    threads = apply_threads(choose_threads())
import torch
from pdefm.models import create_model
if policy != "pdefm":
    threads = torch.get_num_threads()
torch.manual_seed(0)
n, b = int(res), int(batch)
model = create_model(model_name, in_channels=4, out_channels=1)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(b, 4, n, n), torch.randn(b, 1, n, n)
def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step()
    steps += 1
print(steps / (time.perf_counter() - start), threads, os.environ.get("OMP_WAIT_POLICY", "-"))
"""

STUDY = """
name: contention
resolution: 32
sigma: 0.0625
datasets:
  pre: {family: poisson, range: [1, 5], n_train: 256, n_val: 32, n_test: 32}
  down: {family: poisson, range: [5, 10], n_train: 128, n_val: 32, n_test: 32, seed: 1}
pretrain:
  pre: {data: pre, model: fno-micro, epochs: 5, lrs: [0.003]}
downstream:
  tasks: [down]
  sizes: [16, 64]
  inits: [scratch, pre]
  modes: [full]
  models: [fno-micro]
  lrs: [0.003]
  seeds: [0, 1, 2, 3]
  steps: 150
  batch_size: 16
"""


def clean_env() -> dict[str, str]:
    """This environment without any thread or wait-policy setting (both configurations start
    from what a user who set nothing has)."""
    drop = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "PDEFM_THREADS", "MKL_NUM_THREADS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def step_rate(policy: str, args: argparse.Namespace) -> tuple[float, str]:
    """(steps/s, 'threads/wait policy') of one fresh step-loop process."""
    out = subprocess.run(
        [sys.executable, "-c", STEP_LOOP, policy, args.model]
        + [str(args.resolution), str(args.batch), str(args.seconds)],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    )
    rate, threads, wait = out.stdout.split()
    return float(rate), f"{threads} thread(s), wait {wait}"


class Competitor:
    """One busy process (a spin loop on one core) for the duration of a ``with`` block."""

    def __enter__(self) -> Competitor:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # scheduled and visible in the load before the measurement starts
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def measure_steps(args: argparse.Namespace) -> dict[tuple[str, bool], tuple[float, str]]:
    """(policy, busy) -> (median steps/s over the rounds, thread setting seen)."""
    rates: dict[tuple[str, bool], list[float]] = {}
    seen: dict[tuple[str, bool], str] = {}
    for r in range(args.rounds):
        for policy in ("torch", "pdefm"):
            for busy in (False, True):
                with Competitor() if busy else contextlib.nullcontext():
                    rate, setting = step_rate(policy, args)
                rates.setdefault((policy, busy), []).append(rate)
                seen[(policy, busy)] = setting
                print(
                    f"round {r + 1}: {policy:5s} busy={busy!s:5s} {rate:7.2f} steps/s ({setting})",
                    flush=True,
                )
    return {k: (statistics.median(v), seen[k]) for k, v in rates.items()}


def study_seconds(workers: int, tmp: Path) -> float:
    """Wall time of the small study from an empty folder with ``--workers``."""
    spec = tmp / "contention.yaml"
    spec.write_text(textwrap.dedent(STUDY))
    out = tmp / f"workers-{workers}"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pdefm.cli", "study", "run", str(spec), "--out", str(out)]
        + ["--workers", str(workers), "--quiet"],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    return time.perf_counter() - start


def steps_table(res: dict) -> tuple[str, float]:
    lines = [
        "| thread setting | quiet (steps/s) | one busy competitor (steps/s) | busy / quiet |",
        "|---|---:|---:|---:|",
    ]
    ratio = {}
    for policy, label in (("torch", "torch defaults"), ("pdefm", "pdefm policy")):
        quiet, busy = res[(policy, False)], res[(policy, True)]
        ratio[policy] = busy[0] / quiet[0]
        lines.append(
            f"| {label}: quiet {quiet[1]}, busy {busy[1]} | {quiet[0]:.2f} | {busy[0]:.2f} "
            f"| {ratio[policy]:.2f}x |"
        )
    return "\n".join(lines), ratio["pdefm"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fno-tiny", help="model preset (default fno-tiny)")
    parser.add_argument("--resolution", type=int, default=64, help="grid n (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--no-study", action="store_true", help="skip the study-workers part")
    parser.add_argument("--write", type=Path, help="markdown file to update (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    print(
        f"pdefm contention benchmark: {args.model} {args.resolution}x{args.resolution}, "
        f"batch {args.batch}, {args.rounds} rounds of {args.seconds:g} s",
        flush=True,
    )
    res = measure_steps(args)
    table, ratio = steps_table(res)
    quiet_cost = res[("pdefm", False)][0] / res[("torch", False)][0]
    notes = [
        f"Step loop: {args.model} at {args.resolution}x{args.resolution}, batch {args.batch}, "
        f"AdamW; median of {args.rounds} alternating rounds of {args.seconds:g} s, each a "
        "fresh process with no thread settings in its environment.",
        f"pdefm policy with a busy competitor keeps {ratio:.2f}x its quiet rate "
        f"(target >= {TARGET_RATIO}: {'PASS' if ratio >= TARGET_RATIO else 'MISS'}).",
        f"The price on a quiet machine: pdefm's policy runs at {quiet_cost:.2f}x torch's "
        "defaults there (passive waiting wakes sleeping threads for every parallel region).",
    ]
    if not args.no_study:
        with tempfile.TemporaryDirectory(prefix="pdefm-contention-") as tmp:
            one = study_seconds(1, Path(tmp))
            two = study_seconds(2, Path(tmp))
        verdict = "PASS" if two <= one else "MISS"
        notes.append(
            f"Study (2 datasets, 1 pre-training, 16 downstream runs, fno-micro 32x32), quiet: "
            f"--workers 1 {one:.0f} s, --workers 2 {two:.0f} s, ratio {two / one:.2f} "
            f"(target <= 1: {verdict})."
        )
    machine = (
        f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"Python {platform.python_version()}, commit {git_commit()}"
    )
    text = section(TITLE, table, notes, machine, started)
    print("\n" + text)
    if args.write:
        write_section(args.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
