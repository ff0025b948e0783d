"""Rank entry point of a vocabulary-parallel launch:
``python -m xent_bench.harness.dist_worker TASK.json``.

Started by ``xent_bench/harness/distributed.py``, which owns the launch (environment, process group,
timeout, teardown). One launch measures a list of cells of one framework at one world size:

- torch: ``world`` processes, one per rank, each started with ``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR`` and ``MASTER_PORT`` and joined in a gloo process group whose store listens
  on the loopback interface only (:func:`loopback_store`);
- jax: one process whose ``world`` CPU devices come from
  ``XLA_FLAGS=--xla_force_host_platform_device_count=world`` (set by the harness);
- tensorflow: one process whose host CPU is split into ``world`` logical devices (DTensor).

For every cell each rank makes the case's inputs with ``xent_impls.make_inputs`` (the same seeded
bytes as every other run), keeps only its block of classes, and times the step with
``xent_bench.harness.timing.time_step``. Then, after timing, the first rows of the loss and of every
gradient block are gathered to rank 0 for the agreement check against the float64 oracle, and
every rank's memory figures are gathered; rank 0 appends the cell's record to the run's
``records.jsonl``.

Protocol on rank 0's standard output: ``START i`` before cell ``i`` and ``FINISHED`` at the end.
A cell that raises on any rank prints ``CELL_ERROR {"status": ..., "error": ...}`` and the rank
exits with status 1: a process group (or device mesh) in an unknown state is never reused; the
harness records the error and starts a fresh launch for the remaining cells.

Test hook: ``XENT_DIST_FAULT=ACTION:RANK[:SIZE]`` makes rank ``RANK`` ``kill`` itself (SIGKILL)
or ``hang`` (sleep forever) just before the timed rounds of the first cell (of size ``SIZE``,
e.g. ``64x40``, when given). It exists to prove that the harness turns a dead or hung rank into
an error record and goes on.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import xent_impls
from xent_bench.harness import agreement, floor, memory, protocol
from xent_bench.harness.cells import cell_case
from xent_bench.harness.records import CANNOT_WRITE, Record, RecordWriteError, append_record
from xent_bench.harness.timing import perf_counter_rounds, time_step
from xent_impls.distributed import (
    gather_comm_bytes,
    modelled_comm_bytes,
    shard_bounds,
    vocab_split,
)

FAULT_ENV = "XENT_DIST_FAULT"
MESSAGE_CHARS = 500


# --------------------------------------------------------------------------------------------
# Inputs


def rank_inputs(case, form: str, world: int, rank: int):
    """This rank's ``(logits block [N, C_r], targets, vocab_start)``.

    Every rank draws the full seeded inputs and keeps a copy of its block (so the full array is
    freed before anything is measured): the logits a tensor-parallel model would have produced
    on that rank. ``targets``: the global labels ``[N]`` (sparse) or the rank's block of the
    one-hot matrix (one-hot)."""
    logits, targets = xent_impls.make_inputs(case, form)
    start, stop = shard_bounds(case.c, world, rank)
    block = np.ascontiguousarray(logits[:, start:stop])
    local_targets = targets if form == "sparse" else np.ascontiguousarray(targets[:, start:stop])
    return block, local_targets, start


def check_inputs(case, form: str, rows: int):
    """The first ``rows`` rows of the full inputs, for the oracle (drawn again after timing, so
    that they take no memory while memory is measured)."""
    logits, targets = xent_impls.make_inputs(case, form)
    return logits[:rows].copy(), targets[:rows].copy()


def parse_fault(text: str | None) -> dict | None:
    """``ACTION:RANK[:SIZE]`` -> ``{"action", "rank", "size"}`` (see the module docstring)."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("kill", "hang") or not parts[1].isdigit():
        raise ValueError(f"malformed {FAULT_ENV}={text!r}: expected kill|hang:RANK[:NxC]")
    return {"action": parts[0], "rank": int(parts[1]),
            "size": parts[2] if len(parts) == 3 else None}


