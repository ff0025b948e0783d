"""Vocabulary-parallel cross-entropy: logits sharded over the classes, combined by collectives.

Large-vocabulary models shard the output layer over the vocabulary (tensor parallelism), so each
of ``world`` ranks holds logits ``[N, C_r]`` for a contiguous block of classes
``[start_r, start_r + C_r)``. The loss is formed without gathering any row:

    forward (per rank r, float32 accumulation)
      m_r   = max_j x_ij                    over the rank's classes              [N]
      m     = all_reduce_MAX(m_r)                                                [N]
      s_r   = sum_j exp(x_ij - m)                                                [N]
      s     = all_reduce_SUM(s_r)                                                [N]
      t_r   = x_i,label_i - m  if the rank owns label_i, else 0   (sparse)       [N]
              sum_j target_ij * (x_ij - m)                         (one-hot)     [N]
      t     = all_reduce_SUM(t_r)                                                [N]
      loss  = log(s) - t  ( = log(s) + m - x_label )                             [N]

    backward (no collective)
      d loss_i / d x_ij = (exp(x_ij - m) / s - target_ij) * grad_output_i   on the rank's block

Every rank ends the forward pass with the same ``loss [N]`` and the global ``m`` and ``s``, which
is all the backward pass needs: each rank's gradient block depends only on its own logits and
target block. The one-hot form assumes each target row sums to 1 (a one-hot or soft
distribution); the general ``(sum_j t_ij) * lse - sum_j t_ij x_ij`` would need a fourth reduction.

This package holds what does not depend on a framework: the class split and the communication
model. ``torch_vocab_parallel`` (``torch.distributed``) and ``jax_vocab_parallel``
(``jax.shard_map``) hold the implementations; both import their framework on first use only.
"""

from __future__ import annotations

from xent_impls.impl import Impl
from xent_impls.vocabulary import FORMS, PASSES

# Every collective carries float32 values (the accumulation dtype), whatever the logits dtype.
PAYLOAD_ITEMSIZE = 4
# All-reduces per step: MAX of row maxima, SUM of sums of exponentials, SUM of target logits.
FORWARD_ALL_REDUCES = 3


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def vocab_split(c: int, world: int) -> list[tuple[int, int]]:
    """Split classes ``[0, c)`` into ``world`` contiguous shards ``(start, stop)``.

    ``c`` need not divide evenly: the first ``c % world`` shards get ``c // world + 1`` classes
    and the rest ``c // world`` (the rule of ``numpy.array_split``), so shard sizes differ by at
    most one and rank ``r`` holds the ``r``-th block. With ``world > c`` the last ranks hold
    empty shards (``start == stop``); the implementations accept them (they contribute nothing
    to the sums and ``-inf`` to the maximum).

    >>> vocab_split(10, 4)
    [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    _positive_int("number of classes c", c)
    _positive_int("world size", world)
    base, extra = divmod(c, world)
    bounds, start = [], 0
    for rank in range(world):
        stop = start + base + (1 if rank < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard_bounds(c: int, world: int, rank: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s classes under :func:`vocab_split`."""
    _positive_int("world size", world)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"rank must be an integer in [0, {world}), got {rank!r}")
    return vocab_split(c, world)[rank]


