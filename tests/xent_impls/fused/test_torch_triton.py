"""Triton fused cross-entropy against the float64 oracle.

Without a GPU the kernel module sets ``TRITON_INTERPRET=1`` before it defines its kernels, so
these tests run them in Triton's interpreter on the CPU; on a machine with a GPU they run the
compiled kernels on CUDA tensors. The interpreter runs one program after another in NumPy, so
sizes stay small (N <= 32 for long rows), and the online loop is exercised with column blocks
much smaller than C rather than with long rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    # Before triton's first import, so that its own library is built for the interpreter too
    # (the kernel module copes either way, see torch_triton._interpretable).
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

from xent_impls import Case, eps, make_inputs, reference  # noqa: E402
from xent_impls.fused import torch_triton as tt  # noqa: E402

DEVICE = "cpu" if tt.INTERPRET else "cuda"
EPS32 = eps("float32")
CLASS_COUNTS = [1, 10, 64, 100, 1000, 5000]
# The online loop with several chunks, and the tile kernel with several programs and a
# partial last tile: (C, forced launch).
FORCED = [
    (1, tt.Launch(tile=False, block_c=16)),
    (10, tt.Launch(tile=False, block_c=4)),
    (64, tt.Launch(tile=False, block_c=16)),
    (100, tt.Launch(tile=False, block_c=32)),
    (1000, tt.Launch(tile=False, block_c=128)),
    (5000, tt.Launch(tile=False, block_c=1024)),
    (10, tt.Launch(tile=True, block_c=16, block_n=4)),
    (100, tt.Launch(tile=True, block_c=128, block_n=8)),
    (1000, tt.Launch(tile=True, block_c=1024, block_n=2)),
]


# --- helpers ----------------------------------------------------------------------------------


def _to_torch(array: np.ndarray) -> torch.Tensor:
    """A copy of ``array`` as a tensor on DEVICE, bit for bit (bfloat16 travels as 16-bit
    words). A copy, so that ``inplace=True`` cannot overwrite the oracle's input."""
    array = np.array(array, order="C", copy=True)
    if array.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).to(DEVICE)
    return torch.from_numpy(array).to(DEVICE)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as float64 NumPy."""
    return tensor.detach().float().cpu().numpy().astype(np.float64)


def _inputs(n, c, dtype="float32", scale=1.0, form="sparse", seed=0):
    """``(x, t)`` NumPy arrays of the case and the same values as tensors ``(logits, targets)``
    with ``logits.requires_grad``."""
    x, t = make_inputs(Case(n, c, dtype, scale, seed), form)
    return x, t, _to_torch(x).requires_grad_(True), _to_torch(t)


def _loss_and_grad(logits, targets, upstream=None, **kw):
    """Per-example loss ``[N]`` and the gradient of ``mean(loss)`` (or of ``sum(upstream *
    loss)``), as float64 NumPy."""
    loss = tt.cross_entropy(logits, targets, **kw)
    total = loss.mean() if upstream is None else (loss * upstream).sum()
    total.backward()
    return _to_numpy(loss), _to_numpy(logits.grad)


def _row_scale(x: np.ndarray) -> np.ndarray:
    """Per-row ``max(1, max |x|)`` ``[N, 1]``: float32 rounding of the log-sum-exp is relative
    to it."""
    return np.maximum(1.0, np.abs(x.astype(np.float64)).max(axis=1, keepdims=True))


def _assert_float32_close(x, t, loss, grad, grad_factor):
    """Loss within a few float32 eps of the row's scale (plus log C for the log-sum term) and
    gradient within a few eps of the row's scale times the gradient's factor per row."""
    ref_loss, ref_grad = reference(x, t, grad=True)
    n, c = x.shape
    ref_grad = ref_grad * n * grad_factor
    scale = _row_scale(x)
    loss_tol = 4 * EPS32 * (scale[:, 0] + np.log(c))
    grad_tol = 4 * EPS32 * scale * np.abs(grad_factor)
    _assert_within(np.abs(loss - ref_loss), loss_tol, "loss")
    _assert_within(np.abs(grad - ref_grad), grad_tol, "gradient")


def _assert_within(error: np.ndarray, tolerance: np.ndarray, what: str) -> None:
    """Every ``error <= tolerance`` (broadcast), or a message with the worst ratio."""
    ratio = error / np.broadcast_to(tolerance, error.shape)
    assert np.all(ratio <= 1.0), f"{what}: worst error is {np.max(ratio):.3g} x the tolerance"


def _native(x_t: torch.Tensor, t_t: torch.Tensor):
    """Loss and mean-loss gradient of ``F.cross_entropy`` at the logits' own dtype."""
    logits = x_t.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(logits, t_t, reduction="none")
    loss.mean().backward()
    return _to_numpy(loss), _to_numpy(logits.grad)


