"""The chunked JAX cross-entropy (xent_impls.fused.jax_chunked) against the float64 oracle.

Everything runs through the harness's step, ``jax.jit(jax.value_and_grad(mean(fn(x, t))))``,
with a chunk width smaller than ``C`` so that every case has several full chunks and a ragged
tail. float32 must pass the project's tolerance; bfloat16 / float16 must be no worse than optax
at the same dtype (``xent_bench.harness.agreement.verdict``). Each (form, C, dtype) compiles once:
the two logit scales share the compiled step.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from xent_bench.harness.agreement import agreement_metrics, verdict  # noqa: E402
from xent_impls import Case, make_inputs, reference  # noqa: E402
from xent_impls.backends.jax_backend import loss_and_mean_grad  # noqa: E402
from xent_impls.fused import jax_chunked  # noqa: E402
from xent_impls.reference import log_softmax  # noqa: E402

N = 12
SCALES = (1.0, 100.0)
# C -> chunk width V < C: several full chunks and a ragged tail (C = 1 has a single column).
CHUNKS = {1: 1, 10: 3, 100: 7, 1000: 128, 5000: 384}
FORMS = ("sparse", "onehot")


def _fn(form: str, chunk: int | None):
    fn = getattr(jax_chunked, f"chunked_{form}")
    return fn if chunk is None else functools.partial(fn, chunk=chunk)


def _native(form: str):
    if form == "sparse":
        return optax.softmax_cross_entropy_with_integer_labels
    return optax.softmax_cross_entropy


@functools.cache
def _step(fn):
    """The harness's compiled step: ``(loss [N], grad of the mean loss [N, C])``."""

    return jax.jit(loss_and_mean_grad(fn))


def _inputs(n, c, dtype, scale, form, seed=0):
    logits, targets = make_inputs(Case(n, c, dtype, scale, seed), form)
    return logits, (targets.astype(np.int32) if form == "sparse" else targets)


def _metrics(fn, logits, targets, dtype):
    loss, grad = _step(fn)(jnp.asarray(logits), jnp.asarray(targets))
    loss, grad = np.asarray(loss), np.asarray(grad)
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    return agreement_metrics(logits, loss, grad.astype(np.float64), ref_loss, ref_grad, dtype), (
        loss, grad)


@pytest.mark.parametrize("c", list(CHUNKS))
@pytest.mark.parametrize("form", FORMS)
def test_float32_within_tolerance(form, c):
    fn = _fn(form, CHUNKS[c])
    for scale in SCALES:
        logits, targets = _inputs(N, c, "float32", scale, form)
        metrics, (loss, grad) = _metrics(fn, logits, targets, "float32")
        assert loss.dtype == np.float32 and loss.shape == (N,)
        assert grad.dtype == np.float32 and grad.shape == (N, c)
        assert verdict(metrics, "float32") == "pass", (scale, metrics)


@pytest.mark.parametrize("c", [1000])  # 7 chunks and a tail (compilations are the cost)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("form", FORMS)
def test_16bit_no_worse_than_optax(form, dtype, c):
    fn = _fn(form, CHUNKS[c])
    for scale in SCALES:
        logits, targets = _inputs(N, c, dtype, scale, form)
        metrics, (loss, grad) = _metrics(fn, logits, targets, dtype)
        native, _ = _metrics(_native(form), logits, targets, dtype)
        assert loss.dtype == np.float32
        assert grad.dtype == logits.dtype
        assert verdict(metrics, dtype, native) in ("pass", "as-native"), (scale, metrics, native)


@pytest.mark.parametrize("form", FORMS)
def test_fused_backward(form):
    """``backward="fused"`` (one elementwise expression) gives the loop's results."""
    c = 1000
    fn = functools.partial(_fn(form, None), chunk=CHUNKS[c], backward="fused")
    for scale in SCALES:
        logits, targets = _inputs(N, c, "float32", scale, form, seed=6)
        metrics, _ = _metrics(fn, logits, targets, "float32")
        assert verdict(metrics, "float32") == "pass", (scale, metrics)


@pytest.mark.parametrize("form", FORMS)
def test_weighted_upstream_gradient(form):
    """grad of sum(w * loss) is w[i] * (sum(t) softmax - t) row by row (the custom VJP scales by
    the upstream gradient rather than assuming a mean)."""
    c = 1000
    logits, targets = _inputs(N, c, "float32", 1.0, form, seed=3)
    w = np.linspace(0.5, 2.0, N, dtype=np.float32)
    fn = _fn(form, CHUNKS[c])

    def weighted(x):
        return jnp.sum(jnp.asarray(w) * fn(x, jnp.asarray(targets)))

    grad = np.asarray(jax.jit(jax.grad(weighted))(jnp.asarray(logits))).astype(np.float64)
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    # As the gradient of a mean: divide out w[i] * N.
    as_mean = grad / (w[:, None].astype(np.float64) * N)
    metrics = agreement_metrics(logits, ref_loss, as_mean, ref_loss, ref_grad, "float32")
    assert verdict(metrics, "float32") == "pass", metrics


