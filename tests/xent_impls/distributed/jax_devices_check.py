"""JAX vocabulary-parallel check at one world size (run by test_jax_vocab_parallel.py in a fresh
process, since ``--xla_force_host_platform_device_count`` must be set before JAX is imported).

Usage: ``python jax_devices_check.py WORLD OUT.json``. Writes, per case, the errors against the
float64 oracle, the largest difference between the devices' copies of the loss, and the
collectives of the compiled forward and forward+backward steps.
"""

from __future__ import annotations

import json
import os
import sys

WORLD = int(sys.argv[1])
os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={WORLD} "
                           + os.environ.get("XLA_FLAGS", ""))

import numpy as np  # noqa: E402

import xent_impls  # noqa: E402
from xent_bench.harness.agreement import agreement_metrics  # noqa: E402
from xent_impls.distributed import jax_vocab_parallel as jv  # noqa: E402

# 37 splits unevenly over 2 and 4 devices; 3 over 4 leaves one device an empty block.
CASES = [(16, 37, "float32", 10.0, "sparse"), (16, 37, "float32", 10.0, "onehot"),
         (16, 3, "float32", 1.0, "sparse"), (8, 37, "bfloat16", 10.0, "sparse")]


def main() -> int:
    mesh = jv.make_mesh(WORLD)
    results = []
    for n, c, dtype, scale, form in CASES:
        logits, targets = xent_impls.make_inputs(xent_impls.Case(n, c, dtype, scale), form)
        x, t = jv.shard_inputs(mesh, logits, targets)
        # Compile each step once and run the compiled executable: the HLO checked is the one run.
        fwd = jv.make_step(mesh, c, form, False).lower(x, t).compile()
        fb = jv.make_step(mesh, c, form, True).lower(x, t).compile()
        loss, dx = fb(x, t)
        copies = [np.asarray(s.data) for s in loss.addressable_shards]
        grad = jv.from_blocks(np.asarray(dx), c, WORLD)
        ref_loss, ref_grad = xent_impls.reference(logits, targets, grad=True)
        m = agreement_metrics(logits, copies[0], grad, ref_loss, ref_grad, dtype)
        fwd_loss = np.asarray(fwd(x, t))
        results.append({
            "case": f"{n}x{c}/{dtype}/{form}", "loss_err_eps": m["loss_err_eps"],
            "grad_err_eps": m["grad_err_eps"], "devices": len(copies),
            "spread": max(float(np.abs(a - copies[0]).max()) for a in copies),
            "forward_matches": bool(np.array_equal(fwd_loss, copies[0])),
            "grad_dtype": str(np.asarray(dx).dtype),
            "forward_collectives": jv.hlo_collectives(fwd.as_text()),
            "backward_collectives": jv.hlo_collectives(fb.as_text()),
        })
    with open(sys.argv[2], "w") as fh:
        json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
