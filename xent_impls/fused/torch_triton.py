"""Fused cross-entropy in Triton for PyTorch tensors: loss and gradient in one launch.

On a machine without a GPU the kernels run in Triton's interpreter (NumPy, one program after
another): importing this module sets ``TRITON_INTERPRET=1`` when that variable is unset and
``torch.cuda.is_available()`` is False. That mode is for correctness only; its timings mean
nothing. The variable must be set before the ``@triton.jit`` decorators below run, which is why
it is set here, before this module imports ``triton``; ``triton`` may already have been imported
by then (``import torch._dynamo`` imports it), which :func:`_interpretable` copes with.

Public API:
  cross_entropy(logits, targets, *, ignore_index=-100, inplace=False, reduction="none")
      the loss for users, differentiable with respect to the logits.
  triton_sparse(logits, labels), triton_onehot(logits, targets)
      the registry entry points: per-example loss ``[N]`` float32.
  sparse_kernel, onehot_kernel
      the kernel contract of :mod:`xent_impls.fused.torch_autograd`:
      ``kernel(logits, targets, grad_scale) -> (loss [N] float32, grad | None)``.
  forward_stats(logits, targets, *, ignore_index=-100)
      loss and log-sum-exp per row ``[N]`` float32, forward only.
  Launch, launch_config(c, itemsize)
      which kernel runs and with which block sizes (fixed heuristic, no autotuning).

Kernels (every sum, max and exponential in float32, whatever the logits' dtype):

* Row kernel (``C > SMALL_C_MAX``): one program per row. Pass 1 walks the row in ``BLOCK``-wide
  chunks keeping a running maximum ``m`` and a running sum ``s = sum(exp(x - m))``, rescaling
  ``s`` by ``exp(m_old - m_new)`` whenever the maximum grows (online log-sum-exp), so the row is
  read once and each logit costs one exponential. The forward kernel stops there and writes the
  loss (and optionally ``lse``). The fused kernel then makes pass 2 over the same row and writes
  ``grad = (sum(t) * softmax(x) - t) * grad_scale``.

  DRAM traffic of the fused kernel: pass 1 reads the row from DRAM (``L`` bytes over the whole
  batch), pass 2 reads it again and writes the gradient (``L``). Pass 2's read is an L2 hit when
  what the resident programs read between a chunk's two uses fits in L2 (50 MB on an H100 or
  H200). Pass 2 walks the row backwards, so the chunk pass 1 read last is re-read first and chunk
  ``k`` of ``n`` is re-read after ``n - 1 - k`` newer chunks: half a row per program on average.
  With one or two programs of 16 warps resident per SM (132 SMs), a 256 KB row (C = 128K in
  bf16/fp16, 64K in float32) keeps about 17-34 MB in flight: the traffic is close to ``2L``, the
  floor. Rows several times longer spill part of pass 2's read to DRAM (up to ``3L``); the GB/s
  the benchmark measures on the GPU settles where. Pass 2's second exponential per logit stays
  far below the H100's exponential throughput, so the kernel remains memory-bound.

* Tile kernel (``C <= SMALL_C_MAX``): one program per ``BLOCK_N x BLOCK_C`` tile of whole rows
  (``BLOCK_C`` = next power of two >= C), reductions with ``tl.max`` / ``tl.sum`` along the
  class axis and the exponentials kept in registers for the gradient: one read, one exponential
  per logit, one write. One program per row would launch N programs of a few dozen bytes each at
  C = 10 and leave the GPU idle.

Targets: integer labels ``[N]`` (sparse form, with ``ignore_index``: rows whose label equals it
get loss 0 and gradient 0; a label outside ``[0, C)`` that is not ignored gives a NaN loss and a
NaN gradient row, without reading out of bounds or synchronising to check) or a target matrix
``[N, C]`` (one-hot form; soft and non-normalised rows are exact:
``loss = sum(t) * lse - sum(t * x)`` with classes of zero target weight left out, as the float64
oracle in :mod:`xent_impls.reference` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402  (after TRITON_INTERPRET is settled)
import triton.language as tl  # noqa: E402

from xent_impls.fused.torch_autograd import fused  # noqa: E402

# True when the kernels run in Triton's interpreter (tensors may then live on the CPU).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _interpretable(fn):
    """``fn``, a ``triton.language`` function, in a form the kernels can call.

    ``triton.language`` builds its library functions (``tl.max``, ``tl.sum``) when ``triton`` is
    first imported: for the compiler, unless ``TRITON_INTERPRET`` was already set. When
    something imported ``triton`` earlier (``import torch._dynamo`` does), the interpreter cannot
    call them; wrapping the same Python function for the interpreter gives it back the exact
    library code (whose ``tl.reduce`` the interpreter runs in NumPy). Compiled kernels get ``fn``
    itself.
    """
    if not INTERPRET:
        return fn
    from triton.runtime.interpreter import InterpretedFunction

    return fn if isinstance(fn, InterpretedFunction) else InterpretedFunction(fn.fn)


_max = _interpretable(tl.max)
_sum = _interpretable(tl.sum)

LOGITS_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TARGET_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
REDUCTIONS = ("none", "mean", "sum")

# Rows of at most this many classes go to the tile kernel (whole rows in registers, many rows per
# program); longer rows go to the row kernel (one program per row, online loop over chunks).
SMALL_C_MAX = 256
# Tile kernel: logits per program (BLOCK_N * BLOCK_C), 32 per thread with 4 warps.
TILE_ELEMS = 4096
# Row kernel: bytes of logits per chunk (8192 float32 or 16384 16-bit values), 16 to 32 values
# a thread at 16 warps: wide enough to keep many loads in flight, small enough not to spill.
ROW_BLOCK_BYTES = 32 * 1024


# --- kernels ----------------------------------------------------------------------------------


@triton.jit
def _safe_shift(m):
    """The shift for ``exp(x - shift)``: ``m``, or 0 while ``m`` is -inf (nothing but -inf seen
    yet), so that ``exp(-inf - -inf)`` never makes a NaN out of masked or -inf logits."""
    return tl.where(m == float("-inf"), 0.0, m)


@triton.jit
def _row_stats(x_row, t_row, C, ONEHOT: tl.constexpr, BLOCK: tl.constexpr):
    """Pass 1 over one row of ``C`` logits (float32 scalars out):
    ``m`` = max(x), ``s`` = sum(exp(x - m)); for the one-hot form also ``sum_t`` = sum(t) and
    ``dot`` = sum(t * x) over the classes with t != 0 (0 otherwise)."""
    m = float("-inf")
    s = 0.0
    sum_t = 0.0
    dot = 0.0
    for start in range(0, C, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < C
        x = tl.load(x_row + cols, mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, _max(x, axis=0))
        # _safe_shift, inlined: inside a loop a helper call costs the interpreter ~1 ms a chunk.
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        # Online log-sum-exp: the old sum was relative to the old maximum.
        s = s * tl.exp(m - shift) + _sum(tl.exp(x - shift), axis=0)
        m = m_new
        if ONEHOT:
            t = tl.load(t_row + cols, mask=mask, other=0.0).to(tl.float32)
            sum_t += _sum(t, axis=0)
            # Mask x, not the product: 0 * -inf (a masked class) would be NaN.
            dot += _sum(t * tl.where(t != 0.0, x, 0.0), axis=0)
    return m, s, sum_t, dot


@triton.jit
def _onehot_loss(m, log_s, sum_t, dot):
    """``sum_t * lse - dot`` with ``lse = m + log_s``, written as
    ``sum_t * log_s + (sum_t * m - dot)``: for a one-hot row that is ``(m - x_t) + log_s``,
    rounded relative to the loss instead of to |m|. A row of zero total target weight is
    ``-dot``: its lse term vanishes even when the lse is not finite (masked to 0 rather than
    computed as 0 * -inf and discarded)."""
    has_t = sum_t != 0.0
    return sum_t * tl.where(has_t, log_s, 0.0) + (sum_t * tl.where(has_t, m, 0.0) - dot)


@triton.jit
def _sparse_loss(m, log_s, x_t, keep, valid):
    """``lse - x_t`` as ``(m - x_t) + log_s`` (rounded relative to the loss); 0 for an ignored
    row, NaN for a label outside ``[0, C)``."""
    loss = tl.where(valid, (m - x_t) + log_s, float("nan"))
    return tl.where(keep, loss, 0.0)


@triton.jit
def _rows_kernel(x_ptr, t_ptr, labels_ptr, loss_ptr, lse_ptr, g_ptr,
                 C, grad_scale, ignore_index,
                 ONEHOT: tl.constexpr, WITH_GRAD: tl.constexpr, WRITE_LSE: tl.constexpr,
                 BLOCK: tl.constexpr):
    """One program per row of contiguous logits ``[N, C]``.

    Writes ``loss [N]`` float32, ``lse [N]`` float32 when WRITE_LSE, and when WITH_GRAD
    ``grad [N, C]`` (``g_ptr``, the logits' dtype; may be ``x_ptr`` itself: each chunk is read
    before it is overwritten, by the same program).
    """
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * C
    t_row = t_ptr + row * C
    m, s, sum_t, dot = _row_stats(x_row, t_row, C, ONEHOT, BLOCK)
    log_s = tl.log(s)
    if ONEHOT:
        tl.store(loss_ptr + row, _onehot_loss(m, log_s, sum_t, dot))
    else:
        label = tl.load(labels_ptr + row).to(tl.int64)
        keep = label != ignore_index
        valid = (label >= 0) & (label < C)
        x_t = tl.load(x_row + label, mask=valid & keep, other=0.0).to(tl.float32)
        tl.store(loss_ptr + row, _sparse_loss(m, log_s, x_t, keep, valid))
        # A bad label poisons its row's gradient (NaN), as it does the loss.
        row_scale = tl.where(valid, grad_scale, float("nan"))
    if WRITE_LSE:
        tl.store(lse_ptr + row, m + log_s)
    if WITH_GRAD:
        # Pass 2: softmax = exp(x - m) / s (the largest probabilities, x near m, come out to
        # float32 accuracy; exp(x - lse) would carry lse's rounding, eps * |lse|, into each).
        shift = _safe_shift(m)
        inv_s = 1.0 / s
        g_row = g_ptr + row * C
        # Backwards over the chunks: the chunk pass 1 read last is re-read first, while it is
        # most likely still in L2 (see the module docstring).
        last_start = (C - 1) // BLOCK * BLOCK
        for k in range(0, C, BLOCK):
            cols = (last_start - k) + tl.arange(0, BLOCK)
            mask = cols < C
            x = tl.load(x_row + cols, mask=mask, other=float("-inf")).to(tl.float32)
            p = tl.exp(x - shift) * inv_s
            if ONEHOT:
                t = tl.load(t_row + cols, mask=mask, other=0.0).to(tl.float32)
                g = (p * sum_t - t) * grad_scale
            else:
                g = (p - tl.where(cols == label, 1.0, 0.0)) * row_scale
                # Select, not multiply: an ignored row's gradient is 0 even for NaN logits.
                g = tl.where(keep, g, 0.0)
            tl.store(g_row + cols, g.to(g_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile_kernel(x_ptr, t_ptr, labels_ptr, loss_ptr, lse_ptr, g_ptr,
                 N, C, grad_scale, ignore_index,
                 ONEHOT: tl.constexpr, WITH_GRAD: tl.constexpr, WRITE_LSE: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program per ``BLOCK_N`` whole rows (``BLOCK_C >= C``) of contiguous logits
    ``[N, C]``; same outputs as :func:`_rows_kernel`."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_C)
    row_ok = rows < N
    mask = row_ok[:, None] & (cols < C)[None, :]
    offsets = rows[:, None] * C + cols[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=float("-inf")).to(tl.float32)
    # Rows past N hold only -inf: a maximum of 0 and a sum of 1 keep their (never stored)
    # statistics finite.
    m = tl.where(row_ok, _max(x, axis=1), 0.0)
    e = tl.exp(x - _safe_shift(m)[:, None])
    s = tl.where(row_ok, _sum(e, axis=1), 1.0)
    log_s = tl.log(s)
    if ONEHOT:
        t = tl.load(t_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        sum_t = _sum(t, axis=1)
        dot = _sum(t * tl.where(t != 0.0, x, 0.0), axis=1)
        tl.store(loss_ptr + rows, _onehot_loss(m, log_s, sum_t, dot), mask=row_ok)
    else:
        label = tl.load(labels_ptr + rows, mask=row_ok, other=ignore_index).to(tl.int64)
        keep = label != ignore_index
        valid = (label >= 0) & (label < C)
        is_target = cols[None, :] == label[:, None]
        x_t = _sum(tl.where(is_target, x, 0.0), axis=1)
        tl.store(loss_ptr + rows, _sparse_loss(m, log_s, x_t, keep, valid), mask=row_ok)
    if WRITE_LSE:
        tl.store(lse_ptr + rows, m + log_s, mask=row_ok)
    if WITH_GRAD:
        p = e * (1.0 / s)[:, None]
        if ONEHOT:
            g = (p * sum_t[:, None] - t) * grad_scale
        else:
            row_scale = tl.where(valid, grad_scale, float("nan"))
            g = (p - tl.where(is_target, 1.0, 0.0)) * row_scale[:, None]
            g = tl.where(keep[:, None], g, 0.0)
        tl.store(g_ptr + offsets, g.to(g_ptr.dtype.element_ty), mask=mask)


# --- launch configuration ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Launch:
    """Which kernel runs a call and how.

    Attributes:
      tile: True for the tile kernel (``block_c >= C`` required), False for the row kernel.
      block_c: columns per block, a power of two (the row kernel's chunk width).
      block_n: rows per program (tile kernel only; a power of two).
      num_warps: warps per program (ignored by the interpreter).
    """

    tile: bool
    block_c: int
    block_n: int = 1
    num_warps: int = 4

    def check(self, c: int) -> None:
        """Raise ``ValueError`` when this launch cannot run rows of ``c`` classes."""
        for name in ("block_c", "block_n"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"Launch.{name} must be a power of two, got {value}")
        if self.tile and self.block_c < c:
            raise ValueError(f"the tile kernel needs block_c >= C = {c}, got {self.block_c}")


def launch_config(c: int, itemsize: int) -> Launch:
    """The launch for rows of ``c`` classes of ``itemsize``-byte logits.

    ``c <= SMALL_C_MAX`` (256): tile kernel, ``block_c`` = next power of two >= c (at least 16),
    ``block_n = TILE_ELEMS // block_c`` (256 rows at C = 10, 16 rows at C = 256), 4 warps.
    Otherwise: row kernel, ``block_c`` = next power of two >= c capped at 32 KB of logits (8192
    float32, 16384 bf16/fp16; C = 128256 float32 takes 16 chunks), ``block_c // 512`` warps
    clamped to 4..16.
    """
    if c <= SMALL_C_MAX:
        block_c = max(16, triton.next_power_of_2(c))
        return Launch(tile=True, block_c=block_c, block_n=max(1, TILE_ELEMS // block_c))
    block_c = min(triton.next_power_of_2(c), ROW_BLOCK_BYTES // itemsize)
    return Launch(tile=False, block_c=block_c, num_warps=min(16, max(4, block_c // 512)))


# --- validation -------------------------------------------------------------------------------


def _check_device(name: str, tensor: torch.Tensor, device: torch.device | None = None) -> None:
    if device is not None and tensor.device != device:
        raise ValueError(f"{name} are on {tensor.device} but the logits are on {device}")
    if not INTERPRET and tensor.device.type != "cuda":
        raise ValueError(f"{name} must be CUDA tensors for the Triton kernels, got device "
                         f"{tensor.device} (on a machine without a GPU, TRITON_INTERPRET=1 runs "
                         "them on the CPU)")


def _check_logits(logits) -> torch.Tensor:
    """Contiguous logits ``[N, C]`` (C >= 1) of a supported dtype, or ``ValueError``."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {tuple(logits.shape)}")
    if logits.dtype not in LOGITS_DTYPES:
        raise ValueError(f"unsupported logits dtype {logits.dtype}; supported: "
                         f"{', '.join(map(str, LOGITS_DTYPES))}")
    if logits.shape[1] < 1:
        raise ValueError(f"logits need at least one class, got shape {tuple(logits.shape)}")
    _check_device("logits", logits)
    return logits.contiguous()


