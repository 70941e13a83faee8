"""Budgets that starve large N: a warning, not a refusal.

The study's protocol trains every downstream size for the same number of epochs (optimiser
steps then grow like N above full batch). A study that cannot afford it may let the steps grow
more slowly, but not so slowly that the largest sizes are left far from convergence: their
runs then look worse than they are, and "savings shrink with N" appears as an artefact of the
budget. The rule: along a curve (task, init, mode, model), the epochs a size gets may shrink
at most like N^-1/2 (steps growing at least like N^1/2),

    E(N2) >= E(N1) (N1 / N2)^(1/2)   for sizes N1 < N2,

which ``steps_power: 0.5`` meets exactly. A study file breaking it is run as written, with a
one-line warning naming the size.
"""

from __future__ import annotations

import math

from pdefm.study.runs import StudyRun
from pdefm.train.config import RunConfig

SLACK = 1e-9  # rounding of ceil(S (N / N_min)^p) must not warn


def _batch(config: dict, n: int) -> int:
    """The batch a config trains with at size ``n`` (full batch at 64 examples or fewer)."""
    return RunConfig(data="-", batch_size=config.get("batch_size", 32)).batch_for(n)


def epochs_at(config: dict, n: int) -> float:
    """The epochs a downstream config gives at size ``n`` (steps / steps per epoch for a
    steps budget; the cap with patience)."""
    if config.get("epochs") is not None:
        return float(config["epochs"])
    return config["steps"] / math.ceil(n / _batch(config, n))


def scaled_steps(common: dict, n: int, n_min: int, power: float | None) -> dict:
    """A downstream block's settings at size ``n``. With ``steps_power`` p the examples seen
    (steps x batch) grow like N^p from the block's ``steps`` S at its smallest size N_min:

        steps(N) = ceil(S b(N_min) / b(N) (N / N_min)^p),   b(N) the batch at N,

    so at a fixed batch steps grow like N^p and the epochs like N^(p - 1) (the full-batch
    sizes, whose one step sees every example, count as such)."""
    if power is None:
        return common
    seen = common["steps"] * _batch(common, n_min) * (n / n_min) ** power
    return {**common, "steps": math.ceil(seen / _batch(common, n) - SLACK)}


def budget_warnings(runs: list[StudyRun]) -> tuple[str, ...]:
    """One line per curve whose budget shrinks in epochs faster than N^-1/2 (module doc),
    naming the first size where it does."""
    curves: dict[tuple, dict[int, float]] = {}
    for run in runs:
        labels = run.labels
        if run.kind != "downstream" or labels.get("method") == "zero-shot":
            continue
        key = (labels["task"], labels["init"], labels["mode"], labels["model"])
        curves.setdefault(key, {})[labels["n_train"]] = epochs_at(run.config, labels["n_train"])
    out = []
    for (task, init, mode, model), epochs in curves.items():
        sizes = sorted(epochs)
        for n1, n2 in zip(sizes, sizes[1:], strict=False):
            floor = epochs[n1] * math.sqrt(n1 / n2)
            if epochs[n2] < floor * (1 - SLACK):
                out.append(
                    f"downstream {task} ({init}, {mode}, {model}): N = {n2} gets "
                    f"{epochs[n2]:.4g} epochs, fewer than {floor:.4g} (= {epochs[n1]:.4g} at "
                    f"N = {n1} times ({n1}/{n2})^0.5): a budget shrinking in epochs faster than "
                    "N^-1/2 starves large N; give epochs: E at every size, or steps: S with "
                    "steps_power: 0.5 or more"
                )
                break
    return tuple(out)