def _maybe_fault(fault: dict | None, rank: int, case, fired: list) -> None:
    if fault is None or fired or fault["rank"] != rank:
        return
    if fault["size"] is not None and fault["size"] != case.size:
        return
    fired.append(True)
    print(f"{FAULT_ENV}: rank {rank} will {fault['action']} now", file=sys.stderr, flush=True)
    if fault["action"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    while True:  # hang
        time.sleep(3600)


# --------------------------------------------------------------------------------------------
# Frameworks: one class per way of running ranks



def loopback_store(dist, rank: int, world: int, port: int, timeout: datetime.timedelta):
    """The process group's key-value store on 127.0.0.1:``port``.

    A store made from ``MASTER_ADDR`` alone listens on every interface, whatever the address
    (``*:port``, seen with torch 2.13), so anyone on the network could join or read the group.
    Rank 0 binds the listening socket to the loopback interface itself and hands it over to
    the store's server (which then owns and closes it); the other ranks connect to it."""
    if rank != 0:
        return dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=timeout)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return dist.TCPStore("127.0.0.1", port, world, is_master=True, timeout=timeout,
                         master_listen_fd=listener.detach())


class TorchRanks:
    """``world`` processes in a gloo process group; this process is rank ``RANK``."""

    framework = "torch"

    def __init__(self, task: dict):
        # Not xent_impls.backends.torch_backend: it imports torch._dynamo (seconds per rank).
        import torch
        import torch.distributed as dist

        from xent_impls.backends import torch_arrays

        self.torch, self.dist, self.arrays = torch, dist, torch_arrays
        self.world = int(os.environ["WORLD_SIZE"])
        self.rank = int(os.environ["RANK"])
        if self.world != task["world"]:
            raise ValueError(f"WORLD_SIZE={self.world} but the task is for world {task['world']}")
        torch.set_num_threads(task["threads"])
        # The group's own timeout is a backstop; the harness kills a hung launch much sooner.
        timeout = datetime.timedelta(seconds=task["group_timeout_s"])
        self.store = loopback_store(dist, self.rank, self.world,
                                    int(os.environ["MASTER_PORT"]), timeout)
        dist.init_process_group("gloo", store=self.store, rank=self.rank,
                                world_size=self.world, timeout=timeout)
        # Warm-up: the first collectives set up the ranks' connections and buffers; do that
        # before any cell, so that no cell's memory or first call includes it.
        probe = torch.ones(8)
        dist.all_reduce(probe)
        dist.barrier()
        self.threads_applied = f"torch.set_num_threads({task['threads']}) per rank"
        self.sync_method = ("torch.distributed.barrier() (gloo) at the end of every round, "
                            "timed on rank 0")

    def versions(self) -> dict:
        return {"torch": self.torch.__version__, "backend": "gloo"}

    def prepare(self, cell: dict, block, targets, vocab_start: int):
        from xent_impls.distributed.torch_vocab_parallel import vocab_parallel_cross_entropy

        torch = self.torch
        x, t = self.arrays.to_framework(block, "cpu"), self.arrays.to_framework(targets, "cpu")

        def loss_of(x, t):
            return vocab_parallel_cross_entropy(x, t, vocab_start=vocab_start)

        if cell["pass"] == "forward":
            def step(x, t):
                with torch.no_grad():
                    return loss_of(x, t)
        else:
            def step(x, t):
                x = x.detach().requires_grad_(True)
                loss = loss_of(x, t)
                (dx,) = torch.autograd.grad(loss.mean(), x)
                return loss.detach(), dx

        return step, [(x, t)]

    def sync(self, out) -> None:
        # CPU ops are synchronous; the barrier makes the round end when the slowest rank ends.
        self.dist.barrier()

    def agree_rounds(self, rounds: int) -> int:
        """Rank 0's round count on every rank (each rank calibrates on its own probe)."""
        value = self.torch.tensor([rounds], dtype=self.torch.int64)
        self.dist.broadcast(value, src=0)
        return int(value.item())

    def gather_check(self, out, c: int, rows: int):
        """Rank 0: ``(loss [rows], grad [rows, C] or None, spread)`` where ``spread`` is the
        largest difference between the ranks' copies of the loss. Other ranks: ``None``."""
        torch, dist = self.torch, self.dist
        loss, dx = (out, None) if not isinstance(out, tuple) else out
        losses = [torch.empty_like(loss[:rows]) for _ in range(self.world)]
        dist.all_gather(losses, loss[:rows].contiguous())
        grad = None
        if dx is not None:
            # all_gather needs equal shapes: pad every block to the widest shard, trim after.
            width = max(stop - start for start, stop in vocab_split(c, self.world))
            # 16-bit gradients travel as float32 (exact), which every gloo collective supports.
            wide = torch.float64 if dx.dtype == torch.float64 else torch.float32
            mine = torch.zeros((rows, width), dtype=wide)
            mine[:, : dx.shape[1]] = dx[:rows].to(wide)
            blocks = [torch.empty_like(mine) for _ in range(self.world)]
            dist.all_gather(blocks, mine)
            grad = torch.cat([b[:, : stop - start] for b, (start, stop)
                              in zip(blocks, vocab_split(c, self.world))], dim=1)
        if self.rank != 0:
            return None
        spread = max(float((a.double() - losses[0].double()).abs().max()) if rows else 0.0
                     for a in losses)
        to_numpy = self.arrays.to_numpy
        return (to_numpy(losses[0]), None if grad is None else to_numpy(grad),
                spread)

    def gather_stats(self, stats: dict) -> list[dict] | None:
        gathered = [None] * self.world
        self.dist.all_gather_object(gathered, stats)
        return gathered if self.rank == 0 else None

    def extra_metrics(self, step, inputs) -> dict:
        return {}

    def close(self) -> None:
        self.dist.barrier()
        self.dist.destroy_process_group()


