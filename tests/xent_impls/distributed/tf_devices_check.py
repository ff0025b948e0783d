"""TensorFlow (DTensor) vocabulary-parallel check (run by test_tf_vocab_parallel.py in a fresh
process: logical devices are fixed when TensorFlow's runtime starts).

Usage: ``python tf_devices_check.py WORLD OUT.json`` with ``TF_DUMP_GRAPH_PREFIX`` set. Splits
the CPU into WORLD logical devices and checks meshes of 1 and WORLD devices: errors against the
float64 oracle, agreement of the devices' copies of the loss, and the collectives DTensor put
into the expanded graph of the forward+backward step.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import xent_impls  # noqa: E402
from xent_bench.harness.agreement import agreement_metrics  # noqa: E402
from xent_impls.distributed import tf_vocab_parallel as tv  # noqa: E402

CASES = [(16, 37, "float32", 10.0, "sparse"), (16, 37, "float32", 10.0, "onehot"),
         (8, 37, "bfloat16", 10.0, "sparse")]


def main() -> int:
    world = int(sys.argv[1])
    tv.configure_devices(world)
    results = []
    for mesh_world in sorted({1, world}):
        mesh = tv.make_mesh(mesh_world)
        for n, c, dtype, scale, form in CASES:
            logits, targets = xent_impls.make_inputs(xent_impls.Case(n, c, dtype, scale), form)
            inputs = tv.shard_inputs(mesh, logits, targets)
            loss, grad, spread = tv.to_numpy(tv.make_step(form, True)(*inputs), c, mesh_world)
            ref_loss, ref_grad = xent_impls.reference(logits, targets, grad=True)
            m = agreement_metrics(logits, loss, grad, ref_loss, ref_grad, dtype)
            fwd, _, _ = tv.to_numpy(tv.make_step(form, False)(*inputs), c, mesh_world)
            results.append({"world": mesh_world, "case": f"{n}x{c}/{dtype}/{form}",
                            "loss_err_eps": m["loss_err_eps"], "grad_err_eps": m["grad_err_eps"],
                            "spread": spread, "grad_dtype": str(grad.dtype),
                            "forward_matches": bool(np.allclose(fwd, loss, rtol=0, atol=0))})
    dump = os.environ["TF_DUMP_GRAPH_PREFIX"]
    collectives = tv.graph_collectives(dump, "step")
    with open(sys.argv[2], "w") as fh:
        json.dump({"cases": results, "collectives": collectives}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
