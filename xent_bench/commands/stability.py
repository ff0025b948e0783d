"""``xent-bench stability``: do this machine's figures hold? One preset measured four times:

1. quiet;
2. loaded: a spinning process, started and stopped by the command, keeps one core busy;
3. quiet again;
4. quiet, with one implementation slowed down on purpose (``--slow IMPL=FACTOR``, default the
   first native implementation of the grid at 1.5x), to check that ``compare`` calls it slower.

Then it prints (and writes as ``stability.md``) the quiet reruns' agreement (cells within 10%,
speedups over native within 5%), the loaded run's silently wrong cells (off by more than 25%
and not flagged contended), cells above 100% of the limit in each run, the agreement of peak
memory across runs, and what ``compare`` says of the quiet pair and of the slowed run. Exit
status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
from pathlib import Path

import xent_impls
from xent_bench.commands.options import (
    UsageError,
    add_selection_options,
    csv,
    flat,
    parse_sizes,
    positive_float,
    report_module,
    resolve_threads,
    usage_errors,
)
from xent_bench.harness import runner
from xent_bench.harness.presets import build_cells, get_preset
from xent_bench.harness.worker import SLOWDOWN_ENV

# A process that keeps one core busy for as long as it lives (pinned to the first usable core).
SPINNER = ("import os\ncores = sorted(os.sched_getaffinity(0))\n"
           "os.sched_setaffinity(0, {cores[0]})\nwhile True:\n    pass\n")


def add_parsers(sub) -> None:
    p = sub.add_parser("stability", help="measure a preset quiet, loaded, quiet and slowed: "
                                         "do reruns agree, is contention flagged, does compare "
                                         "catch a 1.5x regression")
    p.add_argument("--preset", default="stability", help="timing preset (default: stability)")
    add_selection_options(p)
    p.add_argument("--size", action="append", type=csv, default=[],
                   help="NxC (replaces the preset's sizes)")
    p.add_argument("--budget", type=positive_float, default=None,
                   help="seconds of timed rounds per cell")
    p.add_argument("--slow", default=None, metavar="IMPL=FACTOR",
                   help="the implementation slowed down in the fourth run (default: the first "
                        "native implementation of the grid, 1.5)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder that receives the run folders (default: results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=command)


def _slowdown(spec: str | None, cells: list[dict]) -> tuple[str, float]:
    if spec is None:
        natives = [c["impl"] for c in cells if c["variant"] in ("native", "optax")]
        if not natives:
            raise UsageError("the grid has no native implementation to slow down; give --slow")
        return natives[0], 1.5
    impl, _, factor = spec.partition("=")
    try:
        value = float(factor)
    except ValueError:
        raise UsageError(f"malformed --slow {spec!r}: expected IMPL=FACTOR such as "
                         "torch/native/sparse=1.5") from None
    if not value > 1.0 or impl not in {c["impl"] for c in cells}:
        raise UsageError(f"--slow {spec!r}: the implementation must be in the grid and the "
                         "factor above 1")
    return impl, value


def command(args) -> int:
    with usage_errors():
        preset = get_preset(args.preset)
        if preset.kind != "timing":
            raise UsageError(f"preset {args.preset!r} is a {preset.kind} preset; stability "
                             "needs a timing preset")
        cells = build_cells(preset, impl_patterns=flat(args.impl),
                            frameworks=flat(args.framework), forms=flat(args.form),
                            sizes=parse_sizes(args.size))
    if not cells:
        raise UsageError("the selection matches no cell (check --impl, --size)")
    slow_impl, factor = _slowdown(args.slow, cells)
    budget = args.budget if args.budget is not None else preset.budget_s
    if not budget > 0:
        raise UsageError(f"--budget must be positive, got {budget:g}")
    threads, rule = resolve_threads(None)
    stability = report_module("stability_report")

    def measure(label: str) -> Path:
        print(f"stability: {label} run ...", file=sys.stderr, flush=True)
        run_dir = runner.start_run(
            "timing", cells, results=args.results, device=preset.device, threads=threads,
            allocator="default", budget_s=budget, min_rounds=preset.min_rounds,
            max_rounds=preset.max_rounds, preset=preset.name, notes=xent_impls.skipped_notes(),
            progress=not args.no_progress, threads_rule=rule, repeats=preset.repeats)
        report_module("run_report").write_reports(run_dir)
        return run_dir

    quiet = measure("quiet")
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        loaded = measure("loaded (one core kept busy)")
    finally:
        spinner.kill()
        spinner.wait()
    quiet_again = measure("quiet")
    os.environ[SLOWDOWN_ENV] = f"{slow_impl}={factor:g}"
    try:
        slowed = measure(f"slowed ({slow_impl} x{factor:g})")
    finally:
        del os.environ[SLOWDOWN_ENV]
    summary = stability.summarise(quiet, loaded, quiet_again, slowed, slow_impl, factor)
    out = args.results / f"stability-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path = stability.write(summary, out)
    print(path.read_text(encoding="utf-8"), end="")
    print(f"stability: {path}", file=sys.stderr)
    return 0 if summary.targets_met else 1
