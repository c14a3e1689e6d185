"""The bench's cold path reaches the service's fetch: its benchmark issuer names the cold
FHIR server in ``fhir_servers`` (per-issuer pinning, issue 17), so a call without prefetch is
answered from that server and not refused with 412 (``make bench`` reported "cold path
failed: 412" before)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import payloads
from bench.tokens import ISSUER, create_issuer, mint
from cds_service.security.issuers import load_issuers_file
from tests.support.fhir_server import FhirServer, start_fhir_server
from tests.support.gate import require_fhir_server

SIGN_PATH = "/cds-services/diazepam-order-sign"


def test_the_issuer_lists_the_fhir_servers_it_is_given(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8765/fhir"
    named = load_issuers_file(
        create_issuer(tmp_path / "a", fhir_servers=[url]).trusted_issuers_path, cache_s=60
    )[ISSUER]
    assert named.fhir_servers and named.fhir_servers[0].matches("http", "127.0.0.1", 8765, "/fhir")
    bare = create_issuer(tmp_path / "b").trusted_issuers_path
    assert load_issuers_file(bare, cache_s=60)[ISSUER].fhir_servers == ()


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    require_fhir_server()  # skips, or fails in CI (tests/support/gate.py)
    server = start_fhir_server(tmp_path_factory.mktemp("bench-cold-fhir"))
    yield server
    server.stop()


def test_the_cold_body_is_fetched_from_the_issuers_fhir_server(
    fhir: FhirServer, make_app, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = payloads.small_request()
    fhir.transaction(payloads.record_resources(body))
    cold = payloads.without_prefetch(body, fhir.base_url, fhir.token)

    def answer(fhir_servers: list[str]):  # noqa: ANN202
        issuer = create_issuer(tmp_path / str(len(fhir_servers)), fhir_servers=fhir_servers)
        app = make_app(
            auth="required",
            trusted_issuers=str(issuer.trusted_issuers_path),
            fhir_allowlist=("127.0.0.1",),
            fhir_allow_loopback=True,
        )
        token = mint(issuer.key_path, "http://localhost" + SIGN_PATH)
        return app.test_client().post(
            SIGN_PATH, json=cold, headers={"Authorization": f"Bearer {token}"}
        )

    assert answer([]).status_code == 412  # what the bench's issuer got before
    caplog.set_level(logging.INFO, logger="cds_service.request")
    response = answer([fhir.base_url])
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["cards"]
    (line,) = [
        r
        for r in caplog.records
        if getattr(r, "path", "") == SIGN_PATH and getattr(r, "status", 0) == 200
    ]
    assert "fetch_ms" in line.__dict__["timings_ms"]  # the record came from the FHIR server
