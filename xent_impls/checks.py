"""Input validation in NumPy: the structural checks every call makes, and the *checked mode*.

Two levels:

- :func:`check_structure` (every :func:`xent_impls.evaluate` call): logits are a float ``[N, C]``
  array of a dtype the implementation supports; targets have the implementation's form
  (integer labels ``[N]``, or a ``[N, C]`` target matrix).
- :func:`check` (the checked mode: ``evaluate(..., checked=True)``, :func:`checked` for framework
  arrays, and every agreement cell): the structure, then the values. Labels lie in ``[0, C)``;
  target rows are finite, non-negative and sum to 1; logits are finite (``-inf`` is accepted as
  a mask with ``allow_masked=True``, but never on a target class or on a whole row); logits that
  look like probabilities are refused unless ``allow_probabilities=True``.

With ``allow_masked=True`` a one-hot input with ``-inf`` masks is valid, but one-hot ops that
compute ``-sum_j t_j log p_j`` (``F.cross_entropy`` with probability targets, optax, eager
``tf.nn``, Keras) evaluate ``0 * log 0 = 0 * -inf`` on the masked classes and return NaN for those
rows: mask with a large finite negative value there, or use the sparse form.

Every failure is a ``ValueError`` that names the offending value and its position, e.g.
``label 1000 is out of range [0, 1000) at row 3``. The frameworks disagree on exactly these
inputs (some raise, some return NaN or a wrong finite loss without a word, a compiled kernel can
abort the process): see ``xent-bench behaviour``.

Cost of the checked mode: a few passes over the logits in NumPy (finiteness, minimum, label
range, and for one-hot targets their row sums); about 0.1 s at 1024 x 32000 float32 on a 2-core
CPU, versus 15-100 ms for the cross-entropy itself. :func:`checked` also copies framework arrays
to host memory (a device-to-host copy on a GPU). Use it where correctness matters (agreement
runs, data pipelines under test), not inside a timed loop or a compiled function.
"""

from __future__ import annotations

import functools

import numpy as np

from xent_impls.dtypes import dtype_name
from xent_impls.registry import Impl, get
from xent_impls.vocabulary import FORMS

# Label dtypes that every implementation of a framework takes as framework arrays (what
# ``checked`` enforces; ``evaluate`` converts any integer labels itself). Measured by
# ``xent-bench behaviour``: F.cross_entropy takes int64 and uint8 but refuses int32, while
# gather-based PyTorch variants take int32 and int64 but refuse uint8, and torch.compile accepts
# int32 but refuses uint8; tf.nn takes int32 and int64 only; JAX takes any integer type (it has no
# int64 unless 64-bit mode is on: int64 NumPy labels arrive as int32, wrapping labels >= 2**31);
# NumPy takes any integer type.
FRAMEWORK_LABEL_DTYPES: dict[str, tuple[str, ...] | None] = {
    "numpy": None,
    "torch": ("int64",),
    "jax": None,
    "tensorflow": ("int32", "int64"),
}

# Largest |row sum - 1| accepted for a target row: float32/float64 soft labels sum to 1 within
# rounding; 16-bit ones (8 bits of mantissa for bfloat16) need more room.
ROW_SUM_TOL = {2: 2e-2, 4: 1e-3, 8: 1e-6}

IGNORE_INDEX_HINT = (" (-100 is PyTorch's default ignore_index; this API has no ignored labels: "
                     "drop those rows, or give them zero weight)")


def _resolve(impl_or_form):
    """``(impl or None, form, who)`` for an Impl, an implementation id or a form name."""
    if isinstance(impl_or_form, Impl):
        return impl_or_form, impl_or_form.form, impl_or_form.id
    if impl_or_form in FORMS:
        return None, impl_or_form, f"the {impl_or_form} form"
    if isinstance(impl_or_form, str):
        impl = get(impl_or_form)
        return impl, impl.form, impl.id
    raise ValueError(f"expected an Impl, an implementation id or a form ({', '.join(FORMS)}), "
                     f"got {impl_or_form!r}")


