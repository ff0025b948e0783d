"""The Inductor-compiled fused formula: loss and gradient against the oracle (both forms,
16-bit no worse than PyTorch's own op), ignored labels, empty batch, forward without gradient,
bad input. (Every case of the agreement grid: tests/benchmarks/test_fused_agreement.py.)"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xent_impls  # noqa: E402
from xent_bench.harness.agreement import TOLERANCE_EPS, agreement_metrics  # noqa: E402
from xent_impls.backends.torch_backend import to_framework, to_numpy  # noqa: E402
from xent_impls.fused import torch_compiled  # noqa: E402

FNS = {"sparse": torch_compiled.compiled_sparse, "onehot": torch_compiled.compiled_onehot}


def _loss_and_grad(fn, logits, targets, reduce=torch.mean):
    x = to_framework(logits, "cpu").requires_grad_(True)
    loss = fn(x, to_framework(targets, "cpu"))
    (grad,) = torch.autograd.grad(reduce(loss), x)
    return to_numpy(loss), to_numpy(grad)


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_agrees_with_the_oracle(form, dtype):
    case = xent_impls.Case(24, 700, dtype, 100.0, seed=4)
    logits, targets = xent_impls.make_inputs(case, form)
    ref = xent_impls.reference(logits, targets, grad=True)
    loss, grad = _loss_and_grad(FNS[form], logits, targets)
    assert loss.dtype == np.float32 and grad.dtype == logits.dtype
    m = agreement_metrics(logits, loss, grad, *ref, dtype)
    tol = TOLERANCE_EPS[dtype]
    native = _loss_and_grad(xent_impls.get(f"torch/native/{form}").fn, logits, targets)
    nat = agreement_metrics(logits, *native, *ref, dtype)
    for q in ("loss", "grad"):
        bar = tol[q] if dtype == "float32" else max(tol[q], 2 * nat[f"{q}_err_eps"])
        assert m[f"{q}_err_eps"] <= bar, (q, m, nat)


def test_weighted_upstream_gradient_is_exact():
    case = xent_impls.Case(16, 300, "float32", 10.0, seed=1)
    logits, labels = xent_impls.make_inputs(case, "sparse")
    _, ref_grad = xent_impls.reference(logits, labels, grad=True)
    w = np.linspace(0.0, 2.0, case.n).astype(np.float32)
    _, grad = _loss_and_grad(FNS["sparse"], logits, labels,
                             lambda v: (v * torch.from_numpy(w)).sum())
    np.testing.assert_allclose(grad, ref_grad * case.n * w[:, None], rtol=2e-5, atol=1e-7)


def test_ignored_labels_and_forward_only():
    x = torch.randn(8, 40)
    y = torch.randint(0, 40, (8,))
    y[2] = torch_compiled.IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(x, y, reduction="none")
    with torch.no_grad():
        np.testing.assert_allclose(torch_compiled.compiled_sparse(x, y).numpy(),
                                   expected.numpy(), rtol=1e-5, atol=1e-6)
    xg = x.clone().requires_grad_(True)
    torch_compiled.compiled_sparse(xg, y).sum().backward()
    assert not xg.grad[2].any() and xg.grad[0].abs().sum() > 0


def test_empty_batch_and_bad_input():
    x = torch.zeros(0, 5, requires_grad=True)
    loss = torch_compiled.compiled_sparse(x, torch.zeros(0, dtype=torch.long))
    loss.sum().backward()
    assert loss.shape == (0,) and x.grad.shape == (0, 5)
    with pytest.raises(ValueError, match="targets must have shape"):
        torch_compiled.compiled_onehot(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="logits must have shape"):
        torch_compiled.compiled_sparse(torch.zeros(3), torch.zeros(3, dtype=torch.long))
