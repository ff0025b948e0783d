"""The comparison table of ``xent-bench gpu-check``: per cell, each implementation's % of the
floor and extra peak memory as a multiple of the logits; per implementation, its agreement
verdicts. Needs pandas only (no plotting or Parquet library), as the GPU machine may lack them."""

from __future__ import annotations

import math
from pathlib import Path

from xent_bench.analysis.run import add_verdicts, cell_table
from xent_bench.harness.records import load_records
from xent_bench.harness.runner import read_meta


def _short(impl_id: str) -> str:
    framework, variant, _ = impl_id.split("/")
    return f"{framework}/{variant}"


def _fmt_cell(row: dict) -> str:
    if row["status"] != "ok":
        return row["status"]
    pct = row.get("pct_of_limit")
    mem, logits = row.get("peak_extra_bytes"), row.get("logits_bytes")
    text = f"{pct:.0f}%" if pct is not None and math.isfinite(pct) else "-"
    if mem is not None and logits and math.isfinite(mem):
        text += f" · {mem / logits:.2f}L"
    return text


def comparison_markdown(agree_dir: Path, time_dir: Path) -> str:
    """The comparison table of a gpu-check (Markdown)."""
    meta = read_meta(time_dir)
    ceilings = (meta.get("ceilings") or {}).get("best") or {}
    timing = cell_table(load_records(time_dir))
    lines = [f"# gpu-check: {meta['run_id']}", ""]
    device = timing["env_device_name"].iloc[0] if "env_device_name" in timing else None
    lines.append(f"Device: {meta['device']}"
                 + (f" ({device})" if isinstance(device, str) else "")
                 + (f"; ceilings: copy {ceilings['copy_GBps']:.0f} GB/s, read "
                    f"{ceilings['read_GBps']:.0f} GB/s, exp {ceilings['exp_Gps']:.1f} G/s"
                    if ceilings else ""))
    lines += ["", "Each cell: % of the floor (higher is better; the floor is the modelled bytes "
              "at the measured bandwidth or the exponentials at the measured exp rate) · extra "
              "peak memory as a multiple of the logits' size L.", ""]
    impls = sorted(timing["impl"].unique(), key=lambda i: (i.split("/")[0], i))
    lines.append("| cell | " + " | ".join(_short(i) for i in impls) + " |")
    lines.append("|---|" + "---|" * len(impls))
    keys = ["n", "c", "dtype", "pass"]
    for (n, c, dtype, pass_), group in timing.groupby(keys, sort=True):
        by_impl = {r["impl"]: r for r in group.to_dict("records")}
        cells = [_fmt_cell(by_impl[i]) if i in by_impl else "" for i in impls]
        lines.append(f"| {n}x{c} {dtype} {pass_} | " + " | ".join(cells) + " |")
    agreement = add_verdicts(cell_table(load_records(agree_dir)))
    lines += ["", "Agreement with the float64 oracle (fused-agreement grid): verdict counts and "
              "the worst float32 errors in float32 eps.", "",
              "| implementation | verdicts | worst float32 loss / gradient error (eps) |",
              "|---|---|---|"]
    for impl, group in agreement.groupby("impl", sort=True):
        counts = group["verdict"].value_counts()
        f32 = group[(group["dtype"] == "float32") & (group["status"] == "ok")]
        worst = (f"{f32['loss_err_eps'].max():.1f} / {f32['grad_err_eps'].max():.1f}"
                 if len(f32) else "-")
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"| {impl} | {verdicts} | {worst} |")
    return "\n".join(lines) + "\n"