def _first(mask: np.ndarray) -> tuple:
    """Index of the first True entry of ``mask`` (row-major)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _fmt(value) -> str:
    if np.issubdtype(np.asarray(value).dtype, np.floating):
        return repr(float(value))
    return str(value.item() if hasattr(value, "item") else value)


# --------------------------------------------------------------------------------------------
# Structure (every evaluate call)


def check_structure(impl_or_form, logits: np.ndarray, targets: np.ndarray) -> None:
    """Raise ``ValueError`` when ``logits``/``targets`` do not fit the form and dtypes of an
    implementation (an :class:`~xent_impls.Impl`, an id, or just ``"sparse"``/``"onehot"``)."""
    impl, form, who = _resolve(impl_or_form)
    for what, value in (("logits", logits), ("targets", targets)):
        # np.asarray keeps a masked array's data and drops its mask: the masked entries would
        # take part as the numbers under the mask.
        if isinstance(value, np.ma.MaskedArray):
            raise ValueError(
                f"{what} is a numpy.ma.MaskedArray, whose mask no cross-entropy reads: pass a "
                "plain array (mask classes with -inf logits and allow_masked=True, or drop the "
                "rows)")
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.ndim != 2:
        hint = ""
        if logits.ndim > 2:
            flat_t = "-1" if form == "sparse" else f"-1, {logits.shape[-1]}"
            hint = (f": flatten the leading axes first, logits.reshape(-1, {logits.shape[-1]}) "
                    f"and targets.reshape({flat_t})")
        raise ValueError(f"logits must have shape [N, C], got shape {logits.shape}{hint}")
    name = dtype_name(logits.dtype)  # ValueError for a dtype that is not a known float type
    if impl is not None and name not in impl.dtypes:
        raise ValueError(
            f"{impl.id} does not support logits dtype {name}; supported: {', '.join(impl.dtypes)}"
        )
    n, c = logits.shape
    if form == "sparse":
        if np.issubdtype(targets.dtype, np.integer) and targets.shape == (n,):
            return
        raise ValueError(f"{who} takes integer labels of shape ({n},); got {targets.dtype} "
                         f"targets of shape {targets.shape}{_labels_hint(targets, n, c)}")
    if targets.shape != (n, c):
        raise ValueError(f"{who} takes a target matrix of shape ({n}, {c}); got shape "
                         f"{targets.shape}{_matrix_hint(targets, n, c)}")
    if targets.dtype.kind in "OSUMm":  # objects, strings, dates (bfloat16 is kind "V")
        raise ValueError(f"{who} takes a numeric target matrix; got {targets.dtype} targets")
    if targets.dtype.kind == "c":  # a cast to real would drop the imaginary part silently
        raise ValueError(f"{who} takes a real target matrix; got {targets.dtype} targets")


def _batch_hint(rows: int, n: int, what: str) -> str:
    noun = what if rows != 1 else what[:-1]
    hint = f": batch size mismatch, {rows} {noun} for {n} rows of logits"
    if rows == 1 and n != 1:
        hint += " (a batch of 1 is not broadcast)"
    return hint


def _labels_hint(targets: np.ndarray, n: int, c: int) -> str:
    shape, integer = targets.shape, np.issubdtype(targets.dtype, np.integer)
    if targets.ndim == 2 and shape[0] == n and shape[1] == 1:
        return ": squeeze the last axis (labels[:, 0])"
    if targets.ndim == 2 and shape == (n, c) and not integer:
        return (": that is a target matrix; use the one-hot form, or labels = "
                "targets.argmax(axis=1)")
    if targets.ndim == 1 and shape[0] != n:
        return _batch_hint(shape[0], n, "labels")
    if targets.ndim == 1 and targets.dtype == np.bool_:
        return ": boolean labels; cast them to an integer dtype"
    if targets.ndim == 1 and np.issubdtype(targets.dtype, np.floating) and targets.size:
        frac = ~np.isfinite(targets) | (targets != np.round(targets))
        if frac.any():
            i = int(np.argmax(frac))
            return f": non-integral float label {_fmt(targets[i])} at row {i}"
        return (f": float labels (e.g. {_fmt(targets[0])} at row 0); cast them to an integer "
                f"dtype, e.g. labels.astype(np.int64)")
    return ""


def _matrix_hint(targets: np.ndarray, n: int, c: int) -> str:
    if targets.ndim == 1 and targets.shape[0] == n:
        return (": these look like labels [N]; use a sparse implementation, or one-hot encode "
                "them")
    if targets.ndim == 2 and targets.shape[1] == c and targets.shape[0] != n:
        return _batch_hint(targets.shape[0], n, "target rows")
    if targets.ndim == 3 and targets.shape[1:] == (n, c):
        return ""
    if targets.ndim == 2 and targets.shape[0] == n:
        return f": {targets.shape[1]} target columns for {c} classes"
    return ""


# --------------------------------------------------------------------------------------------
# Values (the checked mode)


def label_range_error(labels: np.ndarray, c: int) -> str | None:
    """The message for the first label outside ``[0, c)``, or None when all are inside."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return None
    bad = (labels < 0) | (labels >= c)
    if not bad.any():
        return None
    (i,) = _first(bad)
    value = int(labels[i])
    count = int(bad.sum())
    more = f"; {count} labels are out of range in all" if count > 1 else ""
    hint = IGNORE_INDEX_HINT if value == -100 else ""
    return f"label {value} is out of range [0, {c}) at row {i}{hint}{more}"


