"""Stall detection: how long the measuring process's threads waited for a CPU during a round.

On a shared machine a timed round can include milliseconds in which the process was runnable
but not running: another process held the core, and a parallel region waited at its barrier for
the thread that was not scheduled. The round then looks like a clean, repeatable figure (the
scheduler tick quantises the wait: rounds of 4, 8, 12 ms with an IQR of 0%) while it measures
the neighbour, not the kernel. Linux counts this wait per thread: the second field of
``/proc/self/task/<tid>/schedstat`` is the time the thread spent runnable on a run queue
(nanoseconds), the first the time it ran on a CPU, the third the number of times it was given
a CPU. Reading every thread of the process before and after a round gives the round's *run
delay* and *CPU time*.

Not every wait is a stall. Some frameworks keep more threads busy than there are cores (JAX on
2 cores: the caller, the executor and XLA's pool threads hand work to each other), so their
threads wait for each other on every round, in short turns (tens to hundreds of microseconds).
Another process taking the core costs a whole scheduler slice (0.75 ms or more), and a
parallel region waiting for it costs its whole length. So a round is **contaminated** when
some thread's average wait per turn on a CPU exceeded ``STALL_MIN_S`` and the process's total
wait exceeded ``STALL_FRACTION`` of the round; it is left out of the cell's figure
(``timing.Timing``).

A worker pinned to one CPU (``threads.pick_cpus``) has all its threads on that CPU, so they
also wait for *each other* in whole slices: JAX's pool threads spin before they sleep, and the
thread with the work waits for the spinner's slice to end. Such a round waits long, yet no other
process ran: on that one CPU, the process's threads got all of the round's time. So for a
process pinned to one CPU a round is contaminated only if, besides the two bounds above, its
threads' CPU time fell short of the round by more than ``STALL_FRACTION`` (someone else had the
CPU). ``python benchmarks/stall_filter.py`` shows the effect on one small op
(its figures for this project's machine are in docs/method.md).

A wait is not the only way another process changes a figure. On a VM whose two vCPUs share
one physical core (or caches and memory bandwidth), a neighbour running on the *other* CPU
slows every round without the measuring process ever waiting: on this project's 2-core VM a
spinning process on the other core made cells 1.3-1.6x slower with no round contaminated. So
:class:`NeighbourMeter` also measures how much other work the machine ran while cells were
measured: the busy time of all its CPUs (``/proc/stat``: user, nice, system, irq, softirq and
the hypervisor's steal) minus this process's own CPU time, per second of wall time, in CPUs.
A cell measured while more than ``NEIGHBOUR_LIMIT`` CPUs of other work ran is ``contended``
(``timing.Timing``), whatever its rounds say. ``/proc/stat`` counts in clock ticks (10 ms), so
the meter spans a whole cell or interleaved case, never one round, and it takes out the most
that tick accounting can add to a span (one tick per CPU, ``tick_slack``): each CPU's counters
move a whole tick at a time, so over a span of a few milliseconds a quiet machine would
otherwise read as several CPUs of other work (3.7 CPUs over one 16 x 100 cell, seen here).
A cell that short cannot show other work beside it; its rounds' waits still count.

Threads that start during a round count with their whole totals (they are new); threads that
end during a round are not seen after it and count nothing. Where the source does not exist
(not Linux, or schedstats off), :class:`StallProbe` says so (``available`` False) and every
round counts as clean: the record names the source, so such figures are not mistaken for
checked ones.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from pathlib import Path

from xent_bench.harness.threads import PROC_STAT, usable_cores

SCHEDSTAT_GLOB = "/proc/self/task/*/schedstat"
# A round is contaminated when a thread waited longer than STALL_MIN_S per turn on a CPU on
# average (less than the shortest slice the scheduler gives another process), and all threads
# together waited longer than STALL_FRACTION of the round.
STALL_FRACTION = 0.05
STALL_MIN_S = 0.5e-3
# A thread counts as busy in a round when it ran for at least this share of the round's time.
BUSY_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class RoundStats:
    """The scheduler's view of one round: total run delay and CPU time of the process's
    threads, how many threads were busy, and the longest average wait per turn of any thread."""

    wait_s: float
    cpu_s: float
    busy_threads: int
    longest_wait_s: float = 0.0
    # The CPUs the process may run on during the round (its affinity); 0 when unknown.
    cpus: int = 0


Reading = dict[str, tuple[int, int, int]]  # tid -> (cpu_ns, wait_ns, turns on a CPU)


def read_schedstat(pattern: str = SCHEDSTAT_GLOB) -> Reading | None:
    """``{tid: (cpu_ns, wait_ns, turns)}`` of every thread of this process, or None where the
    source is missing."""
    out = {}
    for path in glob.glob(pattern):
        try:
            with open(path) as fh:
                fields = fh.read().split()
            out[os.path.basename(os.path.dirname(path))] = (int(fields[0]), int(fields[1]),
                                                             int(fields[2]))
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return out or None


def round_stats(before: Reading, after: Reading, elapsed_s: float, cpus: int = 0) -> RoundStats:
    """The run delay, CPU time, busy threads and longest wait per turn between two readings of
    a process that may run on ``cpus`` CPUs (0: unknown)."""
    wait = cpu = 0
    busy = 0
    longest = 0.0
    for tid, (cpu_after, wait_after, turns_after) in after.items():
        cpu_before, wait_before, turns_before = before.get(tid, (0, 0, 0))
        d_cpu, d_wait = max(cpu_after - cpu_before, 0), max(wait_after - wait_before, 0)
        turns = max(turns_after - turns_before, 1)
        cpu += d_cpu
        wait += d_wait
        longest = max(longest, d_wait / turns)
        if elapsed_s > 0 and d_cpu * 1e-9 >= BUSY_FRACTION * elapsed_s:
            busy += 1
    return RoundStats(wait_s=wait * 1e-9, cpu_s=cpu * 1e-9, busy_threads=busy,
                      longest_wait_s=longest * 1e-9, cpus=cpus)


def is_contaminated(stats: RoundStats, elapsed_s: float) -> bool:
    """Whether a round waited for a CPU as another process's slice, long enough to matter."""
    waited = (stats.longest_wait_s > STALL_MIN_S
              and stats.wait_s > STALL_FRACTION * elapsed_s)
    if stats.cpus == 1:
        # One CPU: the threads may only have waited for each other, unless they got less than
        # the round's time on it.
        return waited and elapsed_s - stats.cpu_s > STALL_FRACTION * elapsed_s
    return waited


