"""JAX backend and its cross-entropy implementations (optax and hand-written)."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xent_impls.backends.int32_labels import as_int32
from xent_impls.vocabulary import DEVICES

FRAMEWORK = "jax"
SYNC_METHOD = "jax.block_until_ready(out)"


def versions() -> dict[str, str]:
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__}


def configure(threads: int) -> str:
    # XLA's CPU thread pool is fixed when the backend starts; the worker sets XLA_FLAGS before
    # importing JAX (see xent_bench/harness/worker.py). Report what is in force.
    return f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} ({threads} requested)"


def _device(device: str):
    # Only the suite's device names: anything else ("tpu", "cuda:1") would otherwise have run
    # on the CPU.
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    return jax.devices("gpu" if device == "cuda" else "cpu")[0]


def has_device(device: str) -> bool:
    if device not in DEVICES:
        return False
    try:
        _device(device)
    except RuntimeError:
        return False
    return True


def device_name(device: str) -> str:
    return _device(device).device_kind


def to_framework(array: np.ndarray, device: str, keep_dtype: bool = False):
    """``array`` on ``device``; integer labels become int32 (JAX's integer width with 64-bit
    types disabled), a label int32 cannot hold refused, unless ``keep_dtype``, where JAX itself
    decides (it stores int64 as int32, wrapping)."""
    if np.issubdtype(array.dtype, np.integer) and not keep_dtype:
        array = as_int32(array, "JAX (64-bit types off)")
    return jax.device_put(array, _device(device))


def to_numpy(x) -> np.ndarray:
    return np.asarray(x)


# --- implementations: fn(logits [N, C], targets) -> per-example loss [N] -------------------


def optax_sparse(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def optax_onehot(logits, targets):
    return optax.softmax_cross_entropy(logits, targets)


def manual_sparse(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def manual_onehot(logits, targets):
    return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def _naive_probs(logits):
    exp = jnp.exp(logits)
    return exp / jnp.sum(exp, axis=-1, keepdims=True)


def naive_sparse(logits, labels):
    return -jnp.log(jnp.take_along_axis(_naive_probs(logits), labels[:, None], axis=-1)[:, 0])


def naive_onehot(logits, targets):
    return -jnp.sum(targets * jnp.log(_naive_probs(logits)), axis=-1)


# --- steps -----------------------------------------------------------------------------------


def loss_and_mean_grad(fn):
    """``(logits, targets) -> (loss [N], d mean(loss) / d logits)`` of a per-example loss
    ``fn`` (not jitted): the forward+backward step every JAX cell times."""

    def step(logits, targets):
        def mean_loss(x):
            loss = fn(x, targets)
            return jnp.mean(loss), loss

        (_, loss), dlogits = jax.value_and_grad(mean_loss, has_aux=True)(logits)
        return loss, dlogits

    return step


@functools.cache
def make_step(impl, grad: bool, device: str):
    step = loss_and_mean_grad(impl.fn) if grad else impl.fn
    return jax.jit(step) if impl.compiled else step


def sync(out) -> None:
    jax.block_until_ready(out)


def reset_peak_memory(device: str) -> None:
    return None  # JAX has no reset; the harness reads compiled memory_analysis() instead


def peak_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    stats = _device(device).memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def ceiling_ops(device: str, numel: int) -> dict:
    """One pass each of a streaming copy (negation: XLA elides a plain copy), read-only
    reduction and exp over ``numel`` float32 values, each jitted."""
    x = jax.device_put(np.random.default_rng(0).random(numel, dtype=np.float32), _device(device))
    neg, total, exp = jax.jit(jnp.negative), jax.jit(jnp.sum), jax.jit(jnp.exp)
    return {"copy": lambda: neg(x), "read": lambda: total(x), "exp": lambda: exp(x)}


def memory_in_use(device: str) -> int | None:
    if device != "cuda":
        return None
    return (_device(device).memory_stats() or {}).get("bytes_in_use")


def exp_ceiling_ops(device: str, rows: int, cols: int) -> dict:
    """Ops that evaluate ``rows * cols`` exponentials the way a cross-entropy kernel does, on a
    cache-resident float32 block: log-sum-exp over rows and optax's cross-entropy, jitted."""
    x = jax.device_put(4 * np.random.default_rng(0).random((rows, cols), dtype=np.float32),
                       _device(device))
    labels = jax.device_put(np.zeros(rows, dtype=np.int32), _device(device))
    lse = jax.jit(lambda a: jax.nn.logsumexp(a, axis=1))
    ce = jax.jit(optax.softmax_cross_entropy_with_integer_labels)
    return {"logsumexp": lambda: lse(x), "cross_entropy": lambda: ce(x, labels)}
