"""Stall detection: how long the measuring process's threads waited for a CPU during a round.

On a shared machine a timed round can include milliseconds in which the process was runnable
but not running: another process held the core, and a parallel region waited at its barrier for
the thread that was not scheduled. The round then looks like a clean, repeatable figure (the
scheduler tick quantises the wait: rounds of 4, 8, 12 ms with an IQR of 0%) while it measures
the neighbour, not the kernel. Linux counts this wait per thread: the second field of
``/proc/self/task/<tid>/schedstat`` is the time the thread spent runnable on a run queue
(nanoseconds), the first the time it ran on a CPU. Reading every thread of the process before
and after a round gives the round's *run delay* and *CPU time*; a round whose run delay exceeds
``max(STALL_MIN_S, STALL_FRACTION * round time)`` is **contaminated** and left out of the
cell's figure (``timing.Timing``).

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

SCHEDSTAT_GLOB = "/proc/self/task/*/schedstat"
# A round is contaminated when its threads waited longer than this share of the round's time,
# and longer than STALL_MIN_S (waking an idle pool thread for a parallel region costs a few
# microseconds of run delay on every round, which is part of the op, not a stall).
STALL_FRACTION = 0.05
STALL_MIN_S = 50e-6
# A thread counts as busy in a round when it ran for at least this share of the round's time.
BUSY_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class RoundStats:
    """The scheduler's view of one round: total run delay and CPU time of the process's
    threads, and how many threads were busy."""

    wait_s: float
    cpu_s: float
    busy_threads: int


def read_schedstat(pattern: str = SCHEDSTAT_GLOB) -> dict[str, tuple[int, int]] | None:
    """``{tid: (cpu_ns, wait_ns)}`` of every thread of this process, or None where the source
    is missing."""
    out = {}
    for path in glob.glob(pattern):
        try:
            with open(path) as fh:
                fields = fh.read().split()
            out[os.path.basename(os.path.dirname(path))] = (int(fields[0]), int(fields[1]))
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return out or None


def round_stats(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                elapsed_s: float) -> RoundStats:
    """The run delay, CPU time and busy threads between two readings."""
    wait = cpu = 0
    busy = 0
    for tid, (cpu_after, wait_after) in after.items():
        cpu_before, wait_before = before.get(tid, (0, 0))
        d_cpu, d_wait = max(cpu_after - cpu_before, 0), max(wait_after - wait_before, 0)
        cpu += d_cpu
        wait += d_wait
        if elapsed_s > 0 and d_cpu * 1e-9 >= BUSY_FRACTION * elapsed_s:
            busy += 1
    return RoundStats(wait_s=wait * 1e-9, cpu_s=cpu * 1e-9, busy_threads=busy)


def is_contaminated(stats: RoundStats, elapsed_s: float) -> bool:
    """Whether a round waited too long for a CPU to count as a measurement of the op."""
    return stats.wait_s > max(STALL_MIN_S, STALL_FRACTION * elapsed_s)


class StallProbe:
    """Reads the scheduler statistics of this process around timed rounds.

    ``reader`` returns ``{tid: (cpu_ns, wait_ns)}`` or None (tests pass a fake)."""

    def __init__(self, reader=read_schedstat):
        self.reader = reader
        self.available = reader() is not None
        self.source = "schedstat" if self.available else "unavailable"

    def read(self):
        return self.reader() if self.available else None

    def stats(self, before, after, elapsed_s: float) -> RoundStats | None:
        if before is None or after is None:
            return None
        return round_stats(before, after, elapsed_s)
