"""What a run computes, in floating-point operations: the analytic counts of
``pdefm.models.flops`` times the examples a run stepped on and scored.

    training flops = T(arch, n, trainable, batch) x samples + F(arch, n) x evaluated

T is the forward + backward count of one training example (only the gradients the adaptation
mode needs), F the forward count; ``samples`` and ``evaluated`` are what a rate's
``FitState`` counted. A model the counter does not know (a non-FNO registered model) has no
count: None, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable

from pdefm.errors import PdefmError
from pdefm.models.flops import eval_flops, train_flops_per_sample


def training_flops(
    arch: dict, n: int, trainable: Iterable[str], batch: int, samples: int, evaluated: int
) -> int | None:
    """Operations of one learning rate: ``samples`` training examples in batches of ``batch``
    (LoRA's per-batch products shared by the batch) with ``trainable`` parameter names
    trained, and ``evaluated`` validation examples, on an n x n grid. None if not countable."""
    try:
        step = train_flops_per_sample(arch, n, tuple(trainable), batch=batch)
        return step * samples + eval_flops(arch, n) * evaluated
    except PdefmError:
        return None


def evaluation_flops(arch: dict, n: int, examples: int) -> int | None:
    """Operations of scoring ``examples`` examples (forward passes only); None if the model
    is not countable."""
    try:
        return eval_flops(arch, n) * examples
    except PdefmError:
        return None
