"""Cross-entropy benchmarks for pytest-benchmark: ``pytest --benchmark-only``.

Each benchmark is one cell of the chosen preset (parametrized in ``conftest.py``), measured by
the runner's own ``measure_timing``: the first call (trace + compile) and warm-up run apart, the
round count is calibrated to the preset's budget, and pytest-benchmark's ``pedantic`` times the
rounds, each of which includes the framework's sync. ``extra_info`` carries the record keys, the
modelled bytes, the floor metrics and the agreement of the timed output with the float64 oracle.
"""

from __future__ import annotations

import os
import time

import xent_impls
from xent_bench.harness import cells as cells_mod
from xent_bench.harness import provenance
from xent_bench.harness.timing import Rounds, perf_counter_rounds
from xent_bench.harness.worker import measure_timing

EXTRA_KEYS = ("impl", "framework", "form", "variant", "n", "c", "dtype", "pass", "device",
              "scale", "seed")


def test_cross_entropy(benchmark, xent_cell, xent_session):
    cell = xent_cell
    impl = xent_impls.get(cell["impl"])
    be = xent_session.backend(impl.framework)
    preset = xent_session.preset
    ceilings = xent_session.measure_ceilings(cell["device"])
    benchmark.group = f"{cell['n']}x{cell['c']} {cell['dtype']} {cell['pass']} {cell['device']}"

    def pedantic_rounds(call_once, rounds: int, probe) -> Rounds:
        """pytest-benchmark times the rounds; the scheduler statistics are read in its untimed
        ``setup`` before each round and once after the last, so each round's window also holds
        the plugin's own bookkeeping between rounds (microseconds)."""
        if benchmark.disabled:  # --benchmark-disable: one plain call, no statistics
            return perf_counter_rounds(call_once, 1, probe)
        readings = []
        began = time.perf_counter()
        benchmark.pedantic(call_once, setup=lambda: readings.append(probe.read()),
                           rounds=rounds, iterations=1, warmup_rounds=0)
        readings.append(probe.read())
        span_s = time.perf_counter() - began
        times = list(benchmark.stats.stats.data)
        return Rounds(times, [probe.stats(readings[i], readings[i + 1], t)
                              for i, t in enumerate(times)],
                      probe.stats(readings[0], readings[-1], span_s), span_s)

    task = {"budget_s": xent_session.budget_s, "min_rounds": preset.min_rounds,
            "max_rounds": preset.max_rounds, "ceilings": ceilings["best"]}
    metrics, labels, raw = measure_timing(impl, cell, task, run_rounds=pedantic_rounds)

    benchmark.extra_info.update({k: cell[k] for k in EXTRA_KEYS})
    benchmark.extra_info.update({"cell_key": cells_mod.cell_key(cell),
                                 "threads": xent_session.threads,
                                 "threads_applied": xent_session.configured[impl.framework],
                                 "sync": be.SYNC_METHOD,
                                 "device_name": be.device_name(cell["device"]), **labels})
    benchmark.extra_info.update(metrics)
    # What changes between sessions stays out of machine_info (conftest.py): the session's
    # ceilings, the commit, the framework's versions as imported and the CPUs pinned to.
    benchmark.extra_info.update({
        "ceilings": ceilings["best"], "ceiling_frameworks": sorted(ceilings["per_framework"]),
        "git_commit": provenance.git_commit(),
        "versions": be.versions(),
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None})
    benchmark.extra_info["times_s"] = raw["times_s"]
    # Per round: False where the round waited for a CPU (its time is left out of the figures).
    benchmark.extra_info["clean"] = raw["clean"]
    # A timing of a wrong answer is not a result: the timed output must be finite.
    assert metrics.get("loss_nonfinite", 0) == 0 or impl.expected_failure, (
        f"{impl.id} returned non-finite losses on {cells_mod.describe(cell)}")
