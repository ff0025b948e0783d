"""The checked mode: every bad input of the edge-case catalogue becomes a ValueError naming the
offending value and position, for every implementation; valid edge cases pass and are answered
right; the framework-array wrapper ``xent_impls.checked`` does the same on framework arrays."""

from __future__ import annotations

import numpy as np
import pytest

import xent_impls
from xent_impls import checks, edge_cases
from xent_impls.dtypes import eps
from xent_impls.reference import reference

IMPLS = {impl.id: impl for impl in xent_impls.all_impls()}
TORCH_COMPILE_WARNING = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning:torch.jit._script"
)

# What the ValueError must say for each bad probe (form-specific where the forms differ), with
# allow_masked=False; and for -inf probes, what it says with allow_masked=True.
EXPECTED = {
    "label-eq-C": r"label 5 is out of range \[0, 5\) at row 3",
    "label-far-above-C": r"label 1000000 is out of range \[0, 5\) at row 3",
    "label-wraps-int32": r"label 4294967297 is out of range \[0, 5\) at row 3",
    "label-negative": r"label -1 is out of range \[0, 5\) at row 3",
    "label-minus-100": r"label -100 is out of range \[0, 5\) at row 3 \(-100 is PyTorch's default "
                       r"ignore_index",
    "label-eq-C-batch-256": r"label 5 is out of range \[0, 5\) at row 3",
    "float-labels": r"takes integer labels of shape \(8,\); got float32 targets of shape \(8,\): "
                    r"float labels \(e\.g\. 0\.0 at row 0\)",
    "labels-N-by-1": r"takes integer labels of shape \(8,\); got int(32|64) targets of shape "
                     r"\(8, 1\): squeeze the last axis",
    "batch-mismatch": {"sparse": r"batch size mismatch, 6 labels for 8 rows of logits",
                       "onehot": r"batch size mismatch, 6 target rows for 8 rows of logits"},
    "batch-of-1-targets": {
        "sparse": r"batch size mismatch, 1 label for 8 rows of logits \(a batch of 1 is not "
                  r"broadcast\)",
        "onehot": r"batch size mismatch, 1 target row for 8 rows of logits \(a batch of 1 is not "
                  r"broadcast\)"},
    "nan-logit": r"logits\[3, 4\] is nan: logits must be finite",
    "posinf-logit": r"logits\[3, 4\] is \+inf: logits must be finite",
    "neginf-mask": r"logits\[1, 2\] is -inf: logits must be finite; pass allow_masked=True",
    "neginf-on-target": r"logits\[3, 3\] is -inf: logits must be finite; pass allow_masked=True",
    "neginf-whole-row": r"logits\[3, 0\] is -inf: logits must be finite; pass allow_masked=True",
    "extra-axis": r"logits must have shape \[N, C\], got shape \(2, 4, 5\): flatten the leading "
                  r"axes first",
    "onehot-rows-not-1": r"target row 1 sums to 0, not 1: an all-zero row",
    "multi-hot": r"target row 0 sums to 2, not 1: a multi-hot row \(2 classes at 1\)",
    "probabilities-as-logits": r"logits look like probabilities: every row is in \[0, 1\] and "
                               r"sums to 1",
}
EXPECTED_MASKED = {
    "neginf-on-target": {"sparse": r"logits\[3, 3\] is -inf at the target class of row 3 "
                                   r"\(label 3\): the loss is infinite",
                         "onehot": r"logits\[3, 3\] is -inf but row 3 puts target weight 1\.0 on "
                                   r"class 3: the loss is infinite"},
    "neginf-whole-row": r"row 3 of logits is -inf in every class: no class is left",
}


def _expected(table: dict, probe: str, form: str) -> str:
    want = table[probe]
    return want[form] if isinstance(want, dict) else want


def _refused(probe) -> bool:
    """Refused by the default checked mode (no allow_masked)."""
    return probe.bad or probe.masked


