"""torch vocabulary-parallel CE: agreement with the float64 oracle, in one process and over
gloo process groups of 1, 2 and 4 ranks (one launch of four processes, sub-groups for 1 and 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xent_impls
from xent_bench.harness.agreement import TOLERANCE_EPS, agreement_metrics
from xent_bench.harness.distributed import free_port

torch = pytest.importorskip("torch")

from xent_impls.distributed.torch_vocab_parallel import (  # noqa: E402
    vocab_parallel_cross_entropy,
)

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


def _tensor(array):
    if array.dtype == xent_impls.numpy_dtype("bfloat16"):
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    if np.issubdtype(array.dtype, np.integer):
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array)


def _numpy(tensor):
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(xent_impls.numpy_dtype("bfloat16"))
    return tensor.numpy()


@pytest.mark.parametrize("form", ["sparse", "onehot"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_single_process_agrees_with_oracle(form, dtype):
    """Without a process group the function is plain CE over its one block."""
    case = xent_impls.Case(32, 45, dtype, scale=10.0)
    logits, targets = xent_impls.make_inputs(case, form)
    x = _tensor(logits).requires_grad_(True)
    loss = vocab_parallel_cross_entropy(x, _tensor(targets), vocab_start=0)
    loss.mean().backward()
    assert loss.dtype == (torch.float64 if dtype == "float64" else torch.float32)
    assert x.grad.dtype == x.dtype  # the gradient in the input dtype
    ref_loss, ref_grad = xent_impls.reference(logits, targets, grad=True)
    m = agreement_metrics(logits, _numpy(loss), _numpy(x.grad), ref_loss, ref_grad, dtype)
    assert m["loss_err_eps"] <= TOLERANCE_EPS[dtype]["loss"]
    assert m["grad_err_eps"] <= TOLERANCE_EPS[dtype]["grad"]


def test_masked_class_and_second_backward():
    logits = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    logits[:, 2] = -np.inf  # a masked class with target 0: contributes nothing, no NaN
    targets = xent_impls.inputs.one_hot(np.array([0, 1, 3, 5]), 6, np.float32)
    x = torch.from_numpy(logits).requires_grad_(True)
    loss = vocab_parallel_cross_entropy(x, torch.from_numpy(targets), vocab_start=0)
    ref_loss, ref_grad = xent_impls.reference(logits, targets, grad=True)
    np.testing.assert_allclose(loss.detach().numpy(), ref_loss, rtol=1e-6)
    (g1,) = torch.autograd.grad(loss.mean(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss.mean(), x)  # the saved softmax is left intact
    np.testing.assert_allclose(g1.numpy(), ref_grad, atol=1e-7)
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("logits_shape, targets, kw, needle", [
    ((4,), torch.zeros(4, dtype=torch.int64), {}, "shape"),
    ((4, 3), torch.zeros(5, dtype=torch.int64), {}, r"\(4,\)"),
    ((4, 3), torch.zeros(4, 2), {}, r"\(4, 3\)"),
    ((4, 3), torch.zeros(4, dtype=torch.int64), {"vocab_start": -1}, "-1"),
    ((4, 3), torch.tensor([0, 1, 2, 9]), {"vocab_size": 6}, "label 9"),
    ((4, 3), torch.tensor([0, -1, 2, 1]), {"vocab_size": 6}, "label -1"),
])
def test_bad_input_raises_value_error_naming_it(logits_shape, targets, kw, needle):
    kw = {"vocab_start": 0} | kw
    with pytest.raises(ValueError, match=needle):
        vocab_parallel_cross_entropy(torch.zeros(logits_shape), targets, **kw)


def test_gloo_ranks_1_2_4_agree_with_oracle(tmp_path):
    """Four gloo processes; sub-groups of 1, 2 and 4 ranks; uneven splits and an empty shard."""
    out = tmp_path / "results.json"
    port = str(free_port())
    procs = []
    for rank in range(4):
        env = dict(os.environ) | {
            "RANK": str(rank), "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE / "torch_ranks_check.py"), str(out)], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            process_group=0 if not procs else procs[0].pid))
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        if any(p.poll() is None for p in procs):
            os.killpg(procs[0].pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(outputs)
    results = json.loads(out.read_text())
    assert {r["world"] for r in results} == {1, 2, 4}
    assert len(results) == 3 * 3 * 2
    for r in results:
        dtype = r["case"].split("/")[1]
        assert r["loss_err_eps"] <= TOLERANCE_EPS[dtype]["loss"], r
        assert r["grad_err_eps"] <= TOLERANCE_EPS[dtype]["grad"], r
        assert r["spread"] == 0.0, r  # every rank holds the same loss
