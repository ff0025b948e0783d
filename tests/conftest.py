"""Shared test settings.

With ``XENT_REQUIRE_ALL_FRAMEWORKS=1`` (set by ``nox -s tests`` and so by CI) a missing framework
fails the session at start instead of letting its tests skip: CI must exercise PyTorch, JAX and
TensorFlow, not skip them.
"""

from __future__ import annotations

import os

import pytest

import xent_impls


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("XENT_REQUIRE_ALL_FRAMEWORKS") == "1":
        missing = [fw for fw in ("torch", "jax", "tensorflow")
                   if not xent_impls.framework_installed(fw)]
        if missing:
            raise pytest.UsageError(
                f"XENT_REQUIRE_ALL_FRAMEWORKS=1 but these frameworks are not installed: "
                f"{', '.join(missing)}"
            )
