"""xent_impls: interchangeable cross-entropy implementations and their float64 oracle.

Importing this package imports no framework; an implementation's framework is imported the
first time the implementation is used.

    >>> import xent_impls
    >>> [impl.id for impl in xent_impls.available()][:2]
    ['numpy/reference/sparse', 'numpy/reference/onehot']
"""

from xent_impls.api import evaluate
from xent_impls.checks import check, checked
from xent_impls.dtypes import DTYPES, eps, numpy_dtype
from xent_impls.inputs import Case, make_inputs, parse_size
from xent_impls.reference import reference
from xent_impls.registry import (
    Impl,
    all_impls,
    available,
    backend,
    framework_installed,
    get,
    select,
    skipped_notes,
)
from xent_impls.vocabulary import FORMS

__all__ = [
    "DTYPES",
    "FORMS",
    "Case",
    "Impl",
    "all_impls",
    "available",
    "backend",
    "check",
    "checked",
    "eps",
    "evaluate",
    "framework_installed",
    "get",
    "make_inputs",
    "numpy_dtype",
    "parse_size",
    "reference",
    "select",
    "skipped_notes",
]
