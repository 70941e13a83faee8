"""Demo benchmark: wall time, savings-check verdict and headline of `pdefm demo` from nothing,
and of a second call.

Runs the demo as a user would (a subprocess, fresh output directory), then again (the cached
call), and prints both wall times, the headline and the demo's main figures (test error of
fine-tuning, scratch and zero-shot per downstream size, mean over seeds; how many runs
converged). Target: under 5 minutes on 2 quiet CPU cores including data generation and the
demo's own savings check (the runs its headline saving rests on, rerun at twice the budget),
whose verdict it prints.

``--double`` also runs the older per-run budget check: every scratch run of the largest
downstream size retrained with twice the epochs and the same learning-rate search, and the
change of its test error. ``--write BENCHMARKS.md`` replaces this script's section there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _markdown import write_section  # the benchmarks' directory is on sys.path as a script
from budget_check import DOUBLING_LIMIT, double_budgets

TARGET_SECONDS = 300
TITLE = "## Demo (benchmarks/demo.py)"


def timed_demo(out: Path) -> tuple[float, str]:
    """Run `pdefm demo --out OUT` in a subprocess; (seconds, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pdefm.cli", "demo", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stdout


def size_table(out: Path) -> tuple[str, dict]:
    """Mean test rel L2 per method and downstream size, from the demo's results, and counts:
    downstream runs, trained runs, converged ones, edge learning rates, seeds."""
    from pdefm.study.results import load_results

    # the savings check's reruns at twice the budget are not the demo's results
    rows = [r for r in load_results(out) if r.kind == "downstream" and r.check_of is None]
    trained = [r for r in rows if r.method != "zero-shot"]
    counts = {
        "runs": len(rows),
        "trained": len(trained),
        "converged": sum(r.converged is True for r in trained),
        "edge": sum(bool(r.lr_at_edge) for r in trained),
        "seeds": len({r.seed for r in trained}),
    }
    cells: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        cells.setdefault((r.method, r.n_train), []).append(r.test_rel_l2)
    sizes = sorted({n for _, n in cells if n})
    head = "| method | " + " | ".join(f"N={n}" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for method in ("finetune", "scratch"):
        vals = [sum(cells[(method, n)]) / len(cells[(method, n)]) for n in sizes]
        lines.append(f"| {method} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    zero = cells.get(("zero-shot", 0))
    if zero:
        lines.append("| zero-shot | " + " | ".join(f"{zero[0]:.4f}" for _ in sizes) + " |")
    return "\n".join(lines), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="markdown file to update (BENCHMARKS.md)")
    parser.add_argument(
        "--double", action="store_true", help="also retrain the largest-N scratch runs at 2x"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pdefm-demo-bench-") as tmp:
        out = Path(tmp) / "demo"
        first, stdout = timed_demo(out)
        second, _ = timed_demo(out)
        table, counts = size_table(out)
        doubled = double_budgets(out, lr_search=True) if args.double else None
    lines = stdout.strip().splitlines()
    report_at = next(i for i, line in enumerate(lines) if line.startswith("report:"))
    headline = lines[report_at - 1]  # the demo prints per-run summaries, headline, report path
    checked = next(i for i, line in enumerate(lines) if line.startswith("savings check"))
    verdicts = [
        line.strip() for line in lines[checked + 1 : report_at - 1] if line.startswith("  ")
    ]
    verdict = "PASS" if first < TARGET_SECONDS else "MISS"
    command = shlex.join(["python", "benchmarks/demo.py", *(argv or sys.argv[1:])])
    body = [
        TITLE,
        "",
        f"- first call (data, pre-training, {counts['runs']} downstream runs, report): "
        f"{first:.0f} s (target < {TARGET_SECONDS} s on 2 quiet cores: {verdict}); second "
        f"call (cached): {second:.1f} s",
        f"- converged (validation gained < 5% over the second half of the epochs): "
        f"{counts['converged']} of {counts['trained']} trained runs; chosen learning rate at "
        f"the edge of those tried: {counts['edge']}",
        f"- savings check of the headline's factor: {'; '.join(verdicts)}",
        f"- headline: {headline}",
        "",
        f"Test relative L2 on Poisson, e in [5, 10] (mean of {counts['seeds']} seeds; lr "
        "chosen on validation):",
        "",
        table,
        "",
    ]
    if doubled is not None:
        rows, worst = doubled
        check = "PASS" if worst < DOUBLING_LIMIT else "MISS"
        body += [
            "Budget check: the largest-N scratch runs retrained with twice the epochs (same "
            f"data, seeds and learning-rate search); largest change {100 * worst:.1f}% "
            f"(limit {100 * DOUBLING_LIMIT:.0f}%: {check}):",
            "",
            rows,
            "",
        ]
    section = "\n".join(
        [
            *body,
            f"Command: `{command}`  ",
            f"Machine: {platform.machine()}, os.cpu_count()={os.cpu_count()}, "
            f"Python {platform.python_version()}  ",
            f"Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        ]
    )
    print(section)
    print(f"\n(command: {shlex.join(sys.argv)})")
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
