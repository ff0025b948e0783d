"""The default CPU thread count of a run, chosen by a rule that gives stable figures.

On this project's 2-core machine, with another process on one core, a 2-thread
``F.cross_entropy`` call of 0.06 ms took 12-32 ms in steps of the scheduler tick (a parallel
region waits for the thread that is not scheduled), while at 1 thread block medians stayed
within 1.3x. More threads than free cores measures the scheduler, not the kernel. So:

- 2 cores or fewer: 1 thread;
- more: the cores this process may run on, less those the 1-minute load average says are busy
  (at least 1).

``--threads N`` overrides the rule (multi-threaded figures go through the same stall filter).
The rule and the inputs it saw are recorded in the run's ``meta.json``; each cell records how
many threads were busy in its clean rounds (``busy_threads``), which verifies that the
framework's thread setting took effect.
"""

from __future__ import annotations

import math
import os

SMALL_MACHINE_CORES = 2


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), or the machine's core count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """``(threads, the rule that chose them)`` for ``cores`` usable cores at 1-minute load
    ``load`` (both read from the machine when not given)."""
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    if cores <= SMALL_MACHINE_CORES:
        return 1, f"{cores} cores (2 or fewer): 1 thread"
    busy = math.ceil(load) if load is not None else 0
    threads = max(1, cores - busy)
    return threads, (f"{cores} cores, load {load:.2f}: {threads} threads (cores less busy ones)"
                     if load is not None else f"{cores} cores, load unknown: {threads} threads")
