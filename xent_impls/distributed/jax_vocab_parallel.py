"""Vocabulary-parallel cross-entropy in JAX: ``jax.shard_map`` over a 1-D mesh axis ``"vocab"``.

The logits ``[N, C]`` are laid out as ``world`` column blocks, one per device, following
``xent_impls.distributed.vocab_split``. ``shard_map`` needs equal blocks, so when ``world`` does
not divide ``C`` every block is padded to the largest shard's width ``C_max``; each device
masks its padding columns (from a constant table of shard sizes indexed by
``lax.axis_index``), so padding never enters a maximum, a sum or a gradient. Inside the map,
each device runs the algorithm of the package docstring with ``lax.pmax`` / ``lax.psum`` on
``[N]`` float32 vectors; the whole step (forward, or forward and the gradient by JAX's own
autodiff) is one ``jax.jit``.

Gradient: the row maximum enters the loss only as a shift that cancels exactly
(``log sum exp(x - m) + m``), so it is held constant (``lax.stop_gradient`` before ``pmax``,
which has no differentiation rule of its own); autodiff through ``psum`` then gives each device
its gradient block ``softmax - target`` with no further collective. :func:`hlo_collectives`
reads the compiled HLO to confirm that XLA did not insert an all-gather of the logits.

Multiple CPU devices come from ``XLA_FLAGS=--xla_force_host_platform_device_count=W``, which
must be set before JAX is imported (so each world size needs its own process).
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from xent_impls.backends.jax_backend import loss_and_mean_grad
from xent_impls.distributed import FORMS, vocab_split

AXIS = "vocab"
SYNC_METHOD = "jax.block_until_ready(out)"


def make_mesh(world: int, platform: str = "cpu") -> Mesh:
    """A 1-D mesh over the first ``world`` devices of ``platform``, axis name ``"vocab"``."""
    devices = jax.devices(platform)
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world size must be a positive integer, got {world!r}")
    if world > len(devices):
        raise ValueError(
            f"world size {world} exceeds the {len(devices)} {platform} device(s) JAX sees; on "
            f"CPU set XLA_FLAGS=--xla_force_host_platform_device_count={world} before importing "
            f"jax")
    return Mesh(np.asarray(devices[:world]), (AXIS,))


def block_width(c: int, world: int) -> int:
    """Width ``C_max`` of every padded block: the largest shard of ``vocab_split(c, world)``."""
    return max(stop - start for start, stop in vocab_split(c, world))


def to_blocks(matrix: np.ndarray, world: int) -> np.ndarray:
    """``[N, C]`` -> ``[N, world * C_max]``: each rank's classes in its own block of width
    ``C_max``, zero-padded on the right (the padding is masked inside the map)."""
    n, c = matrix.shape
    width = block_width(c, world)
    if width * world == c:
        return matrix
    out = np.zeros((n, world * width), dtype=matrix.dtype)
    for rank, (start, stop) in enumerate(vocab_split(c, world)):
        out[:, rank * width: rank * width + stop - start] = matrix[:, start:stop]
    return out


def from_blocks(blocks: np.ndarray, c: int, world: int) -> np.ndarray:
    """Inverse of :func:`to_blocks`: ``[N, world * C_max]`` -> ``[N, C]``."""
    width = block_width(c, world)
    if width * world == c:
        return blocks
    return np.concatenate([blocks[:, rank * width: rank * width + stop - start]
                           for rank, (start, stop) in enumerate(vocab_split(c, world))], axis=1)


def _local_loss(x, targets, *, starts, sizes, sparse: bool):
    """Body of the map on one device: ``x [N, C_max]`` (its block), ``targets`` global labels
    ``[N]`` or its target block ``[N, C_max]``. Returns the global per-example loss ``[N]``
    float32, identical on every device."""
    rank = lax.axis_index(AXIS)
    start, size = jnp.asarray(starts)[rank], jnp.asarray(sizes)[rank]
    x = x.astype(jnp.float32)  # float32 accumulation whatever the logits dtype
    col = lax.broadcasted_iota(jnp.int32, x.shape, 1)
    valid = col < size  # padding columns of an uneven split are masked out everywhere
    x = jnp.where(valid, x, -jnp.inf)
    # 1. Global row maximum, held constant for autodiff (it cancels in log-sum-exp + max).
    gmax = lax.pmax(lax.stop_gradient(jnp.max(x, axis=1)), AXIS)
    # An all -inf row would give (-inf) - (-inf) = NaN in the shift; shifting by 0 lets it
    # come out as the oracle's value without touching the other rows.
    shifted = x - jnp.where(jnp.isfinite(gmax), gmax, 0.0)[:, None]
    # 2. Global sum of exponentials (padding: exp(-inf) = 0, masked again for a clean gradient).
    sumexp = lax.psum(jnp.sum(jnp.where(valid, jnp.exp(shifted), 0.0), axis=1), AXIS)
    # 3. Shifted target logit: the owning device contributes x_label - max, the others 0.
    if sparse:
        local = targets.astype(jnp.int32) - start
        hit = (col == local[:, None]) & valid
        target_logit = jnp.sum(jnp.where(hit, shifted, 0.0), axis=1)
    else:
        t = targets.astype(jnp.float32)
        # Mask, not multiply: 0 * -inf (a padded or -inf-masked class) would be NaN.
        target_logit = jnp.sum(jnp.where(t != 0, t * shifted, 0.0), axis=1)
    target_logit = lax.psum(target_logit, AXIS)
    return jnp.log(sumexp) - target_logit


def sharded_loss(mesh: Mesh, c: int, form: str):
    """``loss(x_blocks [N, world * C_max], targets) -> loss [N]`` float32 as a ``shard_map``
    over ``mesh`` (not jitted). ``targets``: global integer labels ``[N]`` (replicated) for
    ``sparse``, the blocked target matrix ``[N, world * C_max]`` for ``onehot``."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
    world = mesh.shape[AXIS]
    bounds = vocab_split(c, world)
    body = functools.partial(
        _local_loss, starts=tuple(start for start, _ in bounds),
        sizes=tuple(stop - start for start, stop in bounds), sparse=form == "sparse")
    target_spec = P() if form == "sparse" else P(None, AXIS)
    return jax.shard_map(body, mesh=mesh, in_specs=(P(None, AXIS), target_spec), out_specs=P())


