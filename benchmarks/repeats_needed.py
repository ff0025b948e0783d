"""How many repeats a cell's median needs on this machine, from one run with many repeats.

    xent-bench run --preset stability --repeats 6 --results results/repeats
    python benchmarks/repeats_needed.py results/repeats/<run id> [--tolerance 0.10]

Splits the run's repeats (each measured through fresh worker processes) into two disjoint sets
of ``k`` repeats, pools each set's clean rounds per cell as a run of ``k`` repeats would
(``xent_bench.analysis.run.figure_times``), and prints, for each ``k`` up to half the repeats,
the share of cells whose two medians agree within the tolerance, averaged over random splits
(seeded), and the share of speedups over the native op (``--ratio-tolerance``) that agree: each
from the block-by-block ratios of the set's repeats pooled, as a run of ``k`` repeats takes it
(``xent_bench.analysis.run.paired_ratio``). Two runs of ``k`` repeats each should agree about
that often. Not a test: it measures the machine the run was made on.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from xent_bench.analysis.run import REPEAT_BLOCKS, block_medians, figure_times, paired_ratio
from xent_bench.harness.agreement import NATIVE_VARIANT, native_id
from xent_bench.harness.cells import cell_key
from xent_bench.harness.records import load_records

SPLITS = 200
SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="relative difference of two medians that counts as agreeing")
    parser.add_argument("--ratio-tolerance", type=float, default=0.05,
                        help="relative difference of two speedups vs native that counts as "
                             "agreeing")
    args = parser.parse_args(argv)
    by_cell: dict[str, dict[int, np.ndarray]] = {}
    blocks: dict[str, dict[int, dict[int, float]]] = {}  # cell -> repeat -> block medians
    native_of: dict[str, str] = {}  # cell -> its native op's cell, for the other variants
    for rec in load_records(args.run_dir):
        if rec.status != "ok" or rec.cell.get("kind") != "timing":
            continue
        times = figure_times(rec)
        cell = {k: v for k, v in rec.cell.items() if k != "repeat"}
        key, repeat = cell_key(cell), int(rec.cell.get("repeat") or 0)
        if times:
            by_cell.setdefault(key, {})[repeat] = np.asarray(times)
        medians = block_medians(rec)
        if medians:
            blocks.setdefault(key, {})[repeat] = medians
        framework = cell.get("framework")
        if framework in NATIVE_VARIANT and cell.get("variant") != NATIVE_VARIANT[framework]:
            native_of[key] = cell_key(cell | {"impl": native_id(framework, cell["form"])})
    repeats = sorted({r for reps in by_cell.values() for r in reps})
    if len(repeats) < 2:
        print(f"error: {args.run_dir} has {len(repeats)} repeat(s); at least 2 are needed",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(SEED)
    print(f"{len(by_cell)} cells, {len(repeats)} repeats; two disjoint sets of k repeats each")
    pairs = [(own, native) for own, native in native_of.items()
             if own in blocks and native in blocks]
    print(f"| k | cells within {args.tolerance:.0%} | speedups vs native within "
          f"{args.ratio_tolerance:.0%} ({len(pairs)}) |")
    print("|---:|---:|---:|")
    for k in range(1, len(repeats) // 2 + 1):
        shares, ratio_shares = [], []
        for _ in range(SPLITS):
            order = rng.permutation(repeats)
            a, b = order[:k], order[k:2 * k]
            agree = []
            for reps in by_cell.values():
                if not all(r in reps for r in (*a, *b)):
                    continue
                ma = np.median(np.concatenate([reps[r] for r in a]))
                mb = np.median(np.concatenate([reps[r] for r in b]))
                agree.append(max(ma, mb) / min(ma, mb) <= 1 + args.tolerance)
            if agree:
                shares.append(np.mean(agree))
            ratio_agree = []
            for own, native in pairs:
                sa, sb = _speedup(blocks, own, native, a), _speedup(blocks, own, native, b)
                if sa and sb:
                    ratio_agree.append(max(sa, sb) / min(sa, sb) <= 1 + args.ratio_tolerance)
            if ratio_agree:
                ratio_shares.append(np.mean(ratio_agree))
        ratio_text = f"{np.mean(ratio_shares):.0%}" if ratio_shares else "-"
        print(f"| {k} | {np.mean(shares):.0%} | {ratio_text} |")
    return 0


def _speedup(blocks: dict, own: str, native: str, repeats) -> float | None:
    """The speedup of ``own`` over ``native`` from the blocks of ``repeats`` pooled (block ids
    kept apart per repeat, as ``analysis.run.pool_repeats`` does)."""
    pooled = {}
    for cell, side in ((own, "own"), (native, "native")):
        pooled[side] = {r * REPEAT_BLOCKS + b: m for r in repeats
                        for b, m in blocks[cell].get(r, {}).items()}
    found = paired_ratio(pooled["native"], pooled["own"])
    return found[0] if found else None


if __name__ == "__main__":
    raise SystemExit(main())
