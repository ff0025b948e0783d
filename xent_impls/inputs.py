"""Seeded inputs, made once in NumPy and handed as identical values to every framework.

A :class:`Case` describes a problem (batch ``n``, classes ``c``, logits dtype, logit scale,
seed). :func:`make_inputs` draws float32 standard-normal logits, multiplies them by the scale,
and rounds them once to the case dtype; every framework then receives those exact bytes and the
float64 oracle is computed from them, so the oracle sees exactly what an implementation sees.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from xent_impls.dtypes import numpy_dtype
from xent_impls.names import unknown_name
from xent_impls.vocabulary import FORMS


@dataclasses.dataclass(frozen=True)
class Case:
    """One problem: ``n`` examples, ``c`` classes, logits of ``dtype`` drawn as N(0, scale^2)."""

    n: int
    c: int
    dtype: str = "float32"
    scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"batch size n must be a non-negative integer, got {self.n!r}")
        if not isinstance(self.c, int) or self.c < 1:
            raise ValueError(f"number of classes c must be a positive integer, got {self.c!r}")
        numpy_dtype(self.dtype)  # raises ValueError for an unknown dtype name
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"logit scale must be a positive finite number, got {self.scale!r}")

    @property
    def size(self) -> str:
        return f"{self.n}x{self.c}"

    @property
    def id(self) -> str:
        """A short stable name, e.g. ``1024x32000/float32/s10``."""
        return f"{self.size}/{self.dtype}/s{self.scale:g}"


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
# What a size is often typed with instead of "NxC": another separator (1024*32000, 1024,32000,
# 1024 32000, 1024×32000, 1024by32000), digit groups (32_000, 32,000 after the x) or a letter
# O for a zero.
_SEPARATOR = re.compile(r"^\s*([\dOo_]+)\s*(?:[*×,:/ ]|by)\s*([\dOo_,]+)\s*$")
_SIZE_LOOSE = re.compile(r"^\s*([\dOo_,]+)\s*[xX]\s*([\dOo_,]+)\s*$")


def size_guess(text: str) -> str | None:
    """The ``NxC`` a malformed size most likely meant (``"1024*32000"`` -> ``"1024x32000"``),
    or None."""
    text = str(text)
    match = _SEPARATOR.match(text) or _SIZE_LOOSE.match(text)
    if not match:
        return None
    n, c = (re.sub(r"[_,]", "", part).replace("O", "0").replace("o", "0")
            for part in match.groups())
    if not (n.isdigit() and c.isdigit()) or int(c) < 1:
        return None
    guess = f"{int(n)}x{int(c)}"
    return guess if guess != text.strip() else None


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"NxC"`` (e.g. ``"1024x32000"``) into ``(n, c)``."""
    match = _SIZE.match(text)
    if not match:
        guess = size_guess(text)
        hint = f"; did you mean {guess}?" if guess else ""
        raise ValueError(f"malformed size {text!r}: expected NxC, e.g. 1024x32000{hint}")
    n, c = int(match[1]), int(match[2])
    if c < 1:
        raise ValueError(f"malformed size {text!r}: the number of classes must be at least 1")
    return n, c


def make_labels(case: Case) -> np.ndarray:
    """Integer class labels ``[n]`` (int64) in ``[0, c)``, drawn from the case's seed."""
    rng = np.random.default_rng([case.seed, case.n, case.c, 1])
    return rng.integers(0, case.c, size=case.n, dtype=np.int64)


def make_logits(case: Case) -> np.ndarray:
    """Logits ``[n, c]`` in the case dtype: float32 N(0, 1) draws times ``scale``, rounded once.

    Drawing in float32 keeps memory at 4 bytes per logit even for 8192 x 128256 cases.
    """
    rng = np.random.default_rng([case.seed, case.n, case.c, 0])
    logits = rng.standard_normal((case.n, case.c), dtype=np.float32)
    logits *= np.float32(case.scale)
    return logits.astype(numpy_dtype(case.dtype), copy=False)


def one_hot(labels: np.ndarray, c: int, dtype: np.dtype) -> np.ndarray:
    """One-hot target matrix ``[n, c]`` of ``dtype`` for integer ``labels [n]``."""
    targets = np.zeros((labels.shape[0], c), dtype=dtype)
    targets[np.arange(labels.shape[0]), labels] = 1
    return targets


def make_inputs(case: Case, form: str) -> tuple[np.ndarray, np.ndarray]:
    """``(logits [n, c], targets)`` for ``form``.

    Targets are int64 labels ``[n]`` for ``"sparse"`` and, for ``"onehot"``, the one-hot matrix
    ``[n, c]`` of the same labels in the logits dtype (so the two forms pose the same problem and
    the one-hot form reads one more logits-sized array, as the floor model assumes).
    """
    if form not in FORMS:
        raise unknown_name("form", form, FORMS)
    logits = make_logits(case)
    labels = make_labels(case)
    if form == "sparse":
        return logits, labels
    return logits, one_hot(labels, case.c, logits.dtype)
