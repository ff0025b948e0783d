"""The runner: measures a grid of cells, one worker process per framework and repeat,
crash-safe.

A run folder (``results/<run_id>/``) holds ``meta.json`` (provenance, options, ceilings),
``records.jsonl`` (one line per finished cell, written by the workers as they go) and
``workers.log`` (the workers' standard error). Workers run one after another, never side by
side, so timings do not disturb each other. A worker that dies (signal, exit, hang past the
per-cell timeout) turns the cell it was measuring into an error record; a new worker then takes
the remaining cells. ``resume`` re-runs only the cells that have no record.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from xent_bench.harness import files, floor, provenance
from xent_bench.harness.cells import repeated
from xent_bench.harness.launch import Launch, Outcome, describe_exit, watch
from xent_bench.harness.progress import Progress
from xent_bench.harness.records import CANNOT_WRITE, MAX_INT, Record
from xent_bench.harness.run_loop import Failure, pending, repair, run_groups
from xent_bench.harness.threads import load_average, pick_cpus, pin_rule
from xent_bench.harness.worker import interleaved_indices

META = "meta.json"

ALLOCATORS = {
    # glibc defaults: buffers above the mmap threshold (at most 32 MiB) are mapped on every
    # allocation and unmapped when freed, so eager frameworks page-fault and zero every large
    # buffer on every call.
    "default": {},
    # Never mmap, never trim: freed memory stays in the heap and is reused by the next call.
    "reuse": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62)},
}


def worker_env(threads: int, allocator: str) -> dict:
    """Environment of a worker: the same thread count for every framework, and the allocator."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator {allocator!r}; known: {', '.join(ALLOCATORS)}")
    env = dict(os.environ)
    env |= {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    # XLA's CPU client can only be switched between one thread and all cores. (A bare
    # "intra_op_parallelism_threads=1", often copied beside this flag, is no XLA flag: XLA stops
    # reading XLA_FLAGS at it.)
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                            + " --xla_cpu_multi_thread_eigen=false").strip()
    env |= ALLOCATORS[allocator]
    return env


WORKER_MODULE = "xent_bench.harness.worker"
CELL_TIMEOUT_S = 900.0
# A worker's start-up (imports, ceilings) has a deadline of its own, whatever --cell-timeout
# says: a short cell timeout must not kill a worker that is still importing its framework.
STARTUP_TIMEOUT_S = 900.0


def worker_failure(outcome: Outcome) -> Failure | None:
    """The failure of a framework worker's launch, or None when it finished."""
    if outcome.ok:
        return None
    if outcome.write_error is not None:
        return Failure(outcome.current, CANNOT_WRITE, outcome.write_error)
    code = outcome.codes[0]
    if outcome.timed_out:
        phase = "during start-up" if outcome.current is None else "in a cell"
        why = f"timed out after {outcome.timeout_s:g} s {phase} and was killed"
    elif code == 0:
        why = ("exited with status 0 before it finished its cells (did the implementation call "
               "sys.exit or os._exit?)")
    else:
        why = describe_exit(code)
        if code == -signal.SIGKILL:
            why += " (out of memory, or killed from outside)"
    detail = outcome.tails[0]
    return Failure(outcome.current, "error", f"worker {why}" + (f": {detail}" if detail else ""))


def run_worker(task: dict, run_dir: Path, env: dict, name: str, progress: Progress,
               cell_timeout_s: float, cpus: list[int] | None = None,
               startup_label: str | None = None) -> Outcome:
    """One framework worker over ``task`` (its cells), pinned to ``cpus`` if given, to its
    end; ``startup_label`` is what the progress shows while it starts."""
    launch = Launch(WORKER_MODULE, task, [env], run_dir, name, cpus=cpus)
    return watch(launch, task["cells"], progress, cell_timeout_s,
                 max(cell_timeout_s, STARTUP_TIMEOUT_S), startup_label=startup_label,
                 announced_twice=interleaved_indices(task["cells"]))


def write_meta(run_dir: Path, meta: dict) -> None:
    files.write_text(Path(run_dir) / META, json.dumps(meta, indent=2, sort_keys=True))


def read_meta(run_dir: Path) -> dict:
    """A run folder's ``meta.json``, checked as untrusted input: a regular file of bounded
    size holding a JSON object whose ``run_id`` is a safe name (``files.SAFE_NAME``: it
    becomes part of output paths and report lines) and whose ``kind`` is a string.
    ``ValueError`` naming what is wrong otherwise."""
    path = Path(run_dir) / META
    if not path.exists():
        raise ValueError(f"{run_dir} is not a run folder (no {META})")
    files.check_readable(path, files.MAX_META_BYTES)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    if not files.is_safe_name(meta.get("run_id")):
        raise ValueError(f"{path}: run_id must be a name of letters, digits and ._- (at most "
                         f"128), got {str(meta.get('run_id'))[:80]!r}")
    if not isinstance(meta.get("kind"), str):
        raise ValueError(f"{path}: kind must be a string, got {meta.get('kind')!r}")
    _check_meta_fields(meta, path)
    return meta