def _check_labels(labels, logits: torch.Tensor) -> torch.Tensor:
    """Contiguous integer labels ``[N]`` on the logits' device, or ``ValueError``."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    n = logits.shape[0]
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape ({n},) for logits of shape "
                         f"{tuple(logits.shape)}, got {tuple(labels.shape)}")
    _check_device("labels", labels, logits.device)
    return labels.contiguous()


def _check_targets(targets, logits: torch.Tensor) -> torch.Tensor:
    """A contiguous float target matrix ``[N, C]`` on the logits' device, or ``ValueError``."""
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.dtype not in TARGET_DTYPES:
        raise ValueError(f"unsupported target matrix dtype {targets.dtype}; supported: "
                         f"{', '.join(map(str, TARGET_DTYPES))}")
    if targets.shape != logits.shape:
        raise ValueError(f"target matrix must have the logits' shape {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}")
    _check_device("targets", targets, logits.device)
    return targets.contiguous()


# --- launch -----------------------------------------------------------------------------------


def _ieee_quietly():
    """A context for kernel launches. The interpreter evaluates the kernels in NumPy, which warns
    on ``inf - inf``, ``log(0)`` or ``1 / 0`` where a GPU silently gives the IEEE result (NaN,
    -inf, inf); non-finite logits must behave the same on both, so NumPy is kept quiet."""
    if not INTERPRET:
        return contextlib.nullcontext()
    import numpy as np

    return np.errstate(all="ignore")


