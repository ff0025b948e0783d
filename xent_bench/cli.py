"""The ``xent-bench`` command line (also ``python -m xent_bench``).

    xent-bench run [--preset default] [filters]   timing run (time, GB/s, % of limit, memory)
    xent-bench agreement [--preset agreement]     loss/gradient error against the float64 oracle
    xent-bench run --resume RUN_FOLDER            finish an interrupted run
    xent-bench report RUN_FOLDER                  rebuild the reports of a run folder
    xent-bench behaviour [--framework F]          behaviour under bad input: matrix + semantics
    xent-bench list                               implementations and presets
    xent-bench compare BASE NEW [--threshold T]   speed/memory/accuracy verdicts; 1: regression
    xent-bench merge RUN RUN [...]                several runs (machines) side by side, % of limit
    xent-bench history RUN RUN [...] [--impl G]   trend of chosen cells across ordered runs
    xent-bench stability [--preset smoke]         quiet, loaded, quiet, slowed: do figures hold?
    xent-bench gpu-check [--quick]                fused/chunked vs native: agreement + GPU timing
    xent-bench distributed [--world 1,2,4]        vocabulary-parallel CE over 1, 2, 4 ranks

Each subcommand module (``xent_bench/commands/``) adds its parser and sets ``func``; building
the parser imports no framework and none of the report libraries, so ``--help`` and ``list``
work on the base install. Bad input (unknown names, malformed sizes, a missing device) prints
one line and exits with 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib.metadata
import sys

from xent_bench.commands import (
    behaviour,
    compare,
    distributed,
    gpu_check,
    list_impls,
    measure,
    report,
    stability,
)
from xent_bench.commands.options import EXIT_USAGE, Parser, UsageError
from xent_bench.harness.files import FolderBusyError, UnsafePathError, WriteError

# In the order ``xent-bench --help`` lists them.
COMMANDS = (measure, report, behaviour, list_impls, compare, stability, gpu_check, distributed)


def _version() -> str:
    """The installed distribution's version (``pyproject.toml``), or "unknown" when the package
    runs from a source tree without being installed."""
    try:
        return importlib.metadata.version("xent-bench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> Parser:
    parser = Parser(prog="xent-bench", description="Cross-entropy benchmark suite.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except (UsageError, UnsafePathError, FolderBusyError) as exc:
        # An unsafe output path (a link or a special file where a report goes) or a folder
        # another process is measuring into comes from the folder given, not from a bug: one
        # line, like any other bad input.
        print(f"xent-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WriteError as exc:
        # A full disk or a read-only folder mid-run: what was written before is intact (the
        # message says what to do next).
        print(f"xent-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xent-bench: interrupted; finished cells are kept (resume with --resume)",
              file=sys.stderr)
        return 130
