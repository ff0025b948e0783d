"""The chunked TensorFlow cross-entropy (xent_impls.fused.tf_chunked) against the float64 oracle.

Everything runs through the harness's step, a ``tf.GradientTape`` around
``tf.reduce_mean(fn(x, t))``, eagerly and under ``tf.function(jit_compile=True)`` (the registered
variant), with a chunk width smaller than ``C`` (several full chunks and a ragged tail) and
backward row blocks smaller than ``N``. float32 must pass the project's tolerance; bfloat16 /
float16 must be no worse than ``tf.nn`` at the same dtype
(``xent_bench.harness.agreement.verdict``).
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest

tf = pytest.importorskip("xent_impls.backends.tf_loader").tf

from xent_bench.harness.agreement import agreement_metrics, verdict  # noqa: E402
from xent_impls import Case, make_inputs, reference  # noqa: E402
from xent_impls.backends.tensorflow_backend import loss_and_mean_grad  # noqa: E402
from xent_impls.fused import tf_chunked  # noqa: E402

N = 12
ROWS = 5  # backward blocks of 4 rows (the largest divisor of 12 up to 5): three blocks
SCALES = (1.0, 100.0)
# C -> chunk width V < C: several full chunks and a ragged tail (C = 1 has a single column).
CHUNKS = {1: 1, 10: 3, 100: 7, 1000: 128, 5000: 384}
FORMS = ("sparse", "onehot")
MODES = ("eager", "xla")


def _fn(form: str, chunk: int | None, rows: int | None = ROWS, backward: str = "loop"):
    return functools.partial(getattr(tf_chunked, f"chunked_{form}"), chunk=chunk, rows=rows,
                             backward=backward)


def _native(form: str):
    if form == "sparse":
        return lambda x, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
    return lambda x, t: tf.nn.softmax_cross_entropy_with_logits(labels=t, logits=x)


@functools.cache
def _step(form: str, chunk: int | None, mode: str, backward: str = "loop"):
    """The harness's step ``(loss [N], grad of the mean loss [N, C])``, eager or under XLA (one
    ``tf.function`` per configuration, so the two logit scales share a compilation)."""
    step = loss_and_mean_grad(_fn(form, chunk, backward=backward))
    return tf.function(step, jit_compile=True, autograph=False) if mode == "xla" else step


def _inputs(n, c, dtype, scale, form, seed=0):
    # TensorFlow's own label width from the backend is int32; int64 labels are tested apart.
    logits, targets = make_inputs(Case(n, c, dtype, scale, seed), form)
    return logits, (targets.astype(np.int32) if form == "sparse" else targets)


def _metrics(step, logits, targets, dtype):
    loss, grad = step(tf.constant(logits), tf.constant(targets))
    loss, grad = loss.numpy(), grad.numpy()
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    metrics = agreement_metrics(logits, loss, grad.astype(np.float64), ref_loss, ref_grad, dtype)
    return metrics, (loss, grad)


# Eager for every C; XLA (a compilation each, the cost of this file) for a single column, a
# short and a long row.
FLOAT32_CASES = [(c, "eager") for c in CHUNKS] + [(c, "xla") for c in (1, 10, 5000)]


@pytest.mark.parametrize(("c", "mode"), FLOAT32_CASES)
@pytest.mark.parametrize("form", FORMS)
def test_float32_within_tolerance(form, c, mode):
    for scale in SCALES:
        logits, targets = _inputs(N, c, "float32", scale, form)
        metrics, (loss, grad) = _metrics(_step(form, CHUNKS[c], mode), logits, targets, "float32")
        assert loss.dtype == np.float32 and loss.shape == (N,)
        assert grad.dtype == np.float32 and grad.shape == (N, c)
        assert verdict(metrics, "float32") == "pass", (scale, metrics)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("form", FORMS)
def test_16bit_no_worse_than_native(form, dtype, mode):
    c = 1000
    native_step = loss_and_mean_grad(_native(form))
    for scale in SCALES:
        logits, targets = _inputs(N, c, dtype, scale, form)
        metrics, (loss, grad) = _metrics(_step(form, CHUNKS[c], mode), logits, targets, dtype)
        native, _ = _metrics(native_step, logits, targets, dtype)
        assert loss.dtype == np.float32
        assert grad.dtype == logits.dtype
        assert verdict(metrics, dtype, native) in ("pass", "as-native"), (scale, metrics, native)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", FORMS)
def test_fused_backward(form, mode):
    """``backward="fused"`` (one elementwise expression) gives the loop's results."""
    c = 1000
    step = _step(form, CHUNKS[c], mode, "fused")
    for scale in SCALES:
        logits, targets = _inputs(N, c, "float32", scale, form, seed=6)
        metrics, _ = _metrics(step, logits, targets, "float32")
        assert verdict(metrics, "float32") == "pass", (scale, metrics)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", FORMS)
def test_weighted_upstream_gradient(form, mode):
    """grad of sum(w * loss) is w[i] * (sum(t) softmax - t) row by row."""
    c = 100
    logits, targets = _inputs(N, c, "float32", 1.0, form, seed=3)
    w = tf.constant(np.linspace(0.5, 2.0, N, dtype=np.float32))
    fn = _fn(form, CHUNKS[c])

    def grad_of_weighted_sum(x, t):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(w * fn(x, t))
        return tape.gradient(total, x)

    if mode == "xla":
        grad_of_weighted_sum = tf.function(grad_of_weighted_sum, jit_compile=True,
                                           autograph=False)
    grad = grad_of_weighted_sum(tf.constant(logits), tf.constant(targets)).numpy()
    ref_loss, ref_grad = reference(logits, targets, grad=True)
    # As the gradient of a mean: divide out w[i] * N.
    as_mean = grad.astype(np.float64) / (w.numpy()[:, None].astype(np.float64) * N)
    metrics = agreement_metrics(logits, ref_loss, as_mean, ref_loss, ref_grad, "float32")
    assert verdict(metrics, "float32") == "pass", metrics