def _launch(logits, labels, targets, *, grad_scale, ignore_index, inplace, write_lse, config):
    """Run one kernel on checked, contiguous inputs.

    Args:
      logits: ``[N, C]`` float32 / bfloat16 / float16.
      labels: ``[N]`` integer labels (sparse form) or None.
      targets: ``[N, C]`` float target matrix (one-hot form) or None.
      grad_scale: None (forward only) or the factor of the gradient.
      inplace: write the gradient into ``logits``.
      write_lse: also return the per-row log-sum-exp.
      config: a :class:`Launch`, or None for :func:`launch_config`.

    Returns:
      ``(loss [N] float32, lse [N] float32 or None, grad [N, C] in the logits' dtype or None)``.
    """
    n, c = logits.shape
    loss = torch.empty(n, dtype=torch.float32, device=logits.device)
    lse = torch.empty_like(loss) if write_lse else None
    grad = None
    if grad_scale is not None:
        grad = logits if inplace else torch.empty_like(logits)
    if n == 0:
        return loss, lse, grad
    config = config or launch_config(c, logits.element_size())
    config.check(c)
    onehot = targets is not None
    # Pointers a variant does not use still need a tensor: the logits stand in (never touched).
    args = (logits, targets if onehot else logits, logits if onehot else labels, loss,
            loss if lse is None else lse, logits if grad is None else grad)
    scalars = (c, 0.0 if grad_scale is None else float(grad_scale), int(ignore_index))
    flags = {"ONEHOT": onehot, "WITH_GRAD": grad is not None, "WRITE_LSE": lse is not None}
    with _ieee_quietly():
        if config.tile:
            grid = (triton.cdiv(n, config.block_n),)
            _tile_kernel[grid](*args, n, *scalars, **flags, BLOCK_N=config.block_n,
                               BLOCK_C=config.block_c, num_warps=config.num_warps)
        else:
            _rows_kernel[(n,)](*args, *scalars, **flags, BLOCK=config.block_c,
                               num_warps=config.num_warps)
    return loss, lse, grad


