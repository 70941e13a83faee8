"""The Ray executor: every run of a study phase becomes one Ray task on a cluster.

The task body is ``pdefm.study.execute.execute``, which is resumable and idempotent: a finished
run returns its record, a started one continues from its state file. So a task whose worker
dies (killed, out of memory, node lost) is simply retried by Ray (``MAX_RETRIES``) and resumes;
a run is never recorded twice. Phases stay sequential (a downstream run needs its dataset and
pre-training stage); the runs of one phase are sent together and reported as they finish. A
task holds a lock on ``ROOT/.locks/RUN_ID`` while it runs, so a retry or a rerun that races a
worker which is slow to die waits for it, then finds the run finished or resumes it.

The study directory must be on storage that every node sees under the same absolute path
(NFS, Lustre, ...): each task carries its run resolved with absolute paths (a dataset spec or a
training configuration), so workers never read the study file. Every node needs the same pdefm
(and torch) installed; nothing is shipped with the tasks.

Resources per run: data generation asks for CPUs only; training and evaluation runs ask for one
GPU when the cluster has GPUs, else CPUs. ``cpus_per_run`` / ``gpus_per_run`` override both.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdefm.data.io import directory_lock
from pdefm.errors import PdefmError
from pdefm.study.execute import Done, RunSummary, RunTask, execute

MAX_RETRIES = 3  # worker deaths tolerated per run; each retry resumes from the run's state
INSTALL = 'pip install "pdefm[ray]"'


@dataclass(frozen=True)
class Resources:
    """What one run asks of the cluster: Ray's ``num_cpus`` / ``num_gpus``."""

    cpus: float
    gpus: float

    def options(self) -> dict:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}


@dataclass(frozen=True)
class RayExecutor:
    """A connection to a Ray cluster and the resources each kind of run asks for; an executor
    (see ``pdefm.study.execute``) that sends each run as one Ray task."""

    ray: Any  # the ray module, imported lazily
    data: Resources
    training: Resources
    needs_absolute_paths = True  # tasks run on other nodes

    def resources(self, task: RunTask) -> Resources:
        return self.data if task.kind == "data" else self.training

    def run(self, tasks: list[RunTask], done: Done) -> None:
        """Send ``tasks`` as Ray tasks; call ``done`` for each as it finishes."""
        remote = self.ray.remote(_execute_run)
        pending = {}
        for task in tasks:
            res = self.resources(task)
            ref = remote.options(
                name=f"pdefm-{task.kind}-{task.id}",
                max_retries=MAX_RETRIES,
                retry_exceptions=False,
                **res.options(),
            ).remote(task, max(1, int(res.cpus)))
            pending[ref] = task
        while pending:
            [ref], _ = self.ray.wait(list(pending), num_returns=1)
            task = pending.pop(ref)
            done(task, _result(self.ray, ref, task))


def import_ray():
    """The ``ray`` module, or a one-line PdefmError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise PdefmError(f"--executor ray needs Ray: {INSTALL}") from None
    return ray


@contextmanager
def connect(
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
) -> Iterator[RayExecutor]:
    """Connect to the Ray cluster at ``address`` for the duration of the block.

    ``address``: None follows ``ray.init()`` (``RAY_ADDRESS``, else a cluster started on this
    machine with ``ray start``, else a new local instance); "auto" requires an existing
    cluster; "HOST:PORT" names one. A connection made by the caller beforehand is reused and
    left open.
    """
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
            )
        except ConnectionError as exc:
            raise PdefmError(
                f"cannot reach a Ray cluster at {address!r} ({exc}); start one with "
                "`ray start --head` or leave out --address for a local one"
            ) from None
    try:
        yield _pool(ray, cpus_per_run, gpus_per_run)
    finally:
        if owned:
            ray.shutdown()


def _pool(ray, cpus_per_run: float | None, gpus_per_run: float | None) -> RayExecutor:
    cluster = ray.cluster_resources()
    has_gpus = cluster.get("GPU", 0) > 0
    cpus = 1.0 if cpus_per_run is None else cpus_per_run
    gpus = (1.0 if has_gpus else 0.0) if gpus_per_run is None else gpus_per_run
    for name, asked in (("CPU", cpus), ("GPU", gpus)):
        if asked > cluster.get(name, 0):
            print(
                f"warning: runs ask for {asked:g} {name}s but the cluster has "
                f"{cluster.get(name, 0):g} now; they wait until nodes with enough join",
                file=sys.stderr,
            )
    return RayExecutor(ray, data=Resources(cpus, 0.0), training=Resources(cpus, gpus))


def _result(ray, ref, task: RunTask) -> RunSummary:
    """The task's summary; a run's own error as itself, a lost worker as a one-line error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, PdefmError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayError as exc:
        raise PdefmError(
            f"{task.kind} run {task.id} lost its Ray worker on each of {MAX_RETRIES + 1} tries "
            f"({type(exc).__name__}); its progress is kept: rerun the same command to resume"
        ) from None


def _execute_run(task: RunTask, threads: int) -> RunSummary:
    """The Ray task body: one run, with as many torch threads as CPUs it was given."""
    import torch

    torch.set_num_threads(threads)
    with _run_lock(Path(task.root) / ".locks" / task.id):
        return execute(task)


@contextmanager
def _run_lock(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on the run lock folder ``path`` (released when
    its holder dies, however it dies)."""
    path.mkdir(parents=True, exist_ok=True)
    with directory_lock(path, f"run {path.name} is busy", wait=True):
        yield
