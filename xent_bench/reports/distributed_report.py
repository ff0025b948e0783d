"""``distributed.md``: the report of a vocabulary-parallel run, built from its records only.

One table row per cell (implementation, world, size, dtype, pass): median time and IQR, the
speed-up over the same cell at world 1, every rank's peak memory, the rank's logits block, the
modelled bytes each rank sends per step (and what gathering the logits would send instead), the
agreement with the float64 oracle, and for JAX the collectives XLA compiled. Then a short
"What this shows" generated from the numbers, and what TensorFlow offers for the same job.
"""

from __future__ import annotations

from pathlib import Path

from xent_bench.harness import agreement, files, runner
from xent_bench.harness.records import Record, load_records
from xent_bench.reports.document import Bullets, Heading, Para, Table, make_table, render_markdown
from xent_bench.reports.format import MISSING, fmt_bytes, fmt_num
from xent_impls.vocabulary import PASSES

REPORT = "distributed.md"

TENSORFLOW_STATEMENT = """\
TensorFlow (tensorflow-cpu 2.21) has two candidate paths for a vocabulary-sharded loss on CPU:

- **DTensor** (`tf.experimental.dtensor`), implemented here as `tensorflow/vocab-parallel/*`
  (`xent_impls/distributed/tf_vocab_parallel.py`). The host CPU is split into `world` logical
  devices of one process; the logits are laid out `[unsharded, "vocab"]` and the loss is
  written in the global view (max, sum of exponentials, target logit over the class axis).
  DTensor's SPMD expansion makes every class-axis reduction local plus a `CollectiveReduceV2`
  (all-reduce) of the `[N]` partial results; the graphs TensorFlow dumps after expansion hold
  one MAX and one combined SUM all-reduce and no gather (checked by the tests). Caveats:
  DTensor is an experimental API; the logical devices share one process's thread pools and
  memory, so per-rank memory is not separable (the process figure is reported), and the
  collectives are DTensor's choice, not written in the code.
- **tf.distribute** (`MirroredStrategy` + `get_replica_context().all_reduce`) was not used:
  `ReduceOp` offers only SUM and MEAN, so the row maximum would need an all-gather of the
  `[N]` maxima (or a less stable shift), and the strategy is built for data parallelism
  (replicated variables, per-replica batches), not for sharding one tensor's classes.
"""


ALLOCATOR_NOTES = {
    "mmap": "Allocator `mmap`: every block of 1 MiB or more is mapped when allocated and "
            "returned when freed, so resident memory follows live memory and the memory columns "
            "are exact per cell; the price is a page fault per 4 KiB of every large buffer on "
            "every call, paid equally per byte at every world size (rerun with `--allocator "
            "reuse` for times without it: its memory figures then include freed heap).",
    "reuse": "Allocator `reuse`: freed memory stays in the heap and is reused, so times carry "
             "no page faults, but resident memory does not fall when buffers are freed: the "
             "memory columns include heap left over from earlier work in the same process "
             "(rerun with `--allocator mmap` for exact memory).",
    "default": "Allocator `default` (glibc): blocks above a threshold that drifts up to 32 MiB "
               "are mapped per allocation; whether a buffer page-faults, and whether freed "
               "memory shows as resident, depends on what the process did before.",
}


# The report's figures: ``fmt_num`` / ``fmt_bytes`` with trailing zeros dropped ("8", "0.5").
def _fmt(value, digits: int = 3) -> str:
    return fmt_num(value, digits, trim=True)


def _mib(value) -> str:
    return fmt_bytes(value, "MiB", trim=True)


def _kib(value) -> str:
    return fmt_bytes(value, "KiB", trim=True)


def _group_key(rec: Record) -> tuple:
    c = rec.cell
    return (c["impl"], c["n"], c["c"], c["dtype"], c["pass"])


def _pass_rank(pass_: str) -> int:
    return PASSES.index(pass_) if pass_ in PASSES else len(PASSES)


def _order(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.cell["impl"], r.cell["c"], r.cell["n"],
                                          r.cell["dtype"], _pass_rank(r.cell["pass"]),
                                          r.cell.get("world") or 0))


