"""Test-only implementations, loaded through ``XENT_IMPLS_PLUGINS=fault_impls``.

NumPy implementations (``fn(logits, targets, grad=False)``, see numpy_backend) that misbehave
on purpose: abort the process (always, or on an out-of-range label), raise, run out of memory, or
run slowly so that a test can kill a run mid-way.
"""

from __future__ import annotations

import os
import sys
import time

from xent_impls.reference import reference
from xent_impls.registry import Impl


def abort(logits, targets, grad=False):
    os.abort()


def fail(logits, targets, grad=False):
    raise RuntimeError("deliberate failure for a test")


def out_of_memory(logits, targets, grad=False):
    raise MemoryError("Unable to allocate 8.00 TiB for an array")


def abort_on_bad_label(logits, targets, grad=False):
    """Like a compiled kernel with a bounds check in a parallel region: an out-of-range label
    kills the process instead of raising."""
    import numpy as np

    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer) and targets.size and (
            targets.min() < 0 or targets.max() >= logits.shape[-1]):
        os.abort()
    return reference(logits, targets, grad=grad)


def exit_cleanly(logits, targets, grad=False):
    """Ends the worker with status 0 in the middle of a cell, as ``sys.exit(0)`` in a library
    would."""
    sys.stdout.flush()
    os._exit(0)


def print_protocol(logits, targets, grad=False):
    """Prints what looks like a protocol line of the worker, then computes the oracle."""
    print("START 999", flush=True)
    print("FINISHED", flush=True)
    return reference(logits, targets, grad=grad)


def doubled_rows(logits, targets, grad=False):
    """The right losses, twice over: 2N of them for N rows."""
    import numpy as np

    out = reference(logits, targets, grad=grad)
    if grad:
        loss, dlogits = out
        return np.concatenate([loss, loss]), dlogits
    return np.concatenate([out, out])


def slow(logits, targets, grad=False):
    time.sleep(0.2)
    return reference(logits, targets, grad=grad)


def _impl(variant: str, entry: str) -> Impl:
    return Impl(id=f"numpy/{variant}/sparse", framework="numpy", form="sparse", variant=variant,
                compiled=False, dtypes=("float32", "bfloat16", "float16", "float64"),
                devices=("cpu",), description=f"test-only: {variant}",
                entry=f"fault_impls:{entry}")


IMPLS = (_impl("abort", "abort"), _impl("fail", "fail"), _impl("oom", "out_of_memory"),
         _impl("slow", "slow"), _impl("abort-on-bad-label", "abort_on_bad_label"),
         _impl("exit0", "exit_cleanly"), _impl("chatty", "print_protocol"),
         _impl("doubled", "doubled_rows"))
