"""Steady-state timing with the framework's own sync, calibrated to a time budget.

Rules (docs/method.md): a time counts only completed work (``sync`` runs inside every timed
round); the first call (trace + compile + run) is timed apart from the steady state; a few
warm-up calls follow it; then the number of rounds is calibrated so that the rounds fill
``budget_s`` (between ``min_rounds`` and ``max_rounds``). Each round is one call; the output
of a round is released before the next starts, so no two outputs are alive at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np

from xent_bench.harness.stalls import (
    NEIGHBOUR_LIMIT,
    NeighbourMeter,
    RoundStats,
    StallProbe,
    is_contaminated,
)

NOISY_IQR = 0.10  # a cell whose IQR / median exceeds this is flagged noisy


@dataclasses.dataclass
class Rounds:
    """Timed rounds and the scheduler's view of each (None where no stall source exists)."""

    times_s: list[float]
    stats: list[RoundStats | None]
    # The scheduler's view of all rounds together (start of the first to end of the last):
    # CPU time advances at scheduler ticks, so only a span of many rounds says how many
    # threads were busy.
    span: RoundStats | None = None
    span_s: float = 0.0
    # Other work on the machine while the rounds ran, in CPUs (stalls.NeighbourMeter); None
    # where it was not measured.
    neighbour_cpu: float | None = None


@dataclasses.dataclass
class Timing:
    """A cell's first call and timed rounds. Its figures (median, quartiles) come from the
    *clean* rounds only: a round whose threads waited for a CPU (``stalls.is_contaminated``)
    measured the machine's other load, not the op. A cell with fewer than ``min_clean`` clean
    rounds, or measured while other work took more than ``stalls.NEIGHBOUR_LIMIT`` CPUs
    (``neighbour_cpu``), is *contended*: its figure is shown but is not a clean measurement."""

    first_call_s: float
    times_s: list[float]
    stats: list[RoundStats | None] = dataclasses.field(default_factory=list)
    stall_source: str = "unavailable"
    min_clean: int = 5
    span: RoundStats | None = None
    span_s: float = 0.0
    neighbour_cpu: float | None = None

    @property
    def clean(self) -> list[bool]:
        """Per round: True when the round did not wait for a CPU (or no source could tell)."""
        return [s is None or not is_contaminated(s, t)
                for t, s in zip(self.times_s, self.stats or [None] * len(self.times_s))]

    @property
    def clean_times_s(self) -> list[float]:
        return [t for t, ok in zip(self.times_s, self.clean) if ok]

    @property
    def contended(self) -> bool:
        return (len(self.clean_times_s) < min(self.min_clean, len(self.times_s))
                or is_neighboured(self.neighbour_cpu))

    @property
    def median_s(self) -> float:
        return float(np.median(self.clean_times_s or self.times_s))

    def summary(self) -> dict:
        clean = self.clean_times_s
        t = np.asarray(clean or self.times_s)
        q1, med, q3 = (float(v) for v in np.percentile(t, [25, 50, 75]))
        iqr_rel = (q3 - q1) / med if med > 0 else math.inf
        seen = [s for s in self.stats if s is not None]
        out = {
            "median_s": med,
            "q1_s": q1,
            "q3_s": q3,
            "min_s": float(t.min()),
            "iqr_rel": iqr_rel,
            "noisy": float(iqr_rel > NOISY_IQR),
            "rounds": float(len(self.times_s)),
            "clean_rounds": float(len(clean)),
            "contaminated_rounds": float(len(self.times_s) - len(clean)),
            "contended": float(self.contended),
            "first_call_s": self.first_call_s,
            # First call minus steady state: trace, compile and one-off set-up of this shape.
            "compile_s": max(self.first_call_s - med, 0.0),
        }
        if self.neighbour_cpu is not None:
            out["neighbour_cpu"] = self.neighbour_cpu
        if seen:
            # Run delay of all rounds: the time the process's threads waited for a CPU.
            out["stall_wait_s"] = float(sum(s.wait_s for s in seen))
        if self.span is not None and self.span_s > 0:
            # Threads that ran for a quarter of the rounds' span or more, and CPU time per
            # wall-clock second: the thread setting, verified (1 thread: about 1.0).
            out["busy_threads"] = float(self.span.busy_threads)
            out["cpu_per_wall"] = self.span.cpu_s / self.span_s
        return out


