"""The ``xent-bench`` command line (also ``python -m benchmarks``).

    xent-bench run [--preset default] [filters]   timing run (time, GB/s, % of limit, memory)
    xent-bench agreement [--preset agreement]     loss/gradient error against the float64 oracle
    xent-bench run --resume RUN_FOLDER            finish an interrupted run
    xent-bench report RUN_FOLDER                  rebuild the reports of a run folder
    xent-bench behaviour [--framework F]          behaviour under bad input: matrix + semantics
    xent-bench list                               implementations and presets
    xent-bench compare BASE NEW [--threshold T]   speed/memory/accuracy verdicts; 1: regression
    xent-bench merge RUN RUN [...]                several runs (machines) side by side, % of limit
    xent-bench history RUN RUN [...] [--impl G]   trend of chosen cells across ordered runs
    xent-bench gpu-check [--quick]                fused/chunked vs native: agreement + GPU timing
    xent-bench distributed [--world 1,2,4]        vocabulary-parallel CE over 1, 2, 4 ranks

Bad input (unknown names, malformed sizes, a missing device) prints one line and exits with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """A user mistake: one line on stderr and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2 (argparse's own convention too)
        raise UsageError(message)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_selection_options(p: argparse.ArgumentParser) -> None:
    """--framework, --impl, --form: which implementations a measuring command runs."""
    p.add_argument("--framework", action="append", type=_csv, default=[],
                   help="only these frameworks (repeat or comma-separate): "
                        "torch, jax, tensorflow, numpy")
    p.add_argument("--impl", action="append", type=_csv, default=[],
                   help="implementation id or glob, e.g. 'torch/*' or '*/sparse' (repeatable)")
    p.add_argument("--form", action="append", type=_csv, default=[], help="sparse and/or onehot")


def add_run_folder_options(p: argparse.ArgumentParser) -> None:
    """--results, --resume, --no-progress, --no-report: where a run goes and how it shows."""
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder that receives the run folder (default: results)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_FOLDER",
                   help="finish an interrupted run folder (other grid options are ignored)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="records only, no report")


def _add_grid_options(p: argparse.ArgumentParser, default_preset: str) -> None:
    p.add_argument("--preset", default=default_preset,
                   help=f"grid preset (default: {default_preset})")
    add_selection_options(p)
    p.add_argument("--dtype", action="append", type=_csv, default=[],
                   help="float32, bfloat16, float16, float64 (replaces the preset's dtypes)")
    p.add_argument("--size", action="append", type=_csv, default=[],
                   help="NxC, e.g. 1024x32000 (replaces the preset's sizes; repeatable)")
    p.add_argument("--pass", dest="passes", action="append", type=_csv, default=[],
                   help="forward and/or forward_backward")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the preset's)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every framework (default: all cores)")
    p.add_argument("--allocator", default="default",
                   help="CPU allocator setting: default (glibc) or reuse (freed memory is reused)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per cell")
    add_run_folder_options(p)


def _flat(values: list[list[str]]) -> list[str] | None:
    flat = [v for group in values for v in group]
    return flat or None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xent-bench", description="Cross-entropy benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="timing run: time, bandwidth, %% of limit, memory")
    _add_grid_options(run, "default")
    agree = sub.add_parser("agreement", help="agreement with the float64 oracle")
    _add_grid_options(agree, "agreement")
    agree.add_argument("--scale", action="append", type=_csv, default=[],
                       help="logit scales (replaces the preset's), e.g. 1,10,100")
    report = sub.add_parser(
        "report", help="rebuild the reports of a run folder, or build a run folder and its "
                       "reports from a pytest-benchmark JSON file")
    report.add_argument("run_folder", type=Path, metavar="RUN_FOLDER_OR_JSON")
    report.add_argument("--results", type=Path, default=Path("results"),
                        help="where a pytest-benchmark JSON becomes a run folder "
                             "(default: results)")
    sub.add_parser("list", help="list implementations and presets")
    from benchmarks.behaviour import add_parser as add_behaviour_parser

    add_behaviour_parser(sub)
    from benchmarks.compare_cli import add_parsers as add_compare_parsers

    add_compare_parsers(sub)
    from benchmarks.gpu_check import add_parser as add_gpu_check_parser

    add_gpu_check_parser(sub)
    # --- distributed (vocabulary-parallel) subcommand: benchmarks/distributed.py ---
    from benchmarks.distributed import add_parser as add_distributed_parser

    add_distributed_parser(sub)
    # --- end distributed ---
    return parser


def _parse_sizes(values) -> list[tuple[int, int]] | None:
    from xent_impls import parse_size

    flat = _flat(values)
    return [parse_size(v) for v in flat] if flat else None


