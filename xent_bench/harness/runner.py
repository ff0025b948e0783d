"""The runner: measures a grid of cells, one worker process per framework, crash-safe.

A run folder (``results/<run_id>/``) holds ``meta.json`` (provenance, options, ceilings),
``records.jsonl`` (one line per finished cell, written by the workers as they go) and
``workers.log`` (the workers' standard error). Workers run one after another, never side by
side, so timings do not disturb each other. A worker that dies (signal, exit, hang past the
per-cell timeout) turns the cell it was measuring into an error record; a new worker then takes
the remaining cells. ``resume`` re-runs only the cells that have no record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from xent_bench.harness import floor, provenance
from xent_bench.harness.cells import cell_key, describe
from xent_bench.harness.progress import Progress
from xent_bench.harness.records import append_record, finished_keys, load_records, repair_tail

META = "meta.json"
WORKER_LOG = "workers.log"

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


def describe_exit(returncode: int) -> str:
    """How a child process ended, for error records."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    keep = [ln for ln in text if ln.strip()][-lines:]
    return " | ".join(keep)[-400:]


def _spawn(task: dict, run_dir: Path, env: dict, name: str):
    task_path = run_dir / f".task-{name}.json"
    task_path.write_text(json.dumps(task))
    log = open(run_dir / WORKER_LOG, "a")
    log.write(f"\n===== worker {name} started {time.strftime('%H:%M:%S')} =====\n")
    log.flush()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xent_bench.harness.worker", str(task_path)],
        stdout=subprocess.PIPE, stderr=log, env=env, text=True, start_new_session=True,
    )
    return proc, log


def _read_lines(proc, sink: list, event: threading.Event):
    for line in proc.stdout:
        sink.append(line.rstrip("\n"))
        event.set()
    event.set()


def _run_worker(task: dict, run_dir: Path, env: dict, name: str, progress: Progress,
                cell_timeout_s: float) -> tuple[int | None, str, int]:
    """Run one worker to completion. Returns (index of the cell it died in or None, message,
    number of cells finished)."""
    proc, log = _spawn(task, run_dir, env, name)
    lines: list[str] = []
    event = threading.Event()
    reader = threading.Thread(target=_read_lines, args=(proc, lines, event), daemon=True)
    reader.start()
    current, seen, finished = None, 0, 0
    deadline = time.monotonic() + cell_timeout_s
    timed_out = False
    try:
        while proc.poll() is None or seen < len(lines) or reader.is_alive():
            event.wait(timeout=0.5)
            event.clear()
            while seen < len(lines):
                line = lines[seen]
                seen += 1
                if line.startswith("START "):
                    if current is not None:
                        progress.advance()
                        finished += 1
                    current = int(line.split()[1])
                    progress.start(describe(task["cells"][current]))
                    deadline = time.monotonic() + cell_timeout_s
                elif line == "FINISHED":
                    if current is not None:
                        progress.advance()
                        finished += 1
                    current = None
                elif line.startswith("CEILINGS "):
                    task["_ceilings"] = json.loads(line[len("CEILINGS "):])
            if proc.poll() is None and time.monotonic() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is not None and not reader.is_alive() and seen >= len(lines):
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(timeout=5.0)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
        (run_dir / f".task-{name}.json").unlink(missing_ok=True)
    if proc.returncode == 0:
        return None, "", finished
    why = (f"timed out after {cell_timeout_s:g} s and was killed" if timed_out
           else describe_exit(proc.returncode))
    if proc.returncode == -signal.SIGKILL and not timed_out:
        why += " (out of memory, or killed from outside)"
    detail = _tail(run_dir / WORKER_LOG)
    return current, f"worker {why}" + (f": {detail}" if detail else ""), finished


def write_meta(run_dir: Path, meta: dict) -> None:
    tmp = run_dir / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(run_dir / META)


def read_meta(run_dir: Path) -> dict:
    path = Path(run_dir) / META
    if not path.exists():
        raise ValueError(f"{run_dir} is not a run folder (no {META})")
    return json.loads(path.read_text())


def measure_ceilings(run_dir: Path, meta: dict, frameworks: list[str], progress: Progress) -> dict:
    per_fw = {}
    env = worker_env(meta["threads"], meta["allocator"])
    for fw in frameworks:
        task = {"run_dir": str(run_dir), "run_id": meta["run_id"], "framework": fw,
                "device": meta["device"], "threads": meta["threads"],
                "allocator": meta["allocator"], "mode": "ceilings", "cells": []}
        progress.note(f"measuring {fw} copy / read / exp ceilings on {meta['device']} ...")
        died, message, _ = _run_worker(task, run_dir, env, f"{fw}-ceilings", progress, 600)
        if "_ceilings" in task:
            per_fw[fw] = task["_ceilings"]
        else:
            progress.note(f"{fw}: ceiling measurement failed: {message}")
    if not per_fw:
        raise RuntimeError("no framework could measure the machine ceilings; see workers.log")
    return {"per_framework": per_fw, "best": floor.best_ceilings(per_fw)}


