"""The edge-case catalogue: bad and unusual inputs, as data.

Each :class:`Probe` makes, for a form (``sparse`` or ``onehot``), the exact NumPy arrays a
framework is handed (odd dtypes and shapes included: uint8 labels stay uint8, labels of shape
``[N, 1]`` keep their extra axis), and says

- whether the input is *bad* (the checked mode, ``xent_impls.check``, must refuse it with a
  ``ValueError``), and whether it is acceptable once ``-inf`` masking is requested;
- what the *right answer* is where one is defined (``oracle``): the float64 reference of the
  input, or of what the caller evidently meant (labels of shape ``[N, 1]`` squeezed, a ``-100``
  label ignored as PyTorch's ``ignore_index`` does, logits rather than the probabilities passed
  by mistake). ``None`` means no answer is defined (an out-of-range label, a NaN logit): any
  value returned without an error is then a silent wrong answer.

``xent-bench behaviour`` runs every probe against every implementation in worker processes and
reports what each framework does (``xent_bench/harness/behaviour.py``); the checked-mode tests
run every bad probe through ``evaluate(..., checked=True)``.

All probes use float32 logits of 8 x 5 (seeded) unless the probe is about the shape, so that
compiled variants compile few shapes; the crash probe uses a batch of 256, large enough for a
compiled PyTorch kernel to run its rows in parallel (where an out-of-range label aborts the
process instead of raising).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from xent_impls.inputs import one_hot
from xent_impls.reference import reference

N, C = 8, 5
LABELS = np.array([0, 1, 2, 3, 4, 0, 1, 2], dtype=np.int64)
ROW = 3  # the row a single-row probe spoils
CRASH_N = 256


def base_logits(n: int = N, c: int = C, seed: int = 0) -> np.ndarray:
    """Seeded float32 logits N(0, 2^2) of shape ``[n, c]``."""
    rng = np.random.default_rng([seed, n, c, 7])
    return (rng.standard_normal((n, c), dtype=np.float32) * np.float32(2.0))


def base_labels(n: int = N, c: int = C) -> np.ndarray:
    return (np.arange(n, dtype=np.int64) % c).astype(np.int64)


def _targets(form: str, labels: np.ndarray, c: int = C, dtype=np.float32) -> np.ndarray:
    return labels if form == "sparse" else one_hot(labels, c, np.dtype(dtype))


def _default(form: str):
    return base_logits(), _targets(form, base_labels())


Inputs = tuple[np.ndarray, np.ndarray]
Oracle = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Probe:
    """One edge case.

    Attributes:
      name: short id, e.g. ``label-eq-C``.
      description: one line for reports.
      forms: the forms it applies to.
      make: ``form -> (logits, targets)``, the exact arrays handed to the framework.
      bad: the checked mode must refuse it, even with ``allow_masked=True``.
      masked: the input uses ``-inf`` logits; a masked probe that is not ``bad`` is refused by
        the checked mode only without ``allow_masked=True``.
      meant: ``form -> (logits, targets)`` whose float64 reference is the right answer (the
        input itself for a valid probe), or None when no answer is defined.
      meaning: what the right answer is, for the report (e.g. "the row is ignored").
      shape: the shape of the per-example loss the right answer has (None: ``[N]``).
      may_abort: known to kill some processes (run last in a worker).
    """

    name: str
    description: str
    forms: tuple[str, ...]
    make: Callable[[str], Inputs]
    bad: bool
    meant: Callable[[str], Inputs] | None = None
    meaning: str = ""
    masked: bool = False
    shape: tuple[int, ...] | None = None
    may_abort: bool = False

    def applies(self, form: str) -> bool:
        return form in self.forms

    @property
    def defined(self) -> bool:
        return self.meant is not None

    def oracle(self, form: str) -> Oracle | None:
        """``(loss, grad of the mean loss)`` in float64, shaped like the input, or None."""
        if self.meant is None:
            return None
        logits, targets = self.make(form)
        ml, mt = self.meant(form)
        loss, grad = reference(ml.reshape(-1, ml.shape[-1]),
                               mt.reshape(-1) if mt.dtype.kind in "iu" else
                               mt.reshape(-1, ml.shape[-1]), grad=True)
        loss_shape = self.shape or (logits.shape[:-1] if logits.ndim >= 2 else (loss.size,))
        return loss.reshape(loss_shape), grad.reshape(logits.shape)

    def nominal(self, form: str) -> tuple[int, int]:
        """``(rows, classes)`` of the probe's logits (rows of all leading axes together)."""
        logits, _ = self.make(form)
        c = logits.shape[-1] if logits.ndim else 1
        return int(np.prod(logits.shape[:-1])) if logits.ndim >= 1 else 0, int(c)


