"""The registry of interchangeable cross-entropy implementations.

Every implementation is a frozen :class:`Impl` record. The records themselves are plain data
(see ``catalog.py``); the function behind a record lives in its framework's backend module and is
imported only when ``impl.fn`` is first used, so ``import xent_impls`` imports no framework.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable
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
    "torch": "pip install 'xent-bench[torch]'",
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


PLUGINS_ENV = "XENT_IMPLS_PLUGINS"


@functools.cache
def _plugin_impls(spec: str) -> tuple[Impl, ...]:
    impls: list[Impl] = []
    for name in filter(None, (part.strip() for part in spec.split(","))):
        module = importlib.import_module(name)
        found = getattr(module, "IMPLS", None)
        if found is None:
            raise ValueError(f"plugin module {name!r} (from ${PLUGINS_ENV}) defines no IMPLS")
        impls.extend(found)
    return tuple(impls)


def _catalog() -> tuple[Impl, ...]:
    """The built-in catalog plus the ``IMPLS`` of every module named (comma-separated) in the
    ``XENT_IMPLS_PLUGINS`` environment variable: user implementations join every run, and
    worker processes inherit the variable."""
    from xent_impls.catalog import IMPLS

    plugins = _plugin_impls(os.environ.get(PLUGINS_ENV, ""))
    ids = [impl.id for impl in IMPLS + plugins]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"implementation ids registered twice: {', '.join(duplicates)}")
    return IMPLS + plugins


def all_impls() -> tuple[Impl, ...]:
    """Every registered implementation, installed or not."""
    return _catalog()


def available(frameworks: Iterable[str] | None = None) -> list[Impl]:
    """The implementations whose framework is installed (optionally only these frameworks)."""
    wanted = None if frameworks is None else set(frameworks)
    if wanted is not None:
        for fw in wanted:
            framework_installed(fw)  # ValueError for an unknown framework name
    return [
        impl
        for impl in _catalog()
        if (wanted is None or impl.framework in wanted) and impl.installed
    ]


def skipped_notes() -> list[str]:
    """One note per registered framework that is not installed, e.g. for a report header."""
    notes = []
    for fw in FRAMEWORK_MODULES:
        if not framework_installed(fw):
            notes.append(
                f"{fw}: skipped, not installed (missing {', '.join(missing_modules(fw))}; "
                f"{INSTALL_HINT[fw]})"
            )
    lacking: dict[str, list[str]] = {}
    for impl in _catalog():
        if framework_installed(impl.framework):
            for module in impl.missing_requirements():
                lacking.setdefault(module, []).append(impl.id)
    for module, ids in lacking.items():
        notes.append(f"{', '.join(ids)}: skipped, {module} is not installed "
                     f"({INSTALL_HINT.get(module, f'pip install {module}')})")
    return notes


def _unknown(kind: str, name: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}")


def get(impl_id: str) -> Impl:
    """The implementation registered as ``impl_id``.

    Raises ``ValueError`` for an unknown id (listing close matches and the known ids) and for an
    implementation whose framework is not installed.
    """
    by_id = {impl.id: impl for impl in _catalog()}
    if impl_id not in by_id:
        raise _unknown("implementation id", impl_id, list(by_id))
    impl = by_id[impl_id]
    require_framework(impl.framework)
    missing = impl.missing_requirements()
    if missing:
        raise ValueError(f"{impl_id} needs {', '.join(missing)}, which is not installed; "
                         f"install it with: "
                         f"{INSTALL_HINT.get(missing[0], f'pip install {missing[0]}')}")
    return impl


def select(
    patterns: Iterable[str] | None = None,
    frameworks: Iterable[str] | None = None,
    forms: Iterable[str] | None = None,
) -> list[Impl]:
    """Implementations matching all the given filters.

    ``patterns`` are shell-style globs on ids (``torch/*``, ``*/sparse``). A framework named in
    ``frameworks`` must be installed (``ValueError`` otherwise); without it, frameworks that are not
    installed are skipped silently (see :func:`skipped_notes`). A pattern that matches no
    registered id is an error.
    """
    impls = list(_catalog())
    if frameworks:
        frameworks = list(frameworks)
        for fw in frameworks:
            if fw not in FRAMEWORK_MODULES:
                raise _unknown("framework", fw, list(FRAMEWORK_MODULES))
            require_framework(fw)
        impls = [i for i in impls if i.framework in frameworks]
    if forms:
        forms = list(forms)
        for form in forms:
            if form not in ("sparse", "onehot"):
                raise ValueError(f"unknown form {form!r}; known: sparse, onehot")
        impls = [i for i in impls if i.form in forms]
    if patterns:
        patterns = list(patterns)
        all_ids = [i.id for i in _catalog()]
        for pattern in patterns:
            if not fnmatch.filter(all_ids, pattern):
                raise _unknown("implementation pattern", pattern, all_ids)
        impls = [i for i in impls if any(fnmatch.fnmatchcase(i.id, p) for p in patterns)]
        for impl in impls:
            if any(impl.id == p for p in patterns):
                get(impl.id)  # an id named exactly is an explicit request: must be installed
    return [i for i in impls if i.installed]
