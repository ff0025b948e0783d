"""The words of the suite, spelled once: frameworks, forms, passes, devices, dtypes in report
order, and the kinds and statuses of the harness's records. Every module that validates or
orders one of these imports it from here."""

from __future__ import annotations

# Frameworks in report order: the float64 NumPy oracle first, then the three measured ones.
FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow")
MEASURED_FRAMEWORKS = ("torch", "jax", "tensorflow")
# "sparse": integer class labels [N]; "onehot": a target matrix [N, C] (one-hot or soft).
FORMS = ("sparse", "onehot")
FORM_NAMES = {"sparse": "sparse", "onehot": "one-hot"}
# "forward": the per-example loss; "forward_backward": the mean loss and its gradient.
PASSES = ("forward", "forward_backward")
DEVICES = ("cpu", "cuda")
DTYPE_ORDER = ("float64", "float32", "bfloat16", "float16")
LOW_PRECISION = ("float16", "bfloat16")
# What a cell measures: error against the oracle, time, behaviour under one bad input, or one
# framework's options side by side.
KINDS = ("agreement", "timing", "behaviour", "semantics")
# How a cell ended: measured, failed (an exception or a dead worker), or out of memory.
STATUSES = ("ok", "error", "oom")
