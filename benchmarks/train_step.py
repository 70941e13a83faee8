"""Training-step benchmark: FNO throughput and peak memory, fast vs reference-style spectral layer.

For every preset and resolution it measures a full training step (forward, MSE loss, backward,
AdamW step; batch 8, float32) of two models with identical weights, interleaved within each
repeat (shared machines are noisy, so the figures that are compared are taken side by side):

* fast       ``create_model(preset, ...)``: ``SpectralConv2d`` (truncated DFTs as matrix
             products, one batched complex matmul over the retained modes);
* reference  the same FNO with every spectral layer swapped for ``ReferenceSpectralConv2d``
             (real/imaginary weights per corner, one einsum per corner and part, full rfft2 /
             zero-filled spectrum / irfft2), as in the public reference code.

Throughput is the median over repeats of samples/s. Peak memory: on CPU, each (preset,
resolution, layer) runs in a fresh subprocess that builds the model, optimiser and batch, then
runs 3 training steps; the figure is the peak RSS (``VmHWM`` of /proc/self/status, reset to
the current RSS just before the steps) minus the RSS just before them (activations,
gradients, optimiser state, allocator slack). Not ``getrusage``: Linux carries ru_maxrss over
exec, so a child inherits its parent's high-water mark. With ``--device cuda`` it is
``torch.cuda.max_memory_allocated`` over the steps, minus the memory allocated before them.

Target (from the issue): fast at least 1.5x the reference-style throughput for fno-16m at
128x128 (the issue's reference figure: about 3.7 samples/s, batch 8).
Run ``python benchmarks/train_step.py --help`` for the options; ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _markdown import (  # the benchmarks' directory is on sys.path as a script
    git_commit,
    publish,
    section,
)

import pdefm
from pdefm.models import create_model, parameter_count
from pdefm.models.reference import use_reference_layers

VARIANTS = ("fast", "reference")
IN_CHANNELS = 4  # a source plus three coefficient channels, as Poisson
TARGET_PRESET, TARGET_RESOLUTION, TARGET_SPEEDUP = "fno-16m", 128, 1.5
ISSUE_REFERENCE_RATE = 3.7  # samples/s, the issue's figure for the reference (fno-16m, 128)
MIN_SECONDS = 0.5  # each timed measurement runs at least this long
SECTION = "## Training step (benchmarks/train_step.py)"


@dataclass
class Row:
    preset: str
    resolution: int
    rates: dict[str, list[float]] = field(default_factory=dict)
    memory_mib: dict[str, float] = field(default_factory=dict)

    def rate(self, variant: str) -> float:
        return statistics.median(self.rates[variant])


# -- options -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fno-64k", "fno-1m", "fno-16m"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--quick", action="store_true", help="smoke test: fno-64k, 32x32")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to update")
    parser.add_argument("--memory-probe", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.resolutions, args.repeats = ["fno-64k"], [32], 2
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    return args


# -- one training step --------------------------------------------------------------------------
def build(preset: str, variant: str, device: str, seed: int = 0):
    """Model (fast or reference-style layers, same weights for a seed) and its AdamW."""
    torch.manual_seed(seed)
    model = create_model(preset, IN_CHANNELS, 1)
    if variant == "reference":
        use_reference_layers(model)
    model = model.to(device)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def make_batch(batch: int, resolution: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs (B, C_in, n, n) and targets (B, 1, n, n), float32."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, IN_CHANNELS, resolution, resolution, generator=gen)
    y = torch.randn(batch, 1, resolution, resolution, generator=gen)
    return x.to(device), y.to(device)


def train_step(model, optimiser, x: torch.Tensor, y: torch.Tensor) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimiser.step()


def timed_steps(setup, steps: int, device: str) -> float:
    """Seconds for ``steps`` training steps (synchronised on CUDA)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(*setup)
    sync()
    return time.perf_counter() - start


def measure_rates(preset: str, resolution: int, args: argparse.Namespace) -> Row:
    """Median samples/s per variant, the variants interleaved within each repeat."""
    x, y = make_batch(args.batch, resolution, args.device)
    setups = {v: (*build(preset, v, args.device), x, y) for v in VARIANTS}
    steps = {}
    for variant, setup in setups.items():
        timed_steps(setup, 1, args.device)  # warm-up: optimiser state, allocator, DFT bases
        seconds = timed_steps(setup, 1, args.device)
        steps[variant] = max(1, math.ceil(MIN_SECONDS / seconds))
    row = Row(preset, resolution, {v: [] for v in VARIANTS})
    for _ in range(args.repeats):
        for variant, setup in setups.items():
            seconds = timed_steps(setup, steps[variant], args.device)
            row.rates[variant].append(args.batch * steps[variant] / seconds)
    return row


