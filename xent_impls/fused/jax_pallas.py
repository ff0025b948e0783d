"""Pallas cross-entropy kernels for JAX (Triton on GPU, interpret mode elsewhere), with a custom
VJP.

Entry points (both under ``jax.jit``; ``jax.value_and_grad`` differentiates them with respect to
the logits):

    pallas_sparse(logits [N, C], labels [N] int)      -> loss [N] float32
    pallas_onehot(logits [N, C], targets [N, C] float) -> loss [N] float32

Logits may be float32, bfloat16 or float16; every sum, maximum, exponential and logarithm is
taken in float32 and the gradient is rounded once, to the logits' dtype, when it is stored.

For a target distribution ``t`` (one-hot rows for integer labels) the loss of row ``i`` is
``sum_j t_ij * (lse_i - x_ij)`` and its gradient ``(sum_k t_ik) * softmax(x_i)_j - t_ij``: the
exact formula of ``xent_impls.reference``, including target rows that do not sum to 1.

Kernels
-------
Forward: an online log-sum-exp over the row. Each program keeps a running maximum ``m`` and a
running sum ``s = sum exp(x - m)``; a new chunk with a larger maximum rescales ``s`` by
``exp(m_old - m_new)``, so the row is read once and every logit costs one exponential (plus one
per chunk for the rescale). The outputs are the loss ``[N]`` and two per-row statistics,
``m [N]`` and ``log_s [N]`` (float32), saved for the backward pass; the one-hot form also saves
``sum_j t_ij [N]``. The sparse form reads the target logit at the label (one extra element per
row); the one-hot form accumulates ``<t, x>`` and ``sum(t)`` over the chunks.

Backward: reads the logits once more, recomputes ``p = exp((x - m) - log_s)`` chunk by chunk and
writes ``grad = (sum(t) * p - t) * g[row]`` once, in the logits' dtype (flash-attention style:
besides the inputs themselves, which are referenced and not copied, the forward keeps per-row
statistics only). ``m`` and ``log_s`` are kept apart instead of as one
``lse = m + log_s``: rounding ``lse`` to float32 would lose ``|lse| * eps`` in absolute terms,
and ``exp(x - lse)`` would carry that as a relative error into every probability (hundreds of
eps at logit scale 100), whereas ``x - m`` is exact near the maximum.

Bytes moved (``L = N * C * itemsize`` of the logits): the forward reads ``L``; the backward reads
``L`` and writes ``L``; forward + backward moves ``3L`` (the one-hot form reads the targets in
both passes, ``5L``). A fused kernel that writes the gradient during the forward pass moves
``2L``, but it needs the upstream gradient ``g`` at forward time; a ``jax.custom_vjp`` forward
does not receive it (the loss may be summed, weighted or scaled after this function returns), so
the gradient is computed in a separate backward kernel.

Two layouts, chosen from ``C`` at trace time (``plan``):
  * ``rows`` (``C <= SMALL_C_MAX`` = 128): a block of rows per program with the whole row in one
    padded power-of-two tile, no loop; up to ``ROW_TILE_ELEMENTS`` = 4096 logits per program
    (256 rows at C = 10), so that a C = 10 problem does not launch one tiny program per row, and
    smaller tiles while that would leave fewer than ``MIN_PROGRAMS`` programs to fill the GPU.
  * ``chunked`` (larger ``C``): one program per row, a loop over column chunks of ``block``
    (default ``min(MAX_BLOCK, next_pow2(C))``). The tail chunk is masked: logits load as
    ``-inf`` (adds nothing to the sum), targets as 0.

Interpret or compiled
---------------------
``interpret=None`` (the default) decides at *lowering* time, from the platform the computation is
lowered for, through ``jax.lax.platform_dependent``: compiled Triton kernels on ``cuda`` and
``rocm``, ``interpret=True`` on ``cpu`` and any other platform (correct, slow). Deciding from
``jax.default_backend()`` at trace time would be wrong for arrays placed on the CPU of a GPU host
(the harness runs ``cpu`` cases there too): the kernel would be lowered for Triton on the CPU.
``interpret=True`` / ``False`` forces one or the other.

Behaviour at the edges: ``N == 0`` gives an empty loss and a zero gradient; ``C == 1`` gives a
loss of 0. A label outside ``[0, C)`` gives a NaN loss and a NaN gradient row (the labels are
not checked on the host, which would need a device-to-host copy). Rows without a finite maximum
(all ``-inf``, or a ``+inf``/NaN logit) give NaN, as the float64 oracle does.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

# Classes up to which a program handles a block of whole rows (no loop over columns).
SMALL_C_MAX = 128
# Logits per program in the ``rows`` layout (rows * padded C), and its warps.
ROW_TILE_ELEMENTS = 4096
ROWS_NUM_WARPS = 4
# Smaller row tiles while the batch would give fewer programs than this (an H100 has 132 SMs).
MIN_PROGRAMS = 128
# Largest column chunk of the ``chunked`` layout: 4096 float32 is 16 KiB in registers per
# program, 16 values per thread with 8 warps.
MAX_BLOCK = 4096
# Software-pipelining stages of the chunk loop (Triton's ``num_stages``).
CHUNKED_NUM_STAGES = 2

SUPPORTED_DTYPES = ("float32", "bfloat16", "float16")

_NEG_INF = float("-inf")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a problem of ``n`` rows and ``c`` classes is laid out on the kernels.

    Attributes:
      layout: ``rows`` (a tile of whole rows per program) or ``chunked`` (a row per program,
        looping over column chunks).
      block: columns per load: the padded row (``rows``) or the chunk size (``chunked``).
      rows: rows per program (1 for ``chunked``).
      grid: number of programs.
      num_warps: Triton warps per program.
      num_stages: Triton pipelining stages.
    """

    layout: str
    block: int
    rows: int
    grid: int
    num_warps: int
    num_stages: int


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