@pytest.mark.parametrize("mode", MODES)
def test_int64_labels_and_default_sizes(mode):
    """int64 labels (TensorFlow's usual label type) with the default chunk and row block."""
    logits, labels = make_inputs(Case(N, 100, "float32", 10.0, 1), "sparse")
    step = loss_and_mean_grad(_fn("sparse", None, None))
    if mode == "xla":
        step = tf.function(step, jit_compile=True, autograph=False)
    assert labels.dtype == np.int64
    metrics, _ = _metrics(step, logits, labels, "float32")
    assert verdict(metrics, "float32") == "pass", metrics


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", FORMS)
def test_empty_batch(form, mode):
    logits, targets = _inputs(0, 10, "float32", 1.0, form)
    loss, grad = _step(form, 3, mode)(tf.constant(logits), tf.constant(targets))
    assert loss.shape == (0,) and grad.shape == (0, 10)


@pytest.mark.parametrize("form", FORMS)
def test_masked_classes(form):
    """``-inf`` logits of zero target weight, including a whole leading chunk of them."""
    logits, _ = _inputs(N, 10, "float32", 1.0, form, seed=2)
    labels = np.full(N, 8)
    logits[:, :6] = -np.inf
    targets = labels.astype(np.int32) if form == "sparse" else np.eye(10, dtype=np.float32)[labels]
    metrics, _ = _metrics(_step(form, 3, "eager"), logits, targets, "float32")
    assert verdict(metrics, "float32") == "pass", metrics


def test_soft_targets():
    """Target rows that do not sum to 1 follow the exact formula (a zero row has loss 0)."""
    logits, _ = _inputs(N, 100, "float32", 3.0, "onehot", seed=4)
    targets = np.random.default_rng(0).random((N, 100)).astype(np.float32)
    targets *= (np.linspace(0.5, 1.5, N) / targets.sum(axis=1))[:, None].astype(np.float32)
    targets[0] = 0.0
    metrics, _ = _metrics(_step("onehot", 7, "eager"), logits, targets, "float32")
    assert verdict(metrics, "float32") == "pass", metrics


def test_out_of_range_label_gives_nan_loss():
    logits, labels = _inputs(4, 10, "float32", 1.0, "sparse")
    labels[1], labels[2] = 10, -1
    loss = _fn("sparse", 3)(tf.constant(logits), tf.constant(labels)).numpy()
    assert np.isnan(loss[1]) and np.isnan(loss[2]) and np.isfinite(loss[[0, 3]]).all()


def test_size_rules():
    assert tf_chunked.chunk_width(1024, 32000) == 1024  # 1024 x 1024 float32 = 4 MiB
    assert tf_chunked.chunk_width(8192, 128256) == 128
    assert tf_chunked.chunk_width(4, 10) == 10
    assert tf_chunked.block_rows(1024, 32000) == 32  # 32 x 32000 float32 <= 4 MiB
    assert tf_chunked.block_rows(1000, 32000) == 25  # a divisor of N
    assert tf_chunked.block_rows(12, 10, max_rows=5) == 4
    assert tf_chunked.block_rows(7, 10**7) == 1
    with pytest.raises(ValueError, match="rows"):
        tf_chunked.chunked_sparse(tf.zeros((2, 3)), tf.zeros(2, tf.int32), rows=0)
    with pytest.raises(ValueError, match="backward"):
        tf_chunked.chunked_sparse(tf.zeros((2, 3)), tf.zeros(2, tf.int32), backward="x")
    with pytest.raises(ValueError, match="targets"):
        tf_chunked.chunked_onehot(tf.zeros((2, 3)), tf.zeros((2, 4)))


# One instruction of an HLO computation with an array result: name, dimensions, opcode.
_HLO_ARRAY = re.compile(r"^\s*(?:ROOT )?%(\S+) = \w+\[([\d,]*)\]\{[^}]*\} ([\w-]+)\(")


def _large_arrays(hlo: str, numel: int) -> list[tuple[str, str]]:
    """``(name, opcode)`` of the entry computation's instructions that produce an array of at
    least ``numel`` elements, other than parameters and views of one (bitcast, tuple element)."""
    entry = hlo[hlo.index("ENTRY"):]
    found = []
    for line in entry.splitlines():
        match = _HLO_ARRAY.match(line)
        if not match or match[3] in ("parameter", "bitcast", "get-tuple-element"):
            continue
        dims = [int(d) for d in match[2].split(",") if d]
        if math.prod(dims) >= numel:
            found.append((match[1], match[3]))
    return found


@pytest.mark.parametrize("form", FORMS)
def test_compiled_step_keeps_no_logits_sized_temporary(form):
    """At 256 x 32000 float32 the optimized XLA program of the training step creates a single
    [N, C]-sized array, the gradient (a [N // B, B, C] row-block buffer filled in place by the
    while loop; its reshape to [N, C] is a bitcast). No copy or padding of the logits."""
    n, c = 256, 32000
    step = tf.function(loss_and_mean_grad(_fn(form, None, None)), jit_compile=True, autograph=False)
    x = tf.zeros((n, c), tf.float32)
    t = tf.zeros((n,), tf.int32) if form == "sparse" else tf.zeros((n, c), tf.float32)
    hlo = step.experimental_get_compiler_ir(x, t)(stage="optimized_hlo")
    assert len(_large_arrays(hlo, n * c)) == 1, _large_arrays(hlo, n * c)
