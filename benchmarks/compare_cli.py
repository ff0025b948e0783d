"""The ``compare``, ``merge`` and ``history`` subcommands of ``xent-bench`` (wired into
``benchmarks.cli``).

    xent-bench compare BASE NEW [--threshold 0.10] [--drift 2.0] [--fail-on slower,memory,accuracy]
    xent-bench merge RUN RUN [RUN ...]
    xent-bench history RUN RUN [RUN ...] [--impl GLOB] [--size NxC] [--dtype D] [--pass P]

A run is a run folder or a pytest-benchmark JSON file (imported into ``--results`` on first use).
Exit status of ``compare``: 0 when no cell regressed in the ``--fail-on`` categories, 1 when one
did (``EXIT_REGRESSION``), 2 for bad input (``benchmarks.cli``'s usage errors).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from benchmarks import compare

EXIT_REGRESSION = 1
COMMANDS = ("compare", "merge", "history")


def add_parsers(sub) -> None:
    """Add the three subcommands to ``benchmarks.cli``'s subparsers."""
    from benchmarks.cli import _csv

    cmp = sub.add_parser(
        "compare", help="compare two runs: speed, memory and accuracy verdicts per cell; exit "
                        "status 1 on a regression beyond the thresholds")
    cmp.add_argument("base", type=Path, metavar="BASE", help="run folder or pytest-benchmark JSON")
    cmp.add_argument("new", type=Path, metavar="NEW", help="run folder or pytest-benchmark JSON")
    cmp.add_argument("--threshold", type=float, default=compare.DEFAULT_THRESHOLD,
                     help="relative change of the median time that matters (default: "
                          f"{compare.DEFAULT_THRESHOLD:g})")
    cmp.add_argument("--drift", type=float, default=compare.DEFAULT_DRIFT,
                     help="run-to-run drift allowance of this machine (default: "
                          f"{compare.DEFAULT_DRIFT:g}, measured on a shared 2-core VM; 0 on a "
                          "machine whose reruns agree)")
    cmp.add_argument("--memory-threshold", type=float, default=compare.DEFAULT_MEMORY_THRESHOLD,
                     help="relative change of peak memory that matters (default: "
                          f"{compare.DEFAULT_MEMORY_THRESHOLD:g})")
    cmp.add_argument("--memory-floor-mib", type=float,
                     default=compare.DEFAULT_MEMORY_FLOOR_BYTES / 2**20,
                     help="ignore peak memory changes up to this many MiB (default: "
                          f"{compare.DEFAULT_MEMORY_FLOOR_BYTES / 2**20:g})")
    cmp.add_argument("--fail-on", default=",".join(compare.REGRESSION),
                     help="regressions that make the exit status 1: slower, memory, accuracy "
                          "(comma-separated) or none (default: all three)")
    _add_output_options(cmp, "compare-BASE-to-NEW")

    merge = sub.add_parser("merge", help="several runs (e.g. machines) in one report: "
                                         "provenance and %% of limit per run")
    merge.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    _add_output_options(merge, "merge-<time>")

    hist = sub.add_parser("history", help="trend of chosen cells across an ordered list of runs")
    hist.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="runs, oldest first")
    hist.add_argument("--impl", action="append", type=_csv, default=[],
                      help="implementation id or glob (repeatable)")
    hist.add_argument("--size", action="append", type=_csv, default=[], help="NxC (repeatable)")
    hist.add_argument("--dtype", action="append", type=_csv, default=[], help="dtype(s)")
    hist.add_argument("--pass", dest="passes", action="append", type=_csv, default=[],
                      help="forward and/or forward_backward")
    _add_output_options(hist, "history-<time>")


def _add_output_options(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: RESULTS/{default_name})")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="where pytest-benchmark JSON files become run folders, and where the "
                        "output folder goes by default (default: results)")


def resolve_run(path: Path, results: Path) -> Path:
    """A run folder: ``path`` itself, or the folder a pytest-benchmark JSON file imports to."""
    if path.suffix == ".json":
        from benchmarks.pytest_import import import_or_reuse

        return import_or_reuse(path, results)
    return path


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def cmd_compare(args) -> int:
    fail_on = compare.parse_fail_on(args.fail_on)
    options = compare.Options(threshold=args.threshold, drift=args.drift,
                              memory_threshold=args.memory_threshold,
                              memory_floor_bytes=args.memory_floor_mib * 2**20)
    base = resolve_run(args.base, args.results)
    new = resolve_run(args.new, args.results)
    result = compare.compare_runs(base, new, options)
    from benchmarks.compare_report import terminal_summary, write_comparison

    out = args.out or args.results / (f"compare-{result.base.meta.get('run_id')}-to-"
                                      f"{result.new.meta.get('run_id')}")
    written = write_comparison(result, out, fail_on)
    print(terminal_summary(result, fail_on))
    print(f"comparison: {written['markdown']} (also .html, .csv)", file=sys.stderr)
    return EXIT_REGRESSION if len(result.regressions(fail_on)) else 0


def _runs(args, what: str):
    if len(args.runs) < 2:
        raise ValueError(f"{what} needs at least two runs, got {len(args.runs)}")
    return compare.load_runs(resolve_run(p, args.results) for p in args.runs)


def cmd_merge(args) -> int:
    from benchmarks.compare_report import write_merge

    written = write_merge(_runs(args, "merge"), args.out or args.results / f"merge-{_stamp()}")
    print(f"merged report: {written['markdown']} (also .html, .csv)", file=sys.stderr)
    return 0


def cmd_history(args) -> int:
    from benchmarks.cli import _flat, _parse_sizes
    from benchmarks.compare_report import write_history

    written = write_history(_runs(args, "history"),
                            args.out or args.results / f"history-{_stamp()}",
                            impls=_flat(args.impl), sizes=_parse_sizes(args.size),
                            dtypes=_flat(args.dtype), passes=_flat(args.passes))
    print(f"history: {written['markdown']} (also .html, .csv)", file=sys.stderr)
    return 0


def command(args) -> int:
    """Run the subcommand ``args.command`` (one of ``COMMANDS``)."""
    return {"compare": cmd_compare, "merge": cmd_merge, "history": cmd_history}[args.command](args)