# Keras warns (SyntaxWarning) that a categorical cross-entropy over one class is pointless.
KERAS_ONE_CLASS_WARNING = pytest.mark.filterwarnings(
    "ignore:In loss categorical_crossentropy, expected y_pred.shape:SyntaxWarning"
)


def _cases(predicate):
    params = []
    for impl_id, impl in IMPLS.items():
        for probe in edge_cases.probes(form=impl.form):
            if predicate(probe):
                marks = [TORCH_COMPILE_WARNING] if impl.framework == "torch" and impl.compiled \
                    else []
                if impl.framework == "tensorflow" and probe.name == "one-class":
                    marks.append(KERAS_ONE_CLASS_WARNING)
                params.append(pytest.param(impl_id, probe.name, marks=marks,
                                           id=f"{impl_id}-{probe.name}"))
    return params


def _impl(impl_id):
    impl = IMPLS[impl_id]
    if not xent_impls.framework_installed(impl.framework):
        pytest.skip(f"{impl.framework} is not installed")
    return impl


def test_every_refused_probe_has_an_expected_message():
    refused = {p.name for p in edge_cases.PROBES if _refused(p)}
    assert refused == set(EXPECTED), "add the expected message of each new bad probe here"
    assert {p.name for p in edge_cases.PROBES if p.bad and p.masked} <= set(EXPECTED_MASKED) | {
        "neginf-on-target", "neginf-whole-row"}


@pytest.mark.parametrize(("impl_id", "probe_name"), _cases(_refused))
def test_checked_evaluate_refuses_every_bad_input(impl_id, probe_name):
    impl = _impl(impl_id)
    probe = edge_cases.get(probe_name)
    logits, targets = probe.make(impl.form)
    with pytest.raises(ValueError, match=_expected(EXPECTED, probe_name, impl.form)):
        xent_impls.evaluate(impl_id, logits, targets, grad=True, checked=True)


@pytest.mark.parametrize(("impl_id", "probe_name"),
                         _cases(lambda p: p.masked and p.bad))
def test_masked_mode_still_refuses_a_masked_target_or_row(impl_id, probe_name):
    impl = _impl(impl_id)
    probe = edge_cases.get(probe_name)
    logits, targets = probe.make(impl.form)
    with pytest.raises(ValueError, match=_expected(EXPECTED_MASKED, probe_name, impl.form)):
        xent_impls.evaluate(impl_id, logits, targets, checked=True, allow_masked=True)


# The compiled PyTorch variants compile every new shape (seconds each): their valid edge cases
# run in the slow suite.
def _slow_if_torch_compiled(params):
    out = []
    for p in params:
        impl = IMPLS[p.values[0]]
        marks = list(p.marks)
        if impl.framework == "torch" and impl.compiled and p.values[1] != "baseline":
            marks.append(pytest.mark.slow)
        out.append(pytest.param(*p.values, marks=marks, id=p.id))
    return out


@pytest.mark.parametrize(("impl_id", "probe_name"),
                         _slow_if_torch_compiled(_cases(lambda p: not p.bad)))
def test_checked_evaluate_accepts_valid_edge_cases_and_answers_right(impl_id, probe_name):
    impl = _impl(impl_id)
    probe = edge_cases.get(probe_name)
    logits, targets = probe.make(impl.form)
    loss, grad = xent_impls.evaluate(impl_id, logits, targets, grad=True, checked=True,
                                     allow_masked=probe.masked)
    if impl.expected_failure:
        return  # meant to fail on some inputs (huge logits overflow a naive softmax)
    ref_loss, ref_grad = probe.oracle(impl.form)
    n = max(len(ref_loss), 1)
    scale = np.maximum(1.0, np.abs(np.where(np.isfinite(logits), logits, 0)).max(axis=1,
                                                                                initial=0))
    e = eps("float32")
    assert loss.shape == ref_loss.shape
    if probe.masked and impl.form == "onehot":
        # A valid input that many one-hot ops get wrong: -sum_j t_j log p_j evaluates
        # 0 * log(0) = 0 * -inf = NaN on the masked classes (see the behaviour report). The
        # checked mode accepts it; the answer is right or NaN exactly on the masked rows.
        masked_rows = np.isneginf(logits).any(axis=1)
        bad = np.isnan(loss)
        assert not bad.any() or np.array_equal(bad, masked_rows), loss
        loss = np.where(bad, ref_loss, loss)
        grad = np.where(np.isnan(grad), ref_grad, grad)
    np.testing.assert_array_less(np.abs(loss - ref_loss), 16 * e * scale + 1e-30)
    np.testing.assert_array_less(np.abs(n * grad - n * ref_grad), 16 * e + 1e-30)


