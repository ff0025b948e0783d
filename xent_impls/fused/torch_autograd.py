"""The autograd wrapper shared by the fused PyTorch kernels.

A fused kernel computes the per-example loss and, in the same pass over the logits, the gradient
of the *mean* loss, ``(sum(t) * softmax(x) - t) / N`` (``sum(t) = 1`` for a label or a one-hot
row; the oracle's formula for any target matrix). When training calls
``loss.mean().backward()`` (the common case) the upstream gradient of every row is exactly
``1 / N`` and the saved buffer is returned as it is, with no second pass over ``[N, C]``. Any
other upstream gradient (a sum, weights per row, a scaled loss) is still exact: the buffer is
rescaled row by row, at the cost of one more read and write of the gradient.

A kernel is ``kernel(logits, targets, grad_scale) -> (loss [N] float32, grad | None)``: it
returns ``grad = (sum(t) * softmax(logits) - t) * grad_scale`` in the logits' dtype when
``grad_scale`` is not ``None``, and no gradient otherwise (forward only: one read of the logits,
per-row statistics only).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class FusedCrossEntropy(torch.autograd.Function):
    """``loss[i] = logsumexp(x[i]) - <t[i], x[i]>`` with the gradient computed in the forward."""

    @staticmethod
    def forward(ctx, logits, targets, kernel: Callable):
        n = logits.shape[0]
        want_grad = ctx.needs_input_grad[0]
        scale = 1.0 / n if n else 1.0
        loss, grad = kernel(logits, targets, scale if want_grad else None)
        ctx.assumed = scale
        ctx.used = False
        if want_grad:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.used:
            raise RuntimeError("the fused cross-entropy gradient buffer is handed out once; "
                               "call backward a single time (no retain_graph)")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        if grad.numel() == 0:
            return grad, None, None
        # The gradient was computed for an upstream gradient of 1/N per row (the mean).
        # Compared with a relative tolerance of 1e-6: autograd's 1/N is rounded to float32.
        uniform = bool(torch.all(grad_loss == grad_loss[0]))
        g0 = float(grad_loss[0])
        if uniform and abs(g0 - ctx.assumed) <= 1e-6 * ctx.assumed:
            return grad, None, None
        if uniform:
            return grad.mul_(g0 / ctx.assumed), None, None
        # In-place on a 16-bit gradient the product is formed in float32 and rounded once.
        return grad.mul_((grad_loss / ctx.assumed)[:, None]), None, None


def fused(kernel: Callable, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``[N]`` (float32) of ``kernel``, differentiable with respect to the
    logits. Without a gradient to compute (``torch.no_grad()``, or logits that do not require
    one) the kernel runs forward only: one read of the logits, no gradient buffer."""
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return kernel(logits, targets, None)[0]
    return FusedCrossEntropy.apply(logits, targets, kernel)
