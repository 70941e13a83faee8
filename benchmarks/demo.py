"""Demo benchmark: wall time and headline of `pdefm demo` from nothing, and of a second call.

Runs the demo as a user would (a subprocess, fresh output directory), then again (the cached
call), and prints both wall times, the headline and the demo's main figures (test error of
fine-tuning, scratch and zero-shot per downstream size, mean over seeds). Target (from the
issue): under 10 minutes on 2 CPU cores including data generation, fine-tuning clearly better
than scratch at small sizes. ``--write BENCHMARKS.md`` replaces this script's section there.
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

TARGET_SECONDS = 600
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


def size_table(out: Path) -> str:
    """Mean test rel L2 per method and downstream size, from the demo's results."""
    from pdefm.study.results import load_results

    rows = [r for r in load_results(out) if r["kind"] == "downstream"]
    cells: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        cells.setdefault((r["method"], r["n_train"]), []).append(r["test_rel_l2"])
    sizes = sorted({n for _, n in cells if n})
    head = "| method | " + " | ".join(f"N={n}" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for method in ("finetune", "scratch"):
        vals = [sum(cells[(method, n)]) / len(cells[(method, n)]) for n in sizes]
        lines.append(f"| {method} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    zero = cells.get(("zero-shot", 0))
    if zero:
        lines.append("| zero-shot | " + " | ".join(f"{zero[0]:.4f}" for _ in sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="markdown file to update (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pdefm-demo-bench-") as tmp:
        out = Path(tmp) / "demo"
        first, stdout = timed_demo(out)
        second, _ = timed_demo(out)
        table = size_table(out)
    lines = stdout.strip().splitlines()
    report_at = next(i for i, line in enumerate(lines) if line.startswith("report:"))
    headline = lines[report_at - 1]  # the demo prints per-run summaries, headline, report path
    verdict = "PASS" if first < TARGET_SECONDS else "MISS"
    command = "python benchmarks/demo.py" + (f" --write {args.write}" if args.write else "")
    section = "\n".join(
        [
            TITLE,
            "",
            f"- first call (data, pre-training, 17 downstream runs, report): {first:.0f} s "
            f"(target < {TARGET_SECONDS} s: {verdict}); second call (cached): {second:.1f} s",
            f"- headline: {headline}",
            "",
            "Test relative L2 on poisson e in [5, 10] (mean of 2 seeds; lr chosen on validation):",
            "",
            table,
            "",
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
