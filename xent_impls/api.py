"""The framework-neutral Python API: NumPy in, NumPy out."""

from __future__ import annotations

import numpy as np

from xent_impls.checks import check, check_structure
from xent_impls.registry import Impl, get


def to_framework_inputs(impl: Impl, logits: np.ndarray, targets: np.ndarray, device: str):
    """Framework arrays for ``impl`` on ``device``; a one-hot target matrix takes the logits
    dtype (so a framework sees one dtype, as its native op requires)."""
    be = impl.backend
    if impl.form == "onehot":
        targets = targets.astype(logits.dtype, copy=False)
    return be.to_framework(logits, device), be.to_framework(targets, device)


def evaluate(impl_id: str, logits, targets, grad: bool = False, device: str = "cpu", *,
             checked: bool = False, allow_masked: bool = False,
             allow_probabilities: bool = False):
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
      checked: validate the values first (labels in ``[0, C)``, finite logits, target rows that
        sum to 1, logits that are not probabilities; see ``xent_impls.checks.check``) and raise a
        ``ValueError`` naming the offending value and position, instead of handing the framework
        an input on which it may raise, return NaN or a wrong loss, or abort.
      allow_masked: with ``checked``, accept ``-inf`` logits as masked classes (not on a target
        class, not a whole row).
      allow_probabilities: with ``checked``, accept logits whose rows look like probabilities.

    Returns:
      per-example loss ``[N]``, or ``(loss [N], grad [N, C])``, as NumPy arrays in the dtype the
      framework produced.
    """
    impl = get(impl_id)
    # Checked on the arrays as given: np.asarray would drop a masked array's mask.
    if checked:
        check(impl, logits, targets, allow_masked=allow_masked,
              allow_probabilities=allow_probabilities)
    else:
        check_structure(impl, logits, targets)
    logits, targets = np.asarray(logits), np.asarray(targets)
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