@functools.cache
def make_step(mesh: Mesh, c: int, form: str, grad: bool):
    """The jitted step: ``step(x_blocks, targets) -> loss [N]`` (forward) or
    ``-> (loss [N], grad of mean loss [N, world * C_max])`` in the logits dtype, the gradient
    sharded over the vocabulary like the logits."""
    loss_fn = sharded_loss(mesh, c, form)
    return jax.jit(loss_and_mean_grad(loss_fn) if grad else loss_fn)


def shard_inputs(mesh: Mesh, logits: np.ndarray, targets: np.ndarray):
    """Place ``logits [N, C]`` (and a one-hot ``targets [N, C]``) on the mesh, one block of
    classes per device; integer labels ``[N]`` are replicated (as int32, JAX's default width).
    Returns ``(x_blocks, targets)`` as sharded ``jax.Array`` s."""
    world = mesh.shape[AXIS]
    blocked = NamedSharding(mesh, P(None, AXIS))
    x = jax.device_put(to_blocks(np.asarray(logits), world), blocked)
    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        if targets.ndim != 1:
            raise ValueError(f"integer labels must have shape [N], got shape {targets.shape}")
        return x, jax.device_put(targets.astype(np.int32), NamedSharding(mesh, P()))
    return x, jax.device_put(to_blocks(targets, world), blocked)


def vocab_parallel_cross_entropy(mesh: Mesh, logits: np.ndarray, targets: np.ndarray,
                                 grad: bool = False):
    """Convenience: shard ``logits [N, C]`` / ``targets`` over ``mesh``, run the jitted step and
    return NumPy ``loss [N]`` float32 (and the gradient of the mean loss ``[N, C]`` in the logits
    dtype when ``grad``)."""
    c = np.asarray(logits).shape[1]
    form = "sparse" if np.issubdtype(np.asarray(targets).dtype, np.integer) else "onehot"
    x, t = shard_inputs(mesh, logits, targets)
    out = make_step(mesh, c, form, grad)(x, t)
    if not grad:
        return np.asarray(out)
    loss, dx = out
    return np.asarray(loss), from_blocks(np.asarray(dx), c, mesh.shape[AXIS])


# --- what XLA made of it -------------------------------------------------------------------

# HLO collective instruction names (an async pair such as all-gather-start/-done counts once).
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "reduce-scatter",
               "collective-permute", "collective-broadcast")


def compiled_hlo(step, *args) -> str:
    """Text of the optimised HLO module that ``step`` (a ``jax.jit`` function) runs on ``args``."""
    return step.lower(*args).compile().as_text()


def hlo_collectives(hlo_text: str) -> dict[str, int]:
    """Count collective instructions by kind in HLO text (``-start`` forms count, ``-done``
    forms do not, so an async collective counts once)."""
    counts = {}
    for name in COLLECTIVES:
        # The opcode directly followed by its operand list; instruction names such as
        # ``%all-reduce.3`` are followed by a dot, not a parenthesis.
        pattern = rf"(?<![\w.%-]){re.escape(name)}(?:-start)?\("
        counts[name] = len(re.findall(pattern, hlo_text))
    return counts


def assert_no_all_gather(step, *args) -> dict[str, int]:
    """Compile ``step`` on ``args`` and raise ``AssertionError`` if XLA put an all-gather into
    it (which would mean the logits, or some other array, were gathered instead of reduced).
    Returns the collective counts."""
    counts = hlo_collectives(compiled_hlo(step, *args))
    if counts["all-gather"]:
        raise AssertionError(f"compiled step contains {counts['all-gather']} all-gather(s); "
                             f"collectives: {counts}")
    return counts
