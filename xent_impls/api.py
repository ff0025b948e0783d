"""The framework-neutral Python API: NumPy in, NumPy out."""

from __future__ import annotations

import numpy as np

from xent_impls.dtypes import dtype_name
from xent_impls.registry import Impl, get


def check_inputs(impl: Impl, logits: np.ndarray, targets: np.ndarray) -> None:
    """Raise ``ValueError`` when ``logits``/``targets`` do not fit ``impl``'s form and dtypes."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {logits.shape}")
    name = dtype_name(logits.dtype)
    if name not in impl.dtypes:
        raise ValueError(
            f"{impl.id} does not support logits dtype {name}; supported: {', '.join(impl.dtypes)}"
        )
    n, c = logits.shape
    if impl.form == "sparse":
        if not np.issubdtype(targets.dtype, np.integer) or targets.shape != (n,):
            raise ValueError(
                f"{impl.id} takes integer labels of shape ({n},); got {targets.dtype} targets "
                f"of shape {targets.shape}"
            )
    elif targets.shape != (n, c):
        raise ValueError(
            f"{impl.id} takes a target matrix of shape ({n}, {c}); got shape {targets.shape}"
        )


def to_framework_inputs(impl: Impl, logits: np.ndarray, targets: np.ndarray, device: str):
    """Framework arrays for ``impl`` on ``device``; a one-hot target matrix takes the logits
    dtype (so a framework sees one dtype, as its native op requires)."""
    be = impl.backend
    if impl.form == "onehot":
        targets = targets.astype(logits.dtype, copy=False)
    return be.to_framework(logits, device), be.to_framework(targets, device)


def evaluate(impl_id: str, logits, targets, grad: bool = False, device: str = "cpu"):
    """Run implementation ``impl_id`` on NumPy inputs and return NumPy results.

    Args:
      impl_id: a registered id, e.g. ``"jax/optax/sparse"`` (see ``xent_impls.available()``).
      logits: ``[N, C]`` float array (float64, float32, float16 or ml_dtypes.bfloat16); the
        computation runs in this dtype where the implementation supports it.
      targets: integer labels ``[N]`` for a sparse implementation; a ``[N, C]`` target matrix for
        a one-hot one.
      grad: also return the gradient of the mean loss with respect to the logits, computed by
        the framework's own autodiff.
      device: ``"cpu"`` or ``"cuda"``.

    Returns:
      per-example loss ``[N]``, or ``(loss [N], grad [N, C])``, as NumPy arrays in the dtype the
      framework produced.
    """
    impl = get(impl_id)
    logits, targets = np.asarray(logits), np.asarray(targets)
    check_inputs(impl, logits, targets)
    be = impl.backend
    if not be.has_device(device):
        raise ValueError(f"device {device!r} is not available to {impl.framework}")
    x, t = to_framework_inputs(impl, logits, targets, device)
    out = be.make_step(impl, grad, device)(x, t)
    be.sync(out)
    if grad:
        loss, dlogits = out
        return be.to_numpy(loss), be.to_numpy(dlogits)
    return be.to_numpy(out)
