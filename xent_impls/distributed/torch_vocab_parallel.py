"""Vocabulary-parallel cross-entropy on ``torch.distributed`` (gloo on CPU, nccl on GPU).

Each rank of a process group holds the logits of its contiguous block of classes,
``[N, C_local]`` starting at class ``vocab_start`` (see ``xent_impls.distributed.vocab_split``),
and computes the same per-example loss ``[N]`` as a single-device cross-entropy over all ``C``
classes, with three all-reduces of ``[N]`` float32 vectors and no gather of logits (the
algorithm is in the package docstring). The code uses only tensor ops and collectives, so it
runs on whatever device the tensors and the process group live on.

    loss = vocab_parallel_cross_entropy(logits_shard, labels, vocab_start=start)   # [N] float32
    loss.mean().backward()     # logits_shard.grad: this rank's gradient block, no collective
"""

from __future__ import annotations

import torch
import torch.distributed as dist

# Collectives and the loss are computed in float32 for 16-bit logits; float64 logits stay float64.
_ACCUMULATE = {torch.float16: torch.float32, torch.bfloat16: torch.float32,
               torch.float32: torch.float32, torch.float64: torch.float64}


def _all_reduce(tensor: torch.Tensor, op, group) -> torch.Tensor:
    """In-place all-reduce that is a no-op without an initialised process group of size > 1
    (so the function also runs as plain single-device CE)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


def _local_max(x: torch.Tensor) -> torch.Tensor:
    """Row maxima ``[N]`` of ``x [N, C_local]``; ``-inf`` for an empty shard (C_local = 0)."""
    if x.shape[1] == 0:
        return torch.full((x.shape[0],), -torch.inf, dtype=x.dtype, device=x.device)
    return x.amax(dim=1)


def _owned_labels(labels: torch.Tensor, vocab_start: int, c_local: int):
    """``(owned [N] bool, local index [N] int64)``: which rows' labels fall in this rank's block
    and where (the index is clamped to a valid column for rows this rank does not own)."""
    local = labels - vocab_start
    owned = (local >= 0) & (local < c_local)
    return owned, local.clamp(0, max(c_local - 1, 0))


class VocabParallelCrossEntropy(torch.autograd.Function):
    """``forward(logits [N, C_local], targets, vocab_start, group) -> loss [N]`` (float32 for
    16-bit and float32 logits). ``targets``: global int64 labels ``[N]`` (sparse form) or this
    rank's target block ``[N, C_local]`` (one-hot form, rows summing to 1 over all ranks)."""

    @staticmethod
    def forward(ctx, logits, targets, vocab_start, group):
        acc = _ACCUMULATE.get(logits.dtype)
        if acc is None:
            raise ValueError(f"unsupported logits dtype {logits.dtype}; supported: "
                             f"{', '.join(str(d) for d in _ACCUMULATE)}")
        x = logits.to(acc)
        n, c_local = x.shape
        # 1. Global row maximum: the shift that keeps exp() from overflowing on every rank.
        gmax = _all_reduce(_local_max(x), dist.ReduceOp.MAX, group)
        # A row whose global maximum is not finite (all classes -inf) would give (-inf) - (-inf)
        # = NaN in the shift; shifting by 0 lets such a row come out as the oracle's (NaN/inf)
        # without poisoning the others.
        shift = torch.where(torch.isfinite(gmax), gmax, torch.zeros_like(gmax))
        shifted = x - shift[:, None]  # [N, C_local], accumulation dtype
        # 2. Shifted target logit x_label - shift: the owning rank contributes it, others 0.
        #    Taken before the exponential below overwrites ``shifted`` in place.
        if targets.dtype in (torch.int64, torch.int32):
            owned, index = _owned_labels(targets.to(torch.int64), vocab_start, c_local)
            if c_local:
                picked = shifted.gather(1, index[:, None]).squeeze(1)
            else:
                picked = torch.zeros(n, dtype=acc, device=x.device)
            target_logit = torch.where(owned, picked, torch.zeros_like(picked))
            sparse = True
        else:
            t = targets.to(acc)
            # Mask, not multiply: a -inf logit with target 0 contributes 0, not 0 * -inf = NaN.
            target_logit = torch.where(t != 0, t * shifted, torch.zeros_like(shifted)).sum(dim=1)
            owned = index = None
            sparse = False
        # 3. Global sum of exponentials (in place: one [N, C_local] buffer for the whole pass).
        exp = shifted.exp_()
        sumexp = _all_reduce(exp.sum(dim=1), dist.ReduceOp.SUM, group)
        target_logit = _all_reduce(target_logit, dist.ReduceOp.SUM, group)
        loss = torch.log(sumexp) - target_logit  # = log(sum) + max - x_label
        if ctx.needs_input_grad[0]:
            # Keep the softmax block for the backward pass (what F.cross_entropy keeps too).
            softmax = exp.div_(sumexp[:, None])
            ctx.save_for_backward(softmax, *((owned, index) if sparse else (targets,)))
            ctx.sparse = sparse
            ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        # d loss_i / d x_ij = softmax_ij - target_ij on this rank's block: no collective.
        softmax, *saved = ctx.saved_tensors
        g = grad_output.to(softmax.dtype)[:, None]
        grad = softmax * g  # a new tensor: the saved softmax stays intact for a second backward
        if ctx.sparse:
            owned, index = saved
            if grad.shape[1]:
                # Subtract g_i at the label's column on the owning rank. A masked scatter, not
                # boolean indexing, so that no host sync happens on an accelerator.
                grad.scatter_add_(1, index[:, None], torch.where(owned[:, None], -g, 0.0))
        else:
            (targets,) = saved
            grad -= targets.to(softmax.dtype) * g
        return grad.to(ctx.logits_dtype), None, None, None


