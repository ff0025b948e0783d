"""``xent-bench distributed``: vocabulary-parallel cross-entropy over 1, 2, 4 ranks (the launches
and cells: ``xent_bench/harness/distributed.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import xent_impls
from xent_bench.commands.options import (
    UsageError,
    add_run_folder_options,
    csv,
    flat,
    parse_sizes,
    positive_float,
    report_module,
    usage_errors,
)
from xent_bench.harness import distributed, runner
from xent_impls.vocabulary import FORMS, PASSES


def add_parsers(sub) -> None:
    p = sub.add_parser("distributed", help="vocabulary-parallel cross-entropy over 1, 2, 4 "
                                           "ranks: time, memory per rank, modelled "
                                           "communication, agreement")
    p.add_argument("--framework", action="append", type=csv, default=[],
                   help=f"torch, jax and/or tensorflow (default: "
                        f"{','.join(distributed.DEFAULT_FRAMEWORKS)})")
    p.add_argument("--world", action="append", type=csv, default=[],
                   help=f"ranks to split the classes over (default: "
                        f"{','.join(map(str, distributed.DEFAULT_WORLDS))})")
    p.add_argument("--size", action="append", type=csv, default=[],
                   help="NxC (default: "
                        + ",".join(f"{n}x{c}" for n, c in distributed.DEFAULT_SIZES) + ")")
    p.add_argument("--dtype", action="append", type=csv, default=[],
                   help="float32 (default), bfloat16, float16; float64 for torch only")
    p.add_argument("--form", action="append", type=csv, default=[],
                   help="sparse (default) and/or onehot")
    p.add_argument("--pass", dest="passes", action="append", type=csv, default=[],
                   help="forward and/or forward_backward (default: both)")
    p.add_argument("--budget", type=positive_float, default=distributed.DEFAULT_BUDGET_S,
                   help="seconds of timed rounds per cell (default: "
                        f"{distributed.DEFAULT_BUDGET_S:g})")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per rank (default: 1)")
    p.add_argument("--allocator", default=distributed.DEFAULT_ALLOCATOR,
                   help=f"CPU allocator setting: {', '.join(distributed.ALLOCATORS)} (default: "
                        f"{distributed.DEFAULT_ALLOCATOR}: blocks of 1 MiB or more are mapped and "
                        f"returned "
                        f"on free, so resident memory follows live memory)")
    p.add_argument("--cell-timeout", type=positive_float, default=distributed.CELL_TIMEOUT_S,
                   help="seconds before a hung launch is killed (default: "
                        f"{distributed.CELL_TIMEOUT_S:g})")
    add_run_folder_options(p)
    p.add_argument("--out", dest="results", type=Path, help="same as --results")
    p.set_defaults(func=command)


def _worlds(values: list[str]) -> list[int]:
    worlds = []
    for v in values:
        if not v.isdigit() or int(v) < 1:
            raise UsageError(f"malformed world size {v!r}: expected a positive integer such as 2")
        worlds.append(int(v))
    return worlds


def command(args) -> int:
    """``xent-bench distributed``: build the cells, run them, write ``distributed.md``."""
    if args.resume is not None:
        with usage_errors():
            meta = runner.read_meta(args.resume)
        if meta.get("kind") != "distributed":
            raise UsageError(f"{args.resume} is a {meta.get('kind')} run, not a distributed run")
        timeout_s = meta.get("cell_timeout_s", args.cell_timeout)
        run_dir = distributed.run_distributed(args.resume, meta["cells"], timeout_s,
                                              progress=not args.no_progress)
    else:
        frameworks = flat(args.framework) or list(distributed.DEFAULT_FRAMEWORKS)
        for fw in frameworks:
            if fw not in distributed.FRAMEWORKS:
                raise UsageError(f"unknown framework {fw!r} for distributed cells; known: "
                                 f"{', '.join(distributed.FRAMEWORKS)}")
            with usage_errors():
                xent_impls.registry.require_framework(fw)  # names the missing module
        for name, value, low in (("--budget", args.budget, 0.0),
                                 ("--cell-timeout", args.cell_timeout, 0.0)):
            if not value > low:
                raise UsageError(f"{name} must be positive, got {value:g}")
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        if args.allocator not in distributed.ALLOCATORS:
            raise UsageError(f"unknown allocator {args.allocator!r}; known: "
                             f"{', '.join(distributed.ALLOCATORS)}")
        for form in flat(args.form) or ():
            if form not in FORMS:
                raise UsageError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
        with usage_errors():
            cells = distributed.build_cells(
                frameworks=frameworks,
                worlds=_worlds(flat(args.world) or []) or list(distributed.DEFAULT_WORLDS),
                sizes=parse_sizes(args.size) or list(distributed.DEFAULT_SIZES),
                dtypes=flat(args.dtype) or ["float32"], forms=flat(args.form) or ["sparse"],
                passes=flat(args.passes) or list(PASSES))
        meta = distributed.new_meta(cells, threads=args.threads, allocator=args.allocator,
                                    budget_s=args.budget, timeout_s=args.cell_timeout)
        run_dir = args.results / meta["run_id"]
        print(f"run folder: {run_dir} ({len(cells)} cells)", file=sys.stderr)
        run_dir = distributed.run_distributed(run_dir, cells, args.cell_timeout, meta=meta,
                                              progress=not args.no_progress)
    if not args.no_report:
        write_report = report_module("distributed_report").write_report
        print(f"report: {write_report(run_dir)}", file=sys.stderr)
    return 0
