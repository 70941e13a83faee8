"""Darcy solver benchmark: PCG throughput for variable coefficients, against the constant-
coefficient spectral solve.

For every grid size n it measures, interleaved within each repeat (shared machines are noisy,
so the figures that are compared are taken side by side):

* reference  ``Poisson(c=1).solve`` of the poisson family (K = I): one batched float64
             ``irfft2(rfft2(f) / symbol)``, the cost of one constant-coefficient solve;
* darcy      ``pdefm.pdes.elliptic.solve`` (5-point finite volumes, harmonic-mean faces, PCG with
             the spectral constant-coefficient preconditioner) for smooth and threshold
             coefficient fields at each contrast, with periodic and Dirichlet boundaries.

Each measurement solves one batch (default 64) of fixed coefficient fields and sources (the
study's Gaussian-lattice sources, zero mean when periodic); coefficient sampling is not timed.
The table shows the median samples/s over repeats, the slowdown reference / darcy, the mean
and max PCG iterations and the largest final residual ||A u - f|| / ||f||.

Run ``python benchmarks/darcy_solver.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from _markdown import (  # the benchmarks' directory is on sys.path as a script
    add_write_option,
    git_commit,
    publish,
    section,
)

import pdefm
from pdefm.pdes import elliptic, random_fields
from pdefm.pdes.grid import Grid
from pdefm.pdes.poisson import Poisson
from pdefm.pdes.sources import GaussianLatticeSource

SECTION = "## Darcy solver (benchmarks/darcy_solver.py)"


# -- options -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(
        description=(
            "Measure pdefm.pdes.elliptic.solve in samples/s (one batch of fixed coefficients and "
            "sources per measurement) next to the constant-coefficient Poisson spectral solve "
            "at the same n and batch. 'slowdown' = Poisson rate / Darcy rate. Within each "
            "repeat all measurements of one size run back to back; the table shows the median "
            "over repeats."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128], help="grid n")
    parser.add_argument("--batch", type=int, default=64, help="samples per solve")
    parser.add_argument("--contrasts", nargs="+", type=float, default=[10.0, 100.0])
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=random_fields.FIELD_KINDS,
        default=list(random_fields.FIELD_KINDS),
    )
    parser.add_argument(
        "--boundaries", nargs="+", choices=elliptic.BOUNDARIES, default=list(elliptic.BOUNDARIES)
    )
    parser.add_argument("--tol", type=float, default=1e-10, help="PCG relative tolerance")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; median shown")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    add_write_option(parser, SECTION)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1 or args.threads < 1:
        parser.error("--repeats, --batch and --threads must be positive")
    if any(n < 4 or n % 2 for n in args.sizes):
        parser.error("--sizes must be even and >= 4 (the Poisson reference's grid)")
    if any(c < 1 for c in args.contrasts):
        parser.error("--contrasts must be >= 1")
    return args


# -- the problems ------------------------------------------------------------------------------
@dataclass
class Case:
    """One Darcy configuration at one size, its fixed inputs and its measurements."""

    n: int
    boundary: str
    kind: str
    contrast: float
    a: torch.Tensor
    f: torch.Tensor
    rates: list[float] = field(default_factory=list)
    iterations: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    converged: torch.Tensor | None = None


def sources(gen: torch.Generator, batch: int, n: int, boundary: str) -> torch.Tensor:
    """The study's Gaussian-lattice sources on the periodic n-grid, (batch, n, n); zero mean
    when periodic. For Dirichlet the values are used as they are at the interior points (any
    right-hand side will do for timing)."""
    law = GaussianLatticeSource()
    vf = law.sparsity_of_index(torch.arange(batch))
    return law.sample(gen, vf, Grid(n), remove_mean=boundary == "periodic")


def make_cases(args: argparse.Namespace, n: int) -> list[Case]:
    """Every (boundary, kind, contrast) at size n, with inputs drawn from one seeded generator."""
    gen = torch.Generator().manual_seed(args.seed + n)
    cases = []
    for boundary in args.boundaries:
        f = sources(gen, args.batch, n, boundary)
        for kind in args.kinds:
            for contrast in args.contrasts:
                a = random_fields.coefficient_field(
                    gen, args.batch, n, contrast, kind, boundary=boundary
                )
                cases.append(Case(n, boundary, kind, contrast, a, f))
    return cases


# -- the measurements --------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of one call of ``fn``, and what it returned."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def reference_solver(n: int, batch: int) -> Callable[[], torch.Tensor]:
    """One batched Poisson (K = I, c = 1) spectral solve of fixed zero-mean sources."""
    family, grid = Poisson(c=1.0), Grid(n)
    ones = torch.ones(batch, dtype=torch.float64)
    coeffs = {"k11": ones, "k22": ones, "k12": torch.zeros_like(ones)}
    f = sources(torch.Generator().manual_seed(n), batch, n, "periodic")
    return lambda: family.solve(f, coeffs, grid)


def measure_size(args: argparse.Namespace, n: int) -> tuple[list[float], list[Case]]:
    """Reference rates and the cases at size n, after an untimed warm-up (FFT plans, heap)."""
    cases = make_cases(args, n)
    reference = reference_solver(n, args.batch)
    reference()
    for boundary in args.boundaries:
        case = next(c for c in cases if c.boundary == boundary)
        elliptic.solve(case.a, case.f, boundary, tol=args.tol, max_iter=2)
    reference_rates: list[float] = []
    for r in range(args.repeats):
        seconds, _ = timed(reference)
        reference_rates.append(args.batch / seconds)
        print(
            f"  n={n:<4} repeat {r + 1}/{args.repeats}: reference "
            f"{reference_rates[-1]:10.0f} samples/s",
            flush=True,
        )
        for case in cases:
            seconds, sol = timed(lambda c=case: elliptic.solve(c.a, c.f, c.boundary, tol=args.tol))
            case.rates.append(args.batch / seconds)
            case.iterations, case.residual, case.converged = (
                sol.iterations,
                sol.residual,
                sol.converged,
            )
            print(
                f"  n={n:<4} repeat {r + 1}/{args.repeats}: {case.boundary:<9} {case.kind:<9} "
                f"contrast {case.contrast:<6g} {case.rates[-1]:9.1f} samples/s, iterations "
                f"mean {case.iterations.double().mean():.1f} max {int(case.iterations.max())}",
                flush=True,
            )
    return reference_rates, cases


# -- reporting ---------------------------------------------------------------------------------
def results_table(results: list[tuple[list[float], list[Case]]]) -> str:
    """Medians over repeats as a markdown table, one row per case."""
    med = statistics.median
    lines = [
        "| n x n | boundary | coefficient | contrast | darcy samples/s | poisson samples/s "
        "| slowdown | PCG iterations mean / max | max residual | all converged |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for reference, cases in results:
        ref = med(reference)
        for c in cases:
            rate = med(c.rates)
            lines.append(
                f"| {c.n} | {c.boundary} | {c.kind} | {c.contrast:g} | {rate:,.1f} | {ref:,.0f} "
                f"| {ref / rate:,.0f}x | {c.iterations.double().mean():.1f} / "
                f"{int(c.iterations.max())} | {c.residual.max():.1e} "
                f"| {'yes' if c.converged.all() else 'NO'} |"
            )
    return "\n".join(lines)


def report(
    results: list[tuple[list[float], list[Case]]], args: argparse.Namespace, started: dt.datetime
) -> str:
    """The full markdown section: table, notes, command, machine, date."""
    notes = [
        f"Median of {args.repeats} interleaved repeat(s); batch {args.batch} per solve, float64, "
        f"tol {args.tol:g}; coefficient fields (length scale 0.2) and sources are drawn once "
        "per size and not timed.",
        "darcy: `pdefm.pdes.elliptic.solve`, batched PCG preconditioned by the exact spectral "
        "inverse of -abar Laplacian_h (FFT periodic, DST-I Dirichlet); each iteration costs one "
        "5-point operator and one preconditioner (two transforms), so the slowdown is roughly "
        "the iteration count times a small constant.",
        "poisson: `Poisson(c=1).solve` with K = I on the same n and batch (periodic), one "
        "rfft2 / symbol / irfft2. slowdown = poisson rate / darcy rate.",
        "Sources: the study's Gaussian-lattice law (`GaussianLatticeSource`), zero mean when "
        "periodic; for Dirichlet the same values at the interior points.",
    ]
    machine = (
        f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"Python {platform.python_version()}, pdefm {pdefm.__version__} ({git_commit()})"
    )
    return section(SECTION, results_table(results), notes, machine, started)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and optionally write it into a markdown file."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = dt.datetime.now(dt.timezone.utc)
    print(f"pdefm Darcy solver benchmark, {torch.get_num_threads()} thread(s)", flush=True)
    results = [measure_size(args, n) for n in args.sizes]
    text = report(results, args, started)
    publish(text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