def check_shard(logits: torch.Tensor, targets: torch.Tensor, vocab_start: int,
                vocab_size: int | None = None) -> None:
    """Raise ``ValueError`` naming the value for inputs the function cannot take: logits not 2-D
    or not floating point, targets of the wrong shape, a negative ``vocab_start``, and (when
    ``vocab_size`` is given) labels outside ``[0, vocab_size)``, which no rank owns and would
    otherwise give a silently wrong loss. The label check reads the labels back (a host sync on
    an accelerator), so it is optional."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C_local], got shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, int) or vocab_start < 0:
        raise ValueError(f"vocab_start must be a non-negative integer, got {vocab_start!r}")
    n, c_local = logits.shape
    if targets.dtype in (torch.int64, torch.int32):
        if tuple(targets.shape) != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(targets.shape)}")
        if vocab_size is not None and n:
            low, high = int(targets.min()), int(targets.max())
            if low < 0 or high >= vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"label {bad} is outside [0, {vocab_size})")
    elif targets.dtype.is_floating_point:
        if tuple(targets.shape) != (n, c_local):
            raise ValueError(f"target block must have shape ({n}, {c_local}), "
                             f"got {tuple(targets.shape)}")
    else:
        raise ValueError(f"targets must be int64/int32 labels or a float target block, "
                         f"got {targets.dtype}")


def vocab_parallel_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *,
                                 vocab_start: int, group=None,
                                 vocab_size: int | None = None) -> torch.Tensor:
    """Per-example cross-entropy ``[N]`` over all classes of the vocabulary-sharded ``logits``.

    Args:
      logits: ``[N, C_local]`` float16 / bfloat16 / float32 / float64: this rank's classes
        ``[vocab_start, vocab_start + C_local)``.
      targets: global integer labels ``[N]`` (int64 or int32; sparse form), or this rank's
        block ``[N, C_local]`` of the target matrix (one-hot form; rows sum to 1 over all ranks).
      vocab_start: first global class of this rank's block.
      group: the ``torch.distributed`` process group over the vocabulary (default: the world).
        Without an initialised group the function is plain single-device cross-entropy.
      vocab_size: total classes C; when given, labels outside ``[0, C)`` raise ``ValueError``.

    Returns:
      loss ``[N]``, float32 (float64 for float64 logits), identical on every rank. Its gradient
      with respect to ``logits`` is the rank's block, in the logits dtype.
    """
    check_shard(logits, targets, vocab_start, vocab_size)
    return VocabParallelCrossEntropy.apply(logits, targets, vocab_start, group)