BOTH = ("sparse", "onehot")
SPARSE = ("sparse",)
ONEHOT = ("onehot",)


def _labels_probe(value: int, dtype=np.int64, n: int = N):
    def make(form):
        labels = base_labels(n).astype(dtype)
        labels[ROW] = value
        return base_logits(n), labels
    return make


def _label_dtype(dtype):
    def make(form):
        return base_logits(), base_labels().astype(dtype)
    return make


def _ignored(form):
    """-100 at ROW read as PyTorch's ignore_index: a zero target row (loss 0, no gradient)."""
    logits, _ = _default(form)
    targets = one_hot(base_labels(), C, np.dtype(np.float64))
    targets[ROW] = 0.0
    return logits, targets


def _batch(rows: int):
    def make(form):
        return base_logits(), _targets(form, base_labels(rows))
    return make


def _logit_at(value: float, where: str):
    def make(form):
        logits, targets = _default(form)
        y = base_labels()
        if where == "cell":
            logits[ROW, (y[ROW] + 1) % C] = value
        elif where == "mask":  # two non-target classes in three rows
            for i in (1, ROW, 6):
                logits[i, (y[i] + 1) % C] = value
                logits[i, (y[i] + 2) % C] = value
        elif where == "target":
            logits[ROW, y[ROW]] = value
        elif where == "row":
            logits[ROW, :] = value
        return logits, targets
    return make


def _huge(form):
    logits, targets = _default(form)
    return logits * np.float32(1e29), targets


def _empty(form):
    return base_logits(0), _targets(form, base_labels(0))


def _one_class(form):
    return base_logits(N, 1), _targets(form, np.zeros(N, np.int64), c=1)


def _extra_axis(form):
    b, t = 2, 4
    logits = base_logits().reshape(b, t, C)
    labels = base_labels().reshape(b, t)
    return logits, (labels if form == "sparse" else one_hot(labels.ravel(), C, np.dtype(
        np.float32)).reshape(b, t, C))


def _row_sums(form):
    logits, targets = _default(form)
    targets[1] = 0.0                       # an all-zero row
    targets[ROW] *= 0.5                    # a row summing to 0.5
    targets[6] *= 2.0                      # a row summing to 2
    return logits, targets


def _multi_hot(form):
    logits, targets = _default(form)
    for i, extra in ((0, (2,)), (ROW, (0, 1)), (5, (4,))):  # y[i] stays at 1 too
        targets[i, list(extra)] = 1.0
    return logits, targets


def _soft(form):
    logits, _ = _default(form)
    rng = np.random.default_rng(11)
    raw = rng.random((N, C)).astype(np.float64) ** 3
    targets = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    return logits, targets


def _probabilities(form):
    logits, targets = _default(form)
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32), targets


def _as_int(form):
    return base_logits(), base_labels()


def _flat(form):
    logits, targets = _extra_axis(form)
    return logits.reshape(-1, C), targets.reshape(-1) if form == "sparse" else \
        targets.reshape(-1, C)