def _per_rank(metrics: dict, name: str, world: int) -> list[float] | None:
    values = [metrics.get(f"{name}_r{r}") for r in range(world)]
    return None if any(v is None for v in values) else values


def _memory_cell(metrics: dict, world: int) -> str:
    """Per-rank peak for processes per rank; for one process holding every device, the
    process's peak and, for JAX, XLA's per-device plan."""
    per_rank = _per_rank(metrics, "rank_peak_bytes", world)
    if per_rank is not None:
        return " / ".join(_mib(v) for v in per_rank)
    text = f"{_mib(metrics.get('rank_peak_bytes'))} (process)"
    if metrics.get("device_plan_bytes") is not None:
        text += f"; XLA plan {_mib(metrics['device_plan_bytes'])} per device"
    return text


HEADER = ["impl", "world", "size", "dtype", "pass", "median ms", "IQR", "vs world 1",
          "peak MiB per rank", "logits block MiB", "sent KiB per rank", "gather would send MiB",
          "loss / grad err eps", "verdict"]
# Leading columns of the table aligned left (the cell's keys); the figures are right-aligned.
KEY_COLUMNS = 5


def cell_row(rec: Record, world1_median: float | None) -> tuple[dict, dict]:
    """Text and marks of one cell's table row (``world1_median``: the same cell's median at
    world 1, if measured)."""
    c, m = rec.cell, rec.metrics
    world = c.get("world") or 1
    row = {"impl": f"`{c['impl']}`", "world": str(world), "size": f"{c['n']}x{c['c']}",
           "dtype": c["dtype"], "pass": c["pass"],
           "sent KiB per rank": _kib(m.get("comm_bytes_per_rank")),
           "gather would send MiB": _mib(m.get("gather_bytes_per_rank")) if world > 1
           else MISSING}
    if rec.status != "ok":
        row |= {"median ms": rec.status, "verdict": (rec.error or "")[:160] or MISSING}
        return row, {"median ms": "bad"}
    median = m["median_s"]
    errors = _fmt(m.get("loss_err_eps"), 2)
    if m.get("grad_err_eps") is not None:
        errors += f" / {_fmt(m.get('grad_err_eps'), 2)}"
    collectives = ""
    if m.get("hlo_all_gather") is not None:
        collectives = (f"; HLO all-gather {int(m['hlo_all_gather'])}, all-reduce "
                       f"{int(m.get('hlo_all_reduce', 0))}")
    row |= {
        "median ms": _fmt(median * 1e3),
        "IQR": f"{100 * m['iqr_rel']:.0f}%" + (" noisy" if m.get("noisy") else ""),
        "vs world 1": _fmt(world1_median / median, 2) + "x" if world1_median else MISSING,
        "peak MiB per rank": _memory_cell(m, world),
        "logits block MiB": _mib(m.get("shard_logits_bytes")),
        "loss / grad err eps": errors,
        "verdict": agreement.verdict(m, c["dtype"]) + collectives,
    }
    return row, {"IQR": "warn" if m.get("noisy") else ""}


def results_table(records: list[Record]) -> Table:
    """One row per cell: implementation, world, size, dtype, pass, then its figures."""
    world1 = {_group_key(rec): rec.metrics["median_s"] for rec in _ok(records)
              if rec.cell.get("world") == 1}
    rows, marks = [], []
    for rec in _order(records):
        row, mark = cell_row(rec, world1.get(_group_key(rec)))
        rows.append({k: row.get(k, MISSING) for k in HEADER})
        marks.append(mark)
    return make_table(rows, marks, left=KEY_COLUMNS)


def _ok(records: list[Record]) -> list[Record]:
    return [r for r in records if r.status == "ok"]


def _rank_memory(metrics: dict, multi_process: bool) -> tuple[float | None, str]:
    """The per-rank memory figure a cell's findings compare across world sizes, and its name:
    a rank process's measured peak (torch), XLA's per-device plan (JAX), or nothing where every
    device lives in one process and no per-device figure exists (TensorFlow)."""
    if multi_process:
        return metrics.get("rank_peak_bytes"), "peak memory per rank"
    if metrics.get("device_plan_bytes") is not None:
        return metrics["device_plan_bytes"], "XLA's memory plan per device"
    return None, ""


