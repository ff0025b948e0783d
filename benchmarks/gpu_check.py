"""``xent-bench gpu-check``: the fused and chunked implementations against the native ops, in one
short run that fits a GPU window of a few minutes.

Two ordinary run folders are written: an agreement run (preset ``fused-agreement``: loss and
gradient against the float64 oracle at three dtypes and two logit scales, up to a 128256-class
vocabulary) and a timing run (preset ``gpu-check``: C = 10, 1000 and 128256, float32 and
bfloat16, forward and forward+backward). Then one comparison table is printed and saved as
``gpu-check.md`` in the timing run folder: per cell, each implementation's % of the floor, its
extra peak memory as a fraction of the logits, and per implementation its agreement verdicts.

``--quick`` shrinks both grids to a few small cells (a smoke test of the whole path, e.g. on a
CPU with ``--device cpu``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

QUICK = {
    "agreement": {"sizes": [(32, 100), (4, 5000)], "dtypes": ["float32", "bfloat16"],
                  "scales": [1.0]},
    "timing": {"sizes": [(1024, 10), (64, 5000)], "dtypes": ["float32"]},
}


def add_parser(sub) -> None:
    p = sub.add_parser("gpu-check", help="fused/chunked implementations vs the native ops: "
                                         "agreement + GPU timing, one comparison table")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="a few small cells only (smoke test)")
    p.add_argument("--impl", action="append", default=[],
                   help="narrow both grids to implementation ids or globs (repeatable)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per cell")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder that receives the run folders (default: results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _grid(preset_name: str, args) -> tuple:
    import fnmatch

    from benchmarks.presets import build_cells, get_preset

    preset = get_preset(preset_name)
    overrides = QUICK[preset.kind] if args.quick else {}
    cells = build_cells(preset, device=args.device, **overrides)
    if args.impl:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c["impl"], p) for p in args.impl)]
    return preset, cells


def _run(preset, cells, args, budget_s: float) -> Path:
    import xent_impls
    from benchmarks import runner

    return runner.start_run(
        preset.kind, cells, results=args.results, device=args.device,
        threads=os.cpu_count() or 1, allocator="default", budget_s=budget_s,
        min_rounds=preset.min_rounds, max_rounds=preset.max_rounds, preset=preset.name,
        notes=xent_impls.skipped_notes(), progress=not args.no_progress)


def command(args: argparse.Namespace) -> int:
    from benchmarks.cli import UsageError, _require_device

    if args.device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {args.device!r}; known: cpu, cuda")
    agree_preset, agree_cells = _grid("fused-agreement", args)
    time_preset, time_cells = _grid("gpu-check", args)
    if not time_cells:
        raise UsageError("the gpu-check grid has no cell for this selection (--impl) on "
                         f"{args.device}")
    if args.device == "cuda":
        _require_device("cuda", sorted({c["framework"] for c in time_cells}))
    budget = args.budget if args.budget is not None else (0.05 if args.quick
                                                          else time_preset.budget_s)
    agree_dir = _run(agree_preset, agree_cells, args, agree_preset.budget_s)
    time_dir = _run(time_preset, time_cells, args, budget)
    text = comparison_markdown(agree_dir, time_dir)
    (time_dir / "gpu-check.md").write_text(text, encoding="utf-8")
    print(text, end="")
    for run_dir in (agree_dir, time_dir):
        try:
            from benchmarks.report import write_reports

            write_reports(run_dir)
        except ImportError as exc:  # a bare GPU image may lack pyarrow or matplotlib
            print(f"note: {run_dir}: full report not written ({exc}); the records are kept: "
                  f"rebuild it anywhere with `xent-bench report {run_dir}`", file=sys.stderr)
    print(f"agreement run: {agree_dir}\ntiming run: {time_dir}", file=sys.stderr)
    return 0


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
    from benchmarks.agreement import add_verdicts
    from benchmarks.records import cell_table, load_records
    from benchmarks.runner import read_meta

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
