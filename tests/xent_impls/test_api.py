"""The NumPy-in, NumPy-out API, run for every registered implementation.

Every test here uses one shape (N x C below) so that compiled variants (torch.compile, jax.jit,
XLA) compile once per dtype and pass; the inputs come from ``make_inputs`` as in a real run.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

import xent_impls
from xent_impls import checks
from xent_impls.dtypes import eps
from xent_impls.inputs import Case, make_inputs
from xent_impls.reference import reference

N, C = 8, 13
IMPLS = {impl.id: impl for impl in xent_impls.all_impls()}
EPS32 = eps("float32")

# torch.compile's inductor on CPU calls the deprecated torch.jit.script_method (torch 2.13).
TORCH_COMPILE_WARNING = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning:torch.jit._script"
)


def _params(predicate=lambda impl: True, extra_marks=lambda impl: ()) -> list:
    """Implementation ids as pytest params, with the torch.compile warning filter where needed."""
    params = []
    for impl_id, impl in IMPLS.items():
        if not predicate(impl):
            continue
        marks = list(extra_marks(impl))
        if impl.framework == "torch" and impl.compiled:
            marks.append(TORCH_COMPILE_WARNING)
        params.append(pytest.param(impl_id, marks=marks, id=impl_id))
    return params


ALL_IDS = _params()
ONEHOT_IDS = _params(lambda impl: impl.form == "onehot")
FAILING_IDS = _params(lambda impl: impl.expected_failure is not None)
STABLE_IDS = _params(lambda impl: impl.expected_failure is None)


def _impl(impl_id: str) -> xent_impls.Impl:
    impl = IMPLS[impl_id]
    if not xent_impls.framework_installed(impl.framework):
        pytest.skip(f"{impl.framework} is not installed ({xent_impls.skipped_notes()})")
    return impl


@functools.cache
def _cached_inputs(dtype: str, form: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    logits, targets = make_inputs(Case(N, C, dtype, scale, seed=7), form)
    logits.flags.writeable = targets.flags.writeable = False
    return logits, targets


def _inputs(impl: xent_impls.Impl, dtype: str = "float32", scale: float = 1.0):
    """Fresh writable copies of the case's inputs (a test must not see another's mutations)."""
    logits, targets = _cached_inputs(dtype, impl.form, scale)
    return logits.copy(), targets.copy()


def _err_report(got: np.ndarray, want: np.ndarray, bound: np.ndarray) -> str:
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    return (f"worst at {tuple(int(i) for i in worst)}: got {got[worst]!r}, want {want[worst]!r}, "
            f"|err| {err[worst]:.3g} > bound {np.broadcast_to(bound, err.shape)[worst]:.3g}")


def _assert_within(what: str, got: np.ndarray, want: np.ndarray, bound) -> None:
    got64 = got.astype(np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), want.shape)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.isfinite(got64).all(), f"{what}: non-finite values {got}"
    assert np.all(np.abs(got64 - want) <= bound), f"{what}: {_err_report(got, want, bound)}"


# --- float32 at scale 1: every implementation, expected failures included ---------------------

# Measured on CPU at 8 x 13, scale 1: loss error <= 2.7e-7 (about 2 float32 ulps of a loss near
# 5), N * grad error <= 8.5e-8 for every implementation. The bounds leave a 10-20x margin.
LOSS_ATOL = LOSS_RTOL = 1e-6
NGRAD_ATOL = 1e-6


@pytest.mark.parametrize("impl_id", ALL_IDS)
def test_float32_matches_the_oracle(impl_id):
    impl = _impl(impl_id)
    logits, targets = _inputs(impl)
    before = (logits.copy(), targets.copy())

    loss = xent_impls.evaluate(impl_id, logits, targets)
    assert isinstance(loss, np.ndarray), type(loss)
    assert loss.shape == (N,), loss.shape

    out = xent_impls.evaluate(impl_id, logits, targets, grad=True)
    assert isinstance(out, tuple) and len(out) == 2, type(out)
    loss_g, grad = out
    assert isinstance(loss_g, np.ndarray) and isinstance(grad, np.ndarray)
    assert loss_g.shape == (N,) and grad.shape == (N, C), (loss_g.shape, grad.shape)
    if impl.framework != "numpy":  # the oracle answers in float64 by design
        assert loss.dtype == loss_g.dtype == grad.dtype == np.float32, (loss.dtype, grad.dtype)

    np.testing.assert_array_equal(logits, before[0], "evaluate must not modify the logits")
    np.testing.assert_array_equal(targets, before[1], "evaluate must not modify the targets")

    ref_loss, ref_grad = reference(logits, targets, grad=True)
    loss_bound = LOSS_ATOL + LOSS_RTOL * np.abs(ref_loss)
    _assert_within(f"{impl_id} loss", loss, ref_loss, loss_bound)
    _assert_within(f"{impl_id} loss (grad step)", loss_g, ref_loss, loss_bound)
    _assert_within(f"{impl_id} N * grad", N * grad, N * ref_grad, NGRAD_ATOL)


@pytest.mark.parametrize("impl_id", ONEHOT_IDS)
def test_onehot_accepts_soft_and_integer_target_matrices(impl_id):
    impl = _impl(impl_id)
    logits, onehot = _inputs(impl)
    soft = np.random.default_rng(3).dirichlet(np.ones(C), size=N).astype(np.float32)
    loss, grad = xent_impls.evaluate(impl_id, logits, soft, grad=True)
    ref_loss, ref_grad = reference(logits, soft, grad=True)
    _assert_within(f"{impl_id} soft loss", loss, ref_loss, LOSS_ATOL + LOSS_RTOL * ref_loss)
    _assert_within(f"{impl_id} soft N * grad", N * grad, N * ref_grad, NGRAD_ATOL)
    # An integer 0/1 matrix is cast to the logits dtype and poses the one-hot problem.
    as_int = xent_impls.evaluate(impl_id, logits, onehot.astype(np.int64))
    np.testing.assert_array_equal(as_int, xent_impls.evaluate(impl_id, logits, onehot))


# --- 16-bit and float64 ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("impl_id", ALL_IDS)
def test_16bit_runs_and_is_close(impl_id, dtype):
    impl = _impl(impl_id)
    assert dtype in impl.dtypes, f"{impl_id} should accept {dtype}"
    logits, targets = _inputs(impl, dtype)
    loss, grad = xent_impls.evaluate(impl_id, logits, targets, grad=True)
    assert loss.shape == (N,) and grad.shape == (N, C)
    if impl.framework != "numpy":
        assert grad.dtype == logits.dtype, f"gradient in {grad.dtype}, logits in {logits.dtype}"
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    e = eps(dtype)
    # The loss is rounded to 16 bits (or computed in float32, for Keras): measured errors reach
    # 2.5 eps * max|x| (bfloat16) and the gradient of N * mean 0.7 eps.
    row_scale = np.maximum(1.0, np.abs(logits.astype(np.float64)).max(axis=1))
    _assert_within(f"{impl_id} {dtype} loss", loss, ref_loss, 16 * e * row_scale)
    _assert_within(f"{impl_id} {dtype} N * grad", N * grad, N * ref_grad, 4 * e)


FLOAT64_IDS = _params(lambda impl: "float64" in impl.dtypes)


@pytest.mark.parametrize("impl_id", FLOAT64_IDS)
def test_float64_is_computed_in_float64(impl_id):
    impl = _impl(impl_id)
    logits, targets = _inputs(impl, "float64")
    loss, grad = xent_impls.evaluate(impl_id, logits, targets, grad=True)
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    assert grad.dtype == np.float64, f"gradient in {grad.dtype} for float64 logits"
    assert loss.dtype == np.float64, loss.dtype
    loss_bound, ngrad_bound = 1e-13 * np.maximum(1, ref_loss), 1e-14
    _assert_within(f"{impl_id} float64 loss", loss, ref_loss, loss_bound)
    _assert_within(f"{impl_id} float64 N * grad", N * grad, N * ref_grad, ngrad_bound)


@pytest.mark.parametrize("impl_id", _params(lambda impl: "float64" not in impl.dtypes))
def test_float64_is_refused_where_it_would_not_be_computed_in_float64(impl_id):
    impl = _impl(impl_id)
    logits, targets = _inputs(impl, "float64")
    with pytest.raises(ValueError, match="does not support logits dtype float64"):
        xent_impls.evaluate(impl_id, logits, targets)


# --- large logits: the stable implementations stay exact, the flagged ones fail as documented --


@pytest.mark.parametrize("impl_id", STABLE_IDS)
def test_stable_implementations_at_scale_100(impl_id):
    impl = _impl(impl_id)
    logits, targets = _inputs(impl, scale=100.0)
    loss, grad = xent_impls.evaluate(impl_id, logits, targets, grad=True)
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    assert ref_loss.max() > 100, "the case must have large losses to mean anything"
    # Float32 rounding of logits of a few hundred: a few ulps of max|x| per row.
    row_scale = np.abs(logits.astype(np.float64)).max(axis=1)
    _assert_within(f"{impl_id} loss at scale 100", loss, ref_loss, 4 * EPS32 * row_scale)
    _assert_within(f"{impl_id} N * grad at scale 100", N * grad, N * ref_grad, NGRAD_ATOL)


KERAS_CLIP_LOSS = -np.log(1e-7)  # 16.118...


@pytest.mark.parametrize("impl_id", FAILING_IDS)
def test_expected_failure_shows_at_large_scale(impl_id):
    """These variants pass at scale 1 (``test_float32_matches_the_oracle``); here they fail the
    way their ``expected_failure`` note says, while the oracle stays finite."""
    impl = _impl(impl_id)
    if impl.variant == "naive":
        assert "overflow" in impl.expected_failure
        logits, targets = _inputs(impl, scale=100.0)
        loss = xent_impls.evaluate(impl_id, logits, targets)
        ref_loss = reference(logits, targets)
        assert np.isfinite(ref_loss).all()
        assert (logits.max(axis=1) > 88.8).any(), "some row must overflow exp in float32"
        assert not np.isfinite(loss).all(), f"{impl_id} stayed finite at scale 100: {loss}"
    elif impl.variant == "keras-probs":
        assert "1e-7" in impl.expected_failure
        logits, targets = _inputs(impl, scale=10.0)
        loss, grad = xent_impls.evaluate(impl_id, logits, targets, grad=True)
        ref_loss, ref_grad = reference(logits, targets, grad=True)
        capped = ref_loss > KERAS_CLIP_LOSS + 1
        free = ref_loss < KERAS_CLIP_LOSS - 1
        assert capped.any() and free.any(), f"scale 10 should give both kinds of row: {ref_loss}"
        assert loss.max() <= KERAS_CLIP_LOSS + 1e-5, f"loss above the clip: {loss}"
        np.testing.assert_allclose(loss[capped], KERAS_CLIP_LOSS, rtol=1e-6,
                                   err_msg="capped rows sit at -log(1e-7)")
        np.testing.assert_allclose(loss[free], ref_loss[free], rtol=1e-6,
                                   err_msg="rows below the clip are still right")
        # The gradient of a capped row is lost (the oracle's is O(1/N)).
        assert np.abs(N * grad[capped]).max() < 1e-6, N * grad[capped]
        assert np.abs(N * ref_grad[capped]).max() > 0.5
    else:
        pytest.fail(f"{impl_id}: new expected_failure variant {impl.variant!r} needs a check here")


# --- errors ----------------------------------------------------------------------------------

BAD_INPUTS = ["wrong-form", "3d-logits", "integer-logits", "cuda-device"]


@pytest.mark.parametrize("bad", BAD_INPUTS)
@pytest.mark.parametrize("impl_id", ALL_IDS)
def test_bad_input_is_a_value_error(impl_id, bad):
    impl = _impl(impl_id)
    logits, targets = _inputs(impl)
    kwargs = {}
    if bad == "wrong-form":
        if impl.form == "sparse":
            targets = np.eye(C, dtype=np.float32)[targets]
            match = r"takes integer labels of shape \(8,\)"
        else:
            targets = targets.argmax(axis=1)
            match = r"takes a target matrix of shape \(8, 13\)"
    elif bad == "3d-logits":
        logits = logits[None]
        match = r"logits must have shape \[N, C\], got shape \(1, 8, 13\)"
    elif bad == "integer-logits":
        logits = logits.astype(np.int32)
        match = "unsupported logits dtype int32"
    else:
        if impl.backend.has_device("cuda"):
            pytest.skip("this machine has a GPU")
        kwargs["device"] = "cuda"
        match = f"device 'cuda' is not available to {impl.framework}"
    with pytest.raises(ValueError, match=match):
        xent_impls.evaluate(impl_id, logits, targets, **kwargs)


def test_dtype_not_supported_by_the_impl():
    impl = dataclasses.replace(xent_impls.get("numpy/reference/sparse"), dtypes=("float32",))
    logits, labels = make_inputs(Case(N, C, "float16"), "sparse")
    with pytest.raises(ValueError,
                       match="does not support logits dtype float16; supported: float32"):
        checks.check_structure(impl, logits, labels)


def test_unknown_impl_id():
    with pytest.raises(ValueError, match="Did you mean: numpy/reference/sparse"):
        xent_impls.evaluate("numpy/refrence/sparse", np.zeros((2, 3)), np.zeros(2, np.int64))


@pytest.mark.parametrize("framework", ["numpy", "torch", "jax", "tensorflow"])
@pytest.mark.parametrize("device", ["tpu", "cuda:1", "CPU"])
def test_an_unknown_device_is_refused_by_every_backend(framework, device):
    """JAX took any device name other than "cuda" for the CPU; now every backend refuses it."""
    if not xent_impls.framework_installed(framework):
        pytest.skip(f"{framework} is not installed")
    impl = next(i for i in xent_impls.available() if i.framework == framework)
    assert impl.backend.has_device(device) is False
    logits = np.zeros((2, 3), np.float32)
    targets = np.array([0, 1]) if impl.form == "sparse" else np.eye(3, dtype=np.float32)[[0, 1]]
    with pytest.raises(ValueError, match=f"device {device!r} is not available"):
        xent_impls.evaluate(impl.id, logits, targets, device=device)


@pytest.mark.parametrize("impl_id", ["jax/optax/sparse", "tensorflow/native/sparse"])
def test_a_label_int32_cannot_hold_is_refused_not_wrapped(impl_id):
    """These frameworks index with int32: 2**32 + 1 cast to int32 is class 1, a silently wrong
    loss. Unchecked evaluate refuses it with the label named."""
    if not xent_impls.framework_installed(impl_id.split("/")[0]):
        pytest.skip(f"{impl_id.split('/')[0]} is not installed")
    logits = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="label 4294967297 does not fit in int32"):
        xent_impls.evaluate(impl_id, logits, np.array([0, 2**32 + 1]))