def sparse_kernel(logits: torch.Tensor, labels: torch.Tensor, grad_scale: float | None, *,
                  ignore_index: int = -100, inplace: bool = False,
                  config: Launch | None = None):
    """The sparse form under the kernel contract of ``torch_autograd``.

    Args:
      logits: ``[N, C]`` float32 / bfloat16 / float16 (made contiguous if it is not).
      labels: ``[N]`` of any integer dtype.
      grad_scale: None for the forward only, else the gradient's factor (``1 / N`` for the mean).
      ignore_index: rows with this label get loss 0 and gradient 0.
      inplace: write the gradient into the logits' buffer (no ``[N, C]`` allocation).
      config: override :func:`launch_config` (tests use it to force several chunks).

    Returns:
      ``(loss [N] float32, grad [N, C] in the logits' dtype or None)`` with
      ``grad = (softmax(logits) - onehot(labels)) * grad_scale``.
    """
    logits = _check_logits(logits)
    labels = _check_labels(labels, logits)
    loss, _, grad = _launch(logits, labels, None, grad_scale=grad_scale,
                            ignore_index=ignore_index, inplace=inplace, write_lse=False,
                            config=config)
    return loss, grad


def onehot_kernel(logits: torch.Tensor, targets: torch.Tensor, grad_scale: float | None, *,
                  inplace: bool = False, config: Launch | None = None):
    """The one-hot form under the kernel contract of ``torch_autograd``.

    Args:
      logits: ``[N, C]`` float32 / bfloat16 / float16 (made contiguous if it is not).
      targets: ``[N, C]`` float target matrix (one-hot, soft or multi-hot; any float dtype).
      grad_scale, inplace, config: as for :func:`sparse_kernel`.

    Returns:
      ``(loss [N] float32, grad [N, C] in the logits' dtype or None)`` with
      ``grad = (sum(t) * softmax(logits) - t) * grad_scale`` (``sum(t) = 1`` for a
      distribution; the factor keeps non-normalised rows exact).
    """
    logits = _check_logits(logits)
    targets = _check_targets(targets, logits)
    loss, _, grad = _launch(logits, None, targets, grad_scale=grad_scale, ignore_index=0,
                            inplace=inplace, write_lse=False, config=config)
    return loss, grad


