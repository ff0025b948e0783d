"""Blocked plain-PyTorch cross-entropy: agreement with the float64 oracle through autograd, the
block loop, the gradient-in-forward contract of torch_autograd, ignored labels, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xent_impls  # noqa: E402
from xent_bench.harness.agreement import TOLERANCE_EPS, agreement_metrics  # noqa: E402
from xent_impls.backends.torch_backend import to_framework, to_numpy  # noqa: E402
from xent_impls.fused import torch_chunked  # noqa: E402
from xent_impls.fused.torch_autograd import fused  # noqa: E402

FNS = {"sparse": torch_chunked.chunked_sparse, "onehot": torch_chunked.chunked_onehot}


def _small_blocks(form, block_bytes):
    """The implementation with blocks of ``block_bytes``: several blocks per call."""
    kernel = functools.partial(torch_chunked._kernel, sparse=form == "sparse",
                               block_bytes=block_bytes)
    return lambda x, t: fused(kernel, x, t)


def _loss_and_grad(fn, logits, targets, reduce=torch.mean):
    x = to_framework(logits, "cpu").requires_grad_(True)
    loss = fn(x, to_framework(targets, "cpu"))
    (grad,) = torch.autograd.grad(reduce(loss), x)
    return to_numpy(loss), to_numpy(grad)


def _native_metrics(case, form, logits, targets, ref):
    impl = xent_impls.get(f"torch/native/{form}")
    loss, grad = _loss_and_grad(impl.fn, logits, targets)
    return agreement_metrics(logits, loss, grad, *ref, case.dtype)


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize(("n", "c"), [(64, 1), (64, 10), (16, 1000), (8, 5000)])
def test_agrees_with_the_oracle(form, dtype, scale, n, c):
    case = xent_impls.Case(n, c, dtype, scale, seed=3)
    logits, targets = xent_impls.make_inputs(case, form)
    ref = xent_impls.reference(logits, targets, grad=True)
    # Blocks of 3 rows at most: the loop, its ragged last block and the scratch path all run.
    fn = _small_blocks(form, block_bytes=3 * 4 * c)
    loss, grad = _loss_and_grad(fn, logits, targets)
    assert loss.dtype == (np.float64 if dtype == "float64" else np.float32)
    assert grad.dtype == logits.dtype
    m = agreement_metrics(logits, loss, grad, *ref, dtype)
    tol = TOLERANCE_EPS[dtype]
    if dtype in ("float32", "float64"):
        assert m["loss_err_eps"] <= tol["loss"] and m["grad_err_eps"] <= tol["grad"], m
    else:  # no worse than PyTorch's own op at this dtype
        nat = _native_metrics(case, form, logits, targets, ref)
        for q in ("loss", "grad"):
            assert m[f"{q}_err_eps"] <= max(tol[q], 2 * nat[f"{q}_err_eps"]), (q, m, nat)


@pytest.mark.parametrize("form", ["sparse", "onehot"])
def test_any_upstream_gradient_is_exact(form):
    """The gradient is computed for a mean in the forward; a sum or per-row weights rescale it."""
    case = xent_impls.Case(32, 300, "float32", 10.0, seed=1)
    logits, targets = xent_impls.make_inputs(case, form)
    ref_loss, ref_grad = xent_impls.reference(logits, targets, grad=True)
    weights = np.linspace(0.0, 3.0, case.n).astype(np.float32)
    for reduce, expected in [
        (torch.sum, ref_grad * case.n),
        (lambda v: (v * 2.5).mean(), ref_grad * 2.5),
        (lambda v: (v * torch.from_numpy(weights)).sum(), ref_grad * case.n * weights[:, None]),
    ]:
        _, grad = _loss_and_grad(FNS[form], logits, targets, reduce)
        np.testing.assert_allclose(grad, expected, rtol=2e-5, atol=1e-7)


def test_ignored_labels_have_zero_loss_and_gradient():
    case = xent_impls.Case(16, 50, "float32", 1.0, seed=2)
    logits, labels = xent_impls.make_inputs(case, "sparse")
    labels = labels.copy()
    labels[[0, 5]] = torch_chunked.IGNORE_INDEX
    x = torch.from_numpy(logits).requires_grad_(True)
    loss = torch_chunked.chunked_sparse(x, torch.from_numpy(labels))
    loss.sum().backward()
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits),
                                                 torch.from_numpy(labels), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert not x.grad[[0, 5]].any()
    assert x.grad[1].abs().sum() > 0


def test_forward_only_computes_no_gradient(monkeypatch):
    scales = []
    real = torch_chunked._kernel

    def spy(logits, targets, grad_scale, **kw):
        scales.append(grad_scale)
        return real(logits, targets, grad_scale, **kw)

    monkeypatch.setattr(torch_chunked, "_kernel", spy)
    x = torch.randn(8, 100, requires_grad=True)
    y = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        loss = torch_chunked.chunked_sparse(x, y)
    assert loss.shape == (8,) and loss.grad_fn is None
    torch_chunked.chunked_sparse(x.detach(), y)
    torch_chunked.chunked_sparse(x, y)
    assert scales == [None, None, 1.0 / 8]


def test_gradient_buffer_is_handed_out_once():
    x = torch.randn(4, 10, requires_grad=True)
    loss = torch_chunked.chunked_sparse(x, torch.zeros(4, dtype=torch.long)).mean()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="single time"):
        loss.backward()


def test_empty_batch():
    x = torch.zeros(0, 7, requires_grad=True)
    loss = torch_chunked.chunked_sparse(x, torch.zeros(0, dtype=torch.long))
    loss.sum().backward()
    assert loss.shape == (0,) and x.grad.shape == (0, 7)


@pytest.mark.parametrize(
    ("logits", "targets", "message"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "logits must have shape"),
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), "targets must have shape"),
        (torch.zeros(4, 3, dtype=torch.int32), torch.zeros(4, dtype=torch.long),
         "unsupported logits dtype"),
    ],
)
def test_bad_input_is_a_value_error(logits, targets, message):
    with pytest.raises(ValueError, match=message):
        torch_chunked.chunked_sparse(logits, targets)
