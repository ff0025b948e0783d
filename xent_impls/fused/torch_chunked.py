"""Blocked cross-entropy in plain PyTorch: any device, no custom kernel.

The rows are processed in blocks of about ``block_bytes`` of float32 (4 MiB by default: a block
stays in the last-level cache while it is read several times). Per block, in float32:

    m = max_j x_ij                     one read of the block (from DRAM)
    e = exp(x - m)                     written into the block's gradient rows (in cache)
    s = sum_j e_ij,  lse = m + log(s)  per-row statistics
    grad = e * (sum(t) * scale / s) - t * scale      in place, in cache

so the logits are read from memory once, every exponential is computed once and the gradient is
written once (``2L`` bytes of DRAM traffic for ``L`` bytes of logits). The forward alone keeps
one float32 block as scratch. Extra memory is one block (plus a float32 copy of the block for
16-bit inputs), against 1-3 copies of the logits for ``F.cross_entropy``.
"""

from __future__ import annotations

import torch

from xent_impls.fused.torch_autograd import fused

BLOCK_BYTES = 4 * 2**20
IGNORE_INDEX = -100


def _block_rows(n: int, c: int, block_bytes: int) -> int:
    return max(1, min(n, block_bytes // (4 * max(c, 1))))


def _check(logits: torch.Tensor, targets: torch.Tensor, sparse: bool) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ValueError(f"unsupported logits dtype {logits.dtype}")
    expected = (logits.shape[0],) if sparse else tuple(logits.shape)
    if tuple(targets.shape) != expected:
        raise ValueError(f"targets must have shape {expected}, got {tuple(targets.shape)}")


def _kernel(logits, targets, grad_scale, *, sparse: bool, block_bytes: int = BLOCK_BYTES,
            ignore_index: int = IGNORE_INDEX):
    """The kernel contract of ``torch_autograd``: ``(loss [N] float32, grad | None)``."""
    _check(logits, targets, sparse)
    logits = logits.contiguous()
    n, c = logits.shape
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    loss = torch.empty(n, dtype=acc, device=logits.device)
    grad = torch.empty_like(logits) if grad_scale is not None else None
    rows = _block_rows(n, c, block_bytes)
    scratch = None
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        x = logits[r0:r1].to(acc)  # no copy for float32 (the block itself)
        if grad is not None and grad.dtype == acc:
            e = grad[r0:r1]  # exponentials go straight into the gradient's rows
        else:
            if scratch is None or scratch.shape[0] != r1 - r0:
                scratch = torch.empty((r1 - r0, c), dtype=acc, device=logits.device)
            e = scratch
        m = x.amax(dim=1, keepdim=True)
        # A row whose maximum is not finite (all -inf, +inf or NaN) is shifted by 0, so it comes
        # out NaN like the oracle's instead of raising or silently dropping the row.
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        torch.sub(x, m, out=e).exp_()
        s = e.sum(dim=1, keepdim=True)
        lse = (m + s.log()).squeeze(1)
        if sparse:
            y = targets[r0:r1].long()
            ignored = y == ignore_index
            safe = torch.where(ignored, torch.zeros_like(y), y)
            picked = x.gather(1, safe[:, None]).squeeze(1)
            loss[r0:r1] = torch.where(ignored, torch.zeros_like(lse), lse - picked)
            weight = (~ignored).to(acc)[:, None]  # sum(t) of the row: 1, or 0 when ignored
        else:
            t = targets[r0:r1].to(acc)
            weight = t.sum(dim=1, keepdim=True)
            # 0 * -inf is taken as 0 (a masked class with no target weight contributes nothing).
            dot = torch.where(t != 0, t * x, torch.zeros_like(x)).sum(dim=1)
            loss[r0:r1] = weight.squeeze(1) * lse - dot
        if grad is None:
            continue
        e.mul_(weight * grad_scale / s)
        if sparse:
            rows_idx = torch.arange(r1 - r0, device=logits.device)
            e.index_put_((rows_idx, safe), -grad_scale * weight.squeeze(1), accumulate=True)
        else:
            e.sub_(t * grad_scale)
        if e.data_ptr() != grad[r0:r1].data_ptr():
            grad[r0:r1].copy_(e)
    return loss, grad


def chunked_sparse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``[N]`` (float32) for integer labels ``[N]``; differentiable."""
    return fused(lambda x, t, g: _kernel(x, t, g, sparse=True), logits, labels)


def chunked_onehot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``[N]`` (float32) for a target matrix ``[N, C]``; differentiable."""
    return fused(lambda x, t, g: _kernel(x, t, g, sparse=False), logits, targets)
