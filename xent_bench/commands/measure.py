"""``xent-bench run`` (timing) and ``xent-bench agreement`` (error against the float64 oracle):
a preset's grid, narrowed by the command line, measured into a new run folder (or an
interrupted one finished with ``--resume``), then reported."""

from __future__ import annotations

import sys

import xent_impls
from xent_bench.commands.options import (
    UsageError,
    add_grid_options,
    check_device,
    csv,
    flat,
    parse_scales,
    parse_sizes,
    report_module,
    require_device,
    resolve_threads,
    usage_errors,
)
from xent_bench.harness import runner
from xent_bench.harness.presets import build_cells, get_preset
from xent_bench.harness.records import load_records


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="timing run: time, bandwidth, %% of limit, memory")
    add_grid_options(run, "default")
    run.set_defaults(func=command, kind="timing")
    agree = sub.add_parser("agreement", help="agreement with the float64 oracle")
    add_grid_options(agree, "agreement")
    agree.add_argument("--scale", action="append", type=csv, default=[],
                       help="logit scales (replaces the preset's), e.g. 1,10,100")
    agree.set_defaults(func=command, kind="agreement")


def command(args) -> int:
    kind = args.kind
    if args.resume is not None:
        with usage_errors():
            meta = runner.read_meta(args.resume)
            load_records(args.resume)  # a folder of more records than a run may hold: one line
        run_dir = runner.run_cells(meta["cells"], args.resume, meta, progress=not args.no_progress,
                                   cell_timeout_s=_cell_timeout(args))
    else:
        with usage_errors():
            preset = get_preset(args.preset)
        if preset.kind != kind:
            raise UsageError(f"preset {args.preset!r} is a {preset.kind} preset; use "
                             f"'xent-bench {'run' if preset.kind == 'timing' else preset.kind}'")
        device = args.device or preset.device
        check_device(device)
        threads, threads_rule = resolve_threads(args.threads)
        if args.allocator not in runner.ALLOCATORS:
            raise UsageError(f"unknown allocator {args.allocator!r}; known: "
                             f"{', '.join(runner.ALLOCATORS)}")
        with usage_errors():
            cells = build_cells(
                preset,
                impl_patterns=flat(args.impl), frameworks=flat(args.framework),
                forms=flat(args.form), sizes=parse_sizes(args.size), dtypes=flat(args.dtype),
                passes=flat(args.passes), scales=parse_scales(getattr(args, "scale", [])),
                device=device,
            )
        if not cells:
            raise UsageError("the selection matches no cell (check --impl, --dtype, --device)")
        repeats = args.repeats if args.repeats is not None else preset.repeats
        if repeats < 1:
            raise UsageError(f"--repeats must be at least 1, got {repeats}")
        budget = args.budget if args.budget is not None else preset.budget_s
        if not budget > 0:
            raise UsageError(f"--budget must be a positive number of seconds, got {budget:g}")
        if device == "cuda":
            require_device(device, sorted({c["framework"] for c in cells}))
        with usage_errors():
            runner.check_grid_size(cells, repeats)
        run_dir = runner.start_run(
            kind, cells, results=args.results, device=device, threads=threads,
            allocator=args.allocator,
            budget_s=budget, repeats=repeats,
            min_rounds=preset.min_rounds, max_rounds=preset.max_rounds, preset=preset.name,
            notes=xent_impls.skipped_notes(), progress=not args.no_progress,
            threads_rule=threads_rule, cell_timeout_s=_cell_timeout(args))
    if not args.no_report:
        written = report_module("run_report").write_reports(run_dir)
        print("\n".join(written["summary"]))
        print(f"report: {written['markdown']} (also report.html)", file=sys.stderr)
    return 0


def _cell_timeout(args) -> float:
    """``--cell-timeout``, or the runner's default."""
    return runner.CELL_TIMEOUT_S if args.cell_timeout is None else args.cell_timeout
