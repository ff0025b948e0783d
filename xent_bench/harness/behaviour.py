"""Behaviour under bad and edge-case input: the cells and the probe runner (the command is
``xent_bench/commands/behaviour.py``).

Every probe of the edge-case catalogue (``xent_impls.edge_cases``) runs against every
implementation as one ``behaviour`` cell, in the framework's worker process (the runner's
machinery: one process per framework, a record per cell written the moment it finishes). A
probe that kills its process (a compiled PyTorch kernel given an out-of-range label aborts with
SIGABRT once its rows run in parallel) becomes an error record saying so, and a fresh worker goes
on with the remaining cells; probes known to abort run last in their framework.

Each cell hands the framework the probe's arrays exactly (``keep_dtype``: uint8 labels stay
uint8, float labels stay float), runs forward and backward (the per-example loss and the gradient
of the mean loss, by the framework's own autodiff) and records the *behaviour*:

- ``value``, ``nan`` or ``inf`` (anything non-finite in the loss or the gradient), or
  ``exception`` with its type and the start of its message;
- where the probe defines a right answer, the loss and gradient error against the float64
  oracle in units of float32 eps (as in the agreement runs), and the *outcome*:

  ``ok`` (a valid input, the right answer), ``accepted`` (a bad input answered as the caller
  evidently meant, without a word), ``wrong`` (a finite or non-finite answer off the oracle),
  ``wrong-shape`` (an output of the wrong size), ``silent`` (no answer is defined but a value
  came back without an error), ``error`` (the framework raised).

One ``semantics`` cell per framework runs ``xent_bench/harness/semantics.py`` in the same
workers.
"""

from __future__ import annotations

import warnings

import numpy as np

import xent_impls
from xent_bench.harness import semantics as framework_semantics
from xent_bench.harness.agreement import TOLERANCE_EPS, native_id
from xent_bench.harness.cells import make_cell
from xent_bench.harness.messages import clean_message
from xent_impls import Case, edge_cases
from xent_impls.dtypes import eps

PROBE_DTYPE = "float32"
MESSAGE_CHARS = 300
# A compile can take a while on a small machine; a hang past this is recorded as one.
CELL_TIMEOUT_S = 300.0
SEMANTICS_CASE = Case(6, 5)


# --------------------------------------------------------------------------------------------
# Cells


def build_cells(impls, probe_names=None, device: str = "cpu", semantics: bool = True
                ) -> list[dict]:
    """One ``behaviour`` cell per (implementation, probe of its form), then one ``semantics``
    cell per framework. Probes that may abort a process come last in their framework."""
    cells = []
    for impl in impls:
        if not impl.runs_on(device, timed=False):
            continue
        for probe in edge_cases.probes(probe_names, impl.form):
            n, c = probe.nominal(impl.form)
            cells.append(make_cell("behaviour", impl, Case(n, c, PROBE_DTYPE), "forward_backward",
                                   device, probe.name))
    cells.sort(key=lambda cell: edge_cases.get(cell["probe"]).may_abort)  # stable
    if semantics:
        frameworks = list(dict.fromkeys(i.framework for i in impls))
        for fw in frameworks:
            if fw in framework_semantics.RUNNERS:
                impl = xent_impls.get(native_id(fw, "sparse"))
                cells.append(make_cell("semantics", impl, SEMANTICS_CASE, "forward", device,
                                       "semantics"))
    return cells


# --------------------------------------------------------------------------------------------
# One probe




def _message(exc: BaseException) -> str:
    return clean_message(f"{exc}")[:MESSAGE_CHARS]


def _nonfinite_counts(prefix: str, a: np.ndarray | None) -> dict:
    if a is None:
        return {}
    a = np.asarray(a, dtype=np.float64)
    return {f"{prefix}_nan": float(np.isnan(a).sum()),
            f"{prefix}_posinf": float(np.isposinf(a).sum()),
            f"{prefix}_neginf": float(np.isneginf(a).sum())}


def _row_scale(logits: np.ndarray) -> np.ndarray:
    x = np.abs(np.asarray(logits, dtype=np.float64))
    x = np.where(np.isfinite(x), x, 0.0)
    if x.size == 0:
        return np.ones(x.shape[:-1])
    return np.maximum(1.0, x.max(axis=-1))


def _compare(actual: np.ndarray, ref: np.ndarray, scale, eps_: float) -> tuple[float, int]:
    """(largest error in eps over positions finite in both, number of positions whose
    finiteness or non-finite value differs from the oracle's)."""
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    s = s if s.size == r.size else np.broadcast_to(s, r.shape)
    both = np.isfinite(a) & np.isfinite(r)
    same_special = (~np.isfinite(a) & ~np.isfinite(r)
                    & ((np.isnan(a) & np.isnan(r)) | (a == r)))
    mismatched = int((~both & ~same_special).sum())
    err = float((np.abs(a[both] - r[both]) / (eps_ * s[both])).max()) if both.any() else 0.0
    return err, mismatched


