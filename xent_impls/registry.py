"""The registry of interchangeable cross-entropy implementations: the built-in catalog
(``catalog.py``) plus plugins, looked up by id, glob, framework and form.

Every implementation is a frozen :class:`~xent_impls.impl.Impl` record (``impl.py``); the
function behind a record lives in its framework's backend module and is imported only when
``impl.fn`` is first used, so ``import xent_impls`` imports no framework.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.util
import os
import re
from collections.abc import Iterable

from xent_impls.catalog import IMPLS
from xent_impls.impl import (
    FRAMEWORK_MODULES,
    INSTALL_HINT,
    Impl,
    backend,
    framework_installed,
    missing_modules,
    require_framework,
)
from xent_impls.names import unknown_name

__all__ = [
    "FRAMEWORK_MODULES", "INSTALL_HINT", "PLUGINS_ENV", "Impl", "all_impls", "available",
    "backend", "framework_installed", "get", "missing_modules", "require_framework", "select",
    "skipped_notes",
]

PLUGINS_ENV = "XENT_IMPLS_PLUGINS"


@functools.cache
def _plugin_impls(spec: str) -> tuple[Impl, ...]:
    impls: list[Impl] = []
    for name in filter(None, (part.strip() for part in spec.split(","))):
        module = importlib.import_module(name)
        found = getattr(module, "IMPLS", None)
        if found is None:
            raise ValueError(f"plugin module {name!r} (from ${PLUGINS_ENV}) defines no IMPLS")
        for impl in found:
            _check_plugin_impl(impl, name)
        impls.extend(found)
    return tuple(impls)


# The characters an implementation id may hold: ids become report lines, plot labels and parts
# of run-folder names, so no spaces, markup ($, <, |, `) or path tricks.
IMPL_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def _check_plugin_impl(impl, module: str) -> None:
    """``ValueError`` naming the plugin module when one of its ``IMPLS`` is not a well-formed
    ``Impl``: a known framework and form, a variant of plain characters, and the id they
    make."""
    where = f"plugin module {module!r} (from ${PLUGINS_ENV})"
    if not isinstance(impl, Impl):
        raise ValueError(f"{where}: IMPLS holds {type(impl).__name__}, not an Impl")
    if impl.framework not in FRAMEWORK_MODULES:
        raise ValueError(f"{where}: {impl.id!r} has unknown framework {impl.framework!r}; "
                         f"known: {', '.join(FRAMEWORK_MODULES)}")
    if impl.form not in ("sparse", "onehot"):
        raise ValueError(f"{where}: {impl.id!r} has unknown form {impl.form!r}; known: sparse, "
                         "onehot")
    if not isinstance(impl.variant, str) or IMPL_PART.fullmatch(impl.variant) is None:
        raise ValueError(f"{where}: variant {str(impl.variant)[:40]!r} must be letters, digits "
                         "and _.+- (at most 64)")
    if impl.id != f"{impl.framework}/{impl.variant}/{impl.form}":
        raise ValueError(f"{where}: id {str(impl.id)[:80]!r} must be "
                         f"'{impl.framework}/{impl.variant}/{impl.form}'")


def _catalog() -> tuple[Impl, ...]:
    """The built-in catalog plus the ``IMPLS`` of every module named (comma-separated) in the
    ``XENT_IMPLS_PLUGINS`` environment variable: user implementations join every run, and
    worker processes inherit the variable."""
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


def get(impl_id: str) -> Impl:
    """The implementation registered as ``impl_id``.

    Raises ``ValueError`` for an unknown id (listing close matches and the known ids) and for an
    implementation whose framework is not installed.
    """
    by_id = {impl.id: impl for impl in _catalog()}
    if impl_id not in by_id:
        raise unknown_name("implementation id", impl_id, list(by_id))
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
                raise unknown_name("framework", fw, list(FRAMEWORK_MODULES))
            require_framework(fw)
        impls = [i for i in impls if i.framework in frameworks]
    if forms:
        forms = list(forms)
        for form in forms:
            if form not in ("sparse", "onehot"):
                raise unknown_name("form", form, ("sparse", "onehot"))
        impls = [i for i in impls if i.form in forms]
    if patterns:
        patterns = list(patterns)
        all_ids = [i.id for i in _catalog()]
        for pattern in patterns:
            if not fnmatch.filter(all_ids, pattern):
                raise unknown_name("implementation pattern", pattern, all_ids)
        impls = [i for i in impls if any(fnmatch.fnmatchcase(i.id, p) for p in patterns)]
        for impl in impls:
            if any(impl.id == p for p in patterns):
                get(impl.id)  # an id named exactly is an explicit request: must be installed
    return [i for i in impls if i.installed]
