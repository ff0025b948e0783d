"""Memory-bounded cross-entropy in TensorFlow: online log-sum-exp over vocabulary chunks, with a
``tf.custom_gradient`` that recomputes the exponentials block by block.

Entry points (registered under ``tf.function(jit_compile=True)``; they also run eagerly):

    chunked_sparse(logits [N, C], labels [N] int32 or int64) -> loss [N] float32
    chunked_onehot(logits [N, C], targets [N, C] float)      -> loss [N] float32

Both take keywords ``chunk`` (columns per forward chunk; default :func:`chunk_width`, the same
rule as ``jax_chunked``), ``rows`` (most rows per backward block; default :func:`block_rows`) and
``backward`` (``"loop"`` or ``"fused"``, below), so tests can bind them with
``functools.partial``. ``N`` and ``C`` must be static (known when the function is traced).
Logits may be float32, bfloat16 or float16; every maximum, sum, exponential and logarithm is
taken in float32, the loss is float32 and the gradient is rounded once, to the logits' dtype.

For a target distribution ``t`` (one-hot rows for integer labels) the loss of row ``i`` is
``sum_j t_ij * (lse_i - x_ij)`` and its gradient ``(sum_k t_ik) * softmax(x_i)_j - t_ij``: the
exact formula of ``xent_impls.reference``, including target rows that do not sum to 1.

Forward
-------
A ``tf.while_loop`` over the ``C // V`` full column chunks of width ``V`` (``tf.slice`` with a
loop-dependent start: one ``dynamic-slice`` per iteration under XLA, so the compiled program does
not grow with the number of chunks), then the ragged tail of ``C % V`` columns as one static
slice: nothing is padded. The loop carries per-row float32 vectors: the running maximum ``m``, the
running sum ``s = sum exp(x - m)`` (rescaled by ``exp(m_old - m_new)`` when a chunk raises the
maximum) and the target term (the label's logit, picked up in the chunk that holds it; or
``<t, x>`` and ``sum(t)``). Every logit costs one exponential.

The gradient function keeps the logits, the targets and per-row float32 ``m``, ``log_s`` (and
``sum(t)``): no ``[N, C]`` intermediate. ``m`` and ``log_s`` stay apart rather than forming
``lse = m + log_s``, whose float32 rounding (``|lse| * eps``) would become a relative error of
every probability ``exp(x - lse)`` (about 100 eps at logit scale 100).

Backward
--------
``backward="loop"`` (the default). TensorFlow has no public in-place update of a column block
(XLA's ``dynamic-update-slice``), so the gradient is produced in blocks of whole rows: a second
``tf.while_loop`` over ``N // B`` row blocks computes
``(sum(t) * exp((x - m) - log_s) - t) * g[:, None]`` for ``B`` rows and writes it to a
``tf.TensorArray``; ``TensorArray.concat`` joins the blocks along the rows. ``B`` is the largest
divisor of ``N`` with ``B * C`` float32 at most :data:`CHUNK_BYTES` (at least one row), so the
blocks tile ``N`` exactly: under XLA the array is a ``[N // B, B, C]`` buffer updated in place and
the concatenation a free reshape (a bitcast), the gradient is written once and the only temporary
is one block (usually fused away). Eagerly each block is a tensor of its own and the concatenation
copies them (the blocks, ``L``, live until then).

``backward="fused"``: the same expression over the whole ``[N, C]`` at once. Under XLA it is one
fused loop writing the gradient directly (no zero-fill of a buffer); eagerly every intermediate is
a float32 ``[N, C]`` tensor.

Bytes (``L = N * C * itemsize`` of the logits): the forward reads ``L``; the backward reads ``L``
and writes ``L`` (``"loop"`` under XLA also zero-fills its buffer first, one more write of
``L``); the one-hot form reads its targets in both passes (``+L`` each). The exponentials are
computed twice, once per pass (the forward cannot know the upstream gradient). Extra memory under
XLA: one ``[N, V]`` or ``[B, C]`` float32 block at most, plus ``[N]`` vectors.

bfloat16 on XLA:CPU: the CPU backend computes no bfloat16 operation other than conversions, so
the chunk's ``dynamic-slice`` reads a float32 copy of the whole logits that XLA hoists out of the
loop (a ``4 N C``-byte temporary); float32 and float16 keep the bound (as in ``jax_chunked``).

Labels outside ``[0, C)`` are never picked up, so their loss is NaN (as TensorFlow's XLA op
gives); their gradient row is the softmax. The targets of the one-hot form get no gradient
(``None``: they are treated as constants).
"""