def _check_labels(labels: np.ndarray, c: int, label_dtypes, framework: str | None) -> None:
    if label_dtypes is not None and labels.dtype.name not in label_dtypes:
        raise ValueError(
            f"label dtype {labels.dtype.name} is not accepted by {framework or 'this framework'}'s "
            f"cross-entropy; use {' or '.join(label_dtypes)}")
    message = label_range_error(labels, c)
    if message:
        raise ValueError(message)


def _check_target_rows(targets: np.ndarray) -> None:
    t = targets if targets.dtype.itemsize >= 4 and np.issubdtype(targets.dtype, np.floating) \
        else targets.astype(np.float32)
    finite = np.isfinite(t)
    if not finite.all():
        i, j = _first(~finite)
        raise ValueError(f"targets[{i}, {j}] is {_fmt(t[i, j])}: target weights must be finite")
    negative = t < 0
    if negative.any():
        i, j = _first(negative)
        raise ValueError(f"targets[{i}, {j}] is {_fmt(t[i, j])}: target weights must be "
                         f"non-negative")
    if t.size == 0:
        return
    sums = t.sum(axis=1, dtype=np.float64)
    tol = ROW_SUM_TOL.get(np.dtype(targets.dtype).itemsize, 1e-3)
    off = np.abs(sums - 1.0) > tol
    if not off.any():
        return
    (i,) = _first(off)
    row = t[i]
    hot = int(np.count_nonzero(row))
    message = f"target row {i} sums to {sums[i]:.6g}, not 1"
    if sums[i] == 0:
        message += (": an all-zero row contributes nothing to the loss but still counts in the "
                    "mean; drop the row instead")
    elif hot > 1 and np.all(row[row != 0] == 1):
        message += (f": a multi-hot row ({hot} classes at 1). Softmax cross-entropy spreads one "
                    f"unit of probability over them (at best 1/{hot} each); for multi-label "
                    f"targets use a binary (sigmoid) cross-entropy, or divide the row by its sum")
    else:
        message += "; divide each row by its sum"
    raise ValueError(message)


def _as_float(logits: np.ndarray) -> np.ndarray:
    return logits if logits.dtype.itemsize >= 4 else logits.astype(np.float32)


def _check_logit_values(x: np.ndarray, targets: np.ndarray, form: str,
                        allow_masked: bool) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    nan = np.isnan(x)
    if nan.any():
        i, j = _first(nan)
        raise ValueError(f"logits[{i}, {j}] is nan: logits must be finite")
    pos = np.isposinf(x)
    if pos.any():
        i, j = _first(pos)
        raise ValueError(f"logits[{i}, {j}] is +inf: logits must be finite (an infinite logit "
                         f"makes the loss NaN)")
    neg = np.isneginf(x)
    if not allow_masked:
        i, j = _first(neg)
        raise ValueError(f"logits[{i}, {j}] is -inf: logits must be finite; pass "
                         f"allow_masked=True to use -inf as a mask")
    whole = neg.all(axis=1)
    if whole.any():
        (i,) = _first(whole)
        raise ValueError(f"row {i} of logits is -inf in every class: no class is left to "
                         f"predict (the loss is NaN)")
    if form == "sparse":
        rows = np.arange(x.shape[0])
        on_target = neg[rows, targets]
        if on_target.any():
            (i,) = _first(on_target)
            raise ValueError(f"logits[{i}, {int(targets[i])}] is -inf at the target class of row "
                             f"{i} (label {int(targets[i])}): the loss is infinite")
    else:
        on_target = neg & (targets != 0)
        if on_target.any():
            i, j = _first(on_target)
            raise ValueError(f"logits[{i}, {j}] is -inf but row {i} puts target weight "
                             f"{_fmt(targets[i, j])} on class {j}: the loss is infinite")