PROBES: tuple[Probe, ...] = (
    Probe("baseline", "valid input: int64 labels / float32 one-hot rows, 8 x 5", BOTH, _default,
          bad=False, meant=_default),
    # --- labels -------------------------------------------------------------------------------
    Probe("label-eq-C", "one label equal to C (= 5)", SPARSE, _labels_probe(C), bad=True),
    Probe("label-far-above-C", "one label far above C (1000000)", SPARSE,
          _labels_probe(1_000_000), bad=True),
    Probe("label-wraps-int32", "one int64 label of 2**32 + 1 (1 once truncated to 32 bits)",
          SPARSE, _labels_probe(2**32 + 1), bad=True),
    Probe("label-negative", "one label of -1", SPARSE, _labels_probe(-1), bad=True),
    Probe("label-minus-100", "one label of -100 (PyTorch's default ignore_index)", SPARSE,
          _labels_probe(-100), bad=True, meant=_ignored,
          meaning="the row is ignored: loss 0 and no gradient (PyTorch's ignore_index)"),
    Probe("label-eq-C-batch-256", f"one label equal to C in a batch of {CRASH_N} (large enough "
          f"for a compiled kernel to run rows in parallel)", SPARSE,
          _labels_probe(C, n=CRASH_N), bad=True, may_abort=True),
    Probe("float-labels", "float32 labels with whole values", SPARSE,
          _label_dtype(np.float32), bad=True, meant=_as_int,
          meaning="the same labels as integers"),
    Probe("int32-labels", "int32 labels", SPARSE, _label_dtype(np.int32), bad=False,
          meant=_as_int),
    Probe("uint8-labels", "uint8 labels", SPARSE, _label_dtype(np.uint8), bad=False,
          meant=_as_int),
    Probe("labels-N-by-1", "labels of shape [N, 1]", SPARSE,
          lambda form: (base_logits(), base_labels()[:, None]), bad=True, meant=_as_int,
          meaning="the labels squeezed to [N]"),
    # --- batch size ---------------------------------------------------------------------------
    Probe("batch-mismatch", "targets for 6 rows, logits for 8", BOTH, _batch(6), bad=True),
    Probe("batch-of-1-targets", "targets for 1 row, logits for 8 (broadcastable)", BOTH,
          _batch(1), bad=True),
    # --- logits -------------------------------------------------------------------------------
    Probe("nan-logit", "one NaN logit (row 3, not the target class)", BOTH,
          _logit_at(np.nan, "cell"), bad=True),
    Probe("posinf-logit", "one +inf logit (row 3, not the target class)", BOTH,
          _logit_at(np.inf, "cell"), bad=True),
    Probe("neginf-mask", "-inf masking two non-target classes in three rows", BOTH,
          _logit_at(-np.inf, "mask"), bad=False, masked=True, meant=_logit_at(-np.inf, "mask"),
          meaning="masked classes take no probability"),
    Probe("neginf-on-target", "-inf on the target class of row 3", BOTH,
          _logit_at(-np.inf, "target"), bad=True, masked=True,
          meant=_logit_at(-np.inf, "target"),
          meaning="an infinite loss for row 3, a finite gradient (softmax - target)"),
    Probe("neginf-whole-row", "-inf in every class of row 3", BOTH, _logit_at(-np.inf, "row"),
          bad=True, masked=True),
    Probe("huge-logits", "finite logits up to about 1e30", BOTH, _huge, bad=False, meant=_huge),
    # --- shapes -------------------------------------------------------------------------------
    Probe("empty-batch", "N = 0 (logits 0 x 5)", BOTH, _empty, bad=False, meant=_empty,
          meaning="an empty loss and an empty gradient"),
    Probe("one-class", "C = 1 (every loss is 0)", BOTH, _one_class, bad=False, meant=_one_class),
    Probe("extra-axis", "logits [B, T, C] = [2, 4, 5] with targets [B, T] / [B, T, C]", BOTH,
          _extra_axis, bad=True, meant=_flat, shape=(2, 4),
          meaning="per-position losses [B, T], as if flattened to [B*T, C]"),
    # --- target rows (one-hot form) -------------------------------------------------------------
    Probe("onehot-rows-not-1", "target rows summing to 0, 0.5 and 2", ONEHOT, _row_sums,
          bad=True, meant=_row_sums, meaning="the linear formula -sum_j t_j log p_j"),
    Probe("multi-hot", "multi-hot rows (2 or 3 classes at 1)", ONEHOT, _multi_hot, bad=True,
          meant=_multi_hot, meaning="the linear formula -sum_j t_j log p_j"),
    Probe("soft-labels", "soft labels (rows of a probability distribution)", ONEHOT, _soft,
          bad=False, meant=_soft),
    # --- probabilities ------------------------------------------------------------------------
    Probe("probabilities-as-logits", "softmax probabilities passed where logits are expected",
          BOTH, _probabilities, bad=True, meant=_default,
          meaning="the cross-entropy of the logits the probabilities came from"),
)

_BY_NAME = {p.name: p for p in PROBES}


def get(name: str) -> Probe:
    if name not in _BY_NAME:
        raise ValueError(f"unknown probe {name!r}; known: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def probes(names=None, form: str | None = None) -> list[Probe]:
    """Probes by name (all when ``names`` is None), optionally only those for ``form``."""
    chosen = list(PROBES) if not names else [get(n) for n in names]
    return [p for p in chosen if form is None or p.applies(form)]