def classify(probe, form: str, logits: np.ndarray, loss, grad) -> tuple[dict, dict]:
    """Metrics and labels of one probe's result (``loss``, ``grad``: NumPy arrays or None)."""
    loss = None if loss is None else np.asarray(loss)
    grad = None if grad is None else np.asarray(grad)
    metrics = _nonfinite_counts("loss", loss) | _nonfinite_counts("grad", grad)
    labels = {"loss_shape": None if loss is None else str(tuple(loss.shape)),
              "grad_shape": "no gradient" if grad is None else str(tuple(grad.shape))}
    nan = metrics.get("loss_nan", 0) + metrics.get("grad_nan", 0)
    inf = sum(metrics.get(k, 0) for k in ("loss_posinf", "loss_neginf", "grad_posinf",
                                          "grad_neginf"))
    labels["behaviour"] = "nan" if nan else "inf" if inf else "value"
    oracle = probe.oracle(form)
    if oracle is None:
        labels["outcome"] = "silent"
        return metrics, labels
    ref_loss, ref_grad = oracle
    if loss is None or loss.size != ref_loss.size or grad is None or grad.size != ref_grad.size:
        labels["outcome"] = "wrong-shape"
        return metrics, labels
    e = eps(PROBE_DTYPE)
    rows = max(ref_loss.size, 1)
    loss_err, loss_bad = _compare(loss, ref_loss, _row_scale(logits).reshape(-1), e)
    grad_err, grad_bad = _compare(np.asarray(grad, np.float64) * rows, ref_grad * rows, 1.0, e)
    metrics |= {"loss_err_eps": loss_err, "grad_err_eps": grad_err,
                "loss_mismatched": float(loss_bad), "grad_mismatched": float(grad_bad)}
    tol = TOLERANCE_EPS[PROBE_DTYPE]
    right = (not loss_bad and not grad_bad and loss_err <= tol["loss"]
             and grad_err <= tol["grad"])
    labels["outcome"] = ("accepted" if probe.bad else "ok") if right else "wrong"
    if loss.shape != ref_loss.shape:
        labels["shape_note"] = f"loss shape {tuple(loss.shape)}"
    return metrics, labels


def run_probe(impl, probe, device: str = "cpu") -> tuple[dict, dict]:
    """Run ``probe`` on ``impl`` in this process: (metrics, labels)."""
    logits, targets = probe.make(impl.form)
    be = impl.backend
    labels = {"input": f"logits {tuple(logits.shape)} {logits.dtype}, targets "
                       f"{tuple(targets.shape)} {targets.dtype}",
              "defined": "yes" if probe.defined else "no", "bad": "yes" if probe.bad else "no"}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = be.to_framework(logits, device, keep_dtype=True)
            t = be.to_framework(targets, device, keep_dtype=True)
            out = be.make_step(impl, True, device)(x, t)
            be.sync(out)
            loss, grad = out
            loss = be.to_numpy(loss)
            grad = None if grad is None else be.to_numpy(grad)
        said = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
        if said:  # a framework that warns about the input has said something: keep it
            labels["warning"] = clean_message(
                f"{said[0].category.__name__}: {said[0].message}")[:MESSAGE_CHARS]
    except Exception as exc:  # noqa: BLE001 - how a framework refuses an input is the result
        # Recorded, not logged: the tail of workers.log is what explains a worker that dies.
        return {"raised": 1.0}, labels | {"behaviour": "exception", "outcome": "error",
                                          "exception": type(exc).__name__,
                                          "message": _message(exc)}
    metrics, found = classify(probe, impl.form, logits, loss, grad)
    return {"raised": 0.0} | metrics, labels | found


def measure_behaviour(impl, cell: dict, task: dict) -> tuple[dict, dict, dict]:
    """The worker's ``behaviour`` cell."""
    metrics, labels = run_probe(impl, edge_cases.get(cell["probe"]), cell["device"])
    return metrics, labels, {}


def measure_semantics(impl, cell: dict, task: dict) -> tuple[dict, dict, dict]:
    """The worker's ``semantics`` cell: every option of the framework (see semantics.py)."""
    entries = framework_semantics.run(impl.framework)
    metrics = {"entries": float(len(entries)),
               "entry_errors": float(sum(e["error"] is not None for e in entries))}
    return metrics, {}, {"semantics": entries}
