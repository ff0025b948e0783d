"""Agreement metrics refuse an output that is not a per-example loss and a gradient of the
inputs' shape, or that is complex, with an error naming what came back."""

from __future__ import annotations

import numpy as np
import pytest

from xent_bench.harness.agreement import agreement_metrics
from xent_impls import reference


def _case():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 5)).astype(np.float32)
    targets = rng.integers(0, 5, size=8)
    return logits, targets, *reference(logits, targets, grad=True)


def test_the_oracles_own_output_agrees():
    logits, _, loss, grad = _case()
    metrics = agreement_metrics(logits, loss, grad, loss, grad, "float32")
    assert metrics["loss_err_eps"] == 0 and metrics["grad_err_eps"] == 0


@pytest.mark.parametrize(("loss_shape", "grad_shape", "message"), [
    ((16,), (8, 5), r"a loss of shape \(16,\), expected \(8,\)"),
    ((8, 1), (8, 5), r"a loss of shape \(8, 1\), expected \(8,\)"),
    ((8,), (8, 10), r"a gradient of shape \(8, 10\), expected \(8, 5\)"),
])
def test_a_wrong_shape_is_an_error_naming_it(loss_shape, grad_shape, message):
    logits, _, loss, grad = _case()
    with pytest.raises(ValueError, match=message):
        agreement_metrics(logits, np.resize(loss, loss_shape), np.resize(grad, grad_shape),
                          loss, grad, "float32")


def test_a_complex_output_is_an_error():
    logits, _, loss, grad = _case()
    with pytest.raises(ValueError, match="a complex loss"):
        agreement_metrics(logits, loss.astype(np.complex64), grad, loss, grad, "float32")
    with pytest.raises(ValueError, match="a complex gradient"):
        agreement_metrics(logits, loss, grad + 1j, loss, grad, "float32")