def _parse_scales(values) -> list[float] | None:
    flat = _flat(values)
    if not flat:
        return None
    scales = []
    for v in flat:
        try:
            scales.append(float(v))
        except ValueError:
            raise UsageError(f"malformed scale {v!r}: expected a number such as 10") from None
    return scales


def cmd_list() -> int:
    import xent_impls
    from benchmarks.presets import PRESETS

    print("Implementations (installed: yes/no)")
    for impl in xent_impls.all_impls():
        mark = "yes" if impl.installed else "no "
        fail = "  [meant to fail in some cases]" if impl.expected_failure else ""
        print(f"  {mark}  {impl.id:34s} {impl.description}{fail}")
    print("\nPresets")
    for p in PRESETS.values():
        print(f"  {p.name:16s} ({p.kind}) {p.description}")
    for note in xent_impls.skipped_notes():
        print(f"\nnote: {note}")
    return 0


def cmd_measure(args, kind: str) -> int:
    import xent_impls
    from benchmarks import runner
    from benchmarks.presets import build_cells, get_preset

    if args.resume is not None:
        meta = runner.read_meta(args.resume)
        run_dir = runner.run_cells(meta["cells"], args.resume, meta, progress=not args.no_progress)
    else:
        preset = get_preset(args.preset)
        if preset.kind != kind:
            raise UsageError(f"preset {args.preset!r} is a {preset.kind} preset; use "
                             f"'xent-bench {'run' if preset.kind == 'timing' else preset.kind}'")
        device = args.device or preset.device
        if device not in ("cpu", "cuda"):
            raise UsageError(f"unknown device {device!r}; known: cpu, cuda")
        threads = args.threads if args.threads is not None else (os.cpu_count() or 1)
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}")
        if args.allocator not in runner.ALLOCATORS:
            raise UsageError(f"unknown allocator {args.allocator!r}; known: "
                             f"{', '.join(runner.ALLOCATORS)}")
        cells = build_cells(
            preset,
            impl_patterns=_flat(args.impl), frameworks=_flat(args.framework),
            forms=_flat(args.form), sizes=_parse_sizes(args.size), dtypes=_flat(args.dtype),
            passes=_flat(args.passes), scales=_parse_scales(getattr(args, "scale", [])),
            device=device,
        )
        if not cells:
            raise UsageError("the selection matches no cell (check --impl, --dtype, --device)")
        if device == "cuda":
            _require_device(device, sorted({c["framework"] for c in cells}))
        run_dir = runner.start_run(
            kind, cells, results=args.results, device=device, threads=threads,
            allocator=args.allocator,
            budget_s=args.budget if args.budget is not None else preset.budget_s,
            min_rounds=preset.min_rounds, max_rounds=preset.max_rounds, preset=preset.name,
            notes=xent_impls.skipped_notes(), progress=not args.no_progress)
    if not args.no_report:
        from benchmarks.report import write_reports

        written = write_reports(run_dir)
        print(f"report: {written['markdown']}", file=sys.stderr)
    return 0


def _require_device(device: str, frameworks: list[str]) -> None:
    """A missing accelerator is a usage error, checked in a child process so that this process
    imports no framework."""
    import subprocess

    code = ("import sys, xent_impls; fw=sys.argv[1]; "
            "sys.exit(0 if xent_impls.backend(fw).has_device(sys.argv[2]) else 3)")
    for fw in frameworks:
        rc = subprocess.run([sys.executable, "-c", code, fw, device], capture_output=True,
                            check=False).returncode
        if rc == 3:
            raise UsageError(f"device {device!r} is not available to {fw} on this machine")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "list":
            return cmd_list()
        if args.command == "report":
            from benchmarks.report import write_reports

            run_folder = args.run_folder
            if run_folder.suffix == ".json":
                from benchmarks.pytest_import import import_json

                run_folder = import_json(run_folder, args.results)
                print(f"run folder: {run_folder}", file=sys.stderr)
            written = write_reports(run_folder)
            print(f"report: {written['markdown']}", file=sys.stderr)
            return 0
        if args.command == "behaviour":
            from benchmarks.behaviour import command as behaviour_command

            return behaviour_command(args)
        if args.command == "gpu-check":
            from benchmarks.gpu_check import command as gpu_check_command

            return gpu_check_command(args)
        if args.command == "distributed":  # --- distributed subcommand ---
            from benchmarks.distributed import command as distributed_command

            return distributed_command(args)
        if args.command in ("compare", "merge", "history"):
            from benchmarks.compare_cli import command as compare_command

            return compare_command(args)
        return cmd_measure(args, "timing" if args.command == "run" else "agreement")
    except (UsageError, ValueError) as exc:
        print(f"xent-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xent-bench: interrupted; finished cells are kept (resume with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
