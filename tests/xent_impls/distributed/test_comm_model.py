"""The class split and the communication model of vocabulary-parallel CE (no framework)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xent_impls.distributed import (
    VOCAB_PARALLEL_IMPLS,
    gather_comm_bytes,
    get_impl,
    modelled_comm_bytes,
    ring_all_reduce_bytes,
    shard_bounds,
    vocab_split,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("c, world", [(10, 4), (32000, 3), (37, 2), (3, 4), (1, 1), (8, 8)])
def test_split_is_contiguous_complete_and_balanced(c, world):
    bounds = vocab_split(c, world)
    assert len(bounds) == world
    assert bounds[0][0] == 0 and bounds[-1][1] == c
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, in rank order
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the larger shards come first
    assert [shard_bounds(c, world, r) for r in range(world)] == bounds


def test_split_documented_examples():
    assert vocab_split(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert vocab_split(3, 4) == [(0, 1), (1, 2), (2, 3), (3, 3)]  # an empty last shard


@pytest.mark.parametrize("call, needle", [
    (lambda: vocab_split(0, 2), "0"),
    (lambda: vocab_split(10, 0), "world size"),
    (lambda: vocab_split(10, 2.0), "2.0"),
    (lambda: shard_bounds(10, 2, 2), "rank"),
    (lambda: modelled_comm_bytes(8, 10, 2, "dense", "forward", 4), "'dense'"),
    (lambda: modelled_comm_bytes(8, 10, 2, "sparse", "backward", 4), "'backward'"),
    (lambda: modelled_comm_bytes(-1, 10, 2, "sparse", "forward", 4), "-1"),
    (lambda: modelled_comm_bytes(8, 10, 0, "sparse", "forward", 4), "world size"),
])
def test_bad_arguments_raise_value_error_naming_the_value(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_ring_all_reduce_cost():
    assert ring_all_reduce_bytes(4096, 1) == 0
    assert ring_all_reduce_bytes(4096, 2) == 4096  # 2 * 1/2 * payload
    assert ring_all_reduce_bytes(4096, 4) == 6144  # 2 * 3/4 * payload


@pytest.mark.parametrize("world, expected", [(1, 0.0), (2, 3 * 4 * 1024.0),
                                             (4, 3 * 1.5 * 4 * 1024)])
def test_modelled_bytes_three_float32_all_reduces_of_n(world, expected):
    assert modelled_comm_bytes(1024, 32000, world, "sparse", "forward", 4) == expected


def test_modelled_bytes_do_not_depend_on_classes_dtype_form_or_pass():
    ref = modelled_comm_bytes(4096, 1000, 4, "sparse", "forward", 4)
    for c in (1, 1000, 128256):
        for itemsize in (2, 4, 8):
            for form in ("sparse", "onehot"):
                for pass_ in ("forward", "forward_backward"):  # backward: no collective
                    assert modelled_comm_bytes(4096, c, 4, form, pass_, itemsize) == ref


def test_gather_alternative_grows_with_classes():
    assert gather_comm_bytes(1024, 32000, 1, 4) == 0
    assert gather_comm_bytes(1024, 32000, 2, 4) == 1024 * 32000 * 4 / 2
    # At a language-model vocabulary the all-reduces send thousands of times less.
    assert (gather_comm_bytes(1024, 32000, 4, 4)
            / modelled_comm_bytes(1024, 32000, 4, "sparse", "forward", 4)) > 1000


def test_implementation_records():
    ids = [impl.id for impl in VOCAB_PARALLEL_IMPLS]
    assert "torch/vocab-parallel/sparse" in ids and "jax/vocab-parallel/onehot" in ids
    assert get_impl("tensorflow", "sparse").id == "tensorflow/vocab-parallel/sparse"
    assert "float64" not in get_impl("jax", "sparse").dtypes
    with pytest.raises(ValueError, match="'mxnet'"):
        get_impl("mxnet", "sparse")


def test_package_imports_no_framework():
    code = ("import sys, xent_impls.distributed as d; d.VOCAB_PARALLEL_IMPLS; "
            "print(sorted(m for m in ('torch', 'jax', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]"