# --- the wrapper for framework arrays -----------------------------------------------------------


def _framework_inputs(impl, logits, targets):
    be = impl.backend
    return (be.to_framework(logits, "cpu", keep_dtype=True),
            be.to_framework(targets, "cpu", keep_dtype=True))


@pytest.mark.parametrize("impl_id", list(IMPLS))
def test_checked_wrapper_refuses_bad_framework_arrays_and_passes_good_ones(impl_id):
    impl = _impl(impl_id)
    safe = xent_impls.checked(impl_id)
    for name in ("nan-logit", "batch-of-1-targets", "probabilities-as-logits") + (
            ("label-eq-C", "label-minus-100", "labels-N-by-1") if impl.form == "sparse"
            else ("multi-hot",)):
        probe = edge_cases.get(name)
        x, t = _framework_inputs(impl, *probe.make(impl.form))
        with pytest.raises(ValueError, match=_expected(EXPECTED, name, impl.form)):
            safe(x, t)
    logits, targets = edge_cases.get("baseline").make(impl.form)
    if impl.form == "sparse" and impl.framework in ("jax", "tensorflow"):
        targets = targets.astype(np.int32)
    x, t = _framework_inputs(impl, logits, targets)
    out = safe(x, t)
    loss = out[0] if isinstance(out, tuple) else out  # NumPy implementations return a pair
    np.testing.assert_allclose(impl.backend.to_numpy(loss).astype(np.float64),
                               reference(logits, targets), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("framework", "dtype"), [("torch", np.int32), ("torch", np.uint8),
                                                  ("tensorflow", np.uint8)])
def test_checked_wrapper_names_label_dtypes_the_framework_refuses(framework, dtype):
    impl_id = f"{framework}/native/sparse"
    impl = _impl(impl_id)
    logits, labels = edge_cases.get("baseline").make("sparse")
    x, t = _framework_inputs(impl, logits, labels.astype(dtype))
    name = np.dtype(dtype).name
    with pytest.raises(ValueError, match=f"label dtype {name} is not accepted by {framework}'s "
                                         f"cross-entropy; use int"):
        xent_impls.checked(impl_id)(x, t)


def test_checked_wrapper_refuses_a_target_matrix_of_another_dtype():
    impl = _impl("torch/native/onehot")
    logits, targets = edge_cases.get("baseline").make("onehot")
    x, t = _framework_inputs(impl, logits, targets.astype(np.float64))
    with pytest.raises(ValueError, match=r"target matrix of the logits dtype \(float32\); got "
                                         r"float64"):
        xent_impls.checked("torch/native/onehot")(x, t)


# --- check() itself ---------------------------------------------------------------------------


def test_check_takes_a_form_an_id_or_an_impl():
    logits, labels = edge_cases.get("label-eq-C").make("sparse")
    for what in ("sparse", "numpy/reference/sparse", xent_impls.get("numpy/reference/sparse")):
        with pytest.raises(ValueError, match="label 5 is out of range"):
            checks.check(what, logits, labels)
    with pytest.raises(ValueError, match="expected an Impl, an implementation id or a form"):
        checks.check(3, logits, labels)


def test_allow_probabilities_and_label_dtypes():
    logits, labels = edge_cases.get("probabilities-as-logits").make("sparse")
    checks.check("sparse", logits, labels, allow_probabilities=True)
    with pytest.raises(ValueError, match="label dtype int64 is not accepted by jax's"):
        checks.check("sparse", logits, labels, allow_probabilities=True,
                     label_dtypes=("int32",), framework="jax")


