"""Test-only implementations for the comparison tests, loaded through
``XENT_IMPLS_PLUGINS=compare_impls``.

NumPy implementations (``fn(logits, targets, grad=False)``, see numpy_backend) on top of the
float64 oracle whose behaviour is set by environment variables read at every call, so that two
real runs of the same code can differ in a controlled way:

- ``numpy/sleepy/sparse`` sleeps ``XENT_TEST_SLEEP_S`` seconds (default 0) per call: a known
  slowdown of a known size;
- ``numpy/perturbed/sparse`` multiplies the loss by ``1 + XENT_TEST_PERTURB`` (default 0): a known
  accuracy regression (a relative error far above the tolerance table at any perturbation of
  1e-3 or more).
"""

from __future__ import annotations

import os
import time

from xent_impls.reference import reference
from xent_impls.registry import Impl

SLEEP_ENV = "XENT_TEST_SLEEP_S"
PERTURB_ENV = "XENT_TEST_PERTURB"


def _env_float(name: str) -> float:
    return float(os.environ.get(name) or 0.0)


def sleepy(logits, targets, grad=False):
    """The oracle, after sleeping ``XENT_TEST_SLEEP_S`` seconds."""
    pause = _env_float(SLEEP_ENV)
    if pause > 0:
        time.sleep(pause)
    return reference(logits, targets, grad=grad)


def perturbed(logits, targets, grad=False):
    """The oracle with its loss scaled by ``1 + XENT_TEST_PERTURB`` (the gradient untouched)."""
    factor = 1.0 + _env_float(PERTURB_ENV)
    if grad:
        loss, gradient = reference(logits, targets, grad=True)
        return loss * factor, gradient
    return reference(logits, targets) * factor


def _impl(variant: str) -> Impl:
    return Impl(id=f"numpy/{variant}/sparse", framework="numpy", form="sparse", variant=variant,
                compiled=False, dtypes=("float32", "bfloat16", "float16", "float64"),
                devices=("cpu",), description=f"test-only: {variant} oracle",
                entry=f"compare_impls:{variant}")


IMPLS = (_impl("sleepy"), _impl("perturbed"))