def run_cells(cells: list[dict], run_dir: Path, meta: dict, *, progress: bool = True,
              cell_timeout_s: float = 900.0) -> Path:
    """Measure ``cells`` into ``run_dir`` (new or resumed). Returns the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if repair_tail(run_dir):
        print(f"note: {run_dir}/records.jsonl ended in a cut-off line; it is skipped",
              file=sys.stderr)
    done = finished_keys(load_records(run_dir))
    todo = [c for c in cells if cell_key(c) not in done]
    bar = Progress(total=len(cells), initial=len(cells) - len(todo), enabled=progress)
    try:
        by_fw: OrderedDict[str, list[dict]] = OrderedDict()
        for cell in todo:
            by_fw.setdefault(cell["framework"], []).append(cell)
        if any(c["kind"] == "timing" for c in cells) and "ceilings" not in meta:
            # NumPy joins on CPU: its exp and copy are often the fastest the machine can do.
            frameworks = sorted({c["framework"] for c in cells if c["kind"] == "timing"}
                                | ({"numpy"} if meta["device"] == "cpu" else set()))
            meta["ceilings"] = measure_ceilings(run_dir, meta, frameworks, bar)
            write_meta(run_dir, meta)
        env = worker_env(meta["threads"], meta["allocator"])
        for fw, remaining in by_fw.items():
            attempt = 0
            while remaining:
                attempt += 1
                task = {
                    "run_dir": str(run_dir), "run_id": meta["run_id"], "framework": fw,
                    "device": meta["device"], "threads": meta["threads"],
                    "allocator": meta["allocator"], "mode": "cells", "cells": remaining,
                    "budget_s": meta["budget_s"], "min_rounds": meta["min_rounds"],
                    "max_rounds": meta["max_rounds"],
                    "ceilings": (meta.get("ceilings") or {}).get("best"),
                    "env": {"cpu_model": meta["machine"]["cpu_model"],
                            "git_commit": meta["machine"]["git_commit"],
                            "device": meta["device"]},
                }
                died, message, _ = _run_worker(task, run_dir, env, f"{fw}-{attempt}", bar,
                                               cell_timeout_s)
                if not message:
                    break
                # Cells the worker finished are on disk; the one it died in becomes an error.
                on_disk = finished_keys(load_records(run_dir))
                if died is None:  # died before its first cell (import error, bad device...)
                    bar.note(f"{fw}: {message}; its {len(remaining)} cells are recorded as errors")
                    failed = [c for c in remaining if cell_key(c) not in on_disk]
                else:
                    bar.note(f"{fw}: {message} during {describe(remaining[died])}")
                    failed = [remaining[died]] if cell_key(remaining[died]) not in on_disk else []
                for cell in failed:
                    append_record(run_dir, {"run_id": meta["run_id"], "cell": cell,
                                            "status": "error", "error": message, "metrics": {},
                                            "labels": {}, "raw": {}, "env": task["env"]})
                    bar.advance()
                remaining = [c for c in remaining if cell_key(c) not in
                             finished_keys(load_records(run_dir))]
    finally:
        bar.close()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_meta(run_dir, meta)
    return run_dir


def new_meta(kind: str, *, device: str, threads: int, allocator: str, budget_s: float,
             min_rounds: int, max_rounds: int, preset: str | None, cells: list[dict],
             notes: list[str]) -> dict:
    run_id = provenance.new_run_id(kind)
    return {
        "run_id": run_id,
        "kind": kind,
        "preset": preset,
        "device": device,
        "threads": threads,
        "allocator": allocator,
        "budget_s": budget_s,
        "min_rounds": min_rounds,
        "max_rounds": max_rounds,
        "machine": provenance.machine_info(),
        "notes": notes,
        "cells": cells,
    }


def start_run(kind: str, cells: list[dict], *, results: Path, device: str, threads: int,
              allocator: str, budget_s: float, min_rounds: int, max_rounds: int,
              preset: str | None, notes: list[str], progress: bool = True) -> Path:
    """Create a run folder under ``results`` for ``cells``, measure them, return the folder."""
    meta = new_meta(kind, device=device, threads=threads, allocator=allocator, budget_s=budget_s,
                    min_rounds=min_rounds, max_rounds=max_rounds, preset=preset, cells=cells,
                    notes=notes)
    run_dir = Path(results) / meta["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_meta(run_dir, meta)
    print(f"run folder: {run_dir} ({len(cells)} cells)", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return run_cells(cells, run_dir, meta, progress=progress)
