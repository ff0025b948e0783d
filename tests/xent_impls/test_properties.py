"""Property tests (Hypothesis) of every implementation that claims stability.

Over random shapes, dtypes and logit scales (10^-2 to 10^3):

- adding a constant to a row changes neither the loss nor the gradient;
- permuting the classes together with the labels permutes the gradient and keeps the loss;
- the sparse and one-hot forms of one variant agree;
- the gradient of the mean loss is (softmax - target) / N (the float64 oracle) and sums to zero
  in every row;
- in float64, the gradient matches central finite differences of the mean loss.

Tolerances are in units of the input dtype's epsilon, scaled by the row's largest logit
magnitude where rounding of ``x - max`` or of the shifted input dominates (as in the agreement
runs). Compiled variants (and eager JAX, which compiles each op per shape) draw from a few fixed
shapes (torch.compile: one shape, float32), so the tests compile a bounded number of times.

Budget: the ``xent-ci`` profile (tests/conftest.py) runs 8 derandomized examples per test and
implementation (about a minute for the file). Run longer with
``pytest tests/xent_impls/test_properties.py --hypothesis-profile=xent-long`` (300 random
examples each) or ``XENT_HYPOTHESIS_EXAMPLES=1000``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xent_impls
from xent_impls.dtypes import eps, numpy_dtype
from xent_impls.inputs import one_hot
from xent_impls.reference import reference

STABLE = [impl for impl in xent_impls.all_impls() if impl.expected_failure is None
          and impl.framework in ("numpy", "torch", "jax", "tensorflow")]
COMPILED_SHAPES = ((1, 1), (3, 7), (8, 13), (16, 40))
COMPILED_DTYPES = ("float32", "bfloat16")
TORCH_COMPILED_SHAPE = (8, 13)

TORCH_COMPILE_WARNING = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning:torch.jit._script"
)
# Keras warns (SyntaxWarning) that a categorical cross-entropy over one class is pointless.
KERAS_ONE_CLASS_WARNING = pytest.mark.filterwarnings(
    "ignore:In loss categorical_crossentropy, expected y_pred.shape:SyntaxWarning"
)


def _params(impls) -> list:
    params = []
    for impl in impls:
        marks = [KERAS_ONE_CLASS_WARNING] if impl.framework == "tensorflow" else []
        if impl.framework == "torch" and impl.compiled:
            marks.append(TORCH_COMPILE_WARNING)
        params.append(pytest.param(impl.id, marks=marks, id=impl.id))
    return params


def _impl(impl_id: str):
    impl = xent_impls.get(impl_id) if xent_impls.framework_installed(
        impl_id.split("/")[0]) else None
    if impl is None:
        pytest.skip(f"{impl_id.split('/')[0]} is not installed")
    return impl


@dataclasses.dataclass(frozen=True)
class Problem:
    n: int
    c: int
    dtype: str
    scale: float
    seed: int

    def logits(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal((self.n, self.c)) * self.scale
        return x.astype(np.float32).astype(numpy_dtype(self.dtype))

    def labels(self) -> np.ndarray:
        return np.random.default_rng(self.seed + 1).integers(0, self.c, self.n).astype(np.int64)

    def targets(self, form: str) -> np.ndarray:
        y = self.labels()
        return y if form == "sparse" else one_hot(y, self.c, numpy_dtype(self.dtype))


@st.composite
def problems(draw, impl, dtypes=None):
    allowed = [d for d in (dtypes or impl.dtypes) if d in impl.dtypes]
    if impl.framework == "torch" and impl.compiled:
        (n, c), dtype = TORCH_COMPILED_SHAPE, "float32"
    elif impl.compiled or impl.framework == "jax":  # eager JAX compiles every op per shape
        n, c = draw(st.sampled_from(COMPILED_SHAPES))
        dtype = draw(st.sampled_from([d for d in allowed if d in COMPILED_DTYPES] or allowed))
    else:
        n, c = draw(st.integers(1, 16)), draw(st.integers(1, 48))
        dtype = draw(st.sampled_from(allowed))
    scale = 10.0 ** draw(st.floats(-2.0, 3.0))
    return Problem(n, c, dtype, scale, draw(st.integers(0, 2**32 - 1)))


def _run(impl, logits, targets):
    loss, grad = xent_impls.evaluate(impl.id, logits, targets, grad=True)
    return loss.astype(np.float64), grad.astype(np.float64)


def _row_scale(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0, np.abs(x.astype(np.float64)).max(axis=1))


def _close(what, got, want, bound):
    bound = np.broadcast_to(bound, got.shape)
    err = np.abs(got - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert np.all(err <= bound), (f"{what}: |err| {err[worst]:.3g} > {bound[worst]:.3g} at "
                                  f"{tuple(int(i) for i in worst)}")


def _given(strategy_for):
    """``@given`` with a strategy built from the implementation the test is parametrized with."""
    def decorate(test):
        def run(impl_id):
            impl = _impl(impl_id)
            given(problem=strategy_for(impl))(lambda problem: test(impl, problem))()
        run.__name__ = test.__name__
        run.__doc__ = test.__doc__
        return run
    return decorate


@pytest.mark.parametrize("impl_id", _params(STABLE))
@_given(problems)
def test_adding_a_constant_to_a_row_changes_nothing(impl, problem):
    x = problem.logits()
    t = problem.targets(impl.form)
    rng = np.random.default_rng(problem.seed + 2)
    shift = (rng.uniform(-10, 10, (problem.n, 1)) * problem.scale)
    shifted = (x.astype(np.float64) + shift).astype(x.dtype)
    loss, grad = _run(impl, x, t)
    loss_s, grad_s = _run(impl, shifted, t)
    e = eps(problem.dtype)
    # Rounding x + c to the dtype moves every logit by up to eps/2 * |x + c|.
    bound = 32 * e * np.maximum(_row_scale(x), _row_scale(shifted))
    _close("loss", loss_s, loss, bound)
    _close("N * grad", problem.n * grad_s, problem.n * grad, bound[:, None])


@pytest.mark.parametrize("impl_id", _params(STABLE))
@_given(problems)
def test_permuting_classes_with_their_labels(impl, problem):
    x = problem.logits()
    y = problem.labels()
    perm = np.random.default_rng(problem.seed + 3).permutation(problem.c)
    inverse = np.argsort(perm)  # new position of old class j is inverse[j]
    t = y if impl.form == "sparse" else problem.targets("onehot")
    t_perm = inverse[y] if impl.form == "sparse" else t[:, perm]
    loss, grad = _run(impl, x, t)
    loss_p, grad_p = _run(impl, x[:, perm], t_perm)
    e = eps(problem.dtype)
    bound = 16 * e * _row_scale(x)
    _close("loss", loss_p, loss, bound)
    _close("N * grad", problem.n * grad_p, problem.n * grad[:, perm], 16 * e)


PAIRS = [impl for impl in STABLE if impl.form == "sparse"
         and any(o.id == impl.id.replace("/sparse", "/onehot") for o in STABLE)]


@pytest.mark.parametrize("impl_id", _params(PAIRS))
@_given(problems)
def test_sparse_and_onehot_forms_agree(impl, problem):
    onehot = xent_impls.get(impl.id.replace("/sparse", "/onehot"))
    x = problem.logits()
    loss_s, grad_s = _run(impl, x, problem.targets("sparse"))
    loss_o, grad_o = _run(onehot, x, problem.targets("onehot"))
    e = eps(problem.dtype)
    _close("loss", loss_o, loss_s, 16 * e * _row_scale(x))
    _close("N * grad", problem.n * grad_o, problem.n * grad_s, 16 * e)


@pytest.mark.parametrize("impl_id", _params(STABLE))
@_given(lambda impl: problems(impl, dtypes=("float32", "float64")))
def test_gradient_is_softmax_minus_target_over_n_and_rows_sum_to_zero(impl, problem):
    x = problem.logits()
    t = problem.targets(impl.form)
    loss, grad = _run(impl, x, t)
    ref_loss, ref_grad = reference(x, t, grad=True)
    e = eps(problem.dtype)
    _close("loss", loss, ref_loss, 16 * e * _row_scale(x))
    _close("N * grad", problem.n * grad, problem.n * ref_grad, 16 * e)
    row_sums = (problem.n * grad).sum(axis=1)
    _close("row sums of N * grad", row_sums, np.zeros_like(row_sums),
           4 * e * np.sqrt(problem.c) + 4 * e)


# torch.compile compiles each new float64 shape for seconds; its autodiff is the one checked
# against the oracle above.
FLOAT64 = [impl for impl in STABLE if "float64" in impl.dtypes
           and not (impl.framework == "torch" and impl.compiled)]


@pytest.mark.parametrize("impl_id", _params(FLOAT64))
@_given(lambda impl: problems(impl, dtypes=("float64",)))
def test_gradient_matches_finite_differences_in_float64(impl, problem):
    x = problem.logits()
    t = problem.targets(impl.form)
    _, grad = _run(impl, x, t)
    rng = np.random.default_rng(problem.seed + 4)
    for _ in range(3):
        i, j = int(rng.integers(problem.n)), int(rng.integers(problem.c))
        h = 1e-6 * max(1.0, abs(x[i, j]))
        plus, minus = x.copy(), x.copy()
        plus[i, j] += h
        minus[i, j] -= h
        fd = (_run(impl, plus, t)[0].mean() - _run(impl, minus, t)[0].mean()) / (2 * h)
        # Central differences: O(h^2) truncation plus O(eps * loss / h) cancellation.
        assert abs(fd - grad[i, j]) <= 1e-6 * (1 + problem.scale) / problem.n + 1e-8, (
            f"grad[{i}, {j}] = {grad[i, j]!r}, finite difference {fd!r} (h = {h:g})")