# --- float32 against the oracle ---------------------------------------------------------------


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize("c", CLASS_COUNTS)
def test_float32_matches_oracle(c, scale, form):
    n = 32 if c <= 1000 else 8
    x, t, logits, targets = _inputs(n, c, "float32", scale, form)
    loss, grad = _loss_and_grad(logits, targets)
    _assert_float32_close(x, t, loss, grad, np.full((n, 1), 1.0 / n))


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize(("c", "config"), FORCED, ids=lambda v: str(v))
def test_forced_launch_matches_oracle(c, config, scale, form):
    # 13 is not a multiple of any block_n (the last tile is partial); the row kernel, one
    # program per row and one interpreted loop step per chunk, gets fewer rows.
    n = 13 if config.tile else 5
    x, t, logits, targets = _inputs(n, c, "float32", scale, form, seed=1)
    loss, grad = _loss_and_grad(logits, targets, config=config)
    _assert_float32_close(x, t, loss, grad, np.full((n, 1), 1.0 / n))


def test_default_launch_heuristic():
    assert tt.launch_config(10, 4) == tt.Launch(tile=True, block_c=16, block_n=256)
    assert tt.launch_config(tt.SMALL_C_MAX, 2).tile
    assert tt.launch_config(1000, 4) == tt.Launch(tile=False, block_c=1024, num_warps=4)
    assert tt.launch_config(128256, 4) == tt.Launch(tile=False, block_c=8192, num_warps=16)
    assert tt.launch_config(128256, 2) == tt.Launch(tile=False, block_c=16384, num_warps=16)


# --- 16-bit logits: no worse than native PyTorch at the same dtype ----------------------------


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize(("c", "config"),
                         [(10, None), (1000, None), (1000, tt.Launch(tile=False, block_c=128))])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16bit_no_worse_than_native(dtype, c, config, scale, form):
    n = 16 if config is None else 6
    x, t, logits, targets = _inputs(n, c, dtype, scale, form, seed=2)
    loss, grad = _loss_and_grad(logits, targets, config=config)
    assert logits.grad.dtype == logits.dtype
    native_loss, native_grad = _native(logits, targets)
    ref_loss, ref_grad = reference(x, t, grad=True)
    # 2x native's error plus one unit in the last place of the largest value. (The interpreter
    # rounds float32 -> bfloat16 toward zero where a GPU rounds to nearest: up to 1 ulp, not 1/2.)
    slack = eps(dtype)
    loss_err, native_loss_err = np.abs(loss - ref_loss).max(), np.abs(native_loss - ref_loss).max()
    assert loss_err <= 2 * native_loss_err + slack * np.abs(ref_loss).max()
    grad_err, native_grad_err = np.abs(grad - ref_grad).max(), np.abs(native_grad - ref_grad).max()
    assert grad_err <= 2 * native_grad_err + slack * np.abs(ref_grad).max()


# --- gradient paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("upstream", ["sum", "weighted"])
@pytest.mark.parametrize("c", [10, 1000])
def test_rescaled_gradient_paths(c, upstream, form):
    n = 12
    x, t, logits, targets = _inputs(n, c, "float32", 10.0, form, seed=3)
    if upstream == "sum":
        weights = np.ones(n)
    else:
        weights = np.random.default_rng(0).uniform(-2.0, 2.0, n)
    upstream_t = torch.tensor(weights, dtype=torch.float32, device=DEVICE)
    loss, grad = _loss_and_grad(logits, targets, upstream=upstream_t)
    _assert_float32_close(x, t, loss, grad, weights.astype(np.float32)[:, None])


