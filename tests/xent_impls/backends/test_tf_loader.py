"""TensorFlow imported through the package leaves Triton importable afterwards (loaded the
other way round, their two LLVMs abort the process)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_torch_compile_machinery_loads_after_tensorflow():
    pytest.importorskip("xent_impls.backends.tf_loader")
    pytest.importorskip("triton")
    code = ("import xent_impls, numpy as np\n"
            "tf_impl = xent_impls.get('tensorflow/native/sparse')\n"
            "loss = xent_impls.evaluate(tf_impl.id, np.zeros((2, 3), np.float32),"
            " np.zeros(2, np.int64))\n"
            "import torch._dynamo, triton\n"
            "print('both loaded', float(loss.sum()) > 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "both loaded True" in done.stdout
