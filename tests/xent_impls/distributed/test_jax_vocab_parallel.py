"""JAX vocabulary-parallel CE (shard_map): the block layout, the HLO collective count, and
agreement with the float64 oracle on 1, 2 and 4 host devices (a fresh process per world size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xent_bench.harness.agreement import TOLERANCE_EPS

pytest.importorskip("jax")

from xent_impls.distributed import jax_vocab_parallel as jv  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("c, world", [(37, 4), (40, 4), (3, 4), (10, 1)])
def test_blocks_round_trip(c, world):
    x = np.arange(2 * c, dtype=np.float32).reshape(2, c)
    blocks = jv.to_blocks(x, world)
    assert blocks.shape == (2, world * jv.block_width(c, world))
    np.testing.assert_array_equal(jv.from_blocks(blocks, c, world), x)


def test_hlo_collectives_counts_opcodes_not_names():
    hlo = """
  %all-gather.3 = f32[8]{0} add(f32[8]{0} %a, f32[8]{0} %b)
  %pmax.7 = f32[64]{0} all-reduce(%fusion.2), channel_id=1, to_apply=%max
  %all-reduce = (f32[64]{0}, f32[64]{0}) all-reduce(%f, %g), channel_id=2, to_apply=%add
  %ags = (f32[8]{0}, f32[32]{0}) all-gather-start(f32[8]{0} %x), dimensions={0}
  %agd = f32[32]{0} all-gather-done((f32[8]{0}, f32[32]{0}) %ags)
"""
    counts = jv.hlo_collectives(hlo)
    assert counts["all-reduce"] == 2
    assert counts["all-gather"] == 1  # the async pair counts once; the name %all-gather.3 not


def test_assert_no_all_gather_on_a_one_device_step():
    """In-process (one CPU device): the helper compiles the step and returns its collectives."""
    from xent_impls import Case, make_inputs

    mesh = jv.make_mesh(1)
    logits, labels = make_inputs(Case(4, 7), "sparse")
    x, t = jv.shard_inputs(mesh, logits, labels)
    counts = jv.assert_no_all_gather(jv.make_step(mesh, 7, "sparse", True), x, t)
    assert counts["all-gather"] == 0


def test_make_mesh_names_the_missing_devices():
    import jax

    too_many = len(jax.devices("cpu")) + 1
    with pytest.raises(ValueError, match=f"world size {too_many}.*device_count={too_many}"):
        jv.make_mesh(too_many)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_shard_map_agrees_with_oracle_and_never_gathers(world, tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ) | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HERE / "jax_devices_check.py"), str(world),
                           str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert len(results) == 4
    for r in results:
        dtype = r["case"].split("/")[1]
        assert r["devices"] == world
        assert r["loss_err_eps"] <= TOLERANCE_EPS[dtype]["loss"], r
        assert r["grad_err_eps"] <= TOLERANCE_EPS[dtype]["grad"], r
        assert r["spread"] == 0.0 and r["forward_matches"], r
        assert r["grad_dtype"] == dtype
        for counts in (r["forward_collectives"], r["backward_collectives"]):
            assert counts["all-gather"] == 0 and counts["all-to-all"] == 0, r
            if world > 1:
                # max, then the two sums (XLA may combine them into one tuple all-reduce)
                assert 2 <= counts["all-reduce"] <= 3, r
