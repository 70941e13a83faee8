"""Data-parallel training: the process group that ``torchrun`` sets up, and the few collectives
the training loop needs.

``torchrun --nproc_per_node N -m pdefm.cli train ...`` starts N copies of the same command with
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment (on several
nodes: ``--nnodes`` and a rendezvous endpoint). ``process_group`` joins them (NCCL on CUDA, one
GPU per process, ``cuda:LOCAL_RANK``; gloo on CPU); without WORLD_SIZE > 1 every helper here is
a no-op for a world of one process, so the loop has a single code path.

The sampler is a pure function: every rank draws the same epoch order (a function of the seed
and the epoch) and takes its contiguous share of each global batch (``shard``), so the global
batch, and with DDP's gradient averaging the gradient, are those of a one-process run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from pdefm.errors import PdefmError

TIMEOUT = timedelta(minutes=30)  # a rank waiting this long for the others gives up


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise PdefmError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun"
        ) from None


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (torchrun's RANK before the group is joined or after it is left)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the only process that writes records, checkpoints and training states."""
    return rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1 and yield this rank's device
    (``cuda:LOCAL_RANK`` when ``device`` is CUDA); leave the group on exit if it joined it.
    A group the caller already initialised is used as it is."""
    if env_world_size() <= 1 or dist.is_initialized():
        yield _rank_device(device) if active() else device
        return
    if not dist.is_available():
        raise PdefmError("this torch build has no torch.distributed; run without torchrun")
    device = _rank_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield device
        barrier()  # no rank leaves while another still needs it
    finally:
        dist.destroy_process_group()


def _rank_device(device: torch.device) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK (``--device cuda:N`` is overridden)."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise PdefmError(
            f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; start "
            "torchrun with --nproc_per_node at most the number of GPUs per node"
        )
    return torch.device("cuda", local)


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if not active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``t`` over ranks (``t`` itself in a world of one). NCCL reduces
    on the GPU, gloo on the CPU; the result comes back on ``t``'s device."""
    if not active():
        return t
    where = torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")
    buf = t.detach().to(where, copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def _nccl() -> bool:
    return dist.get_backend() == "nccl"


def shard(
    positions: torch.Tensor | np.ndarray, rank_: int | None = None, world: int | None = None
) -> torch.Tensor | np.ndarray:
    """Rank ``rank_``'s (default: this rank's) contiguous share of ``positions`` in a world of
    ``world`` (default: this one): the shares tile ``positions`` in order, their sizes differ
    by at most one (the last ranks take the larger ones), a share may be empty."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    n = len(positions)
    return positions[rank_ * n // world : (rank_ + 1) * n // world]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when several ranks train it (gradients averaged
    over ranks in backward), else ``model``. Checkpoints and states save the unwrapped
    module, so its keys never carry DDP's ``module.`` prefix."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
