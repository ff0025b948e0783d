"""A framework worker: measures a list of cells of one framework in its own process.

Run as ``python -m xent_bench.harness.worker TASK.json`` by the runner
(``xent_bench/harness/runner.py``), which
sets threads and allocator variables in the environment before the framework is imported. Each
finished cell is appended to the run's record file at once. On standard output the worker
announces ``START i`` before cell ``i``, so the runner knows which cell a crash interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import xent_impls
from xent_bench.harness import agreement, behaviour, floor, memory, protocol
from xent_bench.harness.cells import cell_case
from xent_bench.harness.records import CANNOT_WRITE, Record, RecordWriteError, append_record
from xent_bench.harness.stalls import NeighbourMeter, RoundStats, StallProbe
from xent_bench.harness.timing import (
    Rounds,
    Timing,
    metered_rounds,
    perf_counter_rounds,
    prepare_step,
)
from xent_impls.api import to_framework_inputs
from xent_impls.checks import check

# On a GPU, inputs smaller than this are rotated through several copies so that timed rounds
# read from DRAM, not from a warm L2 cache (H100/H200 L2: 50-60 MB).
GPU_CACHE_BYTES = 128 * 2**20
MAX_ROTATION = 64
# Interleaved blocks of the implementations of one case (measure_interleaved): as many blocks
# as give each cell ROUNDS_PER_BLOCK rounds a turn, between MIN_BLOCKS and MAX_BLOCKS. Short
# blocks pair the implementations closely in time: on this project's shared VM a plain NumPy
# exp loop switches between two speeds within one process, in tens of milliseconds,
# so only rounds taken close together see the same machine.
MIN_BLOCKS = 5
MAX_BLOCKS = 50
ROUNDS_PER_BLOCK = 2
# Extra measurements of a contended timing cell (see run_task).
REMEASURE = 2


@functools.lru_cache(maxsize=4)
def _inputs(case, form):
    return xent_impls.make_inputs(case, form)


@functools.lru_cache(maxsize=4)
def _oracle(case, form):
    logits, targets = _inputs(case, form)
    return xent_impls.reference(logits, targets, grad=True)


def measure_agreement(impl, cell: dict, task: dict) -> tuple[dict, dict, dict]:
    case = cell_case(cell)
    logits, targets = _inputs(case, impl.form)
    ref_loss, ref_grad = _oracle(case, impl.form)
    # Agreement runs use the checked mode (timing runs do not pay for it): an input the
    # implementation cannot take is an error record naming the value, not a garbage number.
    check(impl, logits, targets)
    be = impl.backend
    x, t = to_framework_inputs(impl, logits, targets, cell["device"])
    out = be.make_step(impl, True, cell["device"])(x, t)
    be.sync(out)
    loss, grad = (be.to_numpy(o) for o in out)
    metrics = agreement.agreement_metrics(logits, loss, grad, ref_loss, ref_grad, case.dtype)
    labels = {"out_dtype": xent_impls.dtypes.dtype_name(loss.dtype)}
    return metrics, labels, {}


# A deliberate slowdown, to check that a comparison catches a regression
# (``xent-bench stability``): XENT_SLOWDOWN="IMPL_ID=FACTOR" makes every timed round of that
# implementation take FACTOR times as long, by spinning after the synced call for (FACTOR - 1)
# times its duration. The record carries the factor as a label, so such a run is never taken
# for a real measurement.
SLOWDOWN_ENV = "XENT_SLOWDOWN"


def slowdown_factor(impl_id: str) -> float | None:
    spec = os.environ.get(SLOWDOWN_ENV, "")
    target, _, factor = spec.partition("=")
    if not spec or target != impl_id:
        return None
    value = float(factor)
    if not value >= 1.0:
        raise ValueError(f"{SLOWDOWN_ENV} factor must be at least 1, got {factor!r}")
    return value


def slowed(call_once, impl_id: str):
    """``call_once`` (one synced call, as timed), slowed by ``XENT_SLOWDOWN`` where it names
    ``impl_id``."""
    factor = slowdown_factor(impl_id)
    if factor is None:
        return call_once

    def slow_call():
        start = time.perf_counter()
        call_once()
        until = time.perf_counter() + (factor - 1.0) * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass

    return slow_call


class TimedCell:
    """One timing cell set up for its timed rounds: inputs converted, step built, first call
    run (timed apart, its output checked against the oracle), rounds calibrated. ``finish``
    turns the timed rounds into the cell's metrics, after measuring its steady-state peak
    memory in rounds of its own."""

    def __init__(self, impl, cell: dict, task: dict):
        self.impl, self.cell, self.task = impl, cell, task
        case = cell_case(cell)
        device = self.device = cell["device"]
        be = self.be = impl.backend
        self.cost = floor.modelled_cost(case.n, case.c, case.dtype, impl.form, cell["pass"])
        logits, targets = xent_impls.make_inputs(case, impl.form)
        copies = self.copies = 1
        if device == "cuda":
            copies = self.copies = int(min(MAX_ROTATION, max(
                1, -(-GPU_CACHE_BYTES // max(self.cost["model_bytes"], 1)))))
        self.inputs = [to_framework_inputs(impl, logits, targets, device) for _ in range(copies)]
        rows = min(case.n, agreement.CHECK_ROWS)
        check_logits, check_targets = logits[:rows].copy(), targets[:rows].copy()
        del logits, targets
        self.step = be.make_step(impl, cell["pass"] == "forward_backward", device)

        # Memory of the first call: resident size before it (inputs alive), its peak (includes
        # compilation) and what it left resident (caches, compiled code, pools). The
        # steady-state peak is measured after the timed rounds, in rounds of its own.
        rss0 = memory.rss_bytes()
        memory.reset_peak_rss()
        self.extra: dict = {}

        def after_first_call(out):
            hwm, rss1 = memory.peak_rss_bytes(), memory.rss_bytes()
            if device == "cpu" and None not in (hwm, rss0, rss1):
                self.extra["first_call_peak_bytes"] = float(max(hwm - rss0, 0))
                self.extra["retained_bytes"] = float(max(rss1 - rss0, 0))
            self.extra.update(agreement.check_output(be, case, out, check_logits, check_targets,
                                                     cell["pass"]))

        self.prepared = prepare_step(self.step, self.inputs, be.sync, budget_s=task["budget_s"],
                                     min_rounds=task["min_rounds"],
                                     max_rounds=task["max_rounds"],
                                     on_first_call=after_first_call)
        self.prepared.call_once = slowed(self.prepared.call_once, impl.id)

    def timing(self, rounds: Rounds, source: str) -> Timing:
        return Timing(first_call_s=self.prepared.first_call_s, times_s=list(rounds.times_s),
                      stats=list(rounds.stats), stall_source=source,
                      min_clean=self.task["min_rounds"], span=rounds.span, span_s=rounds.span_s,
                      neighbour_cpu=rounds.neighbour_cpu)

    def finish(self, timing: Timing, blocks: list[int] | None = None
               ) -> tuple[dict, dict, dict]:
        metrics = timing.summary() | self.cost | self.extra
        be, device = self.be, self.device

        # Peak memory in rounds of its own, after the timed rounds, from a clean baseline (see
        # memory.py): the same cell gives the same figure whatever ran before it.
        def call():
            out = self.step(*self.inputs[0])
            be.sync(out)

        if device == "cpu":
            peak = memory.steady_peak_bytes(call)
            if peak is not None:
                metrics["peak_extra_bytes"] = peak
        else:
            be.reset_peak_memory(device)
            in_use0 = be.memory_in_use(device)
            call()
            peak = be.peak_memory(device)
            if peak is not None and in_use0 is not None:
                metrics["peak_extra_bytes"] = float(max(peak - in_use0, 0))
        ceilings = self.task.get("ceilings") or {}
        if ceilings:
            metrics |= floor.floor_metrics(self.cost, self.cell["pass"], ceilings,
                                           timing.median_s)
            metrics |= {k: v for k, v in ceilings.items() if isinstance(v, float)}
        copies = self.copies
        labels = {"cache_mode": (f"rotate {copies} input copies" if copies > 1
                                 else "warm (no flush)"),
                  "stall_source": timing.stall_source}
        factor = slowdown_factor(self.impl.id)
        if factor is not None:
            labels["slowdown"] = f"x{factor:g} ({SLOWDOWN_ENV})"
        raw = {"times_s": timing.times_s, "clean": timing.clean,
               "wait_s": [s.wait_s if s is not None else None for s in timing.stats]}
        if blocks is not None:
            raw["block"] = blocks
        return metrics, labels, raw


def measure_timing(impl, cell: dict, task: dict, run_rounds=perf_counter_rounds
                   ) -> tuple[dict, dict, dict]:
    """Time one cell on its own; returns (metrics, labels, raw). ``run_rounds`` is the round
    loop (see ``timing.time_step``): the pytest-benchmark suite passes pytest-benchmark's."""
    timed = TimedCell(impl, cell, task)
    probe = StallProbe()
    rounds = metered_rounds(run_rounds, timed.prepared.call_once, timed.prepared.rounds, probe)
    return timed.finish(timed.timing(rounds, probe.source))