@pytest.mark.parametrize("form", ["sparse", "onehot"])
def test_inplace_through_autograd(form):
    """With ``inplace=True`` the gradient autograd hands back is the logits' own buffer."""
    x, t, logits, targets = _inputs(8, 300, "float32", 1.0, form)
    loss = tt.cross_entropy(logits, targets, inplace=True)
    (grad,) = torch.autograd.grad(loss.mean(), logits)
    assert grad.untyped_storage().data_ptr() == logits.untyped_storage().data_ptr()
    ref_loss, ref_grad = reference(x, t, grad=True)
    np.testing.assert_allclose(_to_numpy(loss), ref_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_to_numpy(grad), ref_grad, atol=1e-8)


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("c", [10, 1000])
def test_inplace_writes_the_gradient_into_the_logits(c, form):
    x, t, logits, targets = _inputs(6, c, "float32", 3.0, form, seed=4)
    buffer = logits.detach().clone()
    loss, grad = tt.sparse_kernel(buffer, targets, 0.5, inplace=True) if form == "sparse" \
        else tt.onehot_kernel(buffer, targets, 0.5, inplace=True)
    assert grad is buffer
    ref_loss, ref_grad = reference(x, t, grad=True)
    np.testing.assert_allclose(_to_numpy(loss), ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_to_numpy(buffer), ref_grad * 6 * 0.5, atol=1e-7)


# --- targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, tt.Launch(tile=False, block_c=8)])
@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_ignore_index(ignore_index, config):
    n, c = 10, 20
    x, labels, logits, targets = _inputs(n, c, "float32", 2.0, "sparse", seed=5)
    labels = labels.copy()
    labels[[1, 4, 7]] = ignore_index
    targets = _to_torch(labels)
    loss, grad = _loss_and_grad(logits, targets, ignore_index=ignore_index, config=config)
    ignored = labels == ignore_index
    assert np.all(loss[ignored] == 0.0) and np.all(grad[ignored] == 0.0)
    kept = ~ignored
    ref_loss, ref_grad = reference(x[kept], labels[kept], grad=True)
    np.testing.assert_allclose(loss[kept], ref_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad[kept], ref_grad * kept.sum() / n, atol=1e-8)
    native = F.cross_entropy(logits.detach(), targets, ignore_index=ignore_index,
                             reduction="none")
    np.testing.assert_allclose(loss, _to_numpy(native), rtol=1e-6, atol=1e-6)