# The kind of value each field of meta.json holds, where present (null allowed); the reports
# read them all. A field of another kind is refused with the field named.
META_FIELDS: dict[str, tuple[type, ...]] = {
    "preset": (str,), "device": (str,), "threads": (int,), "threads_rule": (str,),
    "pinning": (str,), "load_average_start": (int, float), "allocator": (str,),
    "budget_s": (int, float), "min_rounds": (int,), "max_rounds": (int,), "repeats": (int,),
    "machine": (dict,), "notes": (list,), "cells": (list,), "ceilings": (dict,),
}


def _check_meta_fields(meta: dict, path: Path) -> None:
    for key, kinds in META_FIELDS.items():
        value = meta.get(key)
        if value is None:
            continue
        # bool is an int in Python, never a count here; an integer beyond 64 bits neither
        wrong = (isinstance(value, bool) or not isinstance(value, kinds)
                 or (isinstance(value, int) and abs(value) > MAX_INT)
                 or (isinstance(value, float) and not math.isfinite(value)))
        if wrong:
            raise ValueError(f"{path}: {key} must be {' or '.join(k.__name__ for k in kinds)}, "
                             f"got {str(value)[:80]!r}")
    for key, item_kind in (("cells", dict), ("notes", str)):
        items = meta.get(key) or []
        bad = next((i for i, item in enumerate(items) if not isinstance(item, item_kind)), None)
        if bad is not None:
            raise ValueError(f"{path}: {key}[{bad}] must be {item_kind.__name__}, got "
                             f"{str(items[bad])[:80]!r}")


def ceilings_of_repeat(meta: dict, repeat: int) -> dict[str, dict]:
    """The ceilings measured so far in ``repeat``, per framework."""
    repeats = (meta.get("ceilings") or {}).get("repeats") or []
    return repeats[repeat] if repeat < len(repeats) else {}


def record_ceilings(meta: dict, repeat: int, measured: dict[str, dict]) -> None:
    """Add the ceilings one worker measured in ``repeat`` to ``meta["ceilings"]``: every
    repeat's per framework (``repeats``), the best per framework over the repeats
    (``per_framework``) and the run-wide best (``best``, with who set each), which the floor of
    every cell uses (``analysis.run``)."""
    ceilings = meta.setdefault("ceilings", {"repeats": [], "per_framework": {}})
    while len(ceilings["repeats"]) <= repeat:
        ceilings["repeats"].append({})
    # What the measurement cost (seconds per framework and repeat), apart from the ceilings.
    measured = {fw: dict(values) for fw, values in measured.items()}
    cost = ceilings.setdefault("measure_s", [])
    while len(cost) <= repeat:
        cost.append({})
    for fw, values in measured.items():
        if "measure_s" in values:
            cost[repeat][fw] = values.pop("measure_s")
    ceilings["repeats"][repeat].update(measured)
    per_fw = ceilings["per_framework"]
    for fw, values in measured.items():
        old = per_fw.get(fw)
        if old is None:
            per_fw[fw] = dict(values)
            continue
        for key, value in values.items():
            if isinstance(value, float) and value > old.get(key, 0.0):
                old[key] = value
                if key == "exp_Gps":
                    old["exp_method"] = values.get("exp_method")
    ceilings["best"] = floor.best_ceilings(per_fw)


def run_cells(cells: list[dict], run_dir: Path, meta: dict, *, progress: bool = True,
              cell_timeout_s: float = CELL_TIMEOUT_S) -> Path:
    """Measure ``cells`` into ``run_dir`` (new or resumed), ``meta["repeats"]`` times: each
    repeat runs the whole grid through fresh worker processes, and each timing worker measures
    its framework's ceilings (and NumPy's) before its cells, so ceilings come from every
    repeat. Holds the folder's lock throughout (``files.run_lock``: a second run into the same
    folder is refused). Returns the run folder."""
    run_dir = files.check_output_dir(Path(run_dir))
    with files.run_lock(run_dir):
        return _run_cells(cells, run_dir, meta, progress=progress,
                          cell_timeout_s=cell_timeout_s)


