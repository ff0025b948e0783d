"""Import TensorFlow so that a later Triton import still works.

TensorFlow and Triton each bundle their own LLVM. Loading Triton's after TensorFlow's aborts the
whole process ("LLVM ERROR: inconsistency in registered CommandLine options"): that is what
happens when a process that already uses TensorFlow first calls ``torch.compile``, since Dynamo
imports Triton. Loading Triton first works, so where Triton is installed it is imported before
TensorFlow. Every module of this package imports TensorFlow through here.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401  (its LLVM must load before TensorFlow's)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]