def findings(records: list[Record], meta: dict) -> list[str]:
    """Bullets of "What this shows", each computed from the records."""
    out = []
    ok = _ok(records)
    cores = (meta.get("machine") or {}).get("cpu_count")
    threads = meta.get("threads_per_rank", meta.get("threads"))
    by_group: dict[tuple, dict[int, dict]] = {}
    for rec in ok:
        by_group.setdefault(_group_key(rec), {})[rec.cell["world"]] = rec.metrics
    speedups = []
    for key, worlds in sorted(by_group.items()):
        impl, n, c, dtype, pass_ = key
        if 1 not in worlds or len(worlds) < 2:
            continue
        multi = impl.startswith("torch/")
        t1 = worlds[1]["median_s"]
        mem1, mem_name = _rank_memory(worlds[1], multi)
        parts = []
        for w in sorted(worlds):
            if w == 1:
                continue
            m = worlds[w]
            speedups.append((t1 / m["median_s"], impl, f"{n}x{c}", pass_, w))
            part = f"world {w}: {_fmt(t1 / m['median_s'], 2)}x the speed of world 1"
            mem, _ = _rank_memory(m, multi)
            if mem is not None and mem1:
                part += f", {mem_name} {_mib(mem)} MiB ({_fmt(mem / mem1, 2)}x)"
            parts.append(part)
        if mem1 is None:
            parts.append("memory: one process for every device, not separable per rank")
        out.append(f"`{impl}` {n}x{c} {dtype} {pass_} ({_fmt(t1 * 1e3)} ms at world 1"
                   + (f", {mem_name} {_mib(mem1)} MiB" if mem1 else "") + "): "
                   + "; ".join(parts) + ".")
    if speedups:
        best = max(speedups)
        faster = sum(1 for s in speedups if s[0] > 1.1)
        out.append(
            f"Time: {faster} of {len(speedups)} cells at world > 1 ran more than 10% faster "
            f"than the same cell at world 1; the best was {_fmt(best[0], 2)}x (`{best[1]}` "
            f"{best[2]} {best[3]}, world {best[4]}), the median "
            f"{_fmt(sorted(s[0] for s in speedups)[len(speedups) // 2], 2)}x.")
    comm = [r for r in ok if (r.cell.get("world") or 1) > 1]
    if comm:
        rec = max(comm, key=lambda r: r.metrics["gather_bytes_per_rank"])
        m, c = rec.metrics, rec.cell
        out.append(
            f"Communication is modelled, not measured: three ring all-reduces of [N] float32 per "
            f"step, independent of C. At {c['n']}x{c['c']} and world {c['world']} each rank "
            f"sends {_kib(m['comm_bytes_per_rank'])} KiB per step; all-gathering the logits "
            f"instead would send {_mib(m['gather_bytes_per_rank'])} MiB per rank "
            f"({_fmt(m['gather_bytes_per_rank'] / m['comm_bytes_per_rank'], 3)}x more), "
            f"before the gradient's way back.")
    if cores:
        fill = max(cores // max(threads or 1, 1), 1)
        out.append(
            f"This machine has {cores} CPU core(s) and every rank ran {threads} thread(s): world "
            f"1 uses {min(threads or 1, cores)} core(s), world {fill} fills the machine, and "
            f"larger worlds share cores and one memory bus, so time cannot scale with world "
            f"here beyond {fill}x at best. On tensor-parallel hardware (one accelerator per "
            f"rank) the work per rank falls as 1/world while the collectives stay at "
            f"12 (world-1)/world * N bytes; the per-rank memory and the communication volume "
            f"are the figures that carry over.")
    jax_cells = [r for r in ok if r.metrics.get("hlo_all_gather") is not None]
    if jax_cells:
        gathers = sum(int(r.metrics["hlo_all_gather"]) for r in jax_cells)
        reduces = sorted({int(r.metrics.get("hlo_all_reduce", 0)) for r in jax_cells})
        out.append(
            f"XLA's compiled HLO of the {len(jax_cells)} JAX cells holds "
            f"{gathers} all-gather(s) and {'/'.join(map(str, reduces))} all-reduce "
            f"instruction(s) per step (XLA may combine the two SUM reductions into one tuple "
            f"all-reduce)" + (": the logits are never gathered." if gathers == 0 else "."))
    verdicts = [(r, agreement.verdict(r.metrics, r.cell["dtype"])) for r in ok]
    bad = [r for r, v in verdicts if v != "pass"]
    if verdicts and not bad:
        worst = max(ok, key=lambda r: r.metrics.get("grad_err_eps") or 0.0)
        out.append(f"All {len(verdicts)} measured cells agree with the float64 oracle (largest "
                   f"gradient error {_fmt(worst.metrics.get('grad_err_eps'), 2)} eps, "
                   f"`{worst.cell['impl']}` world {worst.cell['world']}); every rank "
                   f"returned the same loss (largest spread "
                   f"{_fmt(max(r.metrics.get('loss_rank_spread', 0.0) for r in ok), 2)}).")
    elif bad:
        out.append("Cells that miss the oracle: " + ", ".join(
            f"`{r.cell['impl']}` world {r.cell['world']} {r.cell['n']}x{r.cell['c']} "
            f"{r.cell['pass']}" for r in bad) + ".")
    failed = [r for r in records if r.status != "ok"]
    if failed:
        out.append(f"{len(failed)} cell(s) did not run to the end (a rank died, hung or raised); "
                   f"they are listed in the table with the reason.")
    return out


def document(records: list[Record], meta: dict) -> list:
    """The report's blocks (``reports.document``)."""
    machine = meta.get("machine") or {}
    blocks = [
        Heading(1, f"xent-bench distributed report: {meta.get('run_id')}"),
        Para(f"Vocabulary-parallel cross-entropy: the classes are split over `world` ranks "
             f"(contiguous blocks), each rank holds its block of the logits, and the loss is "
             f"combined with three all-reduces of [N] float32 per step (row maxima, sums of "
             f"exponentials, target logits); the gradient needs none. Machine: "
             f"{machine.get('cpu_model')} ({machine.get('cpu_count')} cores), git "
             f"{machine.get('git_commit')}; {meta.get('threads_per_rank', meta.get('threads'))} "
             f"thread(s) per rank, allocator {meta.get('allocator')}, {meta.get('budget_s')} s "
             f"of timed rounds per cell. torch: one process per rank, gloo; jax: one process, "
             f"`world` host devices; tensorflow: one process, `world` logical devices (DTensor)."),
    ]
    note = ALLOCATOR_NOTES.get(meta.get("allocator"))
    if note:
        blocks.append(Para(note))
    blocks += [
        Para("Columns: *median ms* and *IQR* over the timed rounds on rank 0 (every round ends "
             "in a barrier or a block on the result, so it lasts as long as the slowest rank); "
             "*vs world 1*: the same cell's world-1 median over this one; *peak MiB per rank*: "
             "resident high-water of the timed rounds above the rank's resident size before its "
             "inputs were made (its logits block, targets and working memory), one figure per "
             "rank process, or the one process's figure where every device lives in one "
             "process; *logits block*: the largest rank's block; *sent KiB per rank*: modelled "
             "ring all-reduce traffic per step (`xent_impls.distributed.modelled_comm_bytes`); "
             "*gather would send*: the traffic of all-gathering the logits instead; *loss / grad "
             "err eps*: agreement of the gathered first rows with the float64 oracle; "
             "*verdict*: pass within the tolerance table."),
        results_table(records),
        Heading(2, "What this shows"),
    ]
    shows = findings(records, meta)
    if shows:
        blocks.append(Bullets(shows))
    return blocks + [Heading(2, "TensorFlow"), Para(TENSORFLOW_STATEMENT.rstrip("\n"))]


def render(records: list[Record], meta: dict) -> str:
    """``distributed.md``: the report as Markdown."""
    return render_markdown(document(records, meta))


def write_report(run_dir) -> Path:
    """Write ``distributed.md`` into ``run_dir`` from its records; returns its path."""
    run_dir = Path(run_dir)
    meta = runner.read_meta(run_dir)
    path = run_dir / REPORT
    files.write_text(path, render(load_records(run_dir), meta))
    return path