def case_key(cell: dict) -> tuple:
    """What implementations measured side by side have in common: the case and the pass."""
    return tuple(cell[k] for k in ("kind", "n", "c", "dtype", "scale", "seed", "pass", "device"))


def block_count(rounds: list[int]) -> int:
    """Blocks of an interleaved case whose cells were calibrated to ``rounds`` rounds: the
    fewest rounds in ``ROUNDS_PER_BLOCK``-round turns, within ``[MIN_BLOCKS, MAX_BLOCKS]``."""
    fewest = min(rounds, default=MIN_BLOCKS * ROUNDS_PER_BLOCK)
    return max(MIN_BLOCKS, min(MAX_BLOCKS, fewest // ROUNDS_PER_BLOCK))


def measure_interleaved(group: list[tuple[int, dict]], task: dict, env: dict
                        ) -> list[tuple[int, Record]]:
    """Time the cells of one case side by side: each is set up (first call, warm-up,
    calibration), then their rounds run in interleaved blocks (A B C A B C ..., as many as
    ``block_count`` says), so that a change of the machine's state during the case falls on
    every implementation alike and a ratio can be taken block by block (``analysis.run``). A
    cell that fails is an error record; the others go on."""
    ready, done = [], []
    for index, cell in group:
        protocol.send_start(index)
        try:
            ready.append((index, TimedCell(xent_impls.get(cell["impl"]), cell, task)))
        except Exception as exc:  # noqa: BLE001 - every failure of a cell is a result
            done.append((index, failure_record(task, cell, env, exc)))
    probe = StallProbe()
    times: dict[int, list[float]] = {i: [] for i, _ in ready}
    spans: dict[int, list[tuple[RoundStats, float]]] = {i: [] for i, _ in ready}
    stats: dict[int, list] = {i: [] for i, _ in ready}
    blocks: dict[int, list[int]] = {i: [] for i, _ in ready}
    failed: dict[int, BaseException] = {}
    blocks_n = block_count([timed.prepared.rounds for _, timed in ready])
    # Other work on the machine over the whole case (ticks of 10 ms: one block is too short).
    meter = NeighbourMeter().start()
    # No protocol message inside the blocks: each one wakes the runner, and the runner runs on
    # another CPU (on a VM, often the other hyperthread of the same core) while the rounds are
    # timed. Sent every block, they cost the machine 0.15-0.3 CPUs of "other work" beside the
    # measurement (stalls.NeighbourMeter). Every cell of the case was announced at its set-up
    # (first call, warm-up, calibration, where a failing op fails); a crash in the blocks is
    # put on the last cell announced.
    for block in range(blocks_n):
        for index, timed in ready:
            if index in failed:
                continue
            per_block = max(1, -(-timed.prepared.rounds // blocks_n))
            try:
                rounds = perf_counter_rounds(timed.prepared.call_once, per_block, probe)
            except Exception as exc:  # noqa: BLE001
                failed[index] = exc
                continue
            times[index] += rounds.times_s
            stats[index] += rounds.stats
            if rounds.span is not None:
                spans[index].append((rounds.span, rounds.span_s))
            blocks[index] += [block] * len(rounds.times_s)
    neighbour_cpu = meter.stop()
    for index, timed in ready:
        protocol.send_start(index)
        if index in failed:
            done.append((index, failure_record(task, timed.cell, env, failed[index])))
            continue
        try:
            # The blocks' spans together: CPU time and wall time summed, the busiest block's
            # thread count.
            own = spans[index]
            span = RoundStats(sum(s.wait_s for s, _ in own), sum(s.cpu_s for s, _ in own),
                              max((s.busy_threads for s, _ in own), default=0)) if own else None
            timing = timed.timing(Rounds(times[index], stats[index], span,
                                         sum(w for _, w in own), neighbour_cpu), probe.source)
            metrics, labels, raw = timed.finish(timing, blocks[index])
            labels["interleaved"] = (f"{blocks_n} blocks with {len(ready) - 1} other "
                                     "implementations")
            done.append((index, Record(run_id=task["run_id"], cell=timed.cell, status="ok",
                                       metrics=metrics, labels=labels, raw=raw, env=env)))
        except Exception as exc:  # noqa: BLE001
            done.append((index, failure_record(task, timed.cell, env, exc)))
    return sorted(done, key=lambda item: item[0])


def measure_cell(task: dict, cell: dict, env: dict) -> Record:
    """One cell's record: its measurement, or the failure (``error``, or ``oom`` with the
    modelled size) that stopped it."""
    impl = xent_impls.get(cell["impl"])
    try:
        metrics, labels, raw = MEASURE[cell["kind"]](impl, cell, task)
        return Record(run_id=task["run_id"], cell=cell, status="ok", metrics=metrics,
                      labels=labels, raw=raw, env=env)
    except Exception as exc:  # noqa: BLE001 - every failure of a cell is a result
        return failure_record(task, cell, env, exc)


def failure_record(task: dict, cell: dict, env: dict, exc: BaseException) -> Record:
    """The record of a cell that raised: ``oom`` (with the modelled size) or ``error``."""
    status = "oom" if memory.is_out_of_memory(exc) else "error"
    message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    traceback.print_exception(exc, file=sys.stderr)
    metrics = {}
    if status == "oom":
        case = cell_case(cell)
        metrics = floor.modelled_cost(case.n, case.c, case.dtype, cell["form"], cell["pass"])
    return Record(run_id=task["run_id"], cell=cell, status=status, metrics=metrics, env=env,
                  error=message)


def case_groups(cells: list[dict]) -> list[list[tuple[int, dict]]]:
    """The task's cells as (index, cell) groups of one case (``case_key``), in the order each
    case first appears; timing cells of one case are measured side by side."""
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for index, cell in enumerate(cells):
        key = case_key(cell) if cell["kind"] == "timing" else ("cell", index)
        groups.setdefault(key, []).append((index, cell))
    return list(groups.values())


def is_interleaved(group: list[tuple[int, dict]]) -> bool:
    """Whether a case group (:func:`case_groups`) is measured in interleaved blocks: more than
    one timing cell of one case. Each of its cells is announced twice, at its set-up and as it
    is finished after the blocks."""
    return len(group) > 1 and group[0][1]["kind"] == "timing"


def interleaved_indices(cells: list[dict]) -> set[int]:
    """Indices of the cells of ``cells`` that :func:`run_task` measures in interleaved
    blocks."""
    return {index for group in case_groups(cells) if is_interleaved(group) for index, _ in group}


MEASURE = {"agreement": measure_agreement, "timing": measure_timing,
           "behaviour": behaviour.measure_behaviour, "semantics": behaviour.measure_semantics}


def run_task(task: dict) -> int:
    run_dir = Path(task["run_dir"])
    framework, device = task["framework"], task["device"]
    be = xent_impls.backend(framework)
    threads_applied = be.configure(task["threads"])
    if not be.has_device(device):
        raise SystemExit(f"device {device!r} is not available to {framework}")
    env = dict(task.get("env") or {})
    env |= {
        "versions": be.versions(),
        "device_name": be.device_name(device),
        "threads": task["threads"],
        "threads_applied": threads_applied,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "sync": be.SYNC_METHOD,
        "allocator": task.get("allocator", "default"),
        "source": "runner",
    }

    if task.get("measure_ceilings"):
        # The machine's ceilings, measured in this process before its cells (so each repeat of
        # a run measures them afresh); NumPy joins on CPU, as its exp and copy are often the
        # fastest the machine can do.
        def timed_ceilings(backend) -> dict:
            start = time.perf_counter()
            return floor.measure_ceilings(backend, device) | {
                "measure_s": time.perf_counter() - start}

        measured = {framework: timed_ceilings(be)}
        if task.get("numpy_ceilings") and framework != "numpy":
            measured["numpy"] = timed_ceilings(xent_impls.backend("numpy"))
        protocol.send_ceilings(measured)

    # What is alive now (the framework's modules, caches, the ceilings' compiled ops) stays
    # alive: freezing it keeps every clean-baseline gc.collect() of the memory rounds from
    # scanning it again (with TensorFlow loaded a full collection takes a large fraction of a
    # second; frozen, next to nothing). Objects made later are collected as
    # usual.
    gc.freeze()
    deferred = []  # timing cells that came out contended: measured again at the end
    for group in case_groups(task["cells"]):
        if is_interleaved(group):
            results = measure_interleaved(group, task, env)
        else:
            results = []
            for index, cell in group:
                protocol.send_start(index)
                results.append((index, measure_cell(task, cell, env)))
        for index, record in results:
            if record.metrics.get("contended"):
                deferred.append((index, record))
            else:
                append_record(run_dir, record)
    for index, record in deferred:
        # A contended cell (too few rounds free of CPU waits) is measured again once the rest
        # of the task has run, up to REMEASURE times; the attempt with the most clean rounds
        # stands, and the record says how many attempts were made.
        best, attempts = record, 1
        while best.metrics.get("contended") and attempts <= REMEASURE:
            attempts += 1
            protocol.send_start(index)
            again = measure_cell(task, record.cell, env)
            if again.metrics.get("clean_rounds", 0) > best.metrics.get("clean_rounds", 0):
                best = again
        append_record(run_dir, dataclasses.replace(
            best, metrics=best.metrics | {"attempts": float(attempts)}))
    protocol.send_finished()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(argv[0]).read_text())
    np.seterr(all="ignore")  # overflow in an unstable variant is a finding, not a warning
    try:
        return run_task(task)
    except RecordWriteError as exc:
        # The run folder cannot take another record (a full disk, say): say so and stop; the
        # harness stops the run rather than start workers that cannot write either.
        protocol.send_cell_error(CANNOT_WRITE, str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
