"""Seeded inputs: case validation, sizes, determinism, exact dtypes, identical framework bytes."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

import xent_impls
from xent_impls import inputs
from xent_impls.dtypes import DTYPES, dtype_name, eps, numpy_dtype
from xent_impls.inputs import (
    FORMS,
    Case,
    make_inputs,
    make_labels,
    make_logits,
    one_hot,
    parse_size,
)

ALL_DTYPES = list(DTYPES)
SIXTEEN_AND_32 = ["float32", "float16", "bfloat16"]
FRAMEWORKS = ["torch", "jax", "tensorflow"]


# --- Case ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"n": -1, "c": 3}, "n must be a non-negative integer, got -1"),
        ({"n": 2.0, "c": 3}, "got 2.0"),
        ({"n": "8", "c": 3}, "got '8'"),
        ({"n": 2, "c": 0}, "c must be a positive integer, got 0"),
        ({"n": 2, "c": -5}, "got -5"),
        ({"n": 2, "c": 3.5}, "got 3.5"),
        ({"n": 2, "c": 3, "dtype": "float8"}, "unknown dtype 'float8'"),
        ({"n": 2, "c": 3, "dtype": "int32"}, "unknown dtype 'int32'"),
        ({"n": 2, "c": 3, "scale": 0.0}, "positive finite number, got 0.0"),
        ({"n": 2, "c": 3, "scale": -1.0}, "got -1.0"),
        ({"n": 2, "c": 3, "scale": float("inf")}, "got inf"),
        ({"n": 2, "c": 3, "scale": float("nan")}, "got nan"),
    ],
    ids=["n-negative", "n-float", "n-str", "c-zero", "c-negative", "c-float", "dtype-float8",
         "dtype-int32", "scale-zero", "scale-negative", "scale-inf", "scale-nan"],
)
def test_case_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        Case(**kwargs)


def test_case_accepts_edges_and_names_itself():
    assert Case(0, 1).size == "0x1"  # an empty batch and a single class are legal cases
    case = Case(1024, 32000, "bfloat16", 10.0, seed=3)
    assert case.id == "1024x32000/bfloat16/s10"
    assert Case(8, 13, scale=0.5).id == "8x13/float32/s0.5"
    with pytest.raises(AttributeError):
        case.n = 1  # type: ignore[misc]


# --- parse_size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("1024x32000", (1024, 32000)), ("8X13", (8, 13)), (" 8 x 13 ", (8, 13)), ("0x10", (0, 10)),
     ("1x1", (1, 1))],
    ids=["lower-x", "upper-x", "spaces", "empty-batch", "one-by-one"],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1024", "1024x", "x32000", "8*13", "8x13x2", "-1x3", "8x-3", "1e3x4", "8.0x13", "8x0",
     "eight x 13"],
)
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_size(text)


# --- make_inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_make_inputs_is_deterministic_per_seed(dtype, form):
    case = Case(16, 37, dtype, scale=3.0, seed=5)
    x1, t1 = make_inputs(case, form)
    x2, t2 = make_inputs(case, form)
    assert x1.tobytes() == x2.tobytes() and x1.dtype == x2.dtype
    assert t1.tobytes() == t2.tobytes() and t1.dtype == t2.dtype


def test_make_inputs_differs_across_seeds():
    x0, y0 = make_inputs(Case(64, 50, seed=0), "sparse")
    x1, y1 = make_inputs(Case(64, 50, seed=1), "sparse")
    assert not np.array_equal(x0, x1), "logits must depend on the seed"
    assert not np.array_equal(y0, y1), "labels must depend on the seed"


def test_logits_scale_the_same_draw():
    base = make_logits(Case(32, 21, "float32", 1.0, seed=2))
    scaled = make_logits(Case(32, 21, "float32", 10.0, seed=2))
    np.testing.assert_array_equal(scaled, base * np.float32(10.0))
    assert 0.5 < float(np.std(base)) < 1.5, "standard-normal draws at scale 1"


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_logits_are_exact_in_the_case_dtype(dtype):
    case = Case(33, 129, dtype, scale=7.0)
    x = make_logits(case)
    assert x.dtype == numpy_dtype(dtype) and x.shape == (33, 129)
    assert dtype_name(x.dtype) == dtype
    # Rounded once: a trip through float32 (which holds every 16-bit value) and back is exact.
    back = x.astype(np.float32).astype(x.dtype)
    assert back.tobytes() == x.tobytes()
    assert np.isfinite(x.astype(np.float64)).all()
    # ...and the rounding is the nearest one from the float32 draw.
    draw = make_logits(Case(33, 129, "float32", 7.0))
    err = np.abs(x.astype(np.float64) - draw.astype(np.float64))
    assert np.all(err <= eps(dtype) * np.abs(draw.astype(np.float64))), "rounded to nearest"


@pytest.mark.parametrize("n, c", [(50, 3), (7, 1), (0, 4), (200, 1000)])
def test_labels_are_in_range(n, c):
    labels = make_labels(Case(n, c))
    assert labels.dtype == np.int64 and labels.shape == (n,)
    if n:
        assert labels.min() >= 0 and labels.max() < c
    if n >= 50 and c == 3:
        assert set(labels.tolist()) == {0, 1, 2}, "every class is drawn"


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_onehot_form_poses_the_same_problem(dtype):
    case = Case(40, 11, dtype, seed=9)
    x_sparse, labels = make_inputs(case, "sparse")
    x_onehot, targets = make_inputs(case, "onehot")
    assert x_sparse.tobytes() == x_onehot.tobytes()
    assert targets.shape == (40, 11) and targets.dtype == x_onehot.dtype
    t64 = targets.astype(np.float64)
    assert set(np.unique(t64).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(t64.sum(axis=1), np.ones(40))
    np.testing.assert_array_equal(np.argmax(t64, axis=1), labels)


def test_one_hot_helper_and_empty_batch():
    np.testing.assert_array_equal(
        one_hot(np.array([2, 0]), 3, np.dtype(np.float32)), [[0, 0, 1], [1, 0, 0]]
    )
    x, labels = make_inputs(Case(0, 5), "sparse")
    assert x.shape == (0, 5) and labels.shape == (0,)
    x, targets = make_inputs(Case(0, 5, "bfloat16"), "onehot")
    assert targets.shape == (0, 5) and targets.dtype == np.dtype(ml_dtypes.bfloat16)


def test_make_inputs_rejects_unknown_form():
    with pytest.raises(ValueError, match="unknown form 'dense'"):
        make_inputs(Case(2, 3), "dense")


# --- the same bytes for every framework ------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", SIXTEEN_AND_32)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_framework_receives_the_same_bytes(framework, dtype, form):
    if not xent_impls.framework_installed(framework):
        pytest.skip(f"{framework} is not installed")
    be = xent_impls.backend(framework)
    case = Case(6, 17, dtype, scale=50.0, seed=4)  # large scale: exercises the exponent bits
    logits, targets = make_inputs(case, form)
    x = be.to_numpy(be.to_framework(logits, "cpu"))
    assert x.dtype == logits.dtype, f"{framework} turned {dtype} logits into {x.dtype}"
    assert x.shape == logits.shape
    assert x.tobytes() == logits.tobytes(), f"{framework} changed the {dtype} logits bytes"
    t = be.to_numpy(be.to_framework(targets, "cpu"))
    if form == "sparse":
        assert np.issubdtype(t.dtype, np.integer)
        np.testing.assert_array_equal(t.astype(np.int64), targets)
    else:
        assert t.dtype == targets.dtype and t.tobytes() == targets.tobytes()


@pytest.mark.parametrize(("typed", "meant"), [
    ("1024*32000", "1024x32000"), ("1024×32000", "1024x32000"), ("1024 32000", "1024x32000"),
    ("1024by32000", "1024x32000"), ("1024x32_000", "1024x32000"), ("1024x3200O", "1024x32000"),
    ("1024X32,000", "1024x32000"), ("abc", None), ("1024", None), ("1024*0", None),
])
def test_a_malformed_size_suggests_the_size_it_most_likely_meant(typed, meant):
    assert inputs.size_guess(typed) == meant
    with pytest.raises(ValueError, match="malformed size") as error:
        inputs.parse_size(typed)
    assert (f"did you mean {meant}?" in str(error.value)) == (meant is not None)