def plan(n: int, c: int, *, block: int | None = None, small_c_max: int = SMALL_C_MAX) -> Plan:
    """The layout used for ``[n, c]`` logits.

    Args:
      n, c: rows and classes (``c >= 1``).
      block: column chunk of the ``chunked`` layout, a power of two (``None``: the default,
        ``min(MAX_BLOCK, next_pow2(c))``); values above ``next_pow2(c)`` are clipped to it.
      small_c_max: largest ``c`` handled by the ``rows`` layout (0 disables it).
    """
    if block is not None and (not isinstance(block, int) or block < 1 or block & (block - 1)):
        raise ValueError(f"block must be a positive power of two, got {block!r}")
    if not isinstance(small_c_max, int) or small_c_max < 0:
        raise ValueError(f"small_c_max must be a non-negative integer, got {small_c_max!r}")
    padded = _next_pow2(c)
    if c <= small_c_max:
        rows = max(1, min(ROW_TILE_ELEMENTS // padded, _next_pow2(pl.cdiv(n, MIN_PROGRAMS))))
        return Plan("rows", padded, rows, pl.cdiv(n, rows), ROWS_NUM_WARPS, 1)
    chunk = min(block or MAX_BLOCK, padded)
    warps = min(8, max(1, chunk // 512))
    return Plan("chunked", chunk, 1, n, warps, CHUNKED_NUM_STAGES)


# --- numerics shared by the kernels (float32 values) -----------------------------------------


def _safe_shift(m):
    """``m`` with ``-inf`` replaced by 0: ``exp(x - shift)`` stays 0 (never ``exp(-inf + inf)``,
    NaN) for a chunk or row whose logits are all ``-inf``."""
    return jnp.where(m == _NEG_INF, 0.0, m)


def _online_update(m, s, x):
    """Fold chunk ``x [B]`` into the running maximum ``m`` and sum ``s = sum exp(x - m)``."""
    m_new = jnp.maximum(m, jnp.max(x))
    shift = _safe_shift(m_new)
    return m_new, s * jnp.exp(m - shift) + jnp.sum(jnp.exp(x - shift))


def _weighted_logit_sum(t, x):
    """``sum t * x`` where a zero target weight contributes 0 even against a ``-inf`` logit
    (masked classes and the masked tail, where ``0 * -inf`` would be NaN)."""
    return jnp.sum(jnp.where(t != 0, t * x, 0.0), axis=-1)


def _onehot_loss(m, log_s, tx, ts):
    """``ts * lse - tx`` written as ``ts * log_s + (ts * m - tx)``: the large terms ``m`` and
    ``<t, x>`` cancel first (exactly for a one-hot row), and ``log_s`` is added last."""
    return ts * log_s + (ts * m - tx)


def _label_checked(log_s, y, c):
    """``log_s`` with NaN for a label outside ``[0, c)``: the loss and the gradient of that row
    are NaN instead of reading memory outside the row."""
    return jnp.where((y >= 0) & (y < c), log_s, jnp.nan)


def _probs(x, m, log_s):
    """``softmax = exp((x - m) - log_s)``: ``x - m`` is exact near the maximum, so the largest
    probabilities keep full float32 precision."""
    return jnp.exp((x - m) - log_s)


# --- chunked layout: one program per row, a loop over column chunks --------------------------


def _columns(k, block, c):
    """Start, column indices ``[block]`` and in-row mask ``[block]`` of chunk ``k``."""
    start = pl.multiple_of(k * block, block)
    cols = start + jnp.arange(block, dtype=jnp.int32)
    return start, cols, cols < c


def _chunk(ref, start, block, mask, other):
    """Chunk ``[start, start + block)`` of a row ref ``[C]`` as float32 ``[block]``; columns
    outside the row (``mask`` False) read as ``other`` and touch no memory."""
    vals = plgpu.load(ref.at[pl.ds(start, block)], mask=mask, other=other)
    return vals.astype(jnp.float32)


def _zero():
    """A float32 scalar 0, built inside the kernel (a kernel may not close over constants)."""
    return jnp.zeros((), jnp.float32)


def _fwd_chunked_sparse(x_ref, y_ref, loss_ref, m_ref, logs_ref, *, block):
    """x_ref ``[C]``, y_ref ``[]`` int32 -> loss, m, log_s ``[]`` float32."""
    c = x_ref.shape[0]

    def body(k, carry):
        start, _, mask = _columns(k, block, c)
        return _online_update(*carry, _chunk(x_ref, start, block, mask, _NEG_INF))

    m, s = lax.fori_loop(0, pl.cdiv(c, block), body, (_zero() + _NEG_INF, _zero()))
    y = y_ref[...]
    x_y = x_ref[jnp.where((y >= 0) & (y < c), y, 0)].astype(jnp.float32)
    log_s = _label_checked(jnp.log(s), y, c)
    loss_ref[...] = (m - x_y) + log_s
    m_ref[...] = m
    logs_ref[...] = log_s


def _fwd_chunked_onehot(x_ref, t_ref, loss_ref, m_ref, logs_ref, ts_ref, *, block):
    """x_ref, t_ref ``[C]`` -> loss, m, log_s, sum(t) ``[]`` float32."""
    c = x_ref.shape[0]

    def body(k, carry):
        m, s, tx, ts = carry
        start, _, mask = _columns(k, block, c)
        x = _chunk(x_ref, start, block, mask, _NEG_INF)
        t = _chunk(t_ref, start, block, mask, 0.0)
        m, s = _online_update(m, s, x)
        return m, s, tx + _weighted_logit_sum(t, x), ts + jnp.sum(t)

    init = (_zero() + _NEG_INF, _zero(), _zero(), _zero())
    m, s, tx, ts = lax.fori_loop(0, pl.cdiv(c, block), body, init)
    log_s = jnp.log(s)
    loss_ref[...] = _onehot_loss(m, log_s, tx, ts)
    m_ref[...] = m
    logs_ref[...] = log_s
    ts_ref[...] = ts


def _bwd_chunked_sparse(x_ref, y_ref, m_ref, logs_ref, g_ref, dx_ref, *, block):
    """dx_ref ``[C]`` (logits dtype) = ``(p - onehot(y)) * g``."""
    c = x_ref.shape[0]
    y, m, log_s, g = y_ref[...], m_ref[...], logs_ref[...], g_ref[...]

    def body(k, carry):
        start, cols, mask = _columns(k, block, c)
        x = _chunk(x_ref, start, block, mask, _NEG_INF)
        t = (cols == y).astype(jnp.float32)
        grad = (_probs(x, m, log_s) - t) * g
        plgpu.store(dx_ref.at[pl.ds(start, block)], grad.astype(dx_ref.dtype), mask=mask)
        return carry

    lax.fori_loop(0, pl.cdiv(c, block), body, None)


def _bwd_chunked_onehot(x_ref, t_ref, m_ref, logs_ref, ts_ref, g_ref, dx_ref, *, block):
    """dx_ref ``[C]`` (logits dtype) = ``(sum(t) * p - t) * g``."""
    c = x_ref.shape[0]
    m, log_s, ts, g = m_ref[...], logs_ref[...], ts_ref[...], g_ref[...]

    def body(k, carry):
        start, _, mask = _columns(k, block, c)
        x = _chunk(x_ref, start, block, mask, _NEG_INF)
        t = _chunk(t_ref, start, block, mask, 0.0)
        grad = (ts * _probs(x, m, log_s) - t) * g
        plgpu.store(dx_ref.at[pl.ds(start, block)], grad.astype(dx_ref.dtype), mask=mask)
        return carry

    lax.fori_loop(0, pl.cdiv(c, block), body, None)


# --- rows layout: a tile of whole rows per program, no loop ----------------------------------


def _tile_masks(n, c, rows, block):
    """Column indices ``[B]`` int32, the row mask ``[R]`` (rows below ``n``) and the tile mask
    ``[R, B]`` (also columns below ``c``) of this program's tile."""
    r = pl.program_id(0) * rows + jnp.arange(rows, dtype=jnp.int32)
    cols = jnp.arange(block, dtype=jnp.int32)
    rmask = r < n
    return cols, rmask, rmask[:, None] & (cols < c)[None, :]


def _tile(ref, rows, block, mask, other):
    """The ``[rows, block]`` tile of a ref ``[R, C]`` as float32; masked entries (past the last
    row or column) read as ``other`` and touch no memory."""
    vals = plgpu.load(ref.at[pl.ds(0, rows), pl.ds(0, block)], mask=mask, other=other)
    return vals.astype(jnp.float32)


def _vec(ref, rows, rmask, other):
    """The ``[rows]`` entries of a per-row ref ``[R]`` (``other`` past the last row)."""
    return plgpu.load(ref.at[pl.ds(0, rows)], mask=rmask, other=other)


def _put(ref, rows, rmask, value):
    """Store per-row ``value [rows]`` into ``ref [R]``, rows past the last one skipped."""
    plgpu.store(ref.at[pl.ds(0, rows)], value.astype(ref.dtype), mask=rmask)


def _row_stats(x):
    """Maximum ``[R]`` and ``log(sum exp(x - max))`` ``[R]`` of a float32 tile ``[R, B]``."""
    m = jnp.max(x, axis=1)
    return m, jnp.log(jnp.sum(jnp.exp(x - _safe_shift(m)[:, None]), axis=1))


def _fwd_rows_sparse(x_ref, y_ref, loss_ref, m_ref, logs_ref, *, n, rows, block):
    """x_ref ``[R, C]``, y_ref ``[R]`` int32 -> loss, m, log_s ``[R]`` float32."""
    c = x_ref.shape[1]
    cols, rmask, mask = _tile_masks(n, c, rows, block)
    x = _tile(x_ref, rows, block, mask, _NEG_INF)
    y = _vec(y_ref, rows, rmask, 0)
    m, log_s = _row_stats(x)
    log_s = _label_checked(log_s, y, c)
    # The whole row is in registers: select the target logit instead of a second load.
    x_y = jnp.sum(jnp.where(cols[None, :] == y[:, None], x, 0.0), axis=1)
    _put(loss_ref, rows, rmask, (m - x_y) + log_s)
    _put(m_ref, rows, rmask, m)
    _put(logs_ref, rows, rmask, log_s)


def _fwd_rows_onehot(x_ref, t_ref, loss_ref, m_ref, logs_ref, ts_ref, *, n, rows, block):
    """x_ref, t_ref ``[R, C]`` -> loss, m, log_s, sum(t) ``[R]`` float32."""
    c = x_ref.shape[1]
    _, rmask, mask = _tile_masks(n, c, rows, block)
    x = _tile(x_ref, rows, block, mask, _NEG_INF)
    t = _tile(t_ref, rows, block, mask, 0.0)
    m, log_s = _row_stats(x)
    ts = jnp.sum(t, axis=1)
    _put(loss_ref, rows, rmask, _onehot_loss(m, log_s, _weighted_logit_sum(t, x), ts))
    _put(m_ref, rows, rmask, m)
    _put(logs_ref, rows, rmask, log_s)
    _put(ts_ref, rows, rmask, ts)


def _bwd_rows_sparse(x_ref, y_ref, m_ref, logs_ref, g_ref, dx_ref, *, n, rows, block):
    """dx_ref ``[R, C]`` (logits dtype) = ``(p - onehot(y)) * g``."""
    c = x_ref.shape[1]
    cols, rmask, mask = _tile_masks(n, c, rows, block)
    x = _tile(x_ref, rows, block, mask, _NEG_INF)
    y = _vec(y_ref, rows, rmask, 0)
    m, log_s, g = (_vec(ref, rows, rmask, 0.0) for ref in (m_ref, logs_ref, g_ref))
    t = (cols[None, :] == y[:, None]).astype(jnp.float32)
    grad = (_probs(x, m[:, None], log_s[:, None]) - t) * g[:, None]
    plgpu.store(dx_ref.at[pl.ds(0, rows), pl.ds(0, block)], grad.astype(dx_ref.dtype),
                mask=mask)


def _bwd_rows_onehot(x_ref, t_ref, m_ref, logs_ref, ts_ref, g_ref, dx_ref, *, n, rows, block):
    """dx_ref ``[R, C]`` (logits dtype) = ``(sum(t) * p - t) * g``."""
    c = x_ref.shape[1]
    _, rmask, mask = _tile_masks(n, c, rows, block)
    x = _tile(x_ref, rows, block, mask, _NEG_INF)
    t = _tile(t_ref, rows, block, mask, 0.0)
    m, log_s, ts, g = (_vec(ref, rows, rmask, 0.0) for ref in (m_ref, logs_ref, ts_ref, g_ref))
    p = _probs(x, m[:, None], log_s[:, None])
    grad = (ts[:, None] * p - t) * g[:, None]
    plgpu.store(dx_ref.at[pl.ds(0, rows), pl.ds(0, block)], grad.astype(dx_ref.dtype),
                mask=mask)


# --- pallas_call plumbing ---------------------------------------------------------------------


def _specs(p: Plan, c: int):
    """BlockSpecs ``(matrix [N, C], vector [N])`` of a plan."""
    if p.layout == "rows":
        return (pl.BlockSpec((p.rows, c), lambda i: (i, 0)),
                pl.BlockSpec((p.rows,), lambda i: (i,)))
    return pl.BlockSpec((None, c), lambda i: (i, 0)), pl.BlockSpec((None,), lambda i: (i,))


def _call(kernel, p: Plan, c: int, in_kinds: str, out_shapes, out_kinds: str, interpret):
    """Run ``kernel`` over ``p.grid`` programs.

    ``in_kinds`` / ``out_kinds`` name each operand's BlockSpec: ``m`` for an ``[N, C]`` matrix,
    ``v`` for an ``[N]`` vector. ``interpret=None`` picks interpret mode or Triton per lowering
    platform (see the module docstring).
    """
    matrix, vector = _specs(p, c)
    spec = {"m": matrix, "v": vector}

    def build(interp: bool):
        return pl.pallas_call(
            kernel,
            out_shape=out_shapes,
            grid=(p.grid,),
            in_specs=[spec[k] for k in in_kinds],
            out_specs=[spec[k] for k in out_kinds],
            compiler_params=plgpu.CompilerParams(num_warps=p.num_warps,
                                                 num_stages=p.num_stages),
            interpret=interp,
            name=kernel.func.__name__.lstrip("_"),
        )

    def run(*args):
        if interpret is not None:
            return build(interpret)(*args)
        compiled, interpreted = build(False), build(True)
        return lax.platform_dependent(*args, cuda=compiled, rocm=compiled,
                                      default=interpreted)

    return run


def _kernel_args(p: Plan, n: int, fn):
    """``fn`` with its static sizes bound (row-tile kernels also need ``n`` to mask rows)."""
    if p.layout == "rows":
        return functools.partial(fn, n=n, rows=p.rows, block=p.block)
    return functools.partial(fn, block=p.block)


_KERNELS = {
    ("rows", True): (_fwd_rows_sparse, _bwd_rows_sparse),
    ("rows", False): (_fwd_rows_onehot, _bwd_rows_onehot),
    ("chunked", True): (_fwd_chunked_sparse, _bwd_chunked_sparse),
    ("chunked", False): (_fwd_chunked_onehot, _bwd_chunked_onehot),
}


def _forward(logits, targets, p: Plan, sparse: bool, interpret):
    """``(loss [N], stats)`` with ``stats = (m, log_s)`` (sparse) or ``(m, log_s, sum_t)``,
    each ``[N]`` float32."""
    n, c = logits.shape
    vec = jax.ShapeDtypeStruct((n,), jnp.float32)
    outs = 3 if sparse else 4
    kernel = _kernel_args(p, n, _KERNELS[p.layout, sparse][0])
    call = _call(kernel, p, c, "mv" if sparse else "mm", [vec] * outs, "v" * outs, interpret)
    loss, *stats = call(logits, targets)
    return loss, tuple(stats)


def _backward(logits, targets, stats, g, p: Plan, sparse: bool, interpret):
    """Gradient ``[N, C]`` in the logits' dtype for the upstream gradient ``g [N]``."""
    n, c = logits.shape
    kernel = _kernel_args(p, n, _KERNELS[p.layout, sparse][1])
    in_kinds = ("mv" if sparse else "mm") + "v" * (len(stats) + 1)
    out = jax.ShapeDtypeStruct((n, c), logits.dtype)
    call = _call(kernel, p, c, in_kinds, [out], "m", interpret)
    (grad,) = call(logits, targets, *stats, g.astype(jnp.float32))
    return grad


@functools.cache
def _loss_fn(p: Plan, sparse: bool, interpret):
    """The differentiable ``loss(logits, targets) -> [N]`` for one plan and form."""

    @jax.custom_vjp
    def loss(logits, targets):
        return _forward(logits, targets, p, sparse, interpret)[0]

    def fwd(logits, targets):
        out, stats = _forward(logits, targets, p, sparse, interpret)
        return out, (logits, targets, stats)

    def bwd(res, g):
        logits, targets, stats = res
        # The targets (labels or a target matrix) get no gradient.
        return _backward(logits, targets, stats, g, p, sparse, interpret), None

    loss.defvjp(fwd, bwd)
    return loss


# --- public entry points ----------------------------------------------------------------------


def _check_logits(logits) -> tuple[int, int]:
    """``(N, C)`` of ``logits``; ValueError for a shape or dtype the kernels do not take."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {logits.shape}")
    if jnp.dtype(logits.dtype).name not in SUPPORTED_DTYPES:
        raise ValueError(f"logits dtype must be one of {', '.join(SUPPORTED_DTYPES)}, "
                         f"got {logits.dtype}")
    n, c = logits.shape
    if c < 1:
        raise ValueError(f"logits must have at least one class, got shape {logits.shape}")
    return n, c


def _entry(logits, targets, sparse: bool, block, small_c_max, interpret):
    n, c = _check_logits(logits)
    p = plan(n, c, block=block, small_c_max=small_c_max)
    if n == 0:
        # No programs to launch; the loss does not depend on the (empty) logits, so the
        # gradient is zero.
        return jnp.zeros((0,), jnp.float32)
    return _loss_fn(p, sparse, interpret)(logits, targets)


_STATIC = ("block", "small_c_max", "interpret")


@functools.partial(jax.jit, static_argnames=_STATIC)
def pallas_sparse(logits, labels, *, block: int | None = None,
                  small_c_max: int = SMALL_C_MAX, interpret: bool | None = None):
    """Per-example cross-entropy ``[N]`` float32 of ``logits [N, C]`` (float32, bfloat16 or
    float16) against integer ``labels [N]``.

    Args:
      block: column chunk of the chunked kernels (a power of two; see ``plan``).
      small_c_max: largest ``C`` handled by the row-tile kernels (0 disables them).
      interpret: ``None`` (interpret mode except on ``cuda``/``rocm``), True or False.
    """
    n, _ = _check_logits(logits)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got shape {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    return _entry(logits, labels.astype(jnp.int32), True, block, small_c_max, interpret)


@functools.partial(jax.jit, static_argnames=_STATIC)
def pallas_onehot(logits, targets, *, block: int | None = None,
                  small_c_max: int = SMALL_C_MAX, interpret: bool | None = None):
    """Per-example cross-entropy ``[N]`` float32 of ``logits [N, C]`` (float32, bfloat16 or
    float16) against a target matrix ``targets [N, C]`` (one-hot, soft or multi-hot; any float
    dtype). The targets get no gradient.

    Keyword arguments as for :func:`pallas_sparse`.
    """
    n, c = _check_logits(logits)
    if targets.shape != (n, c):
        raise ValueError(f"targets must have shape ({n}, {c}), got shape {targets.shape}")
    if not jnp.issubdtype(targets.dtype, jnp.floating):
        raise ValueError(f"targets must be floating point, got dtype {targets.dtype}")
    return _entry(logits, targets, False, block, small_c_max, interpret)


__all__ = ["MAX_BLOCK", "SMALL_C_MAX", "Plan", "pallas_onehot", "pallas_sparse", "plan"]
