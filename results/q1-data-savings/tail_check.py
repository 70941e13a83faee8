"""Mean or median: what the budget check's advection-diffusion change is made of.

For each N = 2,048 scratch run on advection-diffusion Psi in [1, 2] (the study's published
refinement, and its budget-check rerun with twice the steps), the per-sample test errors
||u_hat - u|| / ||u||: their mean (the study's metric), their median, and the share of the
mean carried by the 5 worst of the test samples.

    python results/q1-data-savings/tail_check.py STUDY_DIR

STUDY_DIR is the folder of `pdefm study run studies/cpu/q1-data-savings.yaml ... --refine`
after `python benchmarks/budget_check.py STUDY_DIR --task ad_1-2`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from pdefm.api import Model
from pdefm.data.dataset import PDEDataset
from pdefm.study.results import load_results
from pdefm.train.metrics import relative_l2

TASK = "ad_1-2"


def test_split(root: Path) -> tuple[dict, torch.Tensor]:
    """The task's test inputs by channel name (S, n, n) and its solutions (S, 1, n, n)."""
    ds = PDEDataset(root / "data" / TASK, "test")
    x, y = ds.batch(np.arange(len(ds)))
    return {name: x[:, i].numpy() for i, name in enumerate(ds.input_channels)}, y


def per_sample(checkpoint: Path, inputs: dict, u: torch.Tensor) -> np.ndarray:
    """Per-sample test rel. L2 of the checkpoint's predictions."""
    pred = torch.from_numpy(Model.from_pretrained(checkpoint).predict(inputs))
    return relative_l2(pred, u).numpy()


def summary(errors: np.ndarray) -> str:
    worst = np.sort(errors)[-5:].sum() / errors.sum()
    return f"mean {errors.mean():.4f}, median {np.median(errors):.4f}, 5 worst {worst:.0%}"


def main() -> None:
    root = Path(sys.argv[1])
    inputs, u = test_split(root)
    rows = [r for r in load_results(root) if r.task == TASK and r.method == "scratch"]
    largest = max(r.n_train for r in rows)
    checks = {
        p.parent: json.loads(p.read_text()) for p in (root / "budget-check").glob("*/record.json")
    }
    for row in sorted((r for r in rows if r.n_train == largest), key=lambda r: r.seed):
        rerun = [
            folder
            for folder, c in checks.items()
            if c["config"]["seed"] == row.seed
            and Path(c["config"]["data"]).name == TASK
            and c["config"]["epochs"] == 2 * row.epochs  # the rerun of this budget
        ]
        published = per_sample(root / "runs" / row.run_id / "checkpoint", inputs, u)
        doubled = per_sample(rerun[0] / "checkpoint", inputs, u)
        print(
            f"seed {row.seed}, N = {largest}: {row.steps} steps: {summary(published)}; "
            f"twice the steps: {summary(doubled)}"
        )
    print(f"command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