class JaxDevices:
    """One process, ``world`` JAX CPU devices in a 1-D mesh."""

    framework = "jax"
    rank = 0

    def __init__(self, task: dict):
        import jax

        from xent_impls.distributed import jax_vocab_parallel as jv

        self.jax, self.jv = jax, jv
        self.world = task["world"]
        self.mesh = jv.make_mesh(self.world)
        _warm_up(self.jv.vocab_parallel_cross_entropy, self.mesh, self.world)
        self.threads_applied = f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
        self.sync_method = jv.SYNC_METHOD
        self._c = None

    def versions(self) -> dict:
        import jaxlib

        return {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__}

    def prepare(self, cell: dict, block, targets, vocab_start: int):
        # One process holds every device: it shards the full inputs itself (``block`` is the
        # full logits here, see ``full_inputs``).
        self._c = cell["c"]
        x, t = self.jv.shard_inputs(self.mesh, block, targets)
        step = self.jv.make_step(self.mesh, cell["c"], cell["form"], cell["pass"] != "forward")
        return step, [(x, t)]

    def sync(self, out) -> None:
        self.jax.block_until_ready(out)

    def agree_rounds(self, rounds: int) -> int:
        return rounds

    def gather_check(self, out, c: int, rows: int):
        loss, dx = (out, None) if not isinstance(out, tuple) else out
        copies = [np.asarray(shard.data)[:rows] for shard in loss.addressable_shards]
        spread = float(max(np.max(np.abs(a - copies[0]), initial=0.0) for a in copies))
        grad = None if dx is None else self.jv.from_blocks(np.asarray(dx[:rows]), c, self.world)
        return copies[0], grad, spread

    def gather_stats(self, stats: dict) -> list[dict]:
        return [stats]

    def extra_metrics(self, step, inputs) -> dict:
        """Collectives in the compiled HLO and XLA's per-device memory plan (compiled again
        after timing, so that the first-call time above is the step's own)."""
        compiled = step.lower(*inputs[0]).compile()
        counts = self.jv.hlo_collectives(compiled.as_text())
        metrics = {f"hlo_{k.replace('-', '_')}": float(v) for k, v in counts.items()}
        stats = compiled.memory_analysis()
        if stats is not None:
            for name in ("argument", "output", "temp"):
                metrics[f"device_{name}_bytes"] = float(getattr(stats, f"{name}_size_in_bytes"))
            metrics["device_plan_bytes"] = (metrics["device_argument_bytes"]
                                            + metrics["device_output_bytes"]
                                            + metrics["device_temp_bytes"])
        return metrics

    def close(self) -> None:
        return None


class TfDevices:
    """One process, ``world`` logical CPU devices in a DTensor mesh."""

    framework = "tensorflow"
    rank = 0

    def __init__(self, task: dict):
        from xent_impls.backends.tf_loader import tf
        from xent_impls.distributed import tf_vocab_parallel as tv

        self.tf, self.tv = tf, tv
        self.world = task["world"]
        # The logical devices share one process's thread pools: ``threads`` per rank in total,
        # and as many inter-op threads as devices so their blocks can run side by side.
        tf.config.threading.set_intra_op_parallelism_threads(task["threads"] * self.world)
        tf.config.threading.set_inter_op_parallelism_threads(self.world)
        tv.configure_devices(self.world)
        self.mesh = tv.make_mesh(self.world)
        _warm_up(tv.vocab_parallel_cross_entropy, self.mesh, self.world)
        threading = tf.config.threading
        self.threads_applied = (f"intra_op={threading.get_intra_op_parallelism_threads()} "
                                f"inter_op={threading.get_inter_op_parallelism_threads()} "
                                f"shared by {self.world} logical devices")
        self.sync_method = tv.SYNC_METHOD

    def versions(self) -> dict:
        return {"tensorflow": self.tf.__version__}

    def prepare(self, cell: dict, block, targets, vocab_start: int):
        inputs = self.tv.shard_inputs(self.mesh, block, targets)
        return self.tv.make_step(cell["form"], cell["pass"] != "forward"), [inputs]

    def sync(self, out) -> None:
        self.tv.sync(out)

    def agree_rounds(self, rounds: int) -> int:
        return rounds

    def gather_check(self, out, c: int, rows: int):
        return self.tv.to_numpy(out, c, self.world, rows)

    def gather_stats(self, stats: dict) -> list[dict]:
        return [stats]

    def extra_metrics(self, step, inputs) -> dict:
        return {}

    def close(self) -> None:
        return None


