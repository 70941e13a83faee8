"""Is the pre-trained Poisson model's zero-shot failure on Darcy only a matter of scale?

For each test sample the best multiple of the zero-shot prediction, alpha = <p, u> / <p, p>,
is applied before scoring: if the model had the shape of u right and only its amplitude
wrong (a units or normalisation mismatch), the rescaled error would be small.

    python results/darcy-transfer/zero_shot_check.py STUDY_DIR

STUDY_DIR is the folder of `pdefm study run studies/cpu/darcy-transfer.yaml`. The model's
own (Poisson) normalisation is used; the per-sample rescaling makes the output scale moot.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from pdefm.api import Model, stage_checkpoint
from pdefm.data.dataset import PDEDataset
from pdefm.train.metrics import relative_l2


def test_split(root: Path, task: str) -> tuple[dict, np.ndarray]:
    """The task's test inputs by channel name (S, n, n) and its solutions (S, n, n)."""
    ds = PDEDataset(root / "data" / task, "test")
    x, y = ds.batch(np.arange(len(ds)))
    return {name: x[:, i].numpy() for i, name in enumerate(ds.input_channels)}, y[:, 0].numpy()


def rel_l2(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-sample ||pred - truth|| / ||truth||, arrays (S, n, n)."""
    return relative_l2(torch.from_numpy(pred), torch.from_numpy(truth)).numpy()


def check(root: Path, task: str, model: Model) -> str:
    inputs, u = test_split(root, task)
    p = model.predict(inputs)[:, 0]
    flat_p, flat_u = p.reshape(len(u), -1), u.reshape(len(u), -1)
    alpha = (flat_p * flat_u).sum(1) / (flat_p * flat_p).sum(1)
    rescaled = rel_l2(alpha[:, None, None] * p, u)
    return (
        f"{task}: zero-shot rel. L2 {rel_l2(p, u).mean():.3f}; rescaled per sample "
        f"{rescaled.mean():.3f} (alpha median {np.median(alpha):.2g}, quartiles "
        f"{np.percentile(alpha, 25):.2g} to {np.percentile(alpha, 75):.2g}; {len(u)} samples)"
    )


def main() -> None:
    root = Path(sys.argv[1])
    model = Model.from_pretrained(stage_checkpoint(root, "poisson"))
    for task in ("darcy_per", "darcy_dir"):
        print(check(root, task, model))
    print(f"command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
