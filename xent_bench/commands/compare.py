"""The ``compare``, ``merge`` and ``history`` subcommands of ``xent-bench`` (wired into
``xent_bench.cli``).

    xent-bench compare BASE NEW [--threshold 0.10] [--drift 0.3] [--shift group]
                       [--fail-on slower,memory,accuracy]
    xent-bench merge RUN RUN [RUN ...]
    xent-bench history RUN RUN [RUN ...] [--impl GLOB] [--size NxC] [--dtype D] [--pass P]

A run is a run folder or a pytest-benchmark JSON file (imported into ``--results`` on first use).
Exit status of ``compare``: 0 when no cell regressed in the ``--fail-on`` categories, 1 when one
did (``EXIT_REGRESSION``), 2 for bad input (usage errors).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from xent_bench.analysis import compare_stats
from xent_bench.commands.options import (
    UsageError,
    csv,
    flat,
    import_with_report_libraries,
    non_negative_float,
    parse_sizes,
    report_module,
    usage_errors,
)
from xent_bench.harness.pytest_import import import_or_reuse

EXIT_REGRESSION = 1


def add_parsers(sub) -> None:
    """Add the three subcommands to ``xent-bench``'s subparsers."""
    cmp = sub.add_parser(
        "compare", help="compare two runs: speed, memory and accuracy verdicts per cell; exit "
                        "status 1 on a regression beyond the thresholds")
    cmp.add_argument("base", type=Path, metavar="BASE", help="run folder or pytest-benchmark JSON")
    cmp.add_argument("new", type=Path, metavar="NEW", help="run folder or pytest-benchmark JSON")
    cmp.add_argument("--threshold", type=non_negative_float,
                     default=compare_stats.DEFAULT_THRESHOLD,
                     help="relative change of the median time that matters (default: "
                          f"{compare_stats.DEFAULT_THRESHOLD:g})")
    cmp.add_argument("--drift", type=non_negative_float, default=compare_stats.DEFAULT_DRIFT,
                     help="run-to-run drift allowance of this machine (default: "
                          f"{compare_stats.DEFAULT_DRIFT:g}, calibrated by xent-bench stability "
                          "on a shared 2-core VM; 0 on a machine whose reruns agree)")
    cmp.add_argument("--shift", choices=compare_stats.SHIFTS, default=compare_stats.DEFAULT_SHIFT,
                     help="judge each cell's ratio over the common shift of the cells measured "
                          "beside it (group: the machine's change of speed between the runs is "
                          "taken out where the group moved together) or as it is (none) "
                          f"(default: {compare_stats.DEFAULT_SHIFT})")
    cmp.add_argument("--memory-threshold", type=non_negative_float,
                     default=compare_stats.DEFAULT_MEMORY_THRESHOLD,
                     help="relative change of peak memory that matters (default: "
                          f"{compare_stats.DEFAULT_MEMORY_THRESHOLD:g})")
    cmp.add_argument("--memory-floor-mib", type=non_negative_float,
                     default=compare_stats.DEFAULT_MEMORY_FLOOR_BYTES / 2**20,
                     help="ignore peak memory changes up to this many MiB (default: "
                          f"{compare_stats.DEFAULT_MEMORY_FLOOR_BYTES / 2**20:g})")
    cmp.add_argument("--fail-on", default=",".join(compare_stats.REGRESSION),
                     help="regressions that make the exit status 1: slower, memory, accuracy "
                          "(comma-separated) or none (default: all three)")
    _add_output_options(cmp, "compare-BASE-to-NEW")
    cmp.set_defaults(func=cmd_compare)

    merge = sub.add_parser("merge", help="several runs (e.g. machines) in one report: "
                                         "provenance and %% of limit per run")
    merge.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    _add_output_options(merge, "merge-<time>")
    merge.set_defaults(func=cmd_merge)

    hist = sub.add_parser("history", help="trend of chosen cells across an ordered list of runs")
    hist.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="runs, oldest first")
    hist.add_argument("--impl", action="append", type=csv, default=[],
                      help="implementation id or glob (repeatable)")
    hist.add_argument("--size", action="append", type=csv, default=[], help="NxC (repeatable)")
    hist.add_argument("--dtype", action="append", type=csv, default=[], help="dtype(s)")
    hist.add_argument("--pass", dest="passes", action="append", type=csv, default=[],
                      help="forward and/or forward_backward")
    _add_output_options(hist, "history-<time>")
    hist.set_defaults(func=cmd_history)


def _add_output_options(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: RESULTS/{default_name})")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="where pytest-benchmark JSON files become run folders, and where the "
                        "output folder goes by default (default: results)")


def resolve_run(path: Path, results: Path) -> Path:
    """A run folder: ``path`` itself, or the folder a pytest-benchmark JSON file imports to."""
    if path.suffix == ".json":
        return import_or_reuse(path, results)
    return path


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def cmd_compare(args) -> int:
    compare = analysis_compare()
    compare_report = report_module("compare_report")
    with usage_errors():
        fail_on = compare_stats.parse_fail_on(args.fail_on)
        options = compare_stats.Options(threshold=args.threshold, drift=args.drift,
                                        shift=args.shift,
                                        memory_threshold=args.memory_threshold,
                                        memory_floor_bytes=args.memory_floor_mib * 2**20)
        base = resolve_run(args.base, args.results)
        new = resolve_run(args.new, args.results)
        result = compare.compare_runs(base, new, options)
    out = args.out or args.results / (f"compare-{result.base.meta.get('run_id')}-to-"
                                      f"{result.new.meta.get('run_id')}")
    written = compare_report.write_comparison(result, out, fail_on)
    print(compare_report.terminal_summary(result, fail_on))
    print(f"comparison: {written['markdown']} (also .html, .csv)", file=sys.stderr)
    return EXIT_REGRESSION if len(result.regressions(fail_on)) else 0


def _runs(args, what: str):
    if len(args.runs) < 2:
        raise UsageError(f"{what} needs at least two runs, got {len(args.runs)}")
    compare = analysis_compare()
    with usage_errors():
        return compare.load_runs([resolve_run(p, args.results) for p in args.runs])


def analysis_compare():
    """The pandas half of comparing runs (``xent_bench.analysis.compare``), imported when a
    comparison runs."""
    return import_with_report_libraries("xent_bench.analysis.compare", "comparing runs")


def cmd_merge(args) -> int:
    runs = _runs(args, "merge")
    written = report_module("compare_report").write_merge(
        runs, args.out or args.results / f"merge-{_stamp()}")
    print(f"merged report: {written['markdown']} (also .html, .csv)", file=sys.stderr)
    return 0


def cmd_history(args) -> int:
    runs = _runs(args, "history")
    impls, sizes = flat(args.impl), parse_sizes(args.size)
    dtypes, passes = flat(args.dtype), flat(args.passes)
    with usage_errors():
        table = analysis_compare().history_table(runs, impls, sizes, dtypes, passes)
    written = report_module("compare_report").write_history(
        runs, table, args.out or args.results / f"history-{_stamp()}", impls=impls, sizes=sizes,
        dtypes=dtypes, passes=passes)
    print(f"history: {written['markdown']} (also .html, .csv)", file=sys.stderr)
    return 0
