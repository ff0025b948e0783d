"""The floor model (docs/method.md, "Floor model") and the machine ceilings it divides by.

``L = N * C * itemsize`` of the logits. Bytes: a forward reads ``L``; a fused forward+backward
reads ``L`` and writes the gradient, ``2L``; the one-hot form also reads the target matrix,
``+L``. Exponentials: one per logit. A cell's floor is the larger of bytes / bandwidth
(read-only bandwidth for forward, copy bandwidth for forward+backward) and exponentials / exp
throughput. "% of limit" = floor / median time.

The ceilings are measured in the same run on the same device: every framework worker times a
copy, a read-only reduction and a vectorised exp over an array far larger than the caches (and,
on CPU, exp over a cache-resident block), and the run keeps the best of each (the fastest the
machine was seen to go), so no implementation can honestly exceed 100% of its floor.
"""

from __future__ import annotations

from xent_bench.harness.timing import time_step
from xent_impls.dtypes import numpy_dtype

# Elements in the ceiling arrays: 32 Mi float32 = 128 MiB per array on CPU (4x a 32 MiB L3),
# 1 Gi elements = 4 GiB on a GPU (far beyond a 50-60 MB L2).
CEILING_NUMEL = {"cpu": 32 * 2**20, "cuda": 2**30}


def modelled_cost(n: int, c: int, dtype: str, form: str, pass_: str) -> dict:
    """Modelled bytes and exponentials of one cell."""
    logits_bytes = n * c * numpy_dtype(dtype).itemsize
    bytes_ = logits_bytes * (1 if pass_ == "forward" else 2)
    if form == "onehot":
        bytes_ += logits_bytes
    return {"logits_bytes": float(logits_bytes), "model_bytes": float(bytes_),
            "model_exps": float(n * c)}


def floor_metrics(cost: dict, pass_: str, ceilings: dict, median_s: float) -> dict:
    """Floor, GB/s and % of limit of a cell from its modelled cost and the run's ceilings."""
    bw = ceilings["read_GBps"] if pass_ == "forward" else ceilings["copy_GBps"]
    mem_s = cost["model_bytes"] / (bw * 1e9)
    exp_s = cost["model_exps"] / (ceilings["exp_Gps"] * 1e9)
    floor_s = max(mem_s, exp_s)
    return {
        "floor_s": floor_s,
        "floor_bound": 1.0 if exp_s > mem_s else 0.0,  # 1: exp throughput binds, 0: memory
        "GBps": cost["model_bytes"] / median_s / 1e9,
        "pct_of_limit": 100.0 * floor_s / median_s,
        "calls_per_s": 1.0 / median_s,
    }


# Exp throughput is measured the way a cross-entropy kernel uses exp: on cache-resident blocks
# (1 MiB of float32, called CACHED_REPEATS times per round, so no memory traffic limits it), as
# a plain exp, as exp fused with a row reduction (log-sum-exp), and as the framework's own
# cross-entropy (which evaluates one exp per logit); over a DRAM-sized array
# too. The ceiling is the fastest of them all: an implementation cannot evaluate exponentials
# faster than the machine can, so a floor built on a slower method would not be a floor (a plain
# exp over an array measured 1.7-3.4 G/s here while F.cross_entropy evaluates about 4.3 G/s).
CACHED_NUMEL = 2**18
CACHED_BLOCKS = ((64, 4096),)  # rows x columns: 1 MiB
CACHED_REPEATS = 16
# In a fresh process the first second of exp ran up to 2x slower than later ones (thread pools
# and clocks settling): cache-resident methods are measured CACHED_PASSES times, the best kept.
CACHED_PASSES = 2
CEILING_BUDGET_S = 0.1


def _best_round(op, sync, budget_s: float, repeats: int = 1, min_rounds: int = 5) -> float:
    def run():
        out = None
        for _ in range(repeats):
            out = op()
        return out

    timing = time_step(lambda: run(), [()], sync, budget_s=budget_s, min_rounds=min_rounds,
                       max_rounds=1000)
    return min(timing.clean_times_s or timing.times_s) / repeats


def measure_ceilings(backend, device: str, budget_s: float = CEILING_BUDGET_S) -> dict:
    """Copy and read-only bandwidth (GB/s) and exp throughput (G exp/s) of ``backend``'s own
    ops on ``device``. Uses the best clean round: a ceiling is what the machine can do.

    Returns the ceilings (``copy_GBps``, ``read_GBps``, ``exp_Gps``), the rate of every exp
    method (``exp_<method>_Gps``) and ``exp_method``: the method that set ``exp_Gps``."""
    out = {}
    exp_rates = {}
    if device == "cpu":
        # Measured first, before the DRAM-sized arrays exist (afterwards it was seen to run at
        # half speed).
        cached = {"cached": (backend.ceiling_ops(device, CACHED_NUMEL)["exp"], CACHED_NUMEL)}
        for rows, cols in CACHED_BLOCKS:
            for name, op in backend.exp_ceiling_ops(device, rows, cols).items():
                cached[f"{name}_{cols}"] = (op, rows * cols)
        for name, (op, exps) in cached.items():
            best_s = min(_best_round(op, backend.sync, budget_s / 2, CACHED_REPEATS,
                                     min_rounds=5) for _ in range(CACHED_PASSES))
            exp_rates[name] = exps / best_s / 1e9
        del cached
    numel = CEILING_NUMEL["cuda" if device == "cuda" else "cpu"]
    ops = backend.ceiling_ops(device, numel)
    if device == "cpu":
        # Over a DRAM-sized array exp also allocates and faults in its output: on CPU it was
        # slower than every cache-resident method for every framework here, so it is not timed.
        ops.pop("exp")
    best = {name: _best_round(op, backend.sync, budget_s, min_rounds=3) for name, op in ops.items()}
    del ops
    itemsize = 4
    out |= {
        "copy_GBps": 2 * numel * itemsize / best["copy"] / 1e9,
        "read_GBps": numel * itemsize / best["read"] / 1e9,
    }
    if "exp" in best:
        exp_rates["dram"] = numel / best["exp"] / 1e9
    out |= {f"exp_{name}_Gps": rate for name, rate in exp_rates.items()}
    method = max(exp_rates, key=exp_rates.get)
    out["exp_Gps"] = exp_rates[method]
    out["exp_method"] = method
    return out


def best_ceilings(per_framework: dict[str, dict]) -> dict:
    """The run-wide ceilings: the best of every framework's measurement, with who set each."""
    out = {}
    for key in ("copy_GBps", "read_GBps", "exp_Gps"):
        fw, vals = max(per_framework.items(), key=lambda kv: kv[1][key])
        out[key] = vals[key]
        out[f"{key}_by"] = fw
        if key == "exp_Gps" and "exp_method" in vals:
            out["exp_Gps_by"] = f"{fw} ({vals['exp_method']})"
    return out
