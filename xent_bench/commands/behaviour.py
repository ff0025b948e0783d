"""``xent-bench behaviour``: every edge-case probe against every implementation, and each
framework's options side by side (the cells and probes: ``xent_bench/harness/behaviour.py``)."""

from __future__ import annotations

import sys

import xent_impls
from xent_bench.commands.options import (
    UsageError,
    add_run_folder_options,
    add_selection_options,
    add_threads_option,
    check_device,
    csv,
    flat,
    positive_float,
    report_module,
    require_device,
    resolve_threads,
    usage_errors,
)
from xent_bench.harness import behaviour, runner
from xent_impls import edge_cases


def add_parsers(sub) -> None:
    p = sub.add_parser("behaviour", help="behaviour under bad and edge-case input: every probe "
                                         "against every implementation, and the semantics of "
                                         "each framework's options")
    add_selection_options(p)
    p.add_argument("--probe", action="append", type=csv, default=[],
                   help="only these probes (default: all): "
                        + ", ".join(p.name for p in edge_cases.PROBES))
    p.add_argument("--no-semantics", action="store_true",
                   help="leave out the semantics side by side")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_threads_option(p)
    p.add_argument("--cell-timeout", type=positive_float, default=behaviour.CELL_TIMEOUT_S,
                   help="seconds before a hung probe is killed (default: "
                        f"{behaviour.CELL_TIMEOUT_S:g})")
    add_run_folder_options(p)
    p.set_defaults(func=command)


def command(args) -> int:
    """``xent-bench behaviour``: build the cells, run them, write the report."""
    if args.resume is not None:
        with usage_errors():
            meta = runner.read_meta(args.resume)
        if meta.get("kind") != "behaviour":
            raise UsageError(f"{args.resume} is a {meta.get('kind')} run, not a behaviour run")
        run_dir = runner.run_cells(meta["cells"], args.resume, meta,
                                   progress=not args.no_progress,
                                   cell_timeout_s=args.cell_timeout)
    else:
        check_device(args.device)
        threads, threads_rule = resolve_threads(args.threads)
        probe_names = flat(args.probe)
        with usage_errors():
            for name in probe_names or ():
                edge_cases.get(name)  # ValueError for an unknown probe
            impls = xent_impls.select(patterns=flat(args.impl), frameworks=flat(args.framework),
                                      forms=flat(args.form))
        cells = behaviour.build_cells(impls, probe_names, args.device,
                                      semantics=not args.no_semantics)
        if not cells:
            raise UsageError("the selection matches no cell (check --impl, --probe, --device)")
        if args.device == "cuda":
            require_device(args.device, sorted({c["framework"] for c in cells}))
        meta = runner.new_meta(
            "behaviour", device=args.device, threads=threads, allocator="default", budget_s=0.0,
            min_rounds=0, max_rounds=0, preset="behaviour", cells=cells,
            notes=xent_impls.skipped_notes(), threads_rule=threads_rule)
        run_dir = args.results / meta["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        runner.write_meta(run_dir, meta)
        print(f"run folder: {run_dir} ({len(cells)} cells)", file=sys.stderr)
        for note in meta["notes"]:
            print(f"note: {note}", file=sys.stderr)
        run_dir = runner.run_cells(cells, run_dir, meta, progress=not args.no_progress,
                                   cell_timeout_s=args.cell_timeout)
    if not args.no_report:
        written = report_module("run_report").write_reports(run_dir)
        print(f"report: {written['markdown']}", file=sys.stderr)
        if written.get("behaviour"):
            print(f"behaviour matrix: {written['behaviour']}", file=sys.stderr)
    return 0