@pytest.mark.parametrize(("change", "match"), [
    (lambda t: t.__setitem__((2, 1), np.nan), r"targets\[2, 1\] is nan: target weights must be "
                                              r"finite"),
    (lambda t: t.__setitem__((2, 1), -0.5), r"targets\[2, 1\] is -0\.5: target weights must be "
                                            r"non-negative"),
    (lambda t: t.__setitem__((4, 0), 0.25), r"target row 4 sums to 1\.25, not 1; divide each row"),
])
def test_target_rows_are_checked(change, match):
    logits, targets = edge_cases.get("baseline").make("onehot")
    change(targets)
    with pytest.raises(ValueError, match=match):
        checks.check("onehot", logits, targets)


def test_several_bad_labels_are_counted_and_the_first_is_named():
    logits, labels = edge_cases.get("baseline").make("sparse")
    labels[[2, 5]] = [7, -3]
    with pytest.raises(ValueError, match=r"label 7 is out of range \[0, 5\) at row 2; 2 labels are "
                                         r"out of range in all"):
        checks.check("sparse", logits, labels)


def test_non_integral_float_labels_are_named():
    logits, labels = edge_cases.get("float-labels").make("sparse")
    labels[4] = 1.5
    with pytest.raises(ValueError, match=r"non-integral float label 1\.5 at row 4"):
        checks.check("sparse", logits, labels)


def test_unchecked_evaluate_still_hands_bad_values_through():
    """Without ``checked`` the values reach the implementation (the oracle raises its own)."""
    logits, labels = edge_cases.get("nan-logit").make("sparse")
    loss = xent_impls.evaluate("numpy/reference/sparse", logits, labels)
    assert np.isnan(loss[3]) and np.isfinite(np.delete(loss, 3)).all()


def test_agreement_cells_use_the_checked_mode(monkeypatch):
    from xent_bench.harness import worker
    from xent_bench.harness.cells import make_cell

    impl = xent_impls.get("numpy/reference/sparse")
    case = xent_impls.Case(8, 5)
    bad = edge_cases.get("label-eq-C").make("sparse")
    monkeypatch.setattr(worker, "_inputs", lambda case, form: bad)
    monkeypatch.setattr(worker, "_oracle", lambda case, form: (None, None))
    cell = make_cell("agreement", impl, case, "forward_backward", "cpu")
    with pytest.raises(ValueError, match=r"label 5 is out of range \[0, 5\) at row 3"):
        worker.measure_agreement(impl, cell, {})


@pytest.mark.parametrize(("form", "which", "match"), [
    ("sparse", "logits", "logits is a numpy.ma.MaskedArray"),
    ("sparse", "targets", "targets is a numpy.ma.MaskedArray"),
    ("onehot", "targets", "targets is a numpy.ma.MaskedArray"),
    ("onehot", "complex", "takes a real target matrix; got complex64"),
])
def test_masked_arrays_and_complex_targets_are_refused(form, which, match):
    """np.asarray would drop a mask (the masked numbers would count) and a cast to real the
    imaginary part: both are refused, not converted."""
    logits = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    targets = labels if form == "sparse" else np.eye(5, dtype=np.float32)[labels]
    if which == "logits":
        logits = np.ma.masked_array(logits, mask=np.arange(5) == 4 * np.ones((4, 1)))
    elif which == "targets":
        targets = np.ma.masked_array(targets, mask=np.zeros(targets.shape, bool))
    else:
        targets = targets.astype(np.complex64)
    with pytest.raises(ValueError, match=match):
        xent_impls.check(form, logits, targets)


@pytest.mark.parametrize("checked", [True, False])
def test_evaluate_refuses_a_masked_array_checked_or_not(checked):
    logits = np.ma.masked_array(np.zeros((2, 3), np.float32), mask=[[0, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match="logits is a numpy.ma.MaskedArray"):
        xent_impls.evaluate("numpy/reference/sparse", logits, np.array([0, 1]), checked=checked)
