"""The float64 oracle: per-example cross-entropy and the analytic gradient of its mean.

For logits ``x [N, C]`` and a target distribution ``t [N, C]`` (one-hot rows for integer labels)

    loss_i = sum_j t_ij * (lse(x_i) - x_ij) = (sum_j t_ij) * lse(x_i) - sum_j t_ij * x_ij
    d mean(loss) / d x_ij = ((sum_k t_ik) * softmax(x_i)_j - t_ij) / N

``lse`` is computed stably as ``m + log(sum(exp(x - m)))`` with ``m`` the row maximum, in
float64 from the exact values the implementations receive. A class whose logit is ``-inf`` and
whose target weight is 0 contributes nothing (``0 * -inf`` is taken as 0, the limit).
"""

from __future__ import annotations

import numpy as np

from xent_impls.checks import label_range_error


def _as_target_matrix(targets: np.ndarray, n: int, c: int) -> np.ndarray:
    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        if targets.shape != (n,):
            raise ValueError(f"integer labels must have shape ({n},), got {targets.shape}")
        message = label_range_error(targets, c)
        if message:
            raise ValueError(message)
        matrix = np.zeros((n, c), dtype=np.float64)
        matrix[np.arange(n), targets] = 1.0
        return matrix
    if targets.shape != (n, c):
        raise ValueError(f"target matrix must have shape ({n}, {c}), got {targets.shape}")
    return targets.astype(np.float64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 ``[N, C]``."""
    x = np.asarray(logits).astype(np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    # A row without a finite maximum (all -inf, or +inf/NaN present) has no defined
    # log-softmax: shifting by 0 instead lets it come out NaN without a floating-point warning.
    m = np.where(np.isfinite(m), m, 0.0)
    shifted = x - m
    with np.errstate(divide="ignore", invalid="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def reference(logits: np.ndarray, targets: np.ndarray, grad: bool = False):
    """Float64 cross-entropy of ``logits [N, C]`` against ``targets``.

    Args:
      logits: ``[N, C]`` array of any float dtype (including ml_dtypes' bfloat16).
      targets: integer labels ``[N]`` or a target matrix ``[N, C]`` (one-hot, soft or multi-hot).
      grad: also return the gradient of the mean loss with respect to the logits.

    Returns:
      per-example loss ``[N]`` float64, or ``(loss [N], grad [N, C])`` in float64.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {logits.shape}")
    n, c = logits.shape
    t = _as_target_matrix(targets, n, c)
    logp = log_softmax(logits)
    # Mask logp, not the product: t * logp would evaluate 0 * -inf (NaN and a RuntimeWarning)
    # for a -inf masked class before np.where discards it.
    loss = -np.sum(t * np.where(t != 0, logp, 0.0), axis=-1)
    if not grad:
        return loss
    softmax = np.exp(logp)
    g = (np.sum(t, axis=-1, keepdims=True) * softmax - t) / max(n, 1)
    return loss, g
