"""What the stall filter does to one small op, quiet and with one core kept busy.

    python benchmarks/stall_filter.py [--rounds 1500]

Times ``F.cross_entropy`` on 256 x 1000 float32 logits at 1 and 2 threads, each in a fresh
process, once on a quiet machine and once while a spinning process (started and stopped here)
holds the first core, and prints per setting: the median and p99 of every round, the share of
rounds the filter flags (``xent_bench/harness/stalls.py``), and the median and p99 of the clean
rounds. Needs PyTorch and Linux (schedstat). Not a test: it measures the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from xent_bench.commands.stability import SPINNER

MEASURE = """
import json, sys
import numpy as np, torch, torch.nn.functional as F
from xent_bench.harness.stalls import StallProbe, is_contaminated
from xent_bench.harness.timing import perf_counter_rounds
threads, rounds = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
x, y = torch.randn(256, 1000), torch.randint(0, 1000, (256,))
def call():
    F.cross_entropy(x, y)
for _ in range(50):
    call()
probe = StallProbe()
r = perf_counter_rounds(call, rounds, probe)
t = np.array(r.times_s)
clean = np.array([not is_contaminated(s, e) for s, e in zip(r.stats, r.times_s)])
kept = t[clean] if clean.any() else t
print(json.dumps({"median_ms": 1e3 * np.median(t), "p99_ms": 1e3 * np.percentile(t, 99),
                  "flagged": 1 - clean.mean(), "clean_median_ms": 1e3 * np.median(kept),
                  "clean_p99_ms": 1e3 * np.percentile(kept, 99)}))
"""


def measure(threads: int, rounds: int) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(threads), str(rounds)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1500)
    args = parser.parse_args()
    print("| load | threads | median ms | p99 ms | flagged | clean median ms | clean p99 ms |")
    print("|:---|---:|---:|---:|---:|---:|---:|")
    for load in ("quiet", "one core busy"):
        spinner = subprocess.Popen([sys.executable, "-c", SPINNER]) if load != "quiet" else None
        try:
            for threads in (1, 2):
                m = measure(threads, args.rounds)
                print(f"| {load} | {threads} | {m['median_ms']:.3f} | {m['p99_ms']:.3f} | "
                      f"{100 * m['flagged']:.0f}% | {m['clean_median_ms']:.3f} | "
                      f"{m['clean_p99_ms']:.3f} |", flush=True)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
