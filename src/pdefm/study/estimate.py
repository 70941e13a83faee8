"""How much training a study asks for, and roughly how long it takes on this machine.

Work (no torch): every training run's planned optimiser steps per learning rate follow from its
budget and size exactly as the loop plans them (``RunConfig.batch_for``: full batch at N <= 64;
ceil(N / batch) steps an epoch), times the learning rates it trains: at least the grid, at most
the grid plus every extension (``lr_extend`` rounds, the first adding two rates when the grid
has one). Patience may stop a run earlier: its cap is counted.

Time (``measure=True``, torch): one optimiser step of each (model, grid, batch) the study uses
is timed on this machine (a few warm-up steps, then about ``STEP_SECONDS``), and validation
passes are counted at a third of a training step per sample (a forward pass without the
backward). Data generation and evaluation are left out: on the grids CPUs train on they take
seconds. The estimate is for one process; side-by-side workers divide the downstream phase
by at most their number.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from pdefm.study.spec import Study, StudyMixture, StudyRun
from pdefm.train.config import RunConfig

STEP_SECONDS = 0.5  # timed per (model, grid, batch), after WARMUP steps
WARMUP = 3
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of forward + backward + step
MIXTURE_CHANNELS = 8  # the union layout of every family, without masks (an upper bound)


@dataclass(frozen=True)
class RunWork:
    """The planned work of one training run (per learning rate, and the rate count)."""

    run: StudyRun
    model: str
    resolution: int
    channels: int
    batch: int
    steps: int  # optimiser steps per learning rate (the cap, with patience)
    validations: int  # validation passes per learning rate
    n_val: int
    lrs_min: int
    lrs_max: int

    def samples(self) -> tuple[int, int]:
        """Training samples processed, (fewest, most): steps x batch x learning rates."""
        per_lr = self.steps * self.batch
        return per_lr * self.lrs_min, per_lr * self.lrs_max


def _dataset(study: Study, name: str):
    return study.datasets[name][0]


def _channels(study: Study, name: str) -> int:
    spec = _dataset(study, name)
    if isinstance(spec, StudyMixture):
        return MIXTURE_CHANNELS
    return len(spec.pde().input_channels)


def _resolution(study: Study, name: str) -> int:
    spec = _dataset(study, name)
    if isinstance(spec, StudyMixture):
        return _resolution(study, spec.members[0][0])
    return spec.resolution


def lr_count(lrs: int, extend: int) -> tuple[int, int]:
    """(fewest, most) learning rates a run trains: the grid, or the grid grown every round
    (a one-rate grid grows both ways in its first round)."""
    if not extend:
        return lrs, lrs
    return lrs, lrs + extend + (1 if lrs == 1 else 0)


def run_work(study: Study, run: StudyRun) -> RunWork | None:
    """The work of a training run (None for data runs and zero-shot evaluations)."""
    c = run.config
    if run.kind == "data" or c.get("mode") == "zero-shot":
        return None
    name = c["data"].removeprefix("data/")
    spec = _dataset(study, name)
    n = c.get("n_train") or spec.n_train
    budget = {k: c.get(k) for k in ("epochs", "steps", "patience")}
    plan = RunConfig(data=c["data"], batch_size=c.get("batch_size", 32), **budget).plan(n)
    low, high = lr_count(len(c["lrs"]), c.get("lr_extend", 0))
    return RunWork(
        run,
        c["model"],  # a fine-tune run's is its stage's preset
        _resolution(study, name),
        _channels(study, name),
        plan.batch,
        plan.steps,
        math.ceil(plan.epochs / plan.validate_every),
        spec.n_val,
        low,
        high,
    )


def plan_work(study: Study) -> list[RunWork]:
    """The work of every training run of the study, in plan order."""
    return [w for w in (run_work(study, r) for r in study.runs) if w is not None]


def step_seconds(model: str, resolution: int, channels: int, batch: int) -> float:
    """Seconds of one optimiser step (forward, MSE, backward, AdamW) on this machine's CPU."""
    import torch

    from pdefm.models import create_model

    net = create_model(model, channels, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, channels, resolution, resolution)
    y = torch.randn(batch, 1, resolution, resolution)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()

    for _ in range(WARMUP):
        step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < STEP_SECONDS:
        step()
        count += 1
    return (time.perf_counter() - start) / count


def estimate_seconds(works: list[RunWork], timer=step_seconds) -> dict[str, tuple[float, float]]:
    """Phase ("pretrain", "downstream") -> (fewest, most) seconds in one process: per learning
    rate, steps x step time plus validations x n_val x the per-sample forward time."""
    cache: dict[tuple, float] = {}
    out: dict[str, list[float]] = {}
    for w in works:
        key = (w.model, w.resolution, w.channels, w.batch)
        if key not in cache:
            cache[key] = timer(*key)
        per_sample = cache[key] / w.batch
        per_lr = w.steps * cache[key] + w.validations * w.n_val * per_sample * FORWARD_SHARE
        low, high = out.setdefault(w.run.kind, [0.0, 0.0])
        out[w.run.kind] = [low + per_lr * w.lrs_min, high + per_lr * w.lrs_max]
    return {k: (v[0], v[1]) for k, v in out.items()}


def _span(low: float, high: float, text=lambda x: f"{x:,}") -> str:
    """'5' or '5 to 9' (with ``text`` for each end)."""
    return text(low) if text(low) == text(high) else f"{text(low)} to {text(high)}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def summary_lines(works: list[RunWork], seconds: dict | None = None, workers: int = 1) -> list:
    """What `pdefm study plan` prints about the work: per phase, runs, learning rates, steps,
    samples and (with ``seconds``) the estimated time."""
    lines = []
    for phase in ("pretrain", "downstream"):
        group = [w for w in works if w.run.kind == phase]
        if not group:
            continue
        samples = _span(sum(w.samples()[0] for w in group), sum(w.samples()[1] for w in group))
        steps = sum(w.steps for w in group)
        lrs = _span(sum(w.lrs_min for w in group), sum(w.lrs_max for w in group))
        line = (
            f"{phase}: {len(group)} training runs ({lrs} trainings counting each learning "
            f"rate), {steps:,} optimiser steps per rate over all runs, {samples} training "
            "samples"
        )
        if seconds and phase in seconds:
            low, high = seconds[phase]
            share = workers if phase == "downstream" else 1
            line += f"; about {_span(low / share, high / share, _duration)}"
            if share > 1:
                line += f" with {share} workers (at best)"
        lines.append(line)
    if seconds:
        lines.append(
            "(estimated from one timed step per model, grid and batch on this machine, with "
            "nothing else running; data generation and evaluation not counted)"
        )
    return lines
