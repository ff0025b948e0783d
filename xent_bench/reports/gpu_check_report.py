"""The comparison table of ``xent-bench gpu-check``: per cell, each implementation's % of the
floor and extra peak memory as a multiple of the logits; per implementation, its agreement
verdicts. Needs pandas only (no plotting or Parquet library, so neither ``run_report`` nor
``plots`` is imported), as the GPU machine may lack them."""

from __future__ import annotations

from pathlib import Path

from xent_bench.analysis.run import add_verdicts, cell_table, merge_repeats, sort_rows
from xent_bench.harness.records import load_records
from xent_bench.harness.runner import read_meta
from xent_bench.reports.document import Heading, Para, Table, make_table, render_markdown
from xent_bench.reports.format import MISSING, distinct, fmt_eps, fmt_num, fmt_size, is_missing

# The dtype whose worst errors the agreement table shows.
WORST_DTYPE = "float32"


def _short(impl_id: str) -> str:
    framework, variant, _ = impl_id.split("/")
    return f"{framework}/{variant}"


def _columns(impls: list[str]) -> dict[str, str]:
    """Column title of each implementation: framework/variant, or the whole id where two
    implementations share it (both forms in one grid)."""
    shorts = [_short(i) for i in impls]
    return {i: s if shorts.count(s) == 1 else i for i, s in zip(impls, shorts)}


def _fmt_cell(row: dict) -> tuple[str, str]:
    """Text and mark of one implementation's timing cell: ``% of floor · peak/L``."""
    if row["status"] != "ok":
        return row["status"], "bad"
    pct, mem, logits = row.get("pct_of_limit"), row.get("peak_extra_bytes"), row.get("logits_bytes")
    text = MISSING if is_missing(pct) else f"{fmt_num(pct, 2)}%"
    if not is_missing(mem) and not is_missing(logits) and logits:
        text += f" · {fmt_num(mem / logits)}L"
    return text, "bad" if not is_missing(pct) and pct > 100 else ""


def timing_table(timing) -> Table:
    """Cells down (size, dtype, pass), implementations across."""
    impls = sorted(timing["impl"].unique(), key=lambda i: (i.split("/")[0], i))
    titles = _columns(impls)
    rows, marks = [], []
    keys = ["n", "c", "dtype", "pass"]
    order = sort_rows(timing[keys].drop_duplicates())
    for n, c, dtype, pass_ in order.to_numpy():
        group = timing[(timing["n"] == n) & (timing["c"] == c) & (timing["dtype"] == dtype)
                       & (timing["pass"] == pass_)]
        by_impl = {r["impl"]: r for r in group.to_dict("records")}
        row, mark = {"cell": f"{fmt_size(n, c)} {dtype} {pass_}"}, {}
        for impl in impls:
            row[titles[impl]], mark[titles[impl]] = (_fmt_cell(by_impl[impl]) if impl in by_impl
                                                     else ("", ""))
        rows.append(row)
        marks.append(mark)
    return make_table(rows, marks)


def _worst(cells, column: str) -> str:
    return fmt_eps(cells[column].max()) if column in cells else MISSING


def agreement_table(agreement) -> Table:
    """One row per implementation: its verdict counts and its worst errors at WORST_DTYPE."""
    rows = []
    worst_title = f"worst {WORST_DTYPE} loss / gradient error (eps)"
    for impl, group in agreement.groupby("impl", sort=True):
        counts = group["verdict"].value_counts()
        measured = group[(group["dtype"] == WORST_DTYPE) & (group["status"] == "ok")]
        worst = (f"{_worst(measured, 'loss_err_eps')} / {_worst(measured, 'grad_err_eps')}"
                 if len(measured) else MISSING)
        rows.append({"implementation": impl,
                     "verdicts": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                     worst_title: worst})
    return make_table(rows, left=2)


def comparison_blocks(agree_dir: Path, time_dir: Path) -> list:
    """The blocks of the gpu-check comparison (``reports.document``)."""
    meta = read_meta(time_dir)
    ceilings = (meta.get("ceilings") or {}).get("best") or {}
    # One record per cell (repeats pooled), each with its floor from the run's best ceilings.
    records = merge_repeats(load_records(time_dir), meta)
    timing = cell_table(records)
    device = distinct(rec.env.get("device_name") for rec in records)
    line = f"Device: {meta['device']}" + (f" ({device})" if device != MISSING else "")
    if ceilings:
        line += (f"; ceilings: copy {fmt_num(ceilings.get('copy_GBps'))} GB/s, read "
                 f"{fmt_num(ceilings.get('read_GBps'))} GB/s, exp "
                 f"{fmt_num(ceilings.get('exp_Gps'))} G/s")
    blocks = [Heading(1, f"gpu-check: {meta['run_id']}"), Para(line),
              Para("Each cell: % of the floor (higher is better; the floor is the modelled bytes "
                   "at the measured bandwidth or the exponentials at the measured exp rate) · "
                   "extra peak memory as a multiple of the logits' size L.")]
    if not timing.empty:
        blocks.append(timing_table(timing))
    agreement = cell_table(merge_repeats(load_records(agree_dir), read_meta(agree_dir)))
    blocks.append(Para(f"Agreement with the float64 oracle (fused-agreement grid): verdict counts "
                       f"and the worst {WORST_DTYPE} errors in {WORST_DTYPE} eps."))
    if not agreement.empty:
        blocks.append(agreement_table(add_verdicts(agreement)))
    return blocks


def comparison_markdown(agree_dir: Path, time_dir: Path) -> str:
    """The comparison table of a gpu-check (Markdown)."""
    return render_markdown(comparison_blocks(agree_dir, time_dir))
