"""Vocabulary-parallel cross-entropy in TensorFlow with DTensor (``tf.experimental.dtensor``).

DTensor programs are written in the *global* view: ordinary TensorFlow ops on tensors that carry
a layout. With the logits laid out ``[unsharded, "vocab"]`` (each device holds a block of
classes), DTensor's SPMD expansion turns every reduction over the class axis into a local
reduction plus a ``CollectiveReduceV2`` (all-reduce) of the ``[N]`` partial results, and leaves
elementwise ops local. The loss below is therefore the algorithm of the package docstring
(max, sum of exponentials and target logit reduced over the vocabulary) without any explicit
collective in the code; :func:`graph_collectives` counts the collectives in the graphs TensorFlow
dumps after expansion, to show that no all-gather of the logits was inserted.

DTensor needs equal blocks: when ``world`` does not divide ``C``, the blocks are padded to the
largest shard of ``vocab_split`` (the same layout as the JAX version) and a sharded row of
global class ids (-1 for padding) masks the padding out of every maximum, sum and gradient.

On CPU the ``world`` devices are logical CPU devices of one process
(:func:`configure_devices`, before TensorFlow initialises its runtime). DTensor is an
experimental TensorFlow API; on this installation (tensorflow-cpu 2.21) it runs on CPU with
logical devices and its collectives are implemented for CPU.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from xent_impls.backends.tf_loader import tf
from xent_impls.distributed import FORMS, vocab_split

dtensor = tf.experimental.dtensor

AXIS = "vocab"
SYNC_METHOD = "reading the loss back to host memory (.numpy()); CPU eager calls are synchronous"


def configure_devices(world: int) -> list:
    """Split the host CPU into ``world`` logical devices (must run before TensorFlow's runtime is
    initialised, i.e. before the first op). Returns the logical CPU devices."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world size must be a positive integer, got {world!r}")
    (cpu,) = tf.config.list_physical_devices("CPU")[:1]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != world:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(world)])
    return tf.config.list_logical_devices("CPU")


def make_mesh(world: int) -> dtensor.Mesh:
    """A 1-D DTensor mesh ``"vocab"`` over ``world`` logical CPU devices."""
    devices = tf.config.list_logical_devices("CPU")
    if world > len(devices):
        raise ValueError(f"world size {world} exceeds the {len(devices)} logical CPU device(s); "
                         f"call configure_devices({world}) before any TensorFlow op")
    return dtensor.create_mesh([(AXIS, world)], devices=[d.name for d in devices[:world]],
                               device_type="CPU")


def _block_width(c: int, world: int) -> int:
    return max(stop - start for start, stop in vocab_split(c, world))


def _blocks(matrix: np.ndarray, world: int) -> list[np.ndarray]:
    """Each rank's block ``[N, C_max]`` of ``matrix [N, C]``, zero-padded on the right."""
    n, c = matrix.shape
    width = _block_width(c, world)
    out = []
    for start, stop in vocab_split(c, world):
        block = np.zeros((n, width), dtype=matrix.dtype)
        block[:, : stop - start] = matrix[:, start:stop]
        out.append(block)
    return out


def _sharded(mesh: dtensor.Mesh):
    return dtensor.Layout([dtensor.UNSHARDED, AXIS], mesh)


def shard_inputs(mesh: dtensor.Mesh, logits: np.ndarray, targets: np.ndarray):
    """``(x, targets, col_ids)`` as DTensors: ``x [N, world * C_max]`` and a one-hot target matrix
    laid out by vocabulary block (each device receives only its block, via ``dtensor.pack``);
    integer labels ``[N]`` replicated as int32; ``col_ids [1, world * C_max]`` int32, the global
    class of every column (-1 for padding), sharded like the logits."""
    world = mesh.dim_size(AXIS)
    logits = np.asarray(logits)
    n, c = logits.shape
    width = _block_width(c, world)
    layout = _sharded(mesh)
    x = dtensor.pack([tf.constant(b) for b in _blocks(logits, world)], layout)
    ids = []
    for start, stop in vocab_split(c, world):
        row = np.full((1, width), -1, dtype=np.int32)
        row[0, : stop - start] = np.arange(start, stop, dtype=np.int32)
        ids.append(tf.constant(row))
    col_ids = dtensor.pack(ids, layout)
    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        if targets.ndim != 1:
            raise ValueError(f"integer labels must have shape [N], got shape {targets.shape}")
        labels = tf.constant(targets.astype(np.int32))
        t = dtensor.pack([labels] * world, dtensor.Layout.replicated(mesh, rank=1))
    else:
        t = dtensor.pack([tf.constant(b) for b in _blocks(targets, world)], layout)
    return x, t, col_ids