def ring_all_reduce_bytes(payload_bytes: int, world: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``payload_bytes``: a reduce-scatter then an
    all-gather, each ``world - 1`` steps of ``payload / world`` bytes, so
    ``2 * (world - 1) / world * payload``; 0 for ``world == 1``."""
    _positive_int("world size", world)
    return 2.0 * (world - 1) / world * payload_bytes


def modelled_comm_bytes(n: int, c: int, world: int, form: str, pass_: str,
                        itemsize: int) -> float:
    """Bytes EACH rank sends in collectives for one step of vocabulary-parallel CE.

    Algorithm (see the module docstring): the forward pass runs three ring all-reduces of
    ``[N]`` float32 vectors (row maxima by MAX, sums of exponentials by SUM, target logits by
    SUM: the owning rank contributes the label's logit in the sparse form, every rank its local
    dot product with its target block in the one-hot form), so

        bytes = 3 * 2 * (world - 1) / world * 4 * N

    The backward pass adds nothing: each rank's gradient block is ``softmax - target`` from its
    own logits and the global max and sum it already holds. ``world == 1`` sends 0 bytes.

    Args:
      n: rows (batch) N.
      c: classes C. Does not enter the total: the collectives carry one value per row,
        which is the point of the method (compare :func:`gather_comm_bytes`).
      world: ranks.
      form: ``sparse`` or ``onehot`` (same traffic).
      pass_: ``forward`` or ``forward_backward`` (same traffic).
      itemsize: bytes per logit. Does not enter the total either: the collectives carry float32
        accumulators whatever the logits dtype.

    Returns:
      bytes sent per rank (float; the ring formula is fractional for world sizes that do not
      divide the payload).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"batch size n must be a non-negative integer, got {n!r}")
    _positive_int("number of classes c", c)
    _positive_int("world size", world)
    _positive_int("itemsize", itemsize)
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
    if pass_ not in PASSES:
        raise ValueError(f"unknown pass {pass_!r}; known: {', '.join(PASSES)}")
    per_all_reduce = ring_all_reduce_bytes(n * PAYLOAD_ITEMSIZE, world)
    return FORWARD_ALL_REDUCES * per_all_reduce  # backward: no collective


def gather_comm_bytes(n: int, c: int, world: int, itemsize: int) -> float:
    """For comparison: bytes each rank would send to all-gather full logit rows instead (ring
    all-gather of an ``[N, C]`` array of ``itemsize``-byte values: ``(world - 1) / world * N * C *
    itemsize``), before even counting the gradient's way back."""
    _positive_int("world size", world)
    _positive_int("number of classes c", c)
    _positive_int("itemsize", itemsize)
    return (world - 1) / world * n * c * itemsize


# The vocabulary-parallel implementations as registry records, for cells and reports. They are
# not in the single-process catalog: their functions take a rank's block of the logits plus a
# process group or device mesh, not ``fn(logits, targets)``, and only the distributed harness
# (xent_bench/harness/distributed.py) runs them.
_DESCRIPTIONS = {
    "torch": ("torch.autograd.Function over torch.distributed (gloo on CPU): three all-reduces "
              "of [N] float32, gradient block without a collective", ("float32", "float16",
                                                                       "bfloat16", "float64")),
    "jax": ("jax.shard_map over a 1-D 'vocab' mesh with lax.pmax / lax.psum, under jax.jit; "
            "autodiff gradient", ("float32", "float16", "bfloat16")),
    "tensorflow": ("DTensor (tf.experimental.dtensor) global-view loss on logits laid out "
                   "[unsharded, 'vocab'] over logical CPU devices; GradientTape gradient",
                   ("float32", "float16", "bfloat16")),
}
VARIANT = "vocab-parallel"


def _impls():
    module = {"torch": "torch_vocab_parallel", "jax": "jax_vocab_parallel",
              "tensorflow": "tf_vocab_parallel"}
    return tuple(
        Impl(id=f"{fw}/{VARIANT}/{form}", framework=fw, form=form, variant=VARIANT,
             compiled=fw == "jax", dtypes=dtypes, devices=("cpu", "cuda") if fw != "tensorflow"
             else ("cpu",), description=description,
             entry=f"xent_impls.distributed.{module[fw]}:vocab_parallel_cross_entropy")
        for fw, (description, dtypes) in _DESCRIPTIONS.items() for form in FORMS)


VOCAB_PARALLEL_IMPLS = _impls()


def get_impl(framework: str, form: str):
    """The vocabulary-parallel implementation record of ``framework`` and ``form``."""
    for impl in VOCAB_PARALLEL_IMPLS:
        if impl.framework == framework and impl.form == form:
            return impl
    raise ValueError(f"no vocabulary-parallel implementation for framework {framework!r} and "
                     f"form {form!r}; frameworks: {', '.join(_DESCRIPTIONS)}; forms: "
                     f"{', '.join(FORMS)}")


__all__ = [
    "VOCAB_PARALLEL_IMPLS",
    "get_impl",
    "FORMS",
    "PASSES",
    "gather_comm_bytes",
    "modelled_comm_bytes",
    "ring_all_reduce_bytes",
    "shard_bounds",
    "vocab_split",
]
