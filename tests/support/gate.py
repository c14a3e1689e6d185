"""The one gate for tests that need a real server (PostgreSQL, the FHIR test server).

On a developer's machine a missing server skips the test and says why; in CI it fails, so CI
can never go green by silently not testing. ``CI`` is read here and nowhere else: ``1``,
``true`` or ``yes`` (any case) mean CI.
"""

from __future__ import annotations

import os

import pytest

CI_VALUES = ("1", "true", "yes")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def require(problem: str | None) -> None:
    """Skip (or, in CI, fail) the calling test when ``problem`` says what is missing."""
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem}; CI={os.environ.get('CI')} requires it", pytrace=False)
    if os.environ.get("CDS_SCREENSHOTS") == "docs":  # asked for the README's pictures
        pytest.fail(f"{problem}; CDS_SCREENSHOTS=docs needs it to retake them", pytrace=False)
    pytest.skip(problem)


def require_fhir_server() -> None:
    from tests.support.fhir_server import INSTALL_HINT, available

    require(None if available() else f"real FHIR server not installed: {INSTALL_HINT}")
