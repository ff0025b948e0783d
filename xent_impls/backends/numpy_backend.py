"""NumPy backend: the float64 oracle registered as an implementation."""

from __future__ import annotations

import numpy as np

from xent_impls.reference import reference

FRAMEWORK = "numpy"
SYNC_METHOD = "none (NumPy is synchronous)"


def versions() -> dict[str, str]:
    return {"numpy": np.__version__}


def configure(threads: int) -> str:
    return f"numpy: BLAS threads from environment ({threads} requested)"


def has_device(device: str) -> bool:
    return device == "cpu"


def device_name(device: str) -> str:
    return "cpu"


def to_framework(array: np.ndarray, device: str, keep_dtype: bool = False) -> np.ndarray:
    return array


def to_numpy(x) -> np.ndarray:
    return np.asarray(x)


# NumPy has no autodiff: a NumPy implementation is ``fn(logits, targets, grad=False)`` and
# returns ``(loss, grad of the mean loss)`` itself when ``grad`` is set.
reference_sparse = reference
reference_onehot = reference


def make_step(impl, grad: bool, device: str):
    fn = impl.fn

    def step(logits, targets):
        return fn(logits, targets, grad=grad)

    return step


def sync(out) -> None:
    return None


def reset_peak_memory(device: str) -> None:
    return None


def peak_memory(device: str) -> int | None:
    return None


def ceiling_ops(device: str, numel: int) -> dict:
    """One pass each of copy, read-only reduction and exp over ``numel`` float32 values."""
    x = np.random.default_rng(0).random(numel, dtype=np.float32)
    y = np.empty_like(x)
    return {
        "copy": lambda: np.copyto(y, x),
        "read": lambda: x.sum(),
        "exp": lambda: np.exp(x, out=y),
    }


def exp_ceiling_ops(device: str, rows: int, cols: int) -> dict:
    """NumPy has no fused exp-and-reduce: its exp over an array is measured by ``ceiling_ops``."""
    return {}


def memory_in_use(device: str) -> int | None:
    return None
