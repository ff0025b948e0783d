"""Vocabulary-parallel cells: launch, watch and tear down the ranks (the command is
``xent_bench/commands/distributed.py``).

A distributed cell is a timing cell (same record format: ``xent_bench/harness/worker.py``,
``records.append_record``) of a vocabulary-parallel implementation
(``xent_impls.distributed``) with one more key, ``world``: the number of ranks the classes are
split over. Its record carries the timing statistics (timed on rank 0, every round ending in a
barrier or a block on the result, so a round lasts as long as the slowest rank), the agreement
of the gathered loss and gradient with the float64 oracle, every rank's peak memory, and the
modelled bytes each rank sends in collectives.

The harness owns each launch. Cells are grouped by (framework, world); one launch measures a
group's cells one after another:

- torch: ``world`` processes (``python -m xent_bench.harness.dist_worker``) with
  ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE``, joined in a
  gloo process group;
- jax: one process with ``XLA_FLAGS=--xla_force_host_platform_device_count=world``;
- tensorflow: one process with ``world`` logical CPU devices (DTensor).

Every process of a launch is in one process group. A rank that dies (signal, non-zero exit) or a
launch that makes no progress within the per-cell timeout gets the whole group SIGKILLed; the
cell it was measuring becomes an ``error`` record naming each rank's fate, and a fresh launch
takes the group's remaining cells. The run never hangs.

Launches run one after another, never side by side. Threads: ``threads`` per rank (default 1:
this project's CPU machine has 2 cores, so 2 ranks already fill it).
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import xent_impls
from xent_bench.harness import files, provenance, runner
from xent_bench.harness.cells import make_cell
from xent_bench.harness.launch import Launch, Outcome, describe_exit, watch
from xent_bench.harness.progress import Progress
from xent_bench.harness.records import CANNOT_WRITE, Record
from xent_bench.harness.run_loop import Failure, pending, repair, run_groups
from xent_impls import Case
from xent_impls.distributed import get_impl, modelled_comm_bytes
from xent_impls.vocabulary import MEASURED_FRAMEWORKS, PASSES

FRAMEWORKS = MEASURED_FRAMEWORKS
DEFAULT_FRAMEWORKS = ("torch", "jax")
DEFAULT_WORLDS = (1, 2, 4)
# 1024 x 32000: a language-model-sized row (32000 classes); 4096 x 1000: many short rows, where
# the three [N] all-reduces are largest relative to the work per rank.
DEFAULT_SIZES = ((1024, 32000), (4096, 1000))
DEFAULT_BUDGET_S = 0.3
MIN_ROUNDS, MAX_ROUNDS = 5, 200
CELL_TIMEOUT_S = 120.0
# Start-up of a launch (up to 4 ranks importing a framework on 2 cores) before its first cell.
STARTUP_TIMEOUT_S = 180.0
# Backstop of torch.distributed's own collective timeout (the harness kills hung launches).
GROUP_TIMEOUT_S = 600

# Allocator settings of a launch. "mmap" (the default here): every allocation of 1 MiB or more is
# mapped on its own and returned to the OS when freed. glibc's default threshold drifts (up to 32
# MiB) after large blocks are freed, after which freed buffers stay resident; a fixed threshold
# keeps the resident size following live memory, so a cell's memory figures do not depend on
# the cells measured before it in the same launch. Big buffers are page-faulted in on every call,
# as glibc's default does above its threshold.
ALLOCATORS = {"mmap": {"MALLOC_MMAP_THRESHOLD_": str(2**20), "MALLOC_TRIM_THRESHOLD_": str(2**20)},
              **runner.ALLOCATORS}
DEFAULT_ALLOCATOR = "mmap"


# --------------------------------------------------------------------------------------------
# Cells


def make_dist_cell(framework: str, form: str, case: Case, pass_: str, world: int,
                   device: str = "cpu") -> dict:
    """A ``timing`` cell of ``framework``'s vocabulary-parallel implementation at ``world``."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world size must be a positive integer, got {world!r}")
    impl = get_impl(framework, form)
    if case.dtype not in impl.dtypes:
        raise ValueError(f"{impl.id} does not take dtype {case.dtype!r}; it takes "
                         f"{', '.join(impl.dtypes)}")
    return make_cell("timing", impl, case, pass_, device) | {"world": world}


