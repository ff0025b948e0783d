"""NumPy arrays to PyTorch tensors and back, bit for bit. Imports torch only (not
``torch._dynamo``, which the backend module configures and which costs seconds per process), so
the vocabulary-parallel ranks use it too."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch


def to_framework(array: np.ndarray, device: str, keep_dtype: bool = False) -> torch.Tensor:
    """``array`` on ``device``, bit for bit (bfloat16 travels as its raw 16-bit words). On CPU
    the tensor shares the array's memory; a read-only array is copied first, since PyTorch
    tensors are always writable. Integer labels become int64 (what ``F.cross_entropy`` takes)
    unless ``keep_dtype`` (the behaviour probes hand over uint8 or int32 labels as they are)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    if array.dtype == np.dtype(ml_dtypes.bfloat16):
        tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    elif np.issubdtype(array.dtype, np.integer) and not keep_dtype:
        tensor = torch.from_numpy(array.astype(np.int64, copy=False))
    else:
        tensor = torch.from_numpy(array)
    return tensor.to(device)


def to_numpy(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return x.numpy()
