"""Shared test settings.

With ``XENT_REQUIRE_ALL_FRAMEWORKS=1`` (set by ``nox -s tests`` and so by CI) a missing framework
fails the session at start instead of letting its tests skip: CI must exercise PyTorch, JAX and
TensorFlow, not skip them.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import xent_impls
from xent_impls.vocabulary import MEASURED_FRAMEWORKS

# Property tests (tests/xent_impls/test_properties.py): a bounded, deterministic profile by
# default, so the suite stays CI-friendly; run longer with
#   pytest tests/xent_impls/test_properties.py --hypothesis-profile=xent-long
# or set XENT_HYPOTHESIS_EXAMPLES=N (examples per test and implementation) with either profile.
_EXAMPLES = os.environ.get("XENT_HYPOTHESIS_EXAMPLES")
settings.register_profile(
    "xent-ci", max_examples=int(_EXAMPLES or 8), deadline=None, derandomize=True,
    database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "xent-long", max_examples=int(_EXAMPLES or 300), deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("XENT_HYPOTHESIS_PROFILE", "xent-ci"))


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("XENT_REQUIRE_ALL_FRAMEWORKS") == "1":
        missing = [fw for fw in MEASURED_FRAMEWORKS if not xent_impls.framework_installed(fw)]
        if missing:
            raise pytest.UsageError(
                f"XENT_REQUIRE_ALL_FRAMEWORKS=1 but these frameworks are not installed: "
                f"{', '.join(missing)}"
            )