# -- peak memory --------------------------------------------------------------------------------
def memory_probe(preset: str, resolution: int, variant: str, args: argparse.Namespace) -> float:
    """MiB of peak-memory growth over 3 training steps (this process; see module docstring)."""
    model, optimiser = build(preset, variant, args.device)
    x, y = make_batch(args.batch, resolution, args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()
        before = proc_status_bytes("VmRSS")
    for _ in range(3):
        train_step(model, optimiser, x, y)
    if args.device == "cuda":
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return (proc_status_bytes("VmHWM") - before) / 2**20


def proc_status_bytes(key: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM peak), bytes.

    Not ``getrusage``: Linux carries ru_maxrss across exec, so a child started by a big parent
    inherits the parent's high-water mark; VmHWM belongs to this process's own memory map.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}; the CPU memory probe needs Linux")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); best effort."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak includes import-time peaks: an upper bound


def measure_memory(preset: str, resolution: int, variant: str, args) -> float:
    """Run ``memory_probe`` in a fresh subprocess (RSS high-water marks never go down)."""
    cmd = [sys.executable, __file__, "--memory-probe", preset, str(resolution), variant]
    cmd += ["--batch", str(args.batch), "--threads", str(args.threads), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])


# -- report -------------------------------------------------------------------------------------
def verdict(row: Row) -> str:
    ratio = row.rate("fast") / row.rate("reference")
    if (row.preset, row.resolution) != (TARGET_PRESET, TARGET_RESOLUTION):
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x {'PASS' if ratio >= TARGET_SPEEDUP else 'MISS'}"


def memory_cell(row: Row, variant: str) -> str:
    value = row.memory_mib.get(variant)
    return "" if value is None else f"{value:,.0f}"


def results_table(rows: list[Row]) -> str:
    lines = [
        "| preset | params | n x n | fast samples/s | reference samples/s | "
        f"speed-up (>= {TARGET_SPEEDUP} for {TARGET_PRESET} at {TARGET_RESOLUTION}) | "
        "fast peak MiB | reference peak MiB |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        params = parameter_count(row.preset, IN_CHANNELS, 1)
        lines.append(
            f"| {row.preset} | {params:,} | {row.resolution} | {row.rate('fast'):,.2f} | "
            f"{row.rate('reference'):,.2f} | {verdict(row)} | {memory_cell(row, 'fast')} | "
            f"{memory_cell(row, 'reference')} |"
        )
    return "\n".join(lines)


def machine(device: str) -> str:
    cpu = f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}"
    if device == "cuda":
        cpu += f", {torch.cuda.get_device_name()}"
    return (
        f"{cpu}, torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"Python {platform.python_version()}, pdefm {pdefm.__version__} ({git_commit()})"
    )


def notes(args: argparse.Namespace) -> list[str]:
    memory = (
        "`torch.cuda.max_memory_allocated` growth over 3 steps"
        if args.device == "cuda"
        else "peak RSS over 3 training steps (VmHWM of /proc/self/status, reset just before "
        "them) minus the RSS before them, each in a fresh subprocess (model, optimiser and "
        "batch built before; includes AdamW state, gradients, activations, temporaries)"
    )
    return [
        f"One training step = forward + MSE loss + backward + AdamW step, batch {args.batch}, "
        f"float32, {IN_CHANNELS} input channels, random data, device {args.device}.",
        f"Median of {args.repeats} interleaved repeats (fast, reference back to back, same "
        f"initial weights), each at least {MIN_SECONDS} s of steps after one warm-up step.",
        "reference = the same FNO with `ReferenceSpectralConv2d` (public reference layer: "
        "einsum per corner and real/imaginary part, zero-filled rfft2 spectrum, irfft2); the "
        "lift, skips (1x1 convs as one batched matmul) and head are shared, so the speed-up "
        "is that of the spectral layer within a whole step.",
        f"peak MiB = {memory}.",
        f"The issue's reference figure: about {ISSUE_REFERENCE_RATE} samples/s for "
        f"{TARGET_PRESET} at {TARGET_RESOLUTION}x{TARGET_RESOLUTION}, batch 8.",
    ]


def report(rows: list[Row], args: argparse.Namespace, started: dt.datetime) -> str:
    """The full markdown section: table, notes, command, machine, date."""
    return section(SECTION, results_table(rows), notes(args), machine(args.device), started)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and optionally write it into a markdown file."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe is not None:
        preset, resolution, variant = args.memory_probe
        print(json.dumps({"peak_mib": memory_probe(preset, int(resolution), variant, args)}))
        return 0
    started = dt.datetime.now(dt.timezone.utc)
    print(f"pdefm training-step benchmark, {torch.get_num_threads()} thread(s)", flush=True)
    rows = []
    for resolution in args.resolutions:
        for preset in args.presets:
            row = measure_rates(preset, resolution, args)
            if not args.no_memory:
                row.memory_mib = {v: measure_memory(preset, resolution, v, args) for v in VARIANTS}
            print(f"  {preset} {resolution}: {verdict(row)}", flush=True)
            rows.append(row)
    section = report(rows, args, started)
    publish(section, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
