"""Fixtures shared by the whole suite: apps built from explicit settings, sandbox requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings

from cds_service.app import create_app

DATA = Path(__file__).resolve().parent / "data"

# Hypothesis' default 200 ms per-example deadline is a wall-clock bound: on a loaded 2-core
# machine (CI, or the suite beside `make bench`) it fails tests for the machine's speed, not
# the code's (test_fast_check_never_accepts_what_jsonschema_refuses did, once). Properties
# are about behaviour; latency is measured by the benchmark (issue 20 item 4).
hypothesis_settings.register_profile("suite", deadline=None, print_blob=True)
hypothesis_settings.load_profile("suite")


def load_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Flask]:
    """Build an app with test defaults (auth off, data under tmp) plus overrides."""

    def _make(**overrides: Any) -> Flask:
        settings: dict[str, Any] = {"auth": "disabled", "data_dir": str(tmp_path / "data")}
        settings.update(overrides)
        return create_app(settings)

    return _make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sandbox_request() -> Callable[[str], dict[str, Any]]:
    """A CDS Hooks sandbox request body by file stem, e.g. 'order-sign-request_r4-server'."""

    def _load(name: str) -> dict[str, Any]:
        return load_json(DATA / "sandbox" / f"{name}.json")

    return _load


SANDBOX_PATIENT = {
    "resourceType": "Patient",
    "id": "smart-1288992",
    "gender": "male",
    "birthDate": "1980-05-04",
}


def with_patient_prefetch(body: dict[str, Any]) -> dict[str, Any]:
    """The sandbox adds a prefetch key only when its own FHIR read succeeded (sandbox notes
    §2.3): this is the request it sends when the patient read worked."""
    return {**body, "prefetch": {"patient": dict(SANDBOX_PATIENT)}}


# --- report lines ---------------------------------------------------------------------------
# A test that measures something for humans (e.g. card word counts) records it as a
# ``summary_line`` user property; the lines are printed in the terminal summary. User
# properties travel with the test report, so this works under pytest-xdist too.
_SUMMARY_LINES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _SUMMARY_LINES.extend(str(v) for k, v in report.user_properties if k == "summary_line")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SUMMARY_LINES:
        terminalreporter.section("reported measurements")
        for line in _SUMMARY_LINES:
            terminalreporter.write_line(line)
