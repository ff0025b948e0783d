"""PyTorch backend and its cross-entropy implementations."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from xent_impls.backends.torch_arrays import to_framework, to_numpy

__all__ = ["to_framework", "to_numpy"]  # with the functions below, the backend interface

FRAMEWORK = "torch"
SYNC_METHOD = "torch.cuda.synchronize() on CUDA; CPU ops are synchronous"

# Dynamo keeps at most `recompile_limit` (default 8) compiled versions per function and then
# silently runs it eagerly. Every make_step compiles the same Python function, so a grid with more
# than 8 shapes, dtypes and grad modes would time eager code under the name torch/compiled.
torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 1024)
torch._dynamo.config.accumulated_recompile_limit = max(
    torch._dynamo.config.accumulated_recompile_limit, 4096)

def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


def configure(threads: int) -> str:
    torch.set_num_threads(threads)
    return f"torch.set_num_threads({threads})"


def has_device(device: str) -> bool:
    if device == "cpu":
        return True
    return device == "cuda" and torch.cuda.is_available()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


# --- implementations: fn(logits [N, C], targets) -> per-example loss [N] -------------------


def native_sparse(logits, labels):
    return F.cross_entropy(logits, labels, reduction="none")


def native_onehot(logits, targets):
    return F.cross_entropy(logits, targets, reduction="none")


def manual_sparse(logits, labels):
    return -F.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)


def manual_onehot(logits, targets):
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def _naive_probs(logits):
    exp = torch.exp(logits)
    return exp / exp.sum(dim=-1, keepdim=True)


def naive_sparse(logits, labels):
    return -torch.log(_naive_probs(logits).gather(1, labels[:, None]).squeeze(1))


def naive_onehot(logits, targets):
    return -(targets * torch.log(_naive_probs(logits))).sum(dim=-1)


# --- steps -----------------------------------------------------------------------------------


@functools.cache
def make_step(impl, grad: bool, device: str):
    fn = torch.compile(impl.fn, dynamic=False) if impl.compiled else impl.fn
    if not grad:

        def forward(logits, targets):
            with torch.no_grad():
                return fn(logits, targets)

        return forward

    def forward_backward(logits, targets):
        logits = logits.detach().requires_grad_(True)
        loss = fn(logits, targets)
        (dlogits,) = torch.autograd.grad(loss.mean(), logits)
        return loss.detach(), dlogits

    return forward_backward


def sync(out) -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> int | None:
    return int(torch.cuda.max_memory_allocated()) if device == "cuda" else None


def memory_in_use(device: str) -> int | None:
    return int(torch.cuda.memory_allocated()) if device == "cuda" else None


def ceiling_ops(device: str, numel: int) -> dict:
    """One pass each of copy, read-only reduction and exp over ``numel`` float32 values
    (outputs preallocated, so no allocation is timed)."""
    x = torch.rand(numel, device=device)
    y = torch.empty_like(x)
    return {
        "copy": lambda: y.copy_(x),
        "read": lambda: x.sum(),
        "exp": lambda: torch.exp(x, out=y),
    }


def exp_ceiling_ops(device: str, rows: int, cols: int) -> dict:
    """Ops that evaluate ``rows * cols`` exponentials the way a cross-entropy kernel does, on a
    cache-resident float32 block: exp fused with a row reduction (log-sum-exp), and the native
    cross-entropy itself."""
    x = torch.rand(rows, cols, device=device) * 4
    labels = torch.zeros(rows, dtype=torch.int64, device=device)
    return {
        "logsumexp": lambda: torch.logsumexp(x, dim=1),
        "cross_entropy": lambda: F.cross_entropy(x, labels, reduction="none"),
    }