@pytest.mark.parametrize("form", FORMS)
def test_default_chunk_matches_small_chunk(form):
    """The default chunk width (a single chunk here) and a small one agree closely."""
    logits, targets = _inputs(N, 1000, "float32", 10.0, form, seed=5)
    small, _ = _step(_fn(form, 128))(jnp.asarray(logits), jnp.asarray(targets))
    default, _ = _step(_fn(form, None))(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(np.asarray(small), np.asarray(default), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("form", FORMS)
def test_empty_batch(form):
    logits, targets = _inputs(0, 10, "float32", 1.0, form)
    loss, grad = _step(_fn(form, 3))(jnp.asarray(logits), jnp.asarray(targets))
    assert loss.shape == (0,) and grad.shape == (0, 10)


@pytest.mark.parametrize("form", FORMS)
def test_masked_classes(form):
    """``-inf`` logits (masked classes of zero target weight), including a whole leading chunk of
    them (the running maximum starts at -inf), agree with the oracle."""
    logits, targets = _inputs(N, 10, "float32", 1.0, form, seed=2)
    labels = np.full(N, 8)
    logits[:, :6] = -np.inf
    targets = labels.astype(np.int32) if form == "sparse" else np.eye(10, dtype=np.float32)[labels]
    metrics, _ = _metrics(_fn(form, 3), logits, targets, "float32")
    assert verdict(metrics, "float32") == "pass", metrics


def test_soft_targets_and_target_gradient():
    """Rows that do not sum to 1 follow the exact formula; d loss / d t = lse - x."""
    logits, _ = _inputs(N, 100, "float32", 3.0, "onehot", seed=4)
    # Soft rows summing to 0.5 ... 1.5, and a row of zero targets (loss 0).
    targets = np.random.default_rng(0).random((N, 100)).astype(np.float32)
    targets *= (np.linspace(0.5, 1.5, N) / targets.sum(axis=1))[:, None].astype(np.float32)
    targets[0] = 0.0
    metrics, _ = _metrics(_fn("onehot", 7), logits, targets, "float32")
    assert verdict(metrics, "float32") == "pass", metrics
    fn = _fn("onehot", 7)
    dt = jax.jit(jax.grad(lambda t: jnp.sum(fn(jnp.asarray(logits), t))))(jnp.asarray(targets))
    expected = -log_softmax(logits)  # lse - x
    np.testing.assert_allclose(np.asarray(dt), expected, rtol=1e-5, atol=1e-5)


def test_out_of_range_label_gives_nan_loss():
    logits, labels = _inputs(4, 10, "float32", 1.0, "sparse")
    labels[1], labels[2] = 10, -1
    loss = np.asarray(jax.jit(_fn("sparse", 3))(jnp.asarray(logits), jnp.asarray(labels)))
    assert np.isnan(loss[1]) and np.isnan(loss[2]) and np.isfinite(loss[[0, 3]]).all()


def test_chunk_width_rule():
    assert jax_chunked.chunk_width(1024, 32000) == 1024  # 1024 x 1024 float32 = 4 MiB
    assert jax_chunked.chunk_width(256, 32000) == 4096
    assert jax_chunked.chunk_width(8192, 128256) == 128  # never below 128 columns
    assert jax_chunked.chunk_width(4, 10) == 10  # never above C
    assert jax_chunked.chunk_width(0, 5) == 5
    with pytest.raises(ValueError, match="chunk"):
        jax_chunked.chunked_sparse(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), chunk=0)
    with pytest.raises(ValueError, match="backward"):
        jax_chunked.chunked_sparse(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), backward="x")
    with pytest.raises(ValueError, match="targets"):
        jax_chunked.chunked_onehot(jnp.zeros((2, 3)), jnp.zeros((2, 4)))


@pytest.mark.parametrize("form", FORMS)
def test_compiled_step_holds_no_logits_sized_temporary(form):
    """At 256 x 32000 float32 the compiled forward + backward keeps no [N, C] float32 temporary:
    XLA's temporaries stay within a few 4 MiB chunks (the gradient is the output, not a temp)."""
    n, c = 256, 32000
    x = jnp.zeros((n, c), jnp.float32)
    t = jnp.zeros((n,), jnp.int32) if form == "sparse" else jnp.zeros((n, c), jnp.float32)
    compiled = _step(_fn(form, None)).lower(x, t).compile()
    stats = compiled.memory_analysis()
    if stats is None or getattr(stats, "temp_size_in_bytes", None) is None:
        pytest.skip("this JAX backend reports no compiled memory analysis")
    logits_bytes = n * c * 4
    temp = stats.temp_size_in_bytes
    assert temp <= 4 * jax_chunked.CHUNK_BYTES and temp < logits_bytes / 2, temp
