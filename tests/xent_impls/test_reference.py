"""The float64 oracle: values against SciPy, the analytic gradient against finite differences,
stability, masked classes and input checking."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from scipy.special import log_softmax as scipy_log_softmax

from xent_impls.inputs import Case, make_inputs, one_hot
from xent_impls.reference import log_softmax, reference

RNG_SEED = 1234


def _logits(n: int, c: int, scale: float = 1.0, seed: int = RNG_SEED) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal((n, c))


def _labels(n: int, c: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed + 1).integers(0, c, size=n)


def _targets(kind: str, n: int, c: int) -> np.ndarray:
    labels = _labels(n, c)
    rng = np.random.default_rng(RNG_SEED + 2)
    if kind == "sparse":
        return labels
    if kind == "onehot":
        return one_hot(labels, c, np.dtype(np.float64))
    if kind == "soft":  # rows on the simplex
        return rng.dirichlet(np.ones(c), size=n)
    if kind == "smoothed":  # label smoothing 0.1
        return 0.9 * one_hot(labels, c, np.dtype(np.float64)) + 0.1 / c
    if kind == "multihot":  # rows summing to 2 (two positive classes)
        t = one_hot(labels, c, np.dtype(np.float64))
        t[np.arange(n), (labels + 1) % c] = 1.0
        return t
    raise AssertionError(kind)


TARGET_KINDS = ["sparse", "onehot", "soft", "smoothed", "multihot"]


def _scipy_loss(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if t.ndim == 1:
        return -scipy_log_softmax(x, axis=1)[np.arange(x.shape[0]), t]
    return -np.sum(t * scipy_log_softmax(x, axis=1), axis=1)


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_loss_matches_scipy(kind):
    x, t = _logits(9, 14, scale=3.0), _targets(kind, 9, 14)
    loss = reference(x, t)
    assert loss.dtype == np.float64 and loss.shape == (9,)
    np.testing.assert_allclose(loss, _scipy_loss(x, t), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_low_precision_logits_are_widened_exactly(dtype):
    case = Case(12, 10, dtype, scale=4.0)
    x, labels = make_inputs(case, "sparse")
    wide = x.astype(np.float64)
    np.testing.assert_array_equal(reference(x, labels), reference(wide, labels))
    np.testing.assert_allclose(reference(x, labels), _scipy_loss(wide, labels), rtol=1e-13)


def test_sparse_and_onehot_agree():
    x, labels = _logits(11, 23, scale=5.0), _labels(11, 23)
    onehot = one_hot(labels, 23, np.dtype(np.float64))
    loss_s, grad_s = reference(x, labels, grad=True)
    loss_o, grad_o = reference(x, onehot, grad=True)
    np.testing.assert_array_equal(loss_s, loss_o)
    np.testing.assert_array_equal(grad_s, grad_o)
    # A one-hot matrix in a 16-bit dtype (as make_inputs builds it) poses the same problem.
    bf16 = onehot.astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(reference(x, bf16), loss_s)


def test_soft_targets_are_linear_in_the_target():
    x = _logits(6, 8)
    a, b = _targets("soft", 6, 8), _targets("onehot", 6, 8)
    mix = reference(x, 0.25 * a + 0.75 * b)
    np.testing.assert_allclose(mix, 0.25 * reference(x, a) + 0.75 * reference(x, b), rtol=1e-14)
    # Cross-entropy against a distribution is at least its entropy (Gibbs), equal at t = p.
    p = np.exp(log_softmax(x))
    np.testing.assert_allclose(reference(x, p), -np.sum(p * np.log(p), axis=1), rtol=1e-13)
    assert np.all(reference(x, a) >= -np.sum(a * np.log(a), axis=1))


def test_uniform_logits_give_log_c():
    np.testing.assert_allclose(reference(np.zeros((3, 40)), np.array([0, 7, 39])), np.log(40))


def test_single_class_loss_is_zero():
    loss, grad = reference(_logits(4, 1, scale=100.0), np.zeros(4, dtype=np.int64), grad=True)
    np.testing.assert_array_equal(loss, np.zeros(4))
    np.testing.assert_array_equal(grad, np.zeros((4, 1)))


def test_empty_batch():
    loss, grad = reference(np.zeros((0, 5), np.float32), np.zeros(0, np.int64), grad=True)
    assert loss.shape == (0,) and grad.shape == (0, 5)


# --- gradient --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_gradient_matches_central_differences(kind):
    n, c, h = 4, 6, 1e-6
    x, t = _logits(n, c, scale=2.0), _targets(kind, n, c)
    _, grad = reference(x, t, grad=True)
    assert grad.shape == (n, c) and grad.dtype == np.float64

    def mean_loss(z):
        return float(np.mean(reference(z, t)))

    fd = np.empty_like(x)
    for i in range(n):
        for j in range(c):
            up, down = x.copy(), x.copy()
            up[i, j] += h
            down[i, j] -= h
            fd[i, j] = (mean_loss(up) - mean_loss(down)) / (2 * h)
    # Round-off in the difference is about eps * |loss| / h ~ 1e-9; the gradient is ~1e-2.
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["sparse", "onehot", "soft", "smoothed"])
def test_gradient_rows_sum_to_zero_for_distributions(kind):
    x, t = _logits(10, 30, scale=4.0), _targets(kind, 10, 30)
    _, grad = reference(x, t, grad=True)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-16)


def test_gradient_rows_sum_to_target_mass_minus_mass_for_multihot():
    n = 10
    x, t = _logits(n, 30), _targets("multihot", n, 30)
    _, grad = reference(x, t, grad=True)
    # sum_j ((sum t) * softmax_j - t_j) / N = (sum t - sum t) / N = 0 as well.
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)
    # ...but the target classes are pulled down twice as hard as with one label.
    assert np.all(grad[t > 0] < 0)


def test_gradient_is_of_the_mean():
    x, labels = _logits(5, 7), _labels(5, 7)
    _, g5 = reference(x, labels, grad=True)
    _, g10 = reference(np.vstack([x, x]), np.concatenate([labels, labels]), grad=True)
    np.testing.assert_allclose(g10[:5], g5 / 2, rtol=1e-15)


# --- stability -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sparse", "soft"])
def test_stable_at_scale_1000(kind):
    n, c = 8, 50
    x, t = _logits(n, c, scale=1000.0), _targets(kind, n, c)
    loss, grad = reference(x, t, grad=True)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    # Shift by the row maximum by hand: lse(x) = m + log(sum(exp(x - m))).
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.sum(np.exp(x - m), axis=1))
    tm = t if t.ndim == 2 else one_hot(t, c, np.dtype(np.float64))
    expected = np.sum(tm, axis=1) * lse - np.sum(tm * x, axis=1)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    assert loss.max() > 100, "scale 1000 gives losses in the hundreds: the case is not trivial"
    # Shift invariance: adding a constant per row changes nothing (up to rounding of x + k).
    shifted = reference(x + 5000.0, t)
    np.testing.assert_allclose(shifted, loss, rtol=1e-12, atol=1e-8)


def test_log_softmax_extremes():
    # float32's largest magnitudes (what an implementation can be fed) and a far-negative row.
    big = float(np.finfo(np.float32).max)
    x = np.array([[big, -big, 0.0], [-1e4, -1e4 - 1, -1e4 - 2]])
    out = log_softmax(x)
    np.testing.assert_array_equal(out[0], [0.0, -2 * big, -big])
    np.testing.assert_allclose(out[1], scipy_log_softmax(x[1]), rtol=1e-14)


@pytest.mark.parametrize("form", ["sparse", "onehot"])
def test_minus_inf_masked_class(form):
    n, c, masked = 6, 9, 4
    x, labels = _logits(n, c, scale=2.0), _labels(n, c)
    labels[labels == masked] = (masked + 1) % c  # the masked class is never a target
    x[:, masked] = -np.inf
    t = labels if form == "sparse" else one_hot(labels, c, np.dtype(np.float64))
    loss, grad = reference(x, t, grad=True)  # pytest turns any RuntimeWarning into an error
    assert np.isfinite(loss).all(), loss
    assert np.isfinite(grad).all(), grad
    np.testing.assert_array_equal(grad[:, masked], 0.0)
    # Same as the problem without that class.
    keep = [j for j in range(c) if j != masked]
    reduced_labels = labels - (labels > masked)
    loss_r, grad_r = reference(x[:, keep], reduced_labels, grad=True)
    np.testing.assert_allclose(loss, loss_r, rtol=1e-14)
    np.testing.assert_allclose(grad[:, keep], grad_r, rtol=1e-14, atol=1e-18)


def test_minus_inf_on_the_target_class_is_infinite_loss():
    x = np.array([[0.0, -np.inf, 1.0]])
    assert reference(x, np.array([1]))[0] == np.inf


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logits_shape, targets, fragment",
    [
        ((5,), np.zeros(5, np.int64), r"logits must have shape \[N, C\], got shape \(5,\)"),
        ((2, 3, 4), np.zeros(2, np.int64), r"got shape \(2, 3, 4\)"),
        ((4, 3), np.zeros(5, np.int64), r"integer labels must have shape \(4,\), got \(5,\)"),
        ((4, 3), np.zeros((4, 1), np.int64), r"integer labels must have shape \(4,\)"),
        ((4, 3), np.array([0, 1, 3, 2]), r"label 3 is out of range \[0, 3\)"),
        ((4, 3), np.array([0, -1, 1, 2]), r"label -1 is out of range \[0, 3\)"),
        ((4, 3), np.zeros((4, 4)), r"target matrix must have shape \(4, 3\), got \(4, 4\)"),
        ((4, 3), np.zeros(4), r"target matrix must have shape \(4, 3\), got \(4,\)"),
    ],
    ids=["1d-logits", "3d-logits", "labels-length", "labels-2d", "label-too-big",
         "label-negative", "matrix-shape", "float-vector"],
)
def test_bad_shapes_and_labels_raise(logits_shape, targets, fragment):
    with pytest.raises(ValueError, match=fragment):
        reference(np.zeros(logits_shape), targets)