def _check_not_probabilities(x: np.ndarray) -> None:
    n, c = x.shape
    if n == 0 or c < 2 or x.min() < 0 or x.max() > 1:
        return
    sums = x.sum(axis=1, dtype=np.float64)
    if np.all(np.abs(sums - 1.0) <= 1e-3):
        raise ValueError(
            f"logits look like probabilities: every row is in [0, 1] and sums to 1 (row 0 sums "
            f"to {sums[0]:.6g}); pass the scores before softmax, or allow_probabilities=True if "
            f"these really are logits")


def check(impl_or_form, logits, targets, *, allow_masked: bool = False,
          allow_probabilities: bool = False, label_dtypes: tuple[str, ...] | None = None,
          framework: str | None = None) -> None:
    """Validate one cross-entropy input in NumPy; raise ``ValueError`` naming the offending value
    and its position.

    Args:
      impl_or_form: an :class:`~xent_impls.Impl`, an implementation id, or ``"sparse"`` /
        ``"onehot"``.
      logits: ``[N, C]`` float array.
      targets: integer labels ``[N]`` (sparse) or a ``[N, C]`` target matrix (one-hot).
      allow_masked: accept ``-inf`` logits as masked classes (never on a target class, never a
        whole row).
      allow_probabilities: accept logits whose rows all lie in [0, 1] and sum to 1 (by default
        they are taken for probabilities passed by mistake).
      label_dtypes: if given, the label dtype names accepted (for framework arrays).
      framework: named in the label dtype message.
    """
    impl, form, _ = _resolve(impl_or_form)
    check_structure(impl_or_form, logits, targets)  # before np.asarray drops a mask
    logits, targets = np.asarray(logits), np.asarray(targets)
    n, c = logits.shape
    if form == "sparse":
        _check_labels(targets, c, label_dtypes, framework or (impl.framework if impl else None))
    else:
        _check_target_rows(targets)
    x = _as_float(logits)
    _check_logit_values(x, targets, form, allow_masked)
    if not allow_probabilities:
        _check_not_probabilities(x)


def checked(impl_id: str, *, allow_masked: bool = False, allow_probabilities: bool = False):
    """``impl.fn`` with the checked mode in front, for the framework's own arrays.

    The returned ``fn(logits, targets)`` copies both arrays to NumPy (the backend's
    ``to_numpy``: a device-to-host copy on a GPU), validates them with :func:`check` (including
    the label dtypes the framework's op accepts, see ``FRAMEWORK_LABEL_DTYPES``), and then calls
    the implementation on the original arrays. Call it eagerly, outside ``jax.jit``,
    ``tf.function`` or ``torch.compile`` (a traced array has no values to check).

        >>> safe = xent_impls.checked("torch/native/sparse")
        >>> safe(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
        Traceback (most recent call last):
        ValueError: label 3 is out of range [0, 3) at row 3
    """
    impl = get(impl_id)
    be = impl.backend
    label_dtypes = FRAMEWORK_LABEL_DTYPES.get(impl.framework) if impl.form == "sparse" else None

    @functools.wraps(impl.fn)
    def fn(logits, targets):
        x, t = be.to_numpy(logits), be.to_numpy(targets)
        check(impl, x, t, allow_masked=allow_masked, allow_probabilities=allow_probabilities,
              label_dtypes=label_dtypes, framework=impl.framework)
        if impl.form == "onehot" and x.dtype != t.dtype:
            raise ValueError(f"{impl.id} takes a target matrix of the logits dtype "
                             f"({dtype_name(x.dtype)}); got {t.dtype} targets")
        return impl.fn(logits, targets)

    fn.checks = f"checked({impl_id!r})"
    return fn
