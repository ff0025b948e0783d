"""Floating-point dtypes that cases can use, by name.

NumPy has no bfloat16; ``ml_dtypes`` provides one that JAX and TensorFlow accept directly
and that PyTorch receives as raw 16-bit words (see ``backends/torch.py``).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from xent_impls.names import unknown_name

DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype for a dtype name such as ``"bfloat16"``."""
    try:
        return DTYPES[name]
    except KeyError:
        raise unknown_name("dtype", name, DTYPES) from None


def dtype_name(dtype: np.dtype | type) -> str:
    """The name under which ``dtype`` is listed in ``DTYPES``."""
    dtype = np.dtype(dtype)
    for name, known in DTYPES.items():
        if known == dtype:
            return name
    raise ValueError(f"unsupported logits dtype {dtype}; supported: {', '.join(DTYPES)}")


def eps(name: str) -> float:
    """Machine epsilon (spacing of numbers at 1.0) of a dtype name."""
    return float(ml_dtypes.finfo(numpy_dtype(name)).eps)
