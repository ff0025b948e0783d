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

NOISY_IQR = 0.10  # a cell whose IQR / median exceeds this is flagged noisy


@dataclasses.dataclass
class Timing:
    first_call_s: float
    times_s: list[float]

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    def summary(self) -> dict:
        t = np.asarray(self.times_s)
        q1, med, q3 = (float(v) for v in np.percentile(t, [25, 50, 75]))
        iqr_rel = (q3 - q1) / med if med > 0 else math.inf
        return {
            "median_s": med,
            "q1_s": q1,
            "q3_s": q3,
            "min_s": float(t.min()),
            "iqr_rel": iqr_rel,
            "noisy": float(iqr_rel > NOISY_IQR),
            "rounds": float(t.size),
            "first_call_s": self.first_call_s,
            # First call minus steady state: trace, compile and one-off set-up of this shape.
            "compile_s": max(self.first_call_s - med, 0.0),
        }


def calibrate_rounds(probe_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """Rounds that fill ``budget_s`` at ``probe_s`` per call, within [min_rounds, max_rounds]."""
    return int(min(max(math.ceil(budget_s / max(probe_s, 1e-9)), min_rounds), max_rounds))


def perf_counter_rounds(call_once, rounds: int) -> list[float]:
    """The harness's own round loop: ``rounds`` timed calls of ``call_once``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call_once()
        times.append(time.perf_counter() - start)
    return times


def time_step(step, inputs, sync, *, budget_s: float = 0.5, min_rounds: int = 5,
              max_rounds: int = 1000, warmup: int = 2, on_first_call=None,
              run_rounds=perf_counter_rounds) -> Timing:
    """Time ``step(*inputs[i % len(inputs)])`` (rotating input sets, e.g. to defeat a GPU cache).

    ``on_first_call(out)`` is called with the first call's output right after it completes
    (to check its values and read the peak memory of the compiling call before steady state).
    ``run_rounds(call_once, rounds) -> times`` runs the timed rounds: the harness's own loop by
    default, pytest-benchmark's ``pedantic`` in the pytest suite. ``call_once`` includes the sync.
    """
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
    probe = min(perf_counter_rounds(call_once, max(warmup, 1)))
    rounds = calibrate_rounds(probe, budget_s, min_rounds, max_rounds)
    return Timing(first_call_s=first, times_s=list(run_rounds(call_once, rounds)))