def _warm_up(loss_fn, mesh, world: int) -> None:
    """Run a tiny case once, so that starting the runtime and its collectives (thread pools,
    device buffers) falls before the first cell rather than into its memory and first call."""
    logits, labels = xent_impls.make_inputs(xent_impls.Case(2, 2 * world), "sparse")
    loss_fn(mesh, logits, labels, grad=True)


RUNNERS = {"torch": TorchRanks, "jax": JaxDevices, "tensorflow": TfDevices}
# Frameworks whose ranks are separate processes (the others hold every device in one process).
MULTI_PROCESS = ("torch",)


# --------------------------------------------------------------------------------------------
# One cell


def _rank_memory(rss_base, rss_inputs, rss1, hwm_first, hwm) -> dict:
    """This rank's memory figures in bytes (None where /proc is unavailable).

    input_resident_bytes: resident size after the rank's inputs were placed, above the size
      before they were made (its logits block and targets);
    peak_extra_bytes: resident high-water of the steady-state rounds above what was resident
      when they began (the step's working memory, as in single-process timing records);
    rank_peak_bytes: the sum of the two: what the loss costs the rank in steady state (the
      figure that should shrink as the classes are split over more ranks). What the first call
      left resident (compiled code, caches, communication buffers) is reported apart, as
      retained_bytes, since it does not scale with the problem;
    first_call_peak_bytes: the first call's high-water above the resident size before it."""
    out = {"rss_base_bytes": rss_base}
    if None in (rss_base, rss_inputs, rss1, hwm_first, hwm):
        return out
    inputs, extra = float(max(rss_inputs - rss_base, 0)), float(max(hwm - rss1, 0))
    return out | {
        "input_resident_bytes": inputs,
        "peak_extra_bytes": extra,
        "rank_peak_bytes": inputs + extra,
        "retained_bytes": float(max(rss1 - rss_inputs, 0)),
        "first_call_peak_bytes": float(max(hwm_first - rss_inputs, 0)),
    }


