"""How many CPU threads pdefm's torch work uses, and how idle threads wait.

Why this exists: torch's CPU ops run on an OpenMP pool with one thread per core, and idle
OpenMP threads spin for a while before they sleep. On a machine shared with another busy
process, every parallel region then waits for a thread whose core is taken, and a training
loop can run ten times slower than with a single thread. pdefm therefore

1. asks idle threads to sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), unless the
   user set a wait policy; this only takes effect if it happens before torch starts its
   thread pool, so the CLI calls ``prepare_environment`` first thing and worker processes
   inherit it;
2. gives each process ``threads = floor(free cores / workers)`` threads, at least 1, where the
   free cores are the cores this process may use minus those other processes kept busy over a
   short sample (Linux ``/proc/stat``; elsewhere every usable core counts as free);
3. lets the user override both: ``--threads N`` (or ``PDEFM_THREADS``), and any
   ``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` they set themselves.

This module is torch-free until ``apply_threads`` is called.
"""

from __future__ import annotations

import math
import os
import time

from pdefm.checks import check_int
from pdefm.errors import PdefmError

ENV_THREADS = "PDEFM_THREADS"
SAMPLE_SECONDS = 0.25  # long enough to see a busy competitor, short enough not to be noticed


def prepare_environment() -> None:
    """Make idle OpenMP threads sleep rather than spin (call before torch is imported).

    A wait policy the user set (``OMP_WAIT_POLICY``) is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> dict[str, tuple[int, int]] | None:
    """cpuN -> (busy, total) jiffies from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            lines = [line.split() for line in fh if line.startswith("cpu")]
    except OSError:
        return None
    times = {}
    for fields in lines:
        if fields[0] == "cpu" or len(fields) < 5:
            continue
        ticks = [int(x) for x in fields[1:9]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        times[fields[0]] = (sum(ticks) - idle, sum(ticks))
    return times


def busy_cores(sample_seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's usable cores other processes kept busy over a short sample,
    in cores (0.0 on a quiet machine); None where the OS does not say."""
    before = _cpu_times()
    if not before:
        return None
    time.sleep(sample_seconds)
    after = _cpu_times() or {}
    try:
        mine = {f"cpu{k}" for k in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        mine = set(before)
    busy = 0.0
    for cpu in mine & before.keys() & after.keys():
        d_busy = after[cpu][0] - before[cpu][0]
        d_total = after[cpu][1] - before[cpu][1]
        if d_total > 0:
            busy += min(1.0, max(0.0, d_busy / d_total))
    return busy


def free_cores(sample_seconds: float = SAMPLE_SECONDS) -> int:
    """Usable cores minus those kept busy by others (a core counts as busy from 50% load)."""
    cores = usable_cores()
    busy = busy_cores(sample_seconds)
    if busy is None:
        return cores
    return max(1, cores - math.floor(busy + 0.5))


def choose_threads(requested: int | None = None, workers: int = 1) -> int:
    """Threads for each of ``workers`` processes: ``requested`` if given (else the
    ``PDEFM_THREADS`` environment variable), else ``floor(free cores / workers)``, at least 1.

    ``OMP_NUM_THREADS`` set by the user is honoured when nothing else is given."""
    if requested is not None:
        return check_int(requested, "--threads", minimum=1, maximum=4096)
    if os.environ.get(ENV_THREADS):
        return _env_int(ENV_THREADS)
    if os.environ.get("OMP_NUM_THREADS"):
        return _env_int("OMP_NUM_THREADS")
    return max(1, free_cores() // max(1, workers))


def _env_int(name: str) -> int:
    text = os.environ[name].strip()
    try:
        value = int(text)
    except ValueError:
        raise PdefmError(f"{name}={text!r} is not a whole number; set it to e.g. 1") from None
    return check_int(value, name, minimum=1, maximum=4096)


def apply_threads(threads: int) -> int:
    """Give torch ``threads`` intra-op threads in this process; returns ``threads``."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
