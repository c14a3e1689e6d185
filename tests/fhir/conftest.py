"""Fixtures for the FHIR data tests: a real FHIR server per xdist worker, an app that may call it.

When the server's venv is missing, tests that need it skip with the reason (and fail in CI,
where `make test` must have installed it): ``tests/support/gate.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from tests.fhir.records import DataEchoAdvisor
from tests.support.fhir_server import FhirServer, start_fhir_server
from tests.support.gate import require_fhir_server


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    require_fhir_server()  # skips, or fails in CI (tests/support/gate.py)
    server = start_fhir_server(tmp_path_factory.mktemp("fhir-server"))
    yield server
    server.stop()


@pytest.fixture
def echo_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app allowed to call loopback FHIR servers, with the data-echo advisor."""

    def _make(**overrides: Any) -> Flask:
        settings: dict[str, Any] = {
            "fhir_allowlist": ("127.0.0.1",),
            "fhir_allow_loopback": True,
        }
        settings.update(overrides)
        app = make_app(**settings)
        app.extensions["cds.advisor"] = DataEchoAdvisor()
        return app

    return _make
