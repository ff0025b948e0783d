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
import fnmatch
import sys
from pathlib import Path

import xent_impls
from xent_bench.commands.options import (
    UsageError,
    check_device,
    positive_float,
    report_module,
    require_device,
    resolve_threads,
    usage_errors,
)
from xent_bench.harness import files, runner
from xent_bench.harness.presets import build_cells, get_preset

QUICK = {
    "agreement": {"sizes": [(32, 100), (4, 5000)], "dtypes": ["float32", "bfloat16"],
                  "scales": [1.0]},
    "timing": {"sizes": [(1024, 10), (64, 5000)], "dtypes": ["float32"]},
}


def add_parsers(sub) -> None:
    p = sub.add_parser("gpu-check", help="fused/chunked implementations vs the native ops: "
                                         "agreement + GPU timing, one comparison table")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="a few small cells only (smoke test)")
    p.add_argument("--impl", action="append", default=[],
                   help="narrow both grids to implementation ids or globs (repeatable)")
    p.add_argument("--budget", type=positive_float, default=None,
                   help="seconds of timed rounds per cell")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder that receives the run folders (default: results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=command)


def _grid(preset_name: str, args) -> tuple:
    preset = get_preset(preset_name)
    overrides = QUICK[preset.kind] if args.quick else {}
    cells = build_cells(preset, device=args.device, **overrides)
    if args.impl:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c["impl"], p) for p in args.impl)]
    return preset, cells


def _run(preset, cells, args, budget_s: float) -> Path:
    threads, rule = resolve_threads(None)
    return runner.start_run(
        preset.kind, cells, results=args.results, device=args.device, threads=threads,
        allocator="default", budget_s=budget_s, min_rounds=preset.min_rounds,
        max_rounds=preset.max_rounds, preset=preset.name, notes=xent_impls.skipped_notes(),
        progress=not args.no_progress, threads_rule=rule, repeats=preset.repeats)


def command(args: argparse.Namespace) -> int:
    check_device(args.device)
    with usage_errors():
        agree_preset, agree_cells = _grid("fused-agreement", args)
        time_preset, time_cells = _grid("gpu-check", args)
    if not time_cells:
        raise UsageError("the gpu-check grid has no cell for this selection (--impl) on "
                         f"{args.device}")
    if args.device == "cuda":
        require_device("cuda", sorted({c["framework"] for c in time_cells}))
    budget = args.budget if args.budget is not None else (0.05 if args.quick
                                                          else time_preset.budget_s)
    agree_dir = _run(agree_preset, agree_cells, args, agree_preset.budget_s)
    time_dir = _run(time_preset, time_cells, args, budget)
    text = report_module("gpu_check_report").comparison_markdown(agree_dir, time_dir)
    files.write_text(time_dir / "gpu-check.md", text)
    print(text, end="")
    for run_dir in (agree_dir, time_dir):
        try:
            report_module("run_report").write_reports(run_dir)
        except (UsageError, ImportError) as exc:  # a bare GPU image may lack pyarrow or matplotlib
            print(f"note: {run_dir}: full report not written ({exc}); the records are kept: "
                  f"rebuild it anywhere with `xent-bench report {run_dir}`", file=sys.stderr)
    print(f"agreement run: {agree_dir}\ntiming run: {time_dir}", file=sys.stderr)
    return 0
