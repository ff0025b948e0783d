"""One rank of the torch vocabulary-parallel check (run by test_torch_vocab_parallel.py).

Four processes join one gloo group; sub-groups of the first 1, 2 and 4 ranks then each compute
the loss and gradient of several cases (uneven splits, an empty shard, both forms, float32 and
bfloat16). Rank 0 gathers every rank's loss and gradient block and writes, per case and world,
the errors against the float64 oracle and the largest difference between the ranks' losses to
the JSON file named on the command line.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import xent_impls
from xent_bench.harness.agreement import agreement_metrics
from xent_impls.distributed import shard_bounds
from xent_impls.distributed.torch_vocab_parallel import vocab_parallel_cross_entropy

CASES = [  # (n, c, dtype, scale): 37 splits unevenly over 2 and 4; 3 over 4 leaves one empty
    (16, 37, "float32", 10.0),
    (16, 3, "float32", 1.0),
    (8, 37, "bfloat16", 10.0),
]


def to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == xent_impls.numpy_dtype("bfloat16"):
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    if np.issubdtype(array.dtype, np.integer):
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(array))


def run_case(group, world: int, rank: int, n, c, dtype, scale, form):
    case = xent_impls.Case(n, c, dtype, scale)
    logits, targets = xent_impls.make_inputs(case, form)
    start, stop = shard_bounds(c, world, rank)
    x = to_tensor(logits[:, start:stop]).requires_grad_(True)
    t = to_tensor(targets if form == "sparse" else targets[:, start:stop])
    loss = vocab_parallel_cross_entropy(x, t, vocab_start=start, group=group, vocab_size=c)
    loss.mean().backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == x.dtype
    pieces = [None] * world
    dist.all_gather_object(pieces, (loss.detach().numpy(), x.grad.float().numpy()), group=group)
    if rank != 0:
        return None
    losses = [p[0] for p in pieces]
    grad = np.concatenate([p[1] for p in pieces], axis=1)
    ref_loss, ref_grad = xent_impls.reference(logits, targets, grad=True)
    metrics = agreement_metrics(logits, losses[0], grad, ref_loss, ref_grad, dtype)
    spread = max(float(np.abs(a - losses[0]).max()) for a in losses)
    return {"world": world, "case": f"{n}x{c}/{dtype}/{form}", "loss_err_eps":
            metrics["loss_err_eps"], "grad_err_eps": metrics["grad_err_eps"], "spread": spread}


def main() -> int:
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=120))
    results = []
    for world in (1, 2, 4):
        group = dist.new_group(list(range(world)))  # every rank takes part in creating it
        if rank < world:
            for n, c, dtype, scale in CASES:
                for form in ("sparse", "onehot"):
                    out = run_case(group, world, rank, n, c, dtype, scale, form)
                    if out is not None:
                        results.append(out)
        dist.barrier()
    if rank == 0:
        with open(sys.argv[1], "w") as fh:
            json.dump(results, fh)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