class StallProbe:
    """Reads the scheduler statistics of this process around timed rounds.

    ``reader`` returns ``{tid: (cpu_ns, wait_ns, turns)}`` or None (tests pass a fake);
    ``cpus`` is the number of CPUs the process may run on (default: its affinity)."""

    def __init__(self, reader=read_schedstat, cpus: int | None = None):
        self.reader = reader
        self.cpus = usable_cores() if cpus is None else cpus
        self.available = reader() is not None
        self.source = "schedstat" if self.available else "unavailable"

    def read(self):
        return self.reader() if self.available else None

    def stats(self, before, after, elapsed_s: float) -> RoundStats | None:
        if before is None or after is None:
            return None
        return round_stats(before, after, elapsed_s, self.cpus)


# A cell measured while other work took more than this many CPUs (a quarter of one) is
# contended. A quiet machine shows a few hundredths (the runner, the kernel, steal); a
# neighbour that keeps one core busy shows about 1.
NEIGHBOUR_LIMIT = 0.25
# The busy fields of /proc/stat's cpu line: user, nice, system, (idle, iowait,) irq, softirq,
# steal. Guest time is already counted in user.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """Busy CPU time of the whole machine so far (all CPUs together, seconds), or None where
    ``/proc/stat`` cannot be read."""
    try:
        first = stat.read_text().splitlines()[0].split()
        ticks = sum(int(first[1 + i]) for i in BUSY_FIELDS if 1 + i < len(first))
    except (OSError, IndexError, ValueError):
        return None
    if first[0] != "cpu":
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def tick_slack() -> float:
    """The most busy time tick accounting can add to a span beyond the work done in it: one
    clock tick per CPU (seconds)."""
    return (os.cpu_count() or 1) / os.sysconf("SC_CLK_TCK")


class NeighbourMeter:
    """Other work on the machine while this process measures: ``(machine busy - own CPU -
    slack) / wall`` over the span between :meth:`start` and :meth:`stop`, in CPUs (0 or more),
    None where the machine's busy time cannot be read.

    ``busy`` returns the machine's busy seconds (tests pass a fake); ``own`` this process's CPU
    seconds (``time.process_time``: every thread, the ended ones too); ``slack`` the busy
    seconds tick accounting may add to any span (default :func:`tick_slack`), so the figure is
    the other work there surely was, never rounding."""

    def __init__(self, busy=busy_seconds, own=time.process_time, clock=time.perf_counter,
                 slack: float | None = None):
        self.busy, self.own, self.clock = busy, own, clock
        self.slack = tick_slack() if slack is None else slack
        self._start: tuple[float | None, float, float] | None = None

    def start(self) -> NeighbourMeter:
        self._start = (self.busy(), self.own(), self.clock())
        return self

    def stop(self) -> float | None:
        if self._start is None:
            raise RuntimeError("NeighbourMeter.stop() before start()")
        busy0, own0, t0 = self._start
        busy1, own1, t1 = self.busy(), self.own(), self.clock()
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0) - self.slack) / (t1 - t0))