def forward_stats(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100,
                  config: Launch | None = None):
    """Forward only, one read of the logits: ``(loss [N] float32, lse [N] float32)``.

    ``targets`` are integer labels ``[N]`` or a float target matrix ``[N, C]``; ``lse`` is the
    row's log-sum-exp (``m + log(sum(exp(x - m)))``), -inf for a row of -inf.
    """
    logits = _check_logits(logits)
    labels, matrix = _split_targets(targets, logits)
    loss, lse, _ = _launch(logits.detach(), labels, matrix, grad_scale=None,
                           ignore_index=ignore_index, inplace=False, write_lse=True,
                           config=config)
    return loss, lse


def _split_targets(targets, logits):
    """``(labels, None)`` for integer targets, ``(None, matrix)`` for float targets, checked."""
    if isinstance(targets, torch.Tensor) and not targets.dtype.is_floating_point:
        return _check_labels(targets, logits), None
    return None, _check_targets(targets, logits)


# --- entry points -----------------------------------------------------------------------------


def _loss(kernel, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``fused(kernel, ...)`` when a gradient can be asked for, else the forward kernel alone
    (autograd.Function reports the logits as needing a gradient even under ``no_grad``)."""
    if torch.is_grad_enabled() and isinstance(logits, torch.Tensor) and logits.requires_grad:
        return fused(kernel, logits, targets)
    loss, _ = kernel(logits, targets, None)
    return loss


def triton_sparse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Registry entry point: per-example loss ``[N]`` float32 for integer labels ``[N]``."""
    return _loss(sparse_kernel, logits, labels)


def triton_onehot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Registry entry point: per-example loss ``[N]`` float32 for a target matrix ``[N, C]``."""
    return _loss(onehot_kernel, logits, targets)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100,
                  inplace: bool = False, reduction: str = "none",
                  config: Launch | None = None) -> torch.Tensor:
    """Fused softmax cross-entropy of ``logits [N, C]`` (float32 / bfloat16 / float16).

    The gradient is computed in the forward launch (one read of the logits, one write of the
    gradient) and handed to autograd; ``loss.mean().backward()`` uses it as it is, any other
    upstream gradient rescales it (one more pass over ``[N, C]``). Backward may run once.

    Args:
      targets: integer labels ``[N]`` (sparse form) or a float target matrix ``[N, C]``
        (one-hot, soft or multi-hot: ``loss = sum(t) * lse - sum(t * x)``).
      ignore_index: sparse form only: rows with this label get loss 0 and gradient 0. A label
        outside ``[0, C)`` that is not ignored gives a NaN loss and gradient (no host sync).
      inplace: when a gradient is computed, write it into the logits' buffer, saving an
        ``[N, C]`` allocation. The logits' values are then gone: use it only when nothing else
        reads them. (Non-contiguous logits are copied first, so nothing is saved.)
      reduction: ``"none"`` (loss ``[N]`` float32), ``"sum"``, or ``"mean"`` (over the rows not
        ignored, as ``F.cross_entropy``; NaN when every row is ignored).
      config: override the launch heuristic (:func:`launch_config`).

    Raises:
      ValueError: for a bad shape, dtype, device, or reduction.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    logits_checked = _check_logits(logits)
    labels, _ = _split_targets(targets, logits_checked)
    if labels is not None:
        kernel = functools.partial(sparse_kernel, ignore_index=ignore_index, inplace=inplace,
                                   config=config)
    else:
        kernel = functools.partial(onehot_kernel, inplace=inplace, config=config)
    loss = _loss(kernel, logits, targets)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if labels is None:
            return loss.mean()
        return loss.sum() / (labels != ignore_index).sum()
    return loss
