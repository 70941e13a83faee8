"""Carrying out one run of a study, and the executors that carry out many.

The runner resolves every run into a :class:`RunTask` in its own process: the dataset spec to
generate or mix, or the training configuration with its paths inside the study folder. A
worker receives that task, not the study file, so it never re-parses the study and cannot see
a study file changed while the study runs. :func:`execute` does the task (resumable: a
finished run returns at once, a started one continues) and returns a :class:`RunSummary`.

An executor is anything with ``run(tasks, done)``: it carries out ``tasks`` (one wave of runs
that do not depend on each other) and calls ``done(task, summary)`` in the calling process as
each finishes. :class:`SerialExecutor` runs them here, :class:`ProcessExecutor` in spawned
worker processes; the Ray executor (``pdefm.study.ray_executor``) sends them to a cluster.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pdefm.data.mixture import MixtureSpec
from pdefm.data.spec import GenerationSpec
from pdefm.threads import apply_threads, choose_threads
from pdefm.train.config import RunConfig

#: seconds between a worker's checks that the study runner that started it is still alive
PARENT_CHECK_S = 2.0

# labels that repeat the task's name in words; summaries leave them out
_QUIET_LABELS = ("family", "task_low", "task_high", "low", "high", "init_family")


@dataclass(frozen=True)
class RunTask:
    """One run of the study in ``root``, resolved: ``kind`` "data" with ``dataset`` (a
    generation or mixture spec) and ``out`` (its folder), or "pretrain" / "downstream" with
    ``config``."""

    id: str
    kind: str
    labels: dict
    root: Path
    out: Path | None = None
    dataset: GenerationSpec | MixtureSpec | None = None
    drop_unsampleable: bool = False
    config: RunConfig | None = None


@dataclass(frozen=True)
class RunSummary:
    """What the runner prints of a finished run (the full record stays in its folder)."""

    status: str
    seconds: float
    test: dict | None = None
    reason: str | None = None
    lr: float | None = None
    converged: bool | None = None
    lr_at_edge: str | None = None
    start_kept: bool | None = None

    def line(self, task: RunTask) -> str:
        """E.g. ``downstream: task t, method scratch, ...: test rel L2 0.12, lr 0.001 (3.2 s)``."""
        labels = ", ".join(f"{k} {v}" for k, v in task.labels.items() if k not in _QUIET_LABELS)
        if self.status != "completed":
            return f"  {task.kind}: {labels}: FAILED ({self.reason})"
        err = f": test rel L2 {self.test['rel_l2']:.4g}" if self.test else ""
        if self.lr is not None:
            err += f", lr {self.lr:g}"
        if self.start_kept:
            err += ", starting weights kept (no rate beat them on validation)"
        if self.lr_at_edge:
            err += " (at the edge of the rates tried)"
        if self.converged is False:
            err += ", still improving at the end"
        return f"  {task.kind}: {labels}{err} ({self.seconds:.1f} s)"


def execute(task: RunTask, progress: bool = False) -> RunSummary:
    """Carry out one run (in this process or a worker)."""
    from pdefm._malloc import keep_freed_memory

    keep_freed_memory()
    start = time.perf_counter()
    if task.kind == "data":
        _make_dataset(task, progress)
        return RunSummary("completed", time.perf_counter() - start)
    from pdefm.train.loop import train

    record = train(dataclasses.replace(task.config, progress=progress))
    return RunSummary(
        status=record.status,
        seconds=time.perf_counter() - start,
        test=record.test or None,
        reason=record.reason,
        lr=record.selected_lr,
        start_kept=record.start_kept,
        converged=record.converged,
        lr_at_edge=record.lr_at_edge,
    )


def _make_dataset(task: RunTask, progress: bool) -> None:
    if isinstance(task.dataset, MixtureSpec):
        from pdefm.data.mixture import mix_datasets

        mix_datasets(task.dataset, task.out, progress=progress)
    else:
        from pdefm.data.generate import generate_dataset

        generate_dataset(
            task.dataset, task.out, drop_unsampleable=task.drop_unsampleable, progress=progress
        )


Done = Callable[[RunTask, RunSummary], None]


class Executor(Protocol):
    """Carries out a wave of independent runs, reporting each as it finishes."""

    def run(self, tasks: list[RunTask], done: Done) -> None: ...


@dataclass
class SerialExecutor:
    """One run after another in this process, with progress bars if ``progress``."""

    progress: bool = False

    def run(self, tasks: list[RunTask], done: Done) -> None:
        apply_threads(choose_threads(workers=1))
        for task in tasks:
            done(task, execute(task, progress=self.progress))


@dataclass
class ProcessExecutor:
    """``workers`` spawned processes, each with its share of the free cores' threads; a wave
    of one run runs here instead (no process to start)."""

    workers: int
    progress: bool = False

    def run(self, tasks: list[RunTask], done: Done) -> None:
        if self.workers <= 1 or len(tasks) <= 1:
            SerialExecutor(self.progress).run(tasks, done)
            return
        threads = choose_threads(workers=self.workers)
        # Spawned, not forked: a fork of a process whose OpenMP pool has run (an earlier phase
        # trained here) can deadlock in libgomp; spawned workers start clean and inherit the
        # environment (the passive wait policy) before they import torch.
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_worker,
            initargs=(threads, os.getpid()),
        ) as pool:
            futures = {pool.submit(execute, task): task for task in tasks}
            for future in futures:
                done(futures[future], future.result())


def start_worker(threads: int, parent: int) -> None:
    """A study worker's start: its share of threads, and a watchdog that ends the worker when
    the runner (process ``parent``) is gone.

    A runner stopped by a signal (Ctrl-C in another shell, ``kill``, a cluster's time limit)
    cannot shut its pool down, and its workers would go on training: taking the cores from
    the next ``study run`` and writing the very runs it resumes. Every run is resumable, so
    ending a worker mid-run loses at most the steps since its last saved state."""
    apply_threads(threads)
    watchdog = threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True)
    watchdog.start()


def _exit_when_orphaned(parent: int, every: float = PARENT_CHECK_S) -> None:
    """Poll the parent process id; once it is no longer ``parent`` (the runner died and the
    worker was re-parented), end this process at once, as a kill would."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)
