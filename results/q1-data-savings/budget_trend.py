"""Doublings further: the budget check's reruns retrained with 2, 4, ... times their budget.

`benchmarks/budget_check.py STUDY_DIR` retrains the study's largest-N scratch runs with twice
their budget (under STUDY_DIR/budget-check/). This script trains each of those reruns again
with 2, 4, ... (``--doublings K``: up to 2^K) times its epochs, at the same learning rate,
data, subset and seed, then prints the mean test rel. L2 at each budget and its change per
doubling: does the gain from more steps shrink towards the 10% the budget check allows?

    python results/q1-data-savings/budget_trend.py STUDY_DIR --task poisson_5-10 \
        [--doublings K] [--seed S ...] [--out DIR]

The new runs go under DIR (default STUDY_DIR/budget-trend/); a finished run is read back, not
retrained, so a second call only prints the table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from pdefm.study.results import load_results
from pdefm.threads import apply_threads, choose_threads
from pdefm.train.config import RunConfig
from pdefm.train.loop import train


def scaled(record: dict, factor: int, out: Path) -> RunConfig:
    """The run of ``record`` (a budget-check rerun) with ``factor`` times its epochs, at its
    one learning rate."""
    c = record["config"]
    known = {f.name for f in fields(RunConfig)} - {"data_hash"}
    kwargs = {k: v for k, v in c.items() if k in known}
    kwargs.update(epochs=factor * c["epochs"], lrs=tuple(c["lrs"]), lr_extend=0)
    return RunConfig(**kwargs, out=str(out), progress=False)


def published(root: Path, task: str) -> dict[int, float]:
    """Seed -> test rel. L2 of the study's (latest) largest-N scratch runs on ``task``."""
    rows = [r for r in load_results(root) if r.task == task and r.method == "scratch"]
    largest = max(r.n_train for r in rows)
    return {r.seed: r.test_rel_l2 for r in rows if r.n_train == largest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="study directory with a budget-check/ folder")
    parser.add_argument("--task", required=True, help="downstream task name")
    parser.add_argument("--doublings", type=int, default=1, help="up to 2^K times (default 1)")
    parser.add_argument("--seed", type=int, action="append", help="only this seed (repeatable)")
    parser.add_argument("--out", type=Path, help="where the new runs go")
    args = parser.parse_args()
    apply_threads(choose_threads(workers=1))
    out = args.out or args.study / "budget-trend"
    base = published(args.study, args.task)
    factors = [2**k for k in range(1, args.doublings + 1)]
    head = " | ".join(f"x {2 * f} | rel L2" for f in factors)
    print(f"| seed | published | rel L2 | x 2 | rel L2 | {head} | per doubling |")
    print("|---:" * (5 + 2 * len(factors)) + "|---|")
    checks = [
        json.loads(p.read_text()) for p in (args.study / "budget-check").glob("*/record.json")
    ]
    for check in sorted(checks, key=lambda c: c["config"]["seed"]):
        config = check["config"]
        if Path(config["data"]).name != args.task or (
            args.seed is not None and config["seed"] not in args.seed
        ):
            continue
        runs = [train(scaled(check, f, out)) for f in factors]
        errors = [base[config["seed"]], check["test"]["rel_l2"]]
        errors += [r["test"]["rel_l2"] for r in runs]
        steps = zip(errors[:-1], errors[1:], strict=True)
        changes = ", ".join(f"{100 * (b / a - 1):+.0f}%" for a, b in steps)
        cells = " | ".join(
            f"{e} epochs | {err:.5f}"
            for e, err in zip(
                [config["epochs"] // 2, config["epochs"]] + [f * config["epochs"] for f in factors],
                errors,
                strict=True,
            )
        )
        print(f"| {config['seed']} | {cells} | {changes} |", flush=True)


if __name__ == "__main__":
    main()
