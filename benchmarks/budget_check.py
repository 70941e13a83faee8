"""Budget check of a finished study: retrain its largest-N scratch runs with twice the budget
and print how far their test error moves.

A too-small budget hurts scratch training at the largest downstream size most (the most data
to fit, the fewest epochs), and there it inflates the data savings a study reports. If the
test error of those runs moves by less than 10% when their budget is doubled, the budget did
not limit them. Each run is retrained from the same data, subset and seed with twice its
epochs (or steps): at the learning rate it chose (the default: one training per run), or with
its whole learning-rate search again (``--lr-search``: the search may then pick another rate).

    python benchmarks/budget_check.py STUDY_DIR [--task NAME] [--seed S ...] [--lr-search]

The retrained runs are written under STUDY_DIR/budget-check/ (the study's own runs are not
touched); ``--write FILE`` replaces this script's section of a markdown file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
from dataclasses import replace
from pathlib import Path

DOUBLING_LIMIT = 0.10  # relative change of the test error that doubling the budget may cause
TITLE = "## Budget check (benchmarks/budget_check.py)"


def largest_scratch_rows(out: Path, tasks: list[str] | None, seeds: list[int] | None) -> list:
    """The results rows of the scratch runs at each task's largest downstream size."""
    from pdefm.study.results import load_results

    rows = [
        r
        for r in load_results(out)
        if r.kind == "downstream" and r.method == "scratch" and r.status == "completed"
    ]
    if tasks:
        rows = [r for r in rows if r.task in tasks]
    if seeds is not None:
        rows = [r for r in rows if r.seed in seeds]
    largest = {}
    for r in rows:
        largest[r.task] = max(largest.get(r.task, 0), r.n_train)
    chosen = [r for r in rows if r.n_train == largest[r.task]]
    return sorted(chosen, key=lambda r: (r.task, r.model, r.seed))


def doubled_config(config, lr: float, lr_search: bool, out: Path):
    """``config`` with twice its budget, written under ``out``; at ``lr`` alone unless the
    whole learning-rate search is to run again."""
    budget = (
        {"steps": 2 * config.steps} if config.steps is not None else {"epochs": 2 * config.epochs}
    )
    rates = {} if lr_search else {"lrs": (lr,), "lr_extend": 0}
    return replace(config, **budget, **rates, run_name=None, out=str(out), progress=False)


def double_budgets(
    out: Path,
    tasks: list[str] | None = None,
    seeds: list[int] | None = None,
    lr_search: bool = False,
) -> tuple[str, float]:
    """Retrain the largest-N scratch runs of the study in ``out`` with twice their budget; a
    markdown table and the largest relative change of the test error."""
    from pdefm.study.refine import find_refinement
    from pdefm.study.spec import load_study, run_config
    from pdefm.threads import apply_threads, choose_threads
    from pdefm.train.loop import train

    apply_threads(choose_threads(workers=1))
    study = load_study(out / "study.yaml")
    runs = {r.id: r for r in study.runs}
    rows = largest_scratch_rows(out, tasks, seeds)
    if not rows:
        raise SystemExit(f"{out}: no finished scratch runs to check (is the study done?)")
    lines = [
        "| task | model | seed | N | budget | lr | test rel L2 | budget x 2 | lr | test rel L2 "
        "| change |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for row in rows:
        run = runs.get(row.run_id) or find_refinement(out, row.run_id)  # refined: latest
        config = run_config(run, out)
        doubled = doubled_config(config, row.lr, lr_search, out / "budget-check")
        record = train(doubled)
        new = record["test"]["rel_l2"]
        change = new / row.test_rel_l2 - 1
        worst = max(worst, abs(change))
        lines.append(
            f"| {row.task} | {row.model} | {row.seed} | {row.n_train} | "
            f"{_budget(config)} | {row.lr:g} | {row.test_rel_l2:.4f} | "
            f"{_budget(doubled)} | {record['selected_lr']:g} | {new:.4f} | {100 * change:+.1f}% |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines), worst


def _budget(config) -> str:
    return f"{config.steps} steps" if config.steps is not None else f"{config.epochs} epochs"


def main(argv: list[str] | None = None) -> int:
    from _markdown import write_section  # the benchmarks' directory is on sys.path as a script

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a finished study directory")
    parser.add_argument("--task", action="append", help="only this downstream task (repeatable)")
    parser.add_argument("--seed", type=int, action="append", help="only this seed (repeatable)")
    parser.add_argument(
        "--lr-search", action="store_true", help="run the whole learning-rate search again"
    )
    parser.add_argument("--write", type=Path, help="markdown file to update (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    table, worst = double_budgets(args.study, args.task, args.seed, args.lr_search)
    verdict = "PASS" if worst < DOUBLING_LIMIT else "MISS"
    how = "the whole learning-rate search again" if args.lr_search else "the chosen rate"
    command = shlex.join(["python", "benchmarks/budget_check.py", *(argv or sys.argv[1:])])
    section = "\n".join(
        [
            TITLE,
            "",
            f"Study `{args.study.name}`: its largest-N scratch runs retrained with twice the "
            f"budget ({how}, same data, subset and seed); largest change of the test error "
            f"{100 * worst:.1f}% (limit {100 * DOUBLING_LIMIT:.0f}%: {verdict}).",
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
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
