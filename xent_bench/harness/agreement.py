"""Numerical agreement with the float64 oracle, and the verdicts drawn from it.

Errors are measured on the exact inputs an implementation received (rounded to the case dtype)
against ``xent_impls.reference`` in float64.

Loss: ``loss_err_eps = max_i |a_i - r_i| / (eps * s_i)`` with ``s_i = max(1, max_j |x_ij|)``.
Any floating-point implementation forms ``x - max`` or ``log-sum-exp`` in the working dtype, so
its rounding error is proportional to the row's largest logit magnitude, not to the loss
itself (a loss near zero is a difference of two large numbers). Dividing by ``eps * s_i``
counts errors in units of the dtype's epsilon at the scale the computation works at.

Gradient of the mean loss: compared as ``N * grad`` (the per-example gradient
``softmax - target``, entries in [-1, 1] for one-hot targets), so
``grad_err_eps = max |N g - N g_ref| / eps`` does not depend on the batch size.

``*_max_rel`` is ``max |a - r| / max(|r|, REL_GUARD)``: relative error with a guard that keeps
entries near zero (confident losses, tiny probabilities) from dividing by zero.
"""

from __future__ import annotations

import numpy as np

from xent_impls.dtypes import eps
from xent_impls.reference import reference

REL_GUARD = 1e-3

# Largest accepted error, in units of the case dtype's epsilon (see module docstring). Native ops
# measured here stay within about 2 eps at float32 and 1 eps at 16 bits (output rounding); 16 eps
# leaves room for a different summation order without letting a real bug through (an unstable
# formula misses by orders of magnitude, or returns inf/NaN).
TOLERANCE_EPS: dict[str, dict[str, float]] = {
    "float64": {"loss": 16.0, "grad": 16.0},
    "float32": {"loss": 16.0, "grad": 16.0},
    "float16": {"loss": 16.0, "grad": 16.0},
    "bfloat16": {"loss": 16.0, "grad": 16.0},
}

# A low-precision result that misses the table passes as "as native" when its error is no more
# than this factor above the framework's own native op on the same case.
NATIVE_SLACK = 2.0
# Worst-first ranking of a cell's state: its verdict (below) when it ran, else its status.
SEVERITY = {"unchecked": 0, "pass": 1, "as-native": 2, "fail": 3, "nonfinite": 4, "error": 5,
            "oom": 6}
# Verdicts that say the implementation computed the wrong function.
FAILING = ("fail", "nonfinite")

NATIVE_VARIANT = {"numpy": "reference", "torch": "native", "jax": "optax", "tensorflow": "native"}


def native_id(framework: str, form: str) -> str:
    """Id of the framework's own op for ``form`` (the "no worse than native" bar)."""
    return f"{framework}/{NATIVE_VARIANT[framework]}/{form}"


def _errors(prefix: str, actual: np.ndarray, ref: np.ndarray, scale: np.ndarray, eps_: float):
    a = actual.astype(np.float64)
    finite = np.isfinite(a)
    nonfinite = int(a.size - finite.sum())
    diff = np.abs(a - ref)
    out = {f"{prefix}_nonfinite": nonfinite}
    if a.size == 0:
        return out | {f"{prefix}_max_abs": 0.0, f"{prefix}_max_rel": 0.0, f"{prefix}_err_eps": 0.0}
    if nonfinite:
        # Every error metric is infinite when any value is: never hide a NaN behind a max.
        return out | {f"{prefix}_max_abs": np.inf, f"{prefix}_max_rel": np.inf,
                      f"{prefix}_err_eps": np.inf}
    out[f"{prefix}_max_abs"] = float(diff.max())
    out[f"{prefix}_max_rel"] = float((diff / np.maximum(np.abs(ref), REL_GUARD)).max())
    out[f"{prefix}_err_eps"] = float((diff / (eps_ * scale)).max())
    return out