def _run_cells(cells: list[dict], run_dir: Path, meta: dict, *, progress: bool,
               cell_timeout_s: float) -> Path:
    repair(run_dir)
    repeats = int(meta.get("repeats", 1))
    grid = [repeated(cell, r) for r in range(repeats) for cell in cells]
    bar = Progress(total=len(grid), initial=len(grid) - len(pending(grid, run_dir)),
                   enabled=progress)
    env_record = provenance.measuring_env(meta["device"])
    env = worker_env(meta["threads"], meta["allocator"])

    def launch_group(key: tuple[int, str], remaining: list[dict], attempt: int, bar: Progress):
        repeat, fw = key
        timing = any(c["kind"] == "timing" for c in remaining)
        task = {
            "run_dir": str(run_dir), "run_id": meta["run_id"], "framework": fw,
            "device": meta["device"], "threads": meta["threads"],
            "allocator": meta["allocator"], "cells": remaining,
            "budget_s": meta["budget_s"], "min_rounds": meta["min_rounds"],
            "max_rounds": meta["max_rounds"], "measure_ceilings": timing, "env": env_record,
            # NumPy's ceilings once per repeat, by its first timing worker (on CPU).
            "numpy_ceilings": (timing and meta["device"] == "cpu"
                               and "numpy" not in ceilings_of_repeat(meta, repeat)),
        }
        name = f"{fw}-{attempt}" if repeat == 0 else f"{fw}-r{repeat + 1}-{attempt}"
        who = fw + (f" (repeat {repeat + 1})" if repeat else "")
        startup_label = (f"{who}: starting, measuring ceilings on {meta['device']}" if timing
                         else f"{who}: starting")
        cpus = pick_cpus(meta["threads"])
        started = time.monotonic()
        outcome = run_worker(task, run_dir, env, name, bar, cell_timeout_s, cpus=cpus,
                             startup_label=startup_label)
        meta.setdefault("launches", []).append(
            {"name": name, "cells": len(remaining), "seconds": time.monotonic() - started,
             "cpus": cpus})
        if outcome.ceilings:
            record_ceilings(meta, repeat, outcome.ceilings)
        write_meta(run_dir, meta)
        return worker_failure(outcome)

    def error_record(cell: dict, failure: Failure) -> Record:
        return Record(run_id=meta["run_id"], cell=cell, status=failure.status,
                      error=failure.message, env=env_record)

    try:
        run_groups(run_dir, grid, group_of=lambda c: (c.get("repeat") or 0, c["framework"]),
                   label_of=lambda key: key[1], launch_group=launch_group,
                   error_record=error_record, progress=bar)
    finally:
        bar.close()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta["load_average_end"] = load_average()
    write_meta(run_dir, meta)
    return run_dir


def new_meta(kind: str, *, device: str, threads: int, allocator: str, budget_s: float,
             min_rounds: int, max_rounds: int, preset: str | None, cells: list[dict],
             notes: list[str], threads_rule: str | None = None, repeats: int = 1) -> dict:
    run_id = provenance.new_run_id(kind)
    return {
        "run_id": run_id,
        "kind": kind,
        "preset": preset,
        "device": device,
        "threads": threads,
        "threads_rule": threads_rule or f"{threads} threads (given)",
        "pinning": pin_rule(threads),
        "load_average_start": load_average(),
        "allocator": allocator,
        "budget_s": budget_s,
        "min_rounds": min_rounds,
        "max_rounds": max_rounds,
        "repeats": repeats,
        "machine": provenance.machine_info(),
        "notes": notes,
        "cells": cells,
    }


def check_grid_size(cells: list[dict], repeats: int) -> None:
    """``ValueError`` for a grid whose records would not fit in one run folder."""
    if len(cells) * repeats > files.MAX_RECORDS:
        raise ValueError(f"{len(cells)} cells x {repeats} repeats would be more than the "
                         f"{files.MAX_RECORDS} records a run folder may hold; narrow the grid")


def start_run(kind: str, cells: list[dict], *, results: Path, device: str, threads: int,
              allocator: str, budget_s: float, min_rounds: int, max_rounds: int,
              preset: str | None, notes: list[str], progress: bool = True,
              threads_rule: str | None = None, repeats: int = 1,
              cell_timeout_s: float = CELL_TIMEOUT_S) -> Path:
    """Create a run folder under ``results`` for ``cells``, measure them, return the folder."""
    check_grid_size(cells, repeats)
    meta = new_meta(kind, device=device, threads=threads, allocator=allocator, budget_s=budget_s,
                    min_rounds=min_rounds, max_rounds=max_rounds, preset=preset, cells=cells,
                    notes=notes, threads_rule=threads_rule, repeats=repeats)
    run_dir = files.check_output_dir(Path(results) / meta["run_id"])
    write_meta(run_dir, meta)
    times = f" x {repeats} repeats" if repeats > 1 else ""
    print(f"run folder: {run_dir} ({len(cells)} cells{times})", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return run_cells(cells, run_dir, meta, progress=progress, cell_timeout_s=cell_timeout_s)
