"""How many repeats a cell's median needs on this machine, from one run with many repeats.

    xent-bench run --preset stability --repeats 6 --results results/repeats
    python benchmarks/repeats_needed.py results/repeats/<run id> [--tolerance 0.10]

Splits the run's repeats (each measured through fresh worker processes) into two disjoint sets
of ``k`` repeats, pools each set's clean rounds per cell as a run of ``k`` repeats would
(``xent_bench.analysis.run.figure_times``), and prints, for each ``k`` up to half the repeats,
the share of cells whose two medians agree within the tolerance, averaged over random splits
(seeded). Two runs of ``k`` repeats each should agree about that often. Not a test: it
measures the machine the run was made on.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from xent_bench.analysis.run import figure_times
from xent_bench.harness.cells import cell_key
from xent_bench.harness.records import load_records

SPLITS = 200
SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="relative difference of two medians that counts as agreeing")
    args = parser.parse_args(argv)
    by_cell: dict[str, dict[int, np.ndarray]] = {}
    for rec in load_records(args.run_dir):
        if rec.status != "ok" or rec.cell.get("kind") != "timing":
            continue
        times = figure_times(rec)
        if times:
            key = cell_key({k: v for k, v in rec.cell.items() if k != "repeat"})
            by_cell.setdefault(key, {})[int(rec.cell.get("repeat") or 0)] = np.asarray(times)
    repeats = sorted({r for reps in by_cell.values() for r in reps})
    if len(repeats) < 2:
        print(f"error: {args.run_dir} has {len(repeats)} repeat(s); at least 2 are needed",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(SEED)
    print(f"{len(by_cell)} cells, {len(repeats)} repeats; two disjoint sets of k repeats each")
    print(f"| k | cells within {args.tolerance:.0%} (mean over {SPLITS} splits) |")
    print("|---:|---:|")
    for k in range(1, len(repeats) // 2 + 1):
        shares = []
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
        print(f"| {k} | {np.mean(shares):.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