def agreement_metrics(logits: np.ndarray, loss, grad, ref_loss, ref_grad, dtype: str) -> dict:
    """Error metrics of ``(loss [N], grad [N, C])`` against the oracle's ``(ref_loss, ref_grad)``
    (``grad`` may be None for a forward-only result)."""
    e = eps(dtype)
    n = logits.shape[0]
    x = np.abs(logits.astype(np.float64))
    row_scale = np.maximum(1.0, x.max(axis=1) if x.size else np.ones(n))
    loss = _real(_shaped(np.asarray(loss), tuple(np.shape(ref_loss)), "loss"), "loss")
    metrics = _errors("loss", loss, ref_loss, row_scale, e)
    if grad is not None:
        grad = _real(_shaped(np.asarray(grad), tuple(np.shape(ref_grad)), "gradient"),
                     "gradient")
        metrics |= _errors("grad", grad * n, ref_grad * n, np.ones(1), e)
    return metrics


def _real(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` unless it is complex (its error would compare magnitudes and hide a wrong
    phase, and its loss is no loss): ``ValueError`` naming the dtype."""
    if np.iscomplexobj(array):
        raise ValueError(f"the implementation returned a complex {what} ({array.dtype}); a "
                         "cross-entropy is real")
    return array


# Rows of a timed cell whose output is checked against the float64 oracle (per-example losses
# are independent rows, so a prefix is a fair sample and keeps the oracle cheap at GPU sizes).
CHECK_ROWS = 256


def _shaped(array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``array`` if it has ``shape``; ``ValueError`` otherwise. The check compares a prefix of
    rows, so a result of the wrong shape (2N losses, say) would otherwise pass unseen."""
    if tuple(array.shape) != shape:
        raise ValueError(f"the implementation returned a {what} of shape {tuple(array.shape)}, "
                         f"expected {shape}")
    return array


def check_output(be, case, out, logits, targets, pass_: str) -> dict:
    """Agreement metrics of a timed step's own output (``be``: its backend) on the first
    ``CHECK_ROWS`` rows; ``logits``/``targets`` are those rows as NumPy arrays."""
    rows = min(case.n, CHECK_ROWS)
    ref_loss, ref_grad = reference(logits[:rows], targets[:rows], grad=True)
    if pass_ == "forward":
        loss = _shaped(be.to_numpy(out), (case.n,), "loss")[:rows]
        return agreement_metrics(logits[:rows], loss, None, ref_loss, ref_grad,
                                           case.dtype)
    loss = _shaped(be.to_numpy(out[0]), (case.n,), "loss")[:rows]
    grad = _shaped(be.to_numpy(out[1]), (case.n, case.c), "gradient")[:rows]
    # The step's gradient is of the mean over all N rows; the oracle's over `rows` rows.
    grad = grad.astype(np.float64) * (case.n / rows)
    return agreement_metrics(logits[:rows], loss, grad, ref_loss, ref_grad, case.dtype)


def verdict(metrics: dict, dtype: str, native: dict | None = None) -> str:
    """``pass``, ``as-native``, ``fail`` or ``nonfinite`` for one cell's metrics.

    ``native`` is the metrics dict of the framework's native op on the same case (or None).
    A forward-only cell has no gradient metrics and is judged on its loss alone.
    """
    quantities = [q for q in ("loss", "grad") if _present(metrics.get(f"{q}_err_eps"))]
    if not quantities:
        return "unchecked"
    if any(metrics.get(f"{q}_nonfinite", 0) for q in quantities):
        return "nonfinite"
    tol = TOLERANCE_EPS[dtype]
    if all(metrics[f"{q}_err_eps"] <= tol[q] for q in quantities):
        return "pass"
    if dtype in ("float16", "bfloat16") and native is not None:
        within = all(
            metrics[f"{q}_err_eps"]
            <= max(tol[q], NATIVE_SLACK * _or_inf(native.get(f"{q}_err_eps")))
            for q in quantities
        )
        if within:
            return "as-native"
    return "fail"


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _or_inf(value) -> float:
    return float(value) if _present(value) else np.inf
