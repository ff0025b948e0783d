"""Integer labels handed to a framework that indexes with int32 (JAX with 64-bit types off,
TensorFlow's sparse cross-entropy)."""

from __future__ import annotations

import numpy as np


def as_int32(labels: np.ndarray, indexer: str) -> np.ndarray:
    """``labels`` as int32; ``ValueError`` naming the first label int32 cannot hold.

    A plain cast would wrap such a label to another class (2**32 + 1 becomes 1) and the loss
    would be silently wrong; ``indexer`` names who indexes with int32, for the message."""
    info = np.iinfo(np.int32)
    if labels.size and (labels.min() < info.min or labels.max() > info.max):
        bad = labels[(labels < info.min) | (labels > info.max)].flat[0]
        raise ValueError(f"label {int(bad)} does not fit in int32, which {indexer} indexes "
                         "with")
    return labels.astype(np.int32)
