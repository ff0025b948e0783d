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

A worker measuring with fewer threads than the machine has cores is also *pinned* to that many
CPUs (its CPU affinity, inherited by every thread the framework starts), the idlest ones when it
is launched (:func:`pick_cpus`). A "1 thread" setting is not one thread: JAX hands each call from
the caller to an executor thread, and between rounds (the stall probe reads ``/proc``) that
thread goes to sleep. Unpinned, waking it on the other, idle CPU of this project's 2-core VM
made small ``optax`` calls about twice as slow and uneven (see ``docs/method.md``). Pinning
makes "N threads" mean N cores, for every framework alike.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

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


PROC_STAT = Path("/proc/stat")
SAMPLE_S = 0.1


def _idle_ticks(text: str) -> dict[int, int]:
    """Idle plus I/O-wait ticks per CPU from the text of ``/proc/stat``."""
    idle = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 5:
            idle[int(name[3:])] = int(fields[3]) + int(fields[4])
    return idle


def pick_cpus(threads: int, *, stat: Path = PROC_STAT, sample_s: float = SAMPLE_S,
              allowed: set[int] | None = None) -> list[int] | None:
    """The ``threads`` CPUs a worker is pinned to: of the CPUs this process may use, those
    idlest over ``sample_s`` seconds (ties to the higher number: CPU 0 takes most
    interrupts). None when ``threads`` is not below the usable cores (nothing to pin) or the
    machine cannot be pinned (no ``sched_setaffinity``)."""
    if allowed is None:
        if not hasattr(os, "sched_setaffinity"):
            return None
        allowed = set(os.sched_getaffinity(0))
    if threads >= len(allowed):
        return None
    try:
        before = _idle_ticks(stat.read_text())
        time.sleep(sample_s)
        after = _idle_ticks(stat.read_text())
    except OSError:
        before = after = {}
    idle = {cpu: after.get(cpu, 0) - before.get(cpu, 0) for cpu in allowed}
    return sorted(sorted(allowed, key=lambda cpu: (idle[cpu], cpu), reverse=True)[:threads])


def pin_rule(threads: int, cores: int | None = None) -> str:
    """How workers are pinned at ``threads`` threads, in words for the run's record."""
    cores = usable_cores() if cores is None else cores
    if threads >= cores or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    return f"each worker pinned to {threads} of {cores} CPUs, the idlest at its launch"
