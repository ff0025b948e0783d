"""TensorFlow vocabulary-parallel CE (DTensor on logical CPU devices): agreement with the float64
oracle on meshes of 1 and 2 devices, and only all-reduces in the expanded graph."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xent_bench.harness.agreement import TOLERANCE_EPS

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                reason="tensorflow is not installed")


def test_dtensor_agrees_with_oracle_and_only_all_reduces(tmp_path):
    out, dump = tmp_path / "results.json", tmp_path / "graphs"
    env = dict(os.environ) | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "TF_DUMP_GRAPH_PREFIX": str(dump), "TF_DUMP_GRAPH_NAME_FILTER": "*",
        "TF_NUM_INTRAOP_THREADS": "2"}
    done = subprocess.run([sys.executable, str(HERE / "tf_devices_check.py"), "2", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {r["world"] for r in result["cases"]} == {1, 2}
    for r in result["cases"]:
        dtype = r["case"].split("/")[1]
        assert r["loss_err_eps"] <= TOLERANCE_EPS[dtype]["loss"], r
        assert r["grad_err_eps"] <= TOLERANCE_EPS[dtype]["grad"], r
        assert r["spread"] == 0.0 and r["forward_matches"], r
        assert r["grad_dtype"] == dtype
    counts = result["collectives"]
    assert counts["CollectiveReduceV2"] >= 2, counts  # the max, and the (combined) sums
    assert all(v == 0 for k, v in counts.items() if k != "CollectiveReduceV2"), counts
