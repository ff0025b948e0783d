"""TensorFlow backend and its cross-entropy implementations (tf.nn and Keras)."""

from __future__ import annotations

import functools

import numpy as np

from xent_impls.backends.int32_labels import as_int32
from xent_impls.backends.tf_loader import keras, tf

FRAMEWORK = "tensorflow"
SYNC_METHOD = (
    "tf.test.experimental.sync_devices() on GPU; on CPU TensorFlow executes synchronously "
    "(the result is computed when the call returns)"
)


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def configure(threads: int) -> str:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised: keep what is in force
        pass
    return (
        f"intra_op={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter_op={tf.config.threading.get_inter_op_parallelism_threads()}"
    )


def _device(device: str) -> str:
    return "/GPU:0" if device == "cuda" else "/CPU:0"


def has_device(device: str) -> bool:
    if device == "cpu":
        return True
    return device == "cuda" and bool(tf.config.list_physical_devices("GPU"))


def device_name(device: str) -> str:
    if device == "cuda":
        gpu = tf.config.list_physical_devices("GPU")[0]
        return tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
    return "cpu"


def to_framework(array: np.ndarray, device: str, keep_dtype: bool = False) -> tf.Tensor:
    """``array`` as a tensor on ``device``; integer labels become int32 unless ``keep_dtype``
    (the behaviour probes hand over uint8 or int64 labels as they are)."""
    if np.issubdtype(array.dtype, np.integer) and not keep_dtype:
        # Refused, not wrapped to another class, where TensorFlow itself refuses it.
        array = as_int32(array, "TensorFlow's sparse cross-entropy")
    with tf.device(_device(device)):
        return tf.identity(tf.constant(array))


def to_numpy(x: tf.Tensor) -> np.ndarray:
    return x.numpy()


# --- implementations: fn(logits [N, C], targets) -> per-example loss [N] -------------------


def native_sparse(logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def native_onehot(logits, targets):
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)


@functools.cache
def _keras_loss(sparse: bool, from_logits: bool):
    losses = keras.losses
    cls = losses.SparseCategoricalCrossentropy if sparse else losses.CategoricalCrossentropy
    return cls(from_logits=from_logits, reduction=None)


def keras_sparse(logits, labels):
    return _keras_loss(True, True)(labels, logits)


def keras_onehot(logits, targets):
    return _keras_loss(False, True)(targets, logits)


def keras_probs_sparse(logits, labels):
    return _keras_loss(True, False)(labels, tf.nn.softmax(logits, axis=-1))


def keras_probs_onehot(logits, targets):
    return _keras_loss(False, False)(targets, tf.nn.softmax(logits, axis=-1))


# --- steps -----------------------------------------------------------------------------------


def loss_and_mean_grad(fn):
    """``(logits, targets) -> (loss [N], d mean(loss) / d logits)`` of a per-example loss
    ``fn``, through a gradient tape: the forward+backward step every TensorFlow cell times."""

    def step(logits, targets):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = fn(logits, targets)
            mean = tf.reduce_mean(loss)
        return loss, tape.gradient(mean, logits)

    return step


@functools.cache
def make_step(impl, grad: bool, device: str):
    step = loss_and_mean_grad(impl.fn) if grad else impl.fn

    if impl.compiled:
        step = tf.function(step, jit_compile=True, autograph=False)

    def on_device(logits, targets):
        with tf.device(_device(device)):
            return step(logits, targets)

    return on_device


def sync(out) -> None:
    if tf.config.list_physical_devices("GPU"):
        tf.test.experimental.sync_devices()


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


def ceiling_ops(device: str, numel: int) -> dict:
    """One pass each of a streaming copy (negation: tf.identity does not copy), read-only
    reduction and exp over ``numel`` float32 values."""
    with tf.device(_device(device)):
        x = tf.random.uniform([numel], dtype=tf.float32)

    def on_device(op):
        def run():
            with tf.device(_device(device)):
                return op(x)
        return run

    return {"copy": on_device(tf.negative), "read": on_device(tf.reduce_sum),
            "exp": on_device(tf.exp)}


def memory_in_use(device: str) -> int | None:
    if device != "cuda":
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["current"])


def exp_ceiling_ops(device: str, rows: int, cols: int) -> dict:
    """Ops that evaluate ``rows * cols`` exponentials the way a cross-entropy kernel does, on a
    cache-resident float32 block: log-sum-exp over rows and the native sparse cross-entropy,
    compiled by XLA (TensorFlow's eager kernels were 2-3x slower here)."""
    with tf.device(_device(device)):
        x = tf.random.uniform([rows, cols], maxval=4.0, dtype=tf.float32)
        labels = tf.zeros([rows], dtype=tf.int32)

    def lse(a):
        return tf.reduce_logsumexp(a, axis=1)

    def ce(a, b):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=b, logits=a)

    lse_xla = tf.function(lse, jit_compile=True, autograph=False)
    ce_xla = tf.function(ce, jit_compile=True, autograph=False)


    def on_device(op, *args):
        def run():
            with tf.device(_device(device)):
                return op(*args)
        return run

    return {"logsumexp_xla": on_device(lse_xla, x),
            "cross_entropy_xla": on_device(ce_xla, x, labels)}