def test_mean_reduction_counts_rows_not_ignored_like_torch():
    _, labels, logits, _ = _inputs(9, 30, "float32", 1.0, "sparse", seed=6)
    labels = labels.copy()
    labels[:4] = -100
    targets = _to_torch(labels)
    x_native = logits.detach().clone().requires_grad_(True)
    native = F.cross_entropy(x_native, targets, reduction="mean")
    native.backward()
    mean = tt.cross_entropy(logits, targets, reduction="mean")
    mean.backward()
    np.testing.assert_allclose(float(mean.detach()), float(native.detach()), rtol=1e-6)
    np.testing.assert_allclose(_to_numpy(logits.grad), _to_numpy(x_native.grad), atol=1e-7)
    total = tt.cross_entropy(logits.detach(), targets, reduction="sum")
    np.testing.assert_allclose(float(total), float(native.detach()) * 5, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_narrow_label_dtypes(dtype):
    x, labels, logits, _ = _inputs(7, 40, "float32", 1.0, "sparse", seed=7)
    loss = tt.cross_entropy(logits.detach(), _to_torch(labels).to(dtype))
    np.testing.assert_allclose(_to_numpy(loss), reference(x, labels), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("config", [None, tt.Launch(tile=False, block_c=8)])
def test_out_of_range_label_gives_nan_row(config):
    _, labels, logits, _ = _inputs(4, 20, "float32", 1.0, "sparse")
    labels = labels.copy()
    labels[2] = 20
    loss, grad = _loss_and_grad(logits, _to_torch(labels), config=config)
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    assert np.all(np.isfinite(np.delete(loss, 2))) and np.all(np.isfinite(np.delete(grad, 2, 0)))


@pytest.mark.parametrize("config", [None, tt.Launch(tile=False, block_c=8)])
@pytest.mark.parametrize("kind", ["soft", "multihot", "masked"])
def test_target_matrices_and_masked_classes(kind, config):
    """Soft rows, rows summing to 2 and -inf masked classes (zero target weight) match the
    oracle, including its ``sum(t) * lse`` term."""
    n, c = 6, 24
    rng = np.random.default_rng(8)
    x = (3.0 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c // 2, n)
    t = np.zeros((n, c), np.float32)
    t[np.arange(n), labels] = 1.0
    if kind == "soft":
        t = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    elif kind == "multihot":
        t[np.arange(n), labels + 1] = 1.0
    else:
        x[:, c // 2:] = -np.inf  # masked classes, never a target
    logits = _to_torch(x).requires_grad_(True)
    loss, grad = _loss_and_grad(logits, _to_torch(t), config=config)
    _assert_float32_close(x, t, loss, grad, np.full((n, 1), 1.0 / n))
    if kind == "masked":
        sparse_logits = _to_torch(x).requires_grad_(True)
        sparse_loss, sparse_grad = _loss_and_grad(sparse_logits, _to_torch(labels), config=config)
        _assert_float32_close(x, labels, sparse_loss, sparse_grad, np.full((n, 1), 1.0 / n))


@pytest.mark.parametrize("config", [None, tt.Launch(tile=False, block_c=8)])
@pytest.mark.parametrize("form", ["sparse", "onehot"])
def test_non_finite_logits_follow_the_oracle(form, config):
    """NaN in a row, a row of -inf and +inf at the label give NaN (loss and gradient row), like
    the oracle, without a floating-point warning; other rows are unaffected."""
    x, _, _, _ = _inputs(4, 20, "float32", 1.0, "sparse", seed=9)
    labels = np.array([1, 2, 5, 3])
    t = labels if form == "sparse" else np.eye(20, dtype=np.float32)[labels]
    x = x.copy()
    x[0, 3], x[1], x[2, 5], x[3, 10:] = np.nan, -np.inf, np.inf, -np.inf
    logits = _to_torch(x).requires_grad_(True)
    loss, grad = _loss_and_grad(logits, _to_torch(t), config=config)
    ref_loss, ref_grad = reference(x, t, grad=True)
    assert np.all(np.isnan(loss[:3])) and np.all(np.isnan(ref_loss[:3]))
    assert np.all(np.isnan(grad[:3]))
    np.testing.assert_allclose(loss[3], ref_loss[3], rtol=1e-6)
    np.testing.assert_allclose(grad[3], ref_grad[3], atol=1e-8)


# --- shapes, entry points, forward only -------------------------------------------------------


@pytest.mark.parametrize("form", ["sparse", "onehot"])
def test_empty_batch(form):
    _, _, logits, targets = _inputs(0, 10, "float32", 1.0, form)
    loss = tt.cross_entropy(logits, targets)
    assert loss.shape == (0,) and loss.dtype == torch.float32
    loss.mean().backward()
    assert logits.grad.shape == (0, 10)
    assert tt.forward_stats(logits, targets)[1].shape == (0,)


def test_single_class_has_zero_loss_and_gradient():
    _, _, logits, targets = _inputs(5, 1, "float32", 10.0, "sparse")
    loss, grad = _loss_and_grad(logits, targets)
    assert np.all(loss == 0.0) and np.all(grad == 0.0)


def test_non_contiguous_logits():
    x, labels, _, targets = _inputs(8, 50, "float32", 1.0, "sparse")
    transposed = _to_torch(np.ascontiguousarray(x.T)).t().requires_grad_(True)
    assert not transposed.is_contiguous()
    loss, grad = _loss_and_grad(transposed, targets)
    ref_loss, ref_grad = reference(x, labels, grad=True)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-8)


@pytest.mark.parametrize("form", ["sparse", "onehot"])
def test_registry_entry_points(form):
    x, t, logits, targets = _inputs(6, 300, "float32", 1.0, form)
    fn = tt.triton_sparse if form == "sparse" else tt.triton_onehot
    loss = fn(logits, targets)
    assert loss.shape == (6,) and loss.dtype == torch.float32 and loss.grad_fn is not None
    loss.mean().backward()
    ref_loss, ref_grad = reference(x, t, grad=True)
    np.testing.assert_allclose(_to_numpy(loss), ref_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_to_numpy(logits.grad), ref_grad, atol=1e-8)
    with torch.no_grad():
        assert fn(logits, targets).grad_fn is None


@pytest.mark.parametrize("c", [10, 1000])
def test_forward_stats_log_sum_exp(c):
    x, labels, logits, _ = _inputs(5, c, "float32", 30.0, "sparse")
    loss, lse = tt.forward_stats(logits, _to_torch(labels))
    x64 = x.astype(np.float64)
    m = x64.max(axis=1)
    ref_lse = m + np.log(np.exp(x64 - m[:, None]).sum(axis=1))
    np.testing.assert_allclose(_to_numpy(lse), ref_lse, rtol=4 * EPS32)
    np.testing.assert_allclose(_to_numpy(loss), reference(x, labels), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter fallback is for CPU-only")
def test_interpreter_fallback_after_triton_was_imported():
    """``import torch._dynamo`` imports triton before this module can set TRITON_INTERPRET, so
    triton's own library functions are built for the compiler: the kernels must still run."""
    code = textwrap.dedent("""
        import torch, triton
        from xent_impls.fused import torch_triton as tt
        assert tt.INTERPRET
        x = torch.randn(3, 300, requires_grad=True)
        y = torch.tensor([0, 5, 299])
        loss = tt.cross_entropy(x, y)
        loss.mean().backward()
        ref = torch.nn.functional.cross_entropy(x.detach(), y, reduction="none")
        assert torch.allclose(loss.detach(), ref, atol=1e-5), (loss, ref)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                            cwd=Path(__file__).resolve().parents[3], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# --- input checking ---------------------------------------------------------------------------


def _bad_calls():
    x = torch.zeros(4, 5, device=DEVICE)
    labels = torch.zeros(4, dtype=torch.int64, device=DEVICE)
    return {
        "shape \\[N, C\\], got shape \\(20,\\)": lambda: tt.cross_entropy(x.reshape(-1), labels),
        "unsupported logits dtype torch.float64": lambda: tt.cross_entropy(x.double(), labels),
        "unsupported logits dtype torch.int64": lambda: tt.cross_entropy(labels[:, None], labels),
        "at least one class": lambda: tt.cross_entropy(x[:, :0], labels),
        "labels must have shape \\(4,\\)": lambda: tt.cross_entropy(x, labels[:3]),
        "labels must have an integer dtype": lambda: tt.sparse_kernel(x, labels.float(), None),
        "target matrix must have the logits' shape": lambda: tt.cross_entropy(x, x[:, :3]),
        "unsupported target matrix dtype torch.bool": lambda: tt.onehot_kernel(x, x > 0, None),
        "unknown reduction 'avg'": lambda: tt.cross_entropy(x, labels, reduction="avg"),
        "logits must be a torch.Tensor, got ndarray": lambda: tt.cross_entropy(
            np.zeros((4, 5)), labels),
        "block_c must be a power of two, got 12": lambda: tt.cross_entropy(
            x, labels, config=tt.Launch(tile=False, block_c=12)),
        "block_c >= C = 5, got 4": lambda: tt.cross_entropy(
            x, labels, config=tt.Launch(tile=True, block_c=4)),
    }


@pytest.mark.parametrize("message", list(_bad_calls()))
def test_bad_input_raises_value_error(message):
    with pytest.raises(ValueError, match=message):
        _bad_calls()[message]()
