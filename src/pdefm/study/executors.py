"""Where a study's runs execute: the choice a caller makes, checked before anything is written.

``run_study`` takes one of these and opens it for the runs that are left:

- :class:`LocalPool` (the default): ``workers`` spawned processes on this machine
  (:class:`pdefm.study.execute.ProcessExecutor`);
- :class:`RayCluster`: every run a Ray task on the cluster at ``address``, asking for
  ``cpus_per_run`` / ``gpus_per_run`` (:mod:`pdefm.study.ray_executor`).

:func:`choose_executor` builds one from the command line's flags and refuses flags that belong
to the other executor.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from pdefm.checks import check_float, check_int
from pdefm.errors import PdefmError
from pdefm.study.execute import Executor, ProcessExecutor
from pdefm.threads import usable_cores

WORKERS_PER_CORE = 4  # --workers beyond this many per core only makes processes queue for cores
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class LocalPool:
    """``workers`` worker processes on this machine (1: one at a time)."""

    workers: int = 1

    def check(self) -> None:
        """Refuse a worker count that is not a positive integer or would only queue."""
        check_int(self.workers, "--workers", minimum=1)
        cores = usable_cores()
        if self.workers > WORKERS_PER_CORE * cores:
            raise PdefmError(
                f"--workers {self.workers} is more than {WORKERS_PER_CORE} per CPU core ({cores} "
                f"here): the processes would only queue for the cores and multiply memory; use "
                f"at most {WORKERS_PER_CORE * cores} (--workers {cores} is usually fastest)"
            )

    def start(self, progress: bool) -> AbstractContextManager[Executor]:
        """The pool, open for the duration of a ``with`` block."""
        return nullcontext(ProcessExecutor(self.workers, progress=progress))


@dataclass(frozen=True)
class RayCluster:
    """The Ray cluster at ``address`` (None: ``ray.init()``'s default; see ``connect``)."""

    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None

    def check(self) -> None:
        """Refuse bad per-run resources or address, and a missing Ray, before any writing."""
        for option, value in (
            ("--ray-cpus-per-run", self.cpus_per_run),
            ("--ray-gpus-per-run", self.gpus_per_run),
        ):
            if value is not None:
                check_float(value, option, minimum=0)
        address = self.address
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise PdefmError(
                "--address must be HOST:PORT or auto; leave it out for a local cluster"
            )
        from pdefm.study.ray_executor import import_ray

        import_ray()

    def start(self, progress: bool) -> AbstractContextManager[Executor]:
        """A connection to the cluster for the duration of a ``with`` block."""
        from pdefm.study.ray_executor import connect

        return connect(self.address, self.cpus_per_run, self.gpus_per_run)


ExecutorChoice = LocalPool | RayCluster


def choose_executor(
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
) -> ExecutorChoice:
    """The executor named by ``pdefm study run``'s flags, checked (see the module docstring)."""
    if executor not in EXECUTORS:
        raise PdefmError(f"unknown executor {executor!r}; choose local or ray")
    ray_options = (address, cpus_per_run, gpus_per_run)
    if executor == "local":
        if any(o is not None for o in ray_options):
            raise PdefmError("--address and --ray-*-per-run need --executor ray; add it")
        choice: ExecutorChoice = LocalPool(workers)
    else:
        check_int(workers, "--workers", minimum=1)
        if workers != 1:
            raise PdefmError(
                "--workers is for the local executor; with --executor ray the cluster's "
                "resources set how many runs go side by side (see --ray-cpus-per-run)"
            )
        choice = RayCluster(*ray_options)
    choice.check()
    return choice
