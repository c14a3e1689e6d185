"""Tests that need a real server go through one gate (tests/support/gate.py): skipped with the
reason on a developer's machine, failed in CI, with ``CI`` read the same way for all of them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import gate
from tests.support.server import REPO

# One test behind each gated server: the FHIR fixture of tests/fhir, the seed loader's own
# check, and PostgreSQL.
GATED = [
    "tests/fhir/test_real_server.py::test_missing_keys_are_fetched_with_the_token",
    "tests/deploy/test_fhir_seed.py::test_fixtures_load_into_a_real_fhir_server",
    "tests/store/test_shared_postgres.py::test_two_instances_share_feedback_cards_and_replay_cache",
]


@pytest.mark.parametrize(
    ("value", "ci"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), (" Yes ", True)]
    + [("", False), ("0", False), ("false", False), ("no", False)],
)
def test_ci_is_read_one_way(monkeypatch: pytest.MonkeyPatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert gate.in_ci() is ci


def _run_without_servers(ci: str) -> str:
    env = {
        **os.environ,
        "CI": ci,
        "COLUMNS": "1000",  # whole summary lines
        "CDS_TEST_FHIR_VENV": "/nonexistent/fhir-venv",
        "CDS_TEST_POSTGRES_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rsfE", *GATED],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("ci", "outcome"), [("false", pytest.skip.Exception), ("yes", pytest.fail.Exception)]
)
def test_a_missing_server_skips_or_in_ci_fails_saying_why(monkeypatch, ci, outcome) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="PostgreSQL at x unreachable"):
        gate.require("PostgreSQL at x unreachable")
    gate.require(None)  # nothing missing: nothing happens


def test_retaking_the_readme_screenshots_fails_without_a_browser(monkeypatch) -> None:
    """The README's retake command (CDS_SCREENSHOTS=docs) must not skip silently and leave
    the old pictures in place."""
    monkeypatch.setenv("CI", "false")
    monkeypatch.setenv("CDS_SCREENSHOTS", "docs")
    with pytest.raises(pytest.fail.Exception, match="CDS_SCREENSHOTS=docs needs it"):
        gate.require("Debian's chromium is not installed")


def test_in_ci_every_real_server_test_fails_instead_of_skipping() -> None:
    """One test behind each gate, run without the servers in CI: none may skip."""
    output = _run_without_servers("yes")
    assert "skipped" not in output, output[-3000:]
    summary = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    for node in GATED:  # a fixture's failure is reported as an ERROR of the test
        assert any(line.split()[1] == node for line in summary), (node, output[-3000:])
    assert all("requires it" in line for line in summary), summary