def build_cells(frameworks=DEFAULT_FRAMEWORKS, worlds=DEFAULT_WORLDS, sizes=DEFAULT_SIZES,
                dtypes=("float32",), forms=("sparse",), passes=PASSES, seed: int = 0
                ) -> list[dict]:
    """Every combination, grouped so that one launch (framework, world) takes consecutive
    cells."""
    cells = []
    for fw in frameworks:
        if fw not in FRAMEWORKS:
            raise ValueError(f"unknown framework {fw!r} for distributed cells; known: "
                             f"{', '.join(FRAMEWORKS)}")
        for world in worlds:
            for n, c in sizes:
                for dtype in dtypes:
                    for form in forms:
                        for pass_ in passes:
                            if pass_ not in PASSES:
                                raise ValueError(f"unknown pass {pass_!r}; known: "
                                                 f"{', '.join(PASSES)}")
                            cells.append(make_dist_cell(fw, form, Case(n, c, dtype, 1.0, seed),
                                                        pass_, world))
    return cells


# --------------------------------------------------------------------------------------------
# One launch


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (rank 0's store binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(framework: str, world: int, threads: int, allocator: str) -> list[dict]:
    """The environment of each process of a launch (one per rank for torch, one for the
    single-process frameworks): the runner's thread and allocator settings, plus the rendezvous
    (torch) or the device count (jax)."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator {allocator!r}; known: {', '.join(ALLOCATORS)}")
    base = runner.worker_env(threads, "default") | ALLOCATORS[allocator]
    if framework == "torch":
        port = str(free_port())
        return [base | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
                        "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
                for rank in range(world)]
    if framework == "jax":
        # The device count goes first: XLA may stop at a token it does not take.
        flags = base.get("XLA_FLAGS", "")
        base["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={world} {flags}".strip()
    return [base]


DIST_WORKER_MODULE = "xent_bench.harness.dist_worker"


def launch_failure(outcome: Outcome) -> Failure | None:
    """The failure of a vocabulary-parallel launch, or None when it finished: each process's
    fate, the cause first (``_failure_message``); ``oom`` when a rank ran out of memory."""
    if outcome.ok:
        return None
    if outcome.write_error is not None:
        return Failure(outcome.current, CANNOT_WRITE, outcome.write_error)
    message = _failure_message(outcome.codes, outcome.cell_errors, outcome.timed_out,
                               outcome.timeout_s, outcome.tails, outcome.phase)
    oom = any(e.get("status") == "oom" for e in outcome.cell_errors.values())
    return Failure(outcome.current, "oom" if oom else "error", message)


def run_launch(task: dict, run_dir: Path, name: str, progress: Progress,
               cell_timeout_s: float, startup_timeout_s: float = STARTUP_TIMEOUT_S
               ) -> Failure | None:
    """Run one launch to its end; its failure, or None. Start-up (imports, the process group's
    rendezvous) has its own timeout, since several ranks importing a framework on a small
    machine take a while; each cell then has ``cell_timeout_s`` from its start."""
    envs = launch_env(task["framework"], task["world"], task["threads"], task["allocator"])
    try:
        launch = Launch(DIST_WORKER_MODULE, task, envs, run_dir, name)
    except OSError as exc:  # e.g. the group's leader died before the next rank could join it
        return Failure(None, "error", f"could not start the launch: {exc}")
    return launch_failure(watch(launch, task["cells"], progress, cell_timeout_s,
                                startup_timeout_s))


def _failure_message(own_codes: list, cell_errors: dict, timed_out: bool, timeout_s: float,
                     tails: list[str], phase: str = "the cell") -> str:
    """Each process's fate, the cause first. ``own_codes``: exit codes before the harness killed
    the launch (``None``: still running then, so killed by the harness). Order: a rank that
    died by a signal, then one that reported its own error, then one that exited otherwise,
    then the ranks the harness killed."""
    def who(i):
        return f"rank {i}" if len(own_codes) > 1 else "process"

    def cause(i):
        code = own_codes[i]
        return (0 if code is not None and code < 0 else 1 if i in cell_errors else
                2 if code is not None else 3)

    running = [i for i, code in enumerate(own_codes) if code is None]
    parts = []
    if timed_out:
        parts.append(f"timed out after {timeout_s:g} s without finishing {phase}; the launch's "
                     f"process group was killed (hung: "
                     f"{', '.join(who(i) for i in running) or 'none left'})")
    else:
        for i in sorted((i for i, code in enumerate(own_codes) if code != 0),
                        key=lambda i: (cause(i), i)):
            if own_codes[i] is None:
                parts.append(f"{who(i)} was still running and was killed by the harness")
                continue
            text = f"{who(i)} {describe_exit(own_codes[i])}"
            if own_codes[i] == -signal.SIGKILL:
                text += " (out of memory, or killed from outside)"
            if i in cell_errors:
                text += f": {cell_errors[i]['error']}"
            elif own_codes[i] > 0 and tails[i]:
                text += f": {tails[i]}"
            parts.append(text)
    return "; ".join(parts)[:1000]


# --------------------------------------------------------------------------------------------
# A run


def run_distributed(run_dir: Path, cells: list[dict], timeout_s: float = CELL_TIMEOUT_S, *,
                    meta: dict | None = None, progress: bool = True,
                    startup_timeout_s: float = STARTUP_TIMEOUT_S) -> Path:
    """Measure distributed ``cells`` into ``run_dir`` (new or resumed; ``meta.json`` is written
    when ``meta`` is given, read otherwise). ``timeout_s``: seconds a launch may spend on one cell
    before its process group is killed; ``startup_timeout_s``: the same for a launch's start-up.
    Holds the folder's lock throughout (``files.run_lock``). Returns the run folder."""
    run_dir = files.check_output_dir(Path(run_dir))
    with files.run_lock(run_dir):
        return _run_distributed(run_dir, cells, timeout_s, meta=meta, progress=progress,
                                startup_timeout_s=startup_timeout_s)


def _run_distributed(run_dir: Path, cells: list[dict], timeout_s: float, *, meta: dict | None,
                     progress: bool, startup_timeout_s: float) -> Path:
    if meta is None:
        meta = runner.read_meta(run_dir)
    else:
        runner.write_meta(run_dir, meta)
    repair(run_dir)
    bar = Progress(total=len(cells), initial=len(cells) - len(pending(cells, run_dir)),
                   enabled=progress)
    env = provenance.measuring_env(meta["device"])

    def launch_group(key: tuple[str, int], remaining: list[dict], attempt: int, bar: Progress):
        fw, world = key
        task = {"run_dir": str(run_dir), "run_id": meta["run_id"], "framework": fw,
                "world": world, "threads": meta["threads"], "allocator": meta["allocator"],
                "cells": remaining, "budget_s": meta["budget_s"],
                "min_rounds": meta["min_rounds"], "max_rounds": meta["max_rounds"],
                "group_timeout_s": GROUP_TIMEOUT_S, "env": env}
        return run_launch(task, run_dir, f"{fw}-w{world}-{attempt}", bar, timeout_s,
                          startup_timeout_s)

    try:
        run_groups(run_dir, cells, group_of=lambda c: (c["framework"], c["world"]),
                   label_of=lambda key: f"{key[0]} world {key[1]}", launch_group=launch_group,
                   error_record=lambda cell, failure: error_record(meta, cell, failure, env),
                   progress=bar)
    finally:
        bar.close()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    runner.write_meta(run_dir, meta)
    return run_dir


def error_record(meta: dict, cell: dict, failure: Failure, env: dict) -> Record:
    """The record of a cell whose launch failed; it keeps the modelled communication, which does
    not depend on the measurement."""
    itemsize = xent_impls.numpy_dtype(cell["dtype"]).itemsize
    comm = modelled_comm_bytes(cell["n"], cell["c"], cell["world"], cell["form"], cell["pass"],
                               itemsize)
    return Record(run_id=meta["run_id"], cell=cell, status=failure.status, error=failure.message,
                  metrics={"comm_bytes_per_rank": comm, "world": float(cell["world"])},
                  env=env | {"source": "distributed", "world": cell["world"]})


def new_meta(cells: list[dict], *, threads: int, allocator: str, budget_s: float,
             timeout_s: float) -> dict:
    """``runner.new_meta`` for a distributed run, plus its own settings."""
    meta = runner.new_meta("distributed", device="cpu", threads=threads, allocator=allocator,
                           budget_s=budget_s, min_rounds=MIN_ROUNDS, max_rounds=MAX_ROUNDS,
                           preset=None, cells=cells, notes=xent_impls.skipped_notes())
    meta |= {"threads_per_rank": threads, "cell_timeout_s": timeout_s,
             "worlds": sorted({c["world"] for c in cells}),
             "frameworks": list(dict.fromkeys(c["framework"] for c in cells))}
    return meta