def is_neighboured(neighbour_cpu: float | None) -> bool:
    """Whether other work on the machine (in CPUs) makes a cell contended."""
    return neighbour_cpu is not None and neighbour_cpu > NEIGHBOUR_LIMIT


def metered_rounds(run_rounds, call_once, rounds: int, probe: StallProbe | None) -> Rounds:
    """``run_rounds(call_once, rounds, probe)`` with the other work on the machine measured
    over all of its rounds (``Rounds.neighbour_cpu``)."""
    meter = NeighbourMeter().start()
    timed = run_rounds(call_once, rounds, probe)
    return dataclasses.replace(timed, neighbour_cpu=meter.stop())


def calibrate_rounds(probe_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """Rounds that fill ``budget_s`` at ``probe_s`` per call, within [min_rounds, max_rounds]."""
    return int(min(max(math.ceil(budget_s / max(probe_s, 1e-9)), min_rounds), max_rounds))


def perf_counter_rounds(call_once, rounds: int, probe: StallProbe | None = None) -> Rounds:
    """The harness's own round loop: ``rounds`` timed calls of ``call_once``, each between two
    readings of the scheduler statistics (read outside the timed region)."""
    times, stats = [], []
    first = probe.read() if probe is not None else None
    began = time.perf_counter()
    after = first
    for _ in range(rounds):
        before = after
        start = time.perf_counter()
        call_once()
        elapsed = time.perf_counter() - start
        after = probe.read() if probe is not None else None
        times.append(elapsed)
        stats.append(probe.stats(before, after, elapsed) if probe is not None else None)
    span_s = time.perf_counter() - began
    span = probe.stats(first, after, span_s) if probe is not None else None
    return Rounds(times, stats, span, span_s)


@dataclasses.dataclass
class Prepared:
    """A step after its first call and warm-up: the timed call and the calibrated round count."""

    call_once: object  # () -> None: one call of the step, synced, output released
    first_call_s: float
    rounds: int


def prepare_step(step, inputs, sync, *, budget_s: float = 0.5, min_rounds: int = 5,
                 max_rounds: int = 1000, warmup: int = 2, on_first_call=None) -> Prepared:
    """Run ``step(*inputs[i % len(inputs)])`` once (timed apart: trace, compile, first run),
    then ``warmup`` times, and calibrate the rounds that fill ``budget_s`` (rotating input
    sets, e.g. to defeat a GPU cache). ``on_first_call(out)`` is called with the first call's
    output right after it completes (to check its values and read the peak memory of the
    compiling call before steady state)."""
    counter = itertools.count()

    def call_once():
        out = step(*inputs[next(counter) % len(inputs)])
        sync(out)
        # ``out`` is released on return, before the next round starts.

    start = time.perf_counter()
    out = step(*inputs[next(counter) % len(inputs)])
    sync(out)
    first = time.perf_counter() - start
    if on_first_call is not None:
        on_first_call(out)
    del out
    warm = min(perf_counter_rounds(call_once, max(warmup, 1)).times_s)
    return Prepared(call_once, first, calibrate_rounds(warm, budget_s, min_rounds, max_rounds))


def time_step(step, inputs, sync, *, budget_s: float = 0.5, min_rounds: int = 5,
              max_rounds: int = 1000, warmup: int = 2, on_first_call=None,
              run_rounds=perf_counter_rounds, probe: StallProbe | None = None) -> Timing:
    """Time ``step`` (``prepare_step``, then the calibrated rounds in one go).

    ``run_rounds(call_once, rounds, probe) -> Rounds`` runs the timed rounds: the harness's own
    loop by default, pytest-benchmark's ``pedantic`` in the pytest suite. ``call_once`` includes
    the sync. ``probe`` reads the scheduler statistics around each round (a fresh
    ``StallProbe`` by default).
    """
    probe = probe if probe is not None else StallProbe()
    prepared = prepare_step(step, inputs, sync, budget_s=budget_s, min_rounds=min_rounds,
                            max_rounds=max_rounds, warmup=warmup, on_first_call=on_first_call)
    timed = metered_rounds(run_rounds, prepared.call_once, prepared.rounds, probe)
    return Timing(first_call_s=prepared.first_call_s, times_s=list(timed.times_s),
                  stats=list(timed.stats), stall_source=probe.source, min_clean=min_rounds,
                  span=timed.span, span_s=timed.span_s, neighbour_cpu=timed.neighbour_cpu)
