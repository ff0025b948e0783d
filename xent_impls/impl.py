"""One implementation as a record (:class:`Impl`), and the frameworks it can belong to: which
Python modules each needs, how to install it, and its backend module.

Nothing here imports a framework: installation is checked with ``importlib.util.find_spec``, and
a backend module is imported only when it is asked for.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from collections.abc import Callable
from types import ModuleType

# The Python modules a framework needs, checked with importlib.util.find_spec (no import).
FRAMEWORK_MODULES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "jax": ("jax", "optax"),
    "tensorflow": ("tensorflow",),
}

# How to install a missing framework (the extras of this package).
INSTALL_HINT: dict[str, str] = {
    # Plain PyPI gives Linux the CUDA build of torch (several GB); the CPU wheel comes from
    # PyTorch's own index, installed first so that the extra then installs nothing more.
    "torch": "pip install 'xent-bench[torch]'; CPU only: pip install torch --index-url "
             "https://download.pytorch.org/whl/cpu first",
    "jax": "pip install 'xent-bench[jax]'",
    "tensorflow": "pip install 'xent-bench[tensorflow-cpu]'",
    "numpy": "pip install numpy",
    "triton": "pip install 'xent-bench[triton]' (Linux x86_64)",
}

BACKEND_MODULES: dict[str, str] = {
    "numpy": "xent_impls.backends.numpy_backend",
    "torch": "xent_impls.backends.torch_backend",
    "jax": "xent_impls.backends.jax_backend",
    "tensorflow": "xent_impls.backends.tensorflow_backend",
}


@dataclasses.dataclass(frozen=True)
class Impl:
    """One cross-entropy implementation.

    Attributes:
      id: ``framework/variant/form``, e.g. ``torch/native/sparse``.
      framework: ``numpy``, ``torch``, ``jax`` or ``tensorflow``.
      form: ``sparse`` (integer labels ``[N]``) or ``onehot`` (target matrix ``[N, C]``).
      variant: what the implementation is, e.g. ``native``, ``manual``, ``naive``, ``compiled``.
      compiled: whether the backend compiles the whole step (torch.compile, jax.jit, XLA).
      dtypes: logits dtypes it accepts.
      devices: device kinds it can run on (``cpu``, ``cuda``).
      description: one sentence for reports.
      expected_failure: why the variant is *meant* to disagree with the oracle in some cases
        (e.g. an unstable formula kept on purpose), or ``None``.
      entry: ``"module:function"`` of ``fn(logits, targets) -> per-example loss [N]``.
      requires: Python modules it needs beyond its framework's (e.g. ``triton``).
      interpreted_on: devices where it runs only through an interpreter (Triton's
        ``TRITON_INTERPRET=1``, Pallas ``interpret=True``): checked for agreement and behaviour
        there, never timed.
    """

    id: str
    framework: str
    form: str
    variant: str
    compiled: bool
    dtypes: tuple[str, ...]
    devices: tuple[str, ...]
    description: str
    entry: str
    expected_failure: str | None = None
    requires: tuple[str, ...] = ()
    interpreted_on: tuple[str, ...] = ()

    @functools.cached_property
    def fn(self) -> Callable:
        """``fn(logits, targets) -> loss [N]`` on the framework's own arrays (imported lazily)."""
        module_name, _, attr = self.entry.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    @property
    def installed(self) -> bool:
        """True when its framework and every module in ``requires`` can be found."""
        return framework_installed(self.framework) and not self.missing_requirements()

    def missing_requirements(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def runs_on(self, device: str, timed: bool) -> bool:
        """Whether cells on ``device`` make sense: timed cells need the real device,
        agreement and behaviour cells also accept an interpreter."""
        return device in self.devices or (not timed and device in self.interpreted_on)

    @property
    def backend(self) -> ModuleType:
        """The framework's backend module (imports the framework)."""
        return backend(self.framework)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def backend(framework: str) -> ModuleType:
    """Import and return the backend module of ``framework``."""
    if framework not in BACKEND_MODULES:
        raise ValueError(f"unknown framework {framework!r}; known: {', '.join(BACKEND_MODULES)}")
    require_framework(framework)
    return importlib.import_module(BACKEND_MODULES[framework])


@functools.cache
def framework_installed(framework: str) -> bool:
    """True when every module ``framework`` needs can be found (nothing is imported)."""
    if framework not in FRAMEWORK_MODULES:
        raise ValueError(
            f"unknown framework {framework!r}; known: {', '.join(FRAMEWORK_MODULES)}"
        )
    return all(importlib.util.find_spec(m) is not None for m in FRAMEWORK_MODULES[framework])


def missing_modules(framework: str) -> list[str]:
    return [m for m in FRAMEWORK_MODULES[framework] if importlib.util.find_spec(m) is None]


def require_framework(framework: str) -> None:
    """Raise a ``ValueError`` naming the missing module when ``framework`` is not installed."""
    if not framework_installed(framework):
        raise ValueError(
            f"framework {framework!r} was requested but is not installed (missing "
            f"{', '.join(missing_modules(framework))}); install it with: {INSTALL_HINT[framework]}"
        )