def measure_cell(ranks, cell: dict, task: dict, fault: dict | None, fired: list):
    """Measure one cell on every rank. Returns ``(metrics, labels, raw)`` on rank 0 and ``None``
    on the other ranks."""
    case = cell_case(cell)
    world, form = cell["world"], cell["form"]
    rss_base = memory.rss_bytes()
    if ranks.framework in MULTI_PROCESS:
        block, targets, vocab_start = rank_inputs(case, form, world, ranks.rank)
    else:  # one process places every device's block itself, from the full inputs
        (block, targets), vocab_start = xent_impls.make_inputs(case, form), 0
    step, inputs = ranks.prepare(cell, block, targets, vocab_start)
    del block, targets
    memory.reset_peak_rss()
    rss_inputs = memory.rss_bytes()
    seen: dict = {}

    def after_first_call(out):
        seen["hwm_first"] = memory.peak_rss_bytes()
        seen["rss1"] = memory.rss_bytes()
        memory.reset_peak_rss()

    def run_rounds(call_once, rounds, probe):
        # Every rank must run the same number of rounds (each round ends in a collective).
        rounds = ranks.agree_rounds(rounds)
        _maybe_fault(fault, ranks.rank, case, fired)
        return perf_counter_rounds(call_once, rounds, probe)

    timing = time_step(step, inputs, ranks.sync, budget_s=task["budget_s"],
                       min_rounds=task["min_rounds"], max_rounds=task["max_rounds"],
                       on_first_call=after_first_call, run_rounds=run_rounds)
    hwm = memory.peak_rss_bytes()
    mine = _rank_memory(rss_base, rss_inputs, seen.get("rss1"), seen.get("hwm_first"), hwm)
    mine["rank"] = ranks.rank

    # After timing: one more call whose output is gathered for the agreement check only.
    out = step(*inputs[0])
    ranks.sync(out)
    rows = min(case.n, agreement.CHECK_ROWS)
    gathered = ranks.gather_check(out, case.c, rows)
    per_rank = ranks.gather_stats(mine)
    extra = ranks.extra_metrics(step, inputs)
    del out
    if ranks.rank != 0:
        return None

    loss, grad, spread = gathered
    check_logits, check_targets = check_inputs(case, form, rows)
    ref_loss, ref_grad = xent_impls.reference(check_logits, check_targets, grad=True)
    if grad is not None:
        # The step's gradient is of the mean over all N rows; the oracle's over ``rows`` rows.
        grad = grad.astype(np.float64) * (case.n / rows)
    metrics = timing.summary()
    metrics |= agreement.agreement_metrics(check_logits, loss, grad, ref_loss, ref_grad,
                                           case.dtype)
    metrics["loss_rank_spread"] = spread
    metrics |= floor.modelled_cost(case.n, case.c, case.dtype, form, cell["pass"])
    itemsize = xent_impls.numpy_dtype(case.dtype).itemsize
    widest = max(stop - start for start, stop in vocab_split(case.c, world))
    metrics |= {
        "world": float(world),
        "comm_bytes_per_rank": modelled_comm_bytes(case.n, case.c, world, form, cell["pass"],
                                                   itemsize),
        "gather_bytes_per_rank": gather_comm_bytes(case.n, case.c, world, itemsize),
        "shard_logits_bytes": float(case.n * widest * itemsize),
    }
    for name in ("rank_peak_bytes", "peak_extra_bytes", "first_call_peak_bytes",
                 "input_resident_bytes", "retained_bytes"):
        values = [r.get(name) for r in per_rank]
        if all(v is not None for v in values):
            metrics[name] = float(max(values))
            if ranks.framework in MULTI_PROCESS:
                for r, v in enumerate(values):
                    metrics[f"{name}_r{r}"] = float(v)
    metrics |= extra
    labels = {"out_dtype": xent_impls.dtypes.dtype_name(np.asarray(loss).dtype),
              "cache_mode": "warm (no flush)",
              "memory_scope": ("per rank process" if ranks.framework in MULTI_PROCESS
                               else f"one process holding all {world} devices")}
    raw = {"times_s": timing.times_s, "per_rank": per_rank}
    return metrics, labels, raw


# --------------------------------------------------------------------------------------------
# The launch


def _send_error(exc: BaseException) -> None:
    status = "oom" if memory.is_out_of_memory(exc) else "error"
    protocol.send_cell_error(status, f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                             [:MESSAGE_CHARS])


def run_task(task: dict) -> int:
    run_dir = Path(task["run_dir"])
    try:  # start-up: a failure here is reported like a cell's (the harness fails every cell)
        fault = parse_fault(os.environ.get(FAULT_ENV))
        ranks = RUNNERS[task["framework"]](task)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        _send_error(exc)
        sys.stderr.flush()
        os._exit(1)
    lead = ranks.rank == 0
    env = dict(task.get("env") or {})
    env |= {
        "versions": ranks.versions(),
        "device_name": "cpu",
        "threads": task["threads"],
        "threads_applied": ranks.threads_applied,
        "sync": ranks.sync_method,
        "allocator": task.get("allocator", "default"),
        "source": "distributed",
        "world": task["world"],
    }
    fired: list = []
    for index, cell in enumerate(task["cells"]):
        if lead:
            protocol.send_start(index)
        try:
            result = measure_cell(ranks, cell, task, fault, fired)
        except Exception as exc:  # noqa: BLE001 - a failing cell is a result; the launch ends
            traceback.print_exc(file=sys.stderr)
            _send_error(exc)
            sys.stderr.flush()
            os._exit(1)  # never reuse a process group in an unknown state
        if lead:
            metrics, labels, raw = result
            try:
                append_record(run_dir, Record(run_id=task["run_id"], cell=cell, status="ok",
                                              metrics=metrics, labels=labels, raw=raw, env=env))
            except RecordWriteError as exc:  # the harness stops the run (worker.py: the same)
                protocol.send_cell_error(CANNOT_WRITE, str(exc))
                sys.stderr.flush()
                os._exit(1)
    ranks.close()
    if lead:
        protocol.send_finished()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(argv[0]).read_text())
    np.seterr(all="ignore")
    return run_task(task)


if __name__ == "__main__":
    sys.exit(main())
