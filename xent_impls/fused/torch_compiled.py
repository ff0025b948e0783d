"""The fused loss-and-gradient formula compiled by ``torch.compile`` (Inductor).

Instead of differentiating the loss, one compiled function returns the per-example loss and the
gradient of the mean loss together (the ``torch_autograd`` contract). Inductor turns it into
per-row loops: each row's maximum, sum of exponentials and gradient are computed while the row
is in cache, so the logits are read from memory once and the gradient written once. Inductor
recomputes ``exp`` for the gradient rather than storing it (two exponentials per logit, both on
cached data). The forward alone is a separate compiled function with no gradient. Extra memory
is a few per-row vectors.

Shapes are compiled statically (one compilation per shape and dtype, like ``torch/compiled``).
"""

from __future__ import annotations

import torch

from xent_impls.backends import torch_backend  # noqa: F401  (raises Dynamo's recompile limit)
from xent_impls.fused.torch_autograd import fused

IGNORE_INDEX = -100


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Row maximum ``[N, 1]``; a row without a finite maximum is shifted by 0 (it comes out NaN,
    like the oracle's)."""
    m = x.amax(dim=1, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _sparse_terms(x, labels):
    """(picked logit [N], row weight [N, 1], safe labels [N]): ignored rows weigh 0."""
    ignored = labels == IGNORE_INDEX
    safe = torch.where(ignored, torch.zeros_like(labels), labels)
    picked = x.gather(1, safe[:, None]).squeeze(1)
    return picked, (~ignored).to(x.dtype)[:, None], safe


def _loss_sparse(picked, w, lse):
    """``lse - picked`` per row, 0 for an ignored row."""
    return torch.where(w.squeeze(1) > 0, lse - picked, torch.zeros_like(lse))


def _loss_onehot(x, t, lse):
    # 0 * -inf is taken as 0: a masked class with no target weight contributes nothing.
    dot = torch.where(t != 0, t * x, torch.zeros_like(x)).sum(dim=1)
    return t.sum(dim=1) * lse - dot


def _forward_sparse(logits, labels):
    x = logits.float()
    m = _shift(x)
    lse = (m + torch.exp(x - m).sum(dim=1, keepdim=True).log()).squeeze(1)
    picked, w, _ = _sparse_terms(x, labels)
    return _loss_sparse(picked, w, lse)


def _forward_onehot(logits, targets):
    x, t = logits.float(), targets.float()
    m = _shift(x)
    lse = (m + torch.exp(x - m).sum(dim=1, keepdim=True).log()).squeeze(1)
    return _loss_onehot(x, t, lse)


def _fused_sparse(logits, labels, scale: float):
    x = logits.float()
    m = _shift(x)
    e = torch.exp(x - m)
    s = e.sum(dim=1, keepdim=True)
    lse = (m + s.log()).squeeze(1)
    picked, w, safe = _sparse_terms(x, labels)
    loss = _loss_sparse(picked, w, lse)
    cols = torch.arange(x.shape[1], device=x.device)[None, :]
    hit = cols == safe[:, None]
    grad = e * (w * scale / s) - torch.where(hit, w * scale, torch.zeros_like(e))
    return loss, grad.to(logits.dtype)


def _fused_onehot(logits, targets, scale: float):
    x, t = logits.float(), targets.float()
    m = _shift(x)
    e = torch.exp(x - m)
    s = e.sum(dim=1, keepdim=True)
    lse = (m + s.log()).squeeze(1)
    w = t.sum(dim=1, keepdim=True)
    grad = e * (w * scale / s) - t * scale
    return _loss_onehot(x, t, lse), grad.to(logits.dtype)


_COMPILED: dict = {}


def _compiled(fn):
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=False)
    return _COMPILED[fn]


def _kernel(logits, targets, grad_scale, *, sparse: bool):
    """The kernel contract of ``torch_autograd``: ``(loss [N] float32, grad | None)``."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {tuple(logits.shape)}")
    expected = (logits.shape[0],) if sparse else tuple(logits.shape)
    if tuple(targets.shape) != expected:
        raise ValueError(f"targets must have shape {expected}, got {tuple(targets.shape)}")
    if logits.shape[0] == 0:  # nothing to compile for an empty batch
        empty = torch.zeros(0, dtype=torch.float32, device=logits.device)
        return empty, (torch.zeros_like(logits) if grad_scale is not None else None)
    if grad_scale is None:
        return _compiled(_forward_sparse if sparse else _forward_onehot)(logits, targets), None
    fn = _compiled(_fused_sparse if sparse else _fused_onehot)
    return fn(logits, targets, float(grad_scale))


def compiled_sparse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``[N]`` (float32) for integer labels ``[N]``; differentiable."""
    return fused(lambda x, t, g: _kernel(x, t, g, sparse=True), logits, labels)


def compiled_onehot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``[N]`` (float32) for a target matrix ``[N, C]``; differentiable."""
    return fused(lambda x, t, g: _kernel(x, t, g, sparse=False), logits, targets)