def _loss(x, targets, col_ids, sparse: bool):
    """Global-view loss ``[N]`` float32 (DTensor inserts the all-reduces over the class axis)."""
    x = tf.cast(x, tf.float32)  # float32 accumulation whatever the logits dtype
    valid = col_ids >= 0  # [1, C_pad]: padding columns are masked everywhere
    x = tf.where(valid, x, -np.inf)
    # Row maximum held constant for the gradient: it cancels in log-sum-exp + max.
    gmax = tf.stop_gradient(tf.reduce_max(x, axis=1))
    # An all -inf row would give (-inf) - (-inf) = NaN in the shift: shift it by 0 instead.
    shifted = x - tf.where(tf.math.is_finite(gmax), gmax, 0.0)[:, None]
    sumexp = tf.reduce_sum(tf.where(valid, tf.exp(shifted), 0.0), axis=1)
    if sparse:
        hit = tf.equal(col_ids, targets[:, None])
        target_logit = tf.reduce_sum(tf.where(hit, shifted, 0.0), axis=1)
    else:
        t = tf.cast(targets, tf.float32)
        # Mask, not multiply: 0 * -inf (a padded or -inf-masked class) would be NaN.
        target_logit = tf.reduce_sum(tf.where(t != 0, t * shifted, 0.0), axis=1)
    return tf.math.log(sumexp) - target_logit


@functools.cache
def make_step(form: str, grad: bool):
    """``step(x, targets, col_ids) -> loss [N]`` or ``(loss [N], grad of mean loss)`` (the
    gradient in the logits dtype, laid out like the logits), as a ``tf.function``."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
    sparse = form == "sparse"

    if not grad:
        @tf.function
        def forward(x, t, col_ids):
            return _loss(x, t, col_ids, sparse)

        return forward

    @tf.function
    def step(x, t, col_ids):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _loss(x, t, col_ids, sparse)
            mean = tf.reduce_mean(loss)
        return loss, tape.gradient(mean, x)

    return step


def to_numpy(out, c: int, world: int, rows: int | None = None):
    """NumPy ``loss [rows]`` (float32) and, for a forward+backward output, the gradient
    ``[rows, C]`` with the padding removed. Reads every device's copy of the loss too and
    returns the largest difference between them (0 when the replicas agree)."""
    loss_t, grad_t = (out, None) if not isinstance(out, tuple) else out
    copies = [np.asarray(t.numpy())[:rows] for t in dtensor.unpack(loss_t)]
    spread = float(max(np.max(np.abs(a - copies[0]), initial=0.0) for a in copies))
    if grad_t is None:
        return copies[0], None, spread
    blocks = [np.asarray(b.numpy())[:rows] for b in dtensor.unpack(grad_t)]
    grad = np.concatenate([b[:, : stop - start] for b, (start, stop)
                           in zip(blocks, vocab_split(c, world))], axis=1)
    return copies[0], grad, spread


def vocab_parallel_cross_entropy(mesh: dtensor.Mesh, logits: np.ndarray, targets: np.ndarray,
                                 grad: bool = False):
    """Convenience: shard, run the step, return NumPy ``loss [N]`` (and the gradient of the mean
    loss ``[N, C]`` in the logits dtype when ``grad``)."""
    c = np.asarray(logits).shape[1]
    form = "sparse" if np.issubdtype(np.asarray(targets).dtype, np.integer) else "onehot"
    out = make_step(form, grad)(*shard_inputs(mesh, logits, targets))
    loss, dx, _ = to_numpy(out, c, mesh.dim_size(AXIS))
    return loss if not grad else (loss, dx)


def sync(out) -> None:
    """Wait for ``out`` by reading the loss back (the loss depends on every collective)."""
    loss = out[0] if isinstance(out, tuple) else out
    dtensor.unpack(loss)[0].numpy()


# --- what DTensor made of it -----------------------------------------------------------------

# Collective ops that DTensor's expansion can insert (TensorFlow op names).
COLLECTIVE_OPS = ("CollectiveReduceV2", "CollectiveGatherV2", "CollectiveAllToAllV2",
                  "CollectiveReduceScatterV2", "CollectiveBcastSendV2", "CollectiveBcastRecvV2",
                  "DTensorAllGather", "DTensorAllScatter", "DTensorAllToAll")


def graph_collectives(dump_dir: Path, function_name: str) -> dict[str, int]:
    """Count collective ops in the graph TensorFlow dumped last for ``function_name`` before it
    was partitioned over devices (the graph after DTensor's expansion, one program for all
    devices), i.e. of the most recent step of that name to be traced. Needs
    ``TF_DUMP_GRAPH_PREFIX=dump_dir`` and ``TF_DUMP_GRAPH_NAME_FILTER='*'`` in the environment
    when the step first ran. Raises ``FileNotFoundError`` when no such graph was dumped."""
    dumps = [p for p in Path(dump_dir).glob(f"*{function_name}*.before_partition.pbtxt")
             if "_partition_" not in p.name]
    if not dumps:
        raise FileNotFoundError(f"no dumped graph of {function_name!r} in {dump_dir}")
    text = max(dumps, key=lambda p: (p.stat().st_mtime_ns, p.name)).read_text()
    return {op: len(re.findall(rf'op: "{op}"', text)) for op in COLLECTIVE_OPS}
