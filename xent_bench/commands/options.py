"""Option helpers shared by the subcommands: the usage error, the parser class, list options,
and the option groups that several commands take (implementation selection, run folder, grid).

A usage error (``UsageError``, or argparse's own complaint) is the user's mistake: ``xent-bench``
prints it as one line and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import subprocess
import sys
from pathlib import Path

from xent_bench.harness.threads import default_threads
from xent_impls import parse_size, vocabulary

EXIT_USAGE = 2


class UsageError(Exception):
    """A user mistake: one line on stderr and exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2 (argparse's own convention too)
        raise UsageError(message)


def _finite(text: str, *, above_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (above_zero and value == 0):
        bound = "above 0" if above_zero else "of at least 0"
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An option value that must be a finite number above 0 (a budget, a timeout)."""
    return _finite(text, above_zero=True)


def non_negative_float(text: str) -> float:
    """An option value that must be a finite number of at least 0 (a threshold, an allowance)."""
    return _finite(text, above_zero=False)


def csv(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (the type of every repeatable list option)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def flat(values: list[list[str]]) -> list[str] | None:
    """The values of a repeated list option, flattened; None when it was not given."""
    joined = [v for group in values for v in group]
    return joined or None


def parse_sizes(values) -> list[tuple[int, int]] | None:
    """``--size`` values (``NxC``) as (N, C) pairs; None when none was given."""
    given = flat(values)
    if not given:
        return None
    try:
        return [parse_size(v) for v in given]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_scales(values) -> list[float] | None:
    """``--scale`` values as floats; None when none was given."""
    given = flat(values)
    if not given:
        return None
    scales = []
    for v in given:
        try:
            scales.append(float(v))
        except ValueError:
            raise UsageError(f"malformed scale {v!r}: expected a number such as 10") from None
    return scales


def add_selection_options(p: argparse.ArgumentParser) -> None:
    """--framework, --impl, --form: which implementations a measuring command runs."""
    p.add_argument("--framework", action="append", type=csv, default=[],
                   help="only these frameworks (repeat or comma-separate): "
                        + ", ".join(vocabulary.FRAMEWORKS))
    p.add_argument("--impl", action="append", type=csv, default=[],
                   help="implementation id or glob, e.g. 'torch/*' or '*/sparse' (repeatable)")
    p.add_argument("--form", action="append", type=csv, default=[],
                   help=" and/or ".join(vocabulary.FORMS))


def add_run_folder_options(p: argparse.ArgumentParser) -> None:
    """--results, --resume, --no-progress, --no-report: where a run goes and how it shows."""
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder that receives the run folder (default: results)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_FOLDER",
                   help="finish an interrupted run folder (other grid options are ignored)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="records only, no report")


def add_grid_options(p: argparse.ArgumentParser, default_preset: str) -> None:
    """The grid of a measuring command: preset, selection, dtypes, sizes, passes, device,
    threads, allocator, budget, and the run-folder options."""
    p.add_argument("--preset", default=default_preset,
                   help=f"grid preset (default: {default_preset})")
    add_selection_options(p)
    p.add_argument("--dtype", action="append", type=csv, default=[],
                   help="float32, bfloat16, float16, float64 (replaces the preset's dtypes)")
    p.add_argument("--size", action="append", type=csv, default=[],
                   help="NxC, e.g. 1024x32000 (replaces the preset's sizes; repeatable)")
    p.add_argument("--pass", dest="passes", action="append", type=csv, default=[],
                   help=" and/or ".join(vocabulary.PASSES))
    p.add_argument("--device", default=None,
                   help=" or ".join(vocabulary.DEVICES) + " (default: the preset's)")
    add_threads_option(p)
    p.add_argument("--allocator", default="default",
                   help="CPU allocator setting: default (glibc) or reuse (freed memory is reused)")
    p.add_argument("--budget", type=positive_float, default=None,
                   help="seconds of timed rounds per cell and repeat")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats of the whole grid, each through fresh worker processes "
                        "(default: the preset's)")
    add_run_folder_options(p)
    p.add_argument("--cell-timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="a cell that runs longer is killed and recorded as an error, and the "
                        "run goes on (default: 900)")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every framework (default: 1 on 2 cores or fewer, "
                        "else the cores not busy by the load average)")


def resolve_threads(value: int | None) -> tuple[int, str]:
    """``(threads, rule)``: ``--threads`` as given, or the default rule (``harness/threads.py``)."""
    if value is None:
        return default_threads()
    if value < 1:
        raise UsageError(f"--threads must be at least 1, got {value}")
    return value, f"--threads {value}"


def check_device(device: str) -> None:
    """A device name the harness knows, or a usage error."""
    if device not in vocabulary.DEVICES:
        raise UsageError(f"unknown device {device!r}; known: {', '.join(vocabulary.DEVICES)}")


def require_device(device: str, frameworks: list[str]) -> None:
    """A missing accelerator is a usage error, checked in a child process so that this process
    imports no framework."""
    code = ("import sys, xent_impls; fw=sys.argv[1]; "
            "sys.exit(0 if xent_impls.backend(fw).has_device(sys.argv[2]) else 3)")
    for fw in frameworks:
        rc = subprocess.run([sys.executable, "-c", code, fw, device], capture_output=True,
                            check=False).returncode
        if rc == 3:
            raise UsageError(f"device {device!r} is not available to {fw} on this machine")


def report_module(name: str):
    """Import ``xent_bench.reports.<name>`` (see ``import_with_report_libraries``)."""
    return import_with_report_libraries(f"xent_bench.reports.{name}", "writing reports")


def import_with_report_libraries(module: str, what: str):
    """Import ``module`` of the layers that need pandas, pyarrow and matplotlib (``pip install
    'xent-bench[report]'``); without them, a usage error saying that ``what`` needs them."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name in REPORT_MODULES:
            raise UsageError(f"{what} needs {exc.name}, which is not installed: "
                             "pip install 'xent-bench[report]'") from None
        raise


# The third-party modules the report layer imports.
REPORT_MODULES = ("pandas", "pyarrow", "matplotlib", "numpy")


@contextlib.contextmanager
def usage_errors():
    """Inside: a ``ValueError`` from the layers below (an unknown name, a malformed size, a
    folder that is not a run folder) is the user's input at fault, so it becomes a
    ``UsageError``. Only input validation runs inside; a ValueError elsewhere is a bug."""
    try:
        yield
    except ValueError as exc:
        raise UsageError(str(exc)) from None