from __future__ import annotations

from xent_impls.backends.tf_loader import tf

# Target size of one float32 block ([N, V] forward, [B, C] backward), and the smallest chunk
# width V (the same rule as xent_impls.fused.jax_chunked).
CHUNK_BYTES = 4 * 2**20
MIN_CHUNK = 128
# How the backward pass writes the gradient (see the module docstring).
BACKWARDS = ("loop", "fused")


def chunk_width(n: int, c: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Default forward chunk width ``V``: about ``chunk_bytes`` of float32 per ``[n, V]`` chunk, a
    multiple of ``MIN_CHUNK`` = 128 columns and at least that, and at most ``c``."""
    v = chunk_bytes // (4 * max(n, 1))
    return min(c, max(MIN_CHUNK, v // MIN_CHUNK * MIN_CHUNK))


def block_rows(n: int, c: int, chunk_bytes: int = CHUNK_BYTES, max_rows: int | None = None) -> int:
    """Backward block height ``B``: the largest divisor of ``n`` with ``B * c`` float32 at most
    ``chunk_bytes`` (1 if even one row is larger) and ``B <= max_rows`` when given; ``n >= 1``."""
    limit = max(1, min(n, chunk_bytes // (4 * c), max_rows or n))
    return next(b for b in range(limit, 0, -1) if n % b == 0)


def _static_shape(logits, targets, sparse: bool) -> tuple[int, int]:
    if logits.shape.rank != 2:
        raise ValueError(f"logits must have shape [N, C], got {logits.shape}")
    n, c = logits.shape
    if n is None or c is None:
        raise ValueError(f"logits need a static shape [N, C], got {logits.shape}")
    want = [n] if sparse else [n, c]
    if targets.shape.as_list() != want:
        raise ValueError(f"targets must have shape {want}, got {targets.shape}")
    return n, c


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _resolve_chunk(n: int, c: int, chunk: int | None) -> int:
    _check_positive("chunk", chunk)
    return chunk_width(n, c) if chunk is None else min(chunk, c)


# --- forward ---------------------------------------------------------------------------------


def _for_each_chunk(body, carry, arrays, width: int):
    """Fold ``body(carry, chunks, start) -> carry`` over the column chunks of ``arrays``.

    ``arrays`` are ``[N, C]`` tensors sliced alike; ``chunks`` their ``[N, width]`` slices from
    column ``start`` (an int32 scalar). The ``C // width`` full chunks run in a ``tf.while_loop``;
    the ragged tail (``C % width`` columns) runs once more as static slices.
    """
    c = arrays[0].shape[1]
    full, tail = divmod(c, width)

    def step(k, *carry):
        start = k * width
        # Static sizes: a size of -1 depends on the dynamic start, and TensorFlow's XLA bridge
        # then pads the whole operand to keep the slice in bounds (a copy of 4x the logits).
        chunks = [tf.slice(a, tf.stack([0, start]), [a.shape[0], width]) for a in arrays]
        return (k + 1, *body(carry, chunks, start))

    if full:
        _, *carry = tf.while_loop(lambda k, *_: k < full, step, (tf.constant(0), *carry))
    if tail:
        start = full * width
        carry = body(carry, [a[:, start:] for a in arrays], tf.constant(start))
    return tuple(carry)


def _safe_shift(m):
    """The shift for ``exp(x - shift)``: ``m``, or 0 where ``m`` is ``-inf`` (a row whose logits so
    far are all ``-inf``): ``exp(-inf - 0) = 0`` where ``exp(-inf - -inf)`` would be NaN."""
    return tf.where(m == -float("inf"), tf.zeros_like(m), m)


def _online_lse(m, s, x):
    """Fold a chunk ``x [N, V]`` (float32) into the running maximum ``m`` and the running sum
    ``s = sum exp(x - m)`` (both ``[N]`` float32)."""
    m_new = tf.maximum(m, tf.reduce_max(x, axis=1))
    shift = _safe_shift(m_new)
    # s was summed against the old maximum: rescale it (a factor <= 1, exactly 1 when the
    # maximum does not move, 0 while the row was all -inf).
    s = s * tf.exp(m - shift) + tf.reduce_sum(tf.exp(x - shift[:, None]), axis=1)
    return m_new, s


def _label_logit(found, x, labels, start):
    """``found [N]`` with the logit of each row's label filled in where it lies in the chunk
    ``x [N, V]`` starting at column ``start``."""
    width = x.shape[1]
    local = labels - tf.cast(start, labels.dtype)
    inside = (local >= 0) & (local < width)
    picked = tf.gather(x, tf.clip_by_value(local, 0, width - 1), batch_dims=1)
    return tf.where(inside, picked, found)


def _weighted_logit_sum(t, x):
    """``sum_j t_ij * x_ij [N]``, with a ``-inf`` logit of zero weight contributing 0 (the limit;
    ``0 * -inf`` would be NaN)."""
    return tf.reduce_sum(tf.where(t != 0, t * x, tf.zeros_like(x)), axis=1)


def _row_vector(n: int, value: float):
    return tf.fill([n], tf.constant(value, tf.float32))


def _forward_sparse(logits, labels, width: int):
    n = logits.shape[0]
    # NaN until the label's chunk is seen: an out-of-range label leaves it NaN.
    init = (_row_vector(n, -float("inf")), _row_vector(n, 0.0), _row_vector(n, float("nan")))

    def body(carry, chunks, start):
        m, s, found = carry
        x = tf.cast(chunks[0], tf.float32)
        m, s = _online_lse(m, s, x)
        return m, s, _label_logit(found, x, labels, start)

    m, s, x_label = _for_each_chunk(body, init, [logits], width)
    log_s = tf.math.log(s)
    # lse - x_label with the large terms cancelled first: m - x_label is exact near the top.
    return (_safe_shift(m) - x_label) + log_s, (m, log_s)


def _forward_onehot(logits, targets, width: int):
    n = logits.shape[0]
    init = (_row_vector(n, -float("inf")),) + tuple(_row_vector(n, 0.0) for _ in range(3))

    def body(carry, chunks, start):
        m, s, tx, ts = carry
        x, t = (tf.cast(a, tf.float32) for a in chunks)
        m, s = _online_lse(m, s, x)
        return m, s, tx + _weighted_logit_sum(t, x), ts + tf.reduce_sum(t, axis=1)

    m, s, tx, ts = _for_each_chunk(body, init, [logits, targets], width)
    log_s = tf.math.log(s)
    lse = _safe_shift(m) + log_s
    # sum(t) * lse - <t, x>; a row of zero targets has loss 0 even where lse is -inf or NaN.
    loss = tf.where(ts != 0, ts * lse, tf.zeros_like(ts)) - tx
    return loss, (m, log_s, ts)


# --- backward --------------------------------------------------------------------------------


def _probs(x, m, log_s):
    """``softmax(x) [B, C]`` float32 from the saved row statistics, without forming ``lse``."""
    return tf.exp((x - _safe_shift(m)[:, None]) - log_s[:, None])


def _fill_gradient(logits, rows, block_grad, max_rows: int | None, backward: str):
    """The ``[N, C]`` gradient (logits' dtype), computed block by block of rows (``"loop"``) or
    as one elementwise expression over the whole matrix (``"fused"``).

    ``rows`` are tensors with ``N`` leading rows, sliced alike into blocks (``rows[0]`` is the
    logits); ``block_grad(blocks) -> [B, C] float32`` computes one block. ``max_rows`` caps the
    block height (default: :func:`block_rows`).
    """
    n, c = logits.shape
    if n == 0:
        return tf.zeros_like(logits)
    if backward == "fused":
        # Under XLA one fused loop reads x (and t) and writes the gradient: no [N, C] float32
        # temporary and no zero-fill. Eagerly every step is a float32 [N, C] temporary.
        return tf.cast(block_grad(rows), logits.dtype)
    height = block_rows(n, c, max_rows=max_rows)
    count = n // height
    grads = tf.TensorArray(logits.dtype, size=count, element_shape=[height, c])

    def step(k, grads):
        blocks = [tf.slice(a, tf.stack([k * height] + [0] * (a.shape.rank - 1)),
                           [height] + a.shape[1:]) for a in rows]
        return k + 1, grads.write(k, tf.cast(block_grad(blocks), logits.dtype))

    _, grads = tf.while_loop(lambda k, _: k < count, step, (tf.constant(0), grads))
    return tf.ensure_shape(grads.concat(), [n, c])


def _backward_sparse(logits, labels, m, log_s, g, max_rows, backward):
    c = logits.shape[1]

    def block_grad(blocks):
        x, y, m_, log_s_, g_ = blocks
        # The one-hot target, built per block from the labels (never as an [N, C] matrix).
        hit = tf.one_hot(y, c, dtype=tf.float32)
        return (_probs(tf.cast(x, tf.float32), m_, log_s_) - hit) * g_[:, None]

    return _fill_gradient(logits, [logits, labels, m, log_s, g], block_grad, max_rows, backward)


def _backward_onehot(logits, targets, m, log_s, ts, g, max_rows, backward):
    def block_grad(blocks):
        x, t, m_, log_s_, ts_, g_ = blocks
        p = _probs(tf.cast(x, tf.float32), m_, log_s_)
        return (ts_[:, None] * p - tf.cast(t, tf.float32)) * g_[:, None]

    rows = [logits, targets, m, log_s, ts, g]
    return _fill_gradient(logits, rows, block_grad, max_rows, backward)


# --- entry points ----------------------------------------------------------------------------


def _check_options(rows: int | None, backward: str) -> None:
    _check_positive("rows", rows)
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(BACKWARDS)}, got {backward!r}")


def chunked_sparse(logits, labels, *, chunk: int | None = None, rows: int | None = None,
                   backward: str = "loop"):
    """Per-example cross-entropy ``[N]`` float32 of ``logits [N, C]`` (float32, bfloat16 or
    float16) against integer ``labels [N]`` (int32 or int64), in column chunks of ``chunk``
    (default :func:`chunk_width`); differentiable with respect to the logits, the gradient
    written by ``backward``: ``"loop"`` (row blocks of at most ``rows``, default
    :func:`block_rows`) or ``"fused"`` (one expression)."""
    logits, labels = tf.convert_to_tensor(logits), tf.convert_to_tensor(labels)
    n, c = _static_shape(logits, labels, sparse=True)
    width = _resolve_chunk(n, c, chunk)
    _check_options(rows, backward)

    @tf.custom_gradient
    def loss_fn(x, y):
        loss, (m, log_s) = _forward_sparse(x, y, width)

        def grad(g):
            g = tf.cast(g, tf.float32)
            return _backward_sparse(x, y, m, log_s, g, rows, backward), None

        return loss, grad

    return loss_fn(logits, labels)


def chunked_onehot(logits, targets, *, chunk: int | None = None, rows: int | None = None,
                   backward: str = "loop"):
    """Per-example cross-entropy ``[N]`` float32 of ``logits [N, C]`` against a target matrix
    ``targets [N, C]`` (one-hot, soft or multi-hot, usually the logits' dtype), in column chunks
    of ``chunk`` (default :func:`chunk_width`); differentiable with respect to the logits, the
    gradient written by ``backward`` as for :func:`chunked_sparse`."""
    logits, targets = tf.convert_to_tensor(logits), tf.convert_to_tensor(targets)
    n, c = _static_shape(logits, targets, sparse=False)
    width = _resolve_chunk(n, c, chunk)
    _check_options(rows, backward)

    @tf.custom_gradient
    def loss_fn(x, t):
        loss, (m, log_s, ts) = _forward_onehot(x, t, width)

        def grad(g):
            g = tf.cast(g, tf.float32)
            return _backward_onehot(x, t, m, log_s, ts, g, rows, backward), None

        return loss, grad

    return loss_fn(logits, targets)
