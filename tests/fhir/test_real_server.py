"""Prefetch fallback against a real FHIR R4 server (sekmet-fhir in its own venv)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests

from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.errors import ApiError
from cds_service.fhir.resolve import resolve_patient_data
from tests.fhir.records import (
    card_data,
    fhir_settings,
    full_prefetch,
    hook_body,
    hook_request,
    make_record,
    new_patient_id,
)
from tests.support.fhir_server import FhirServer

OPTIONAL = sorted(set(PREFETCH_TEMPLATES) - {"patient"})
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "EHR query failed"}],
}


def load(server: FhirServer, **counts: int) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    patient_id = new_patient_id()
    record = make_record(patient_id, **counts)
    server.transaction([r for resources in record.values() for r in resources])
    return patient_id, record


def ids(resources: list[dict[str, Any]]) -> list[str]:
    return sorted(r["id"] for r in resources)


def resolve(body: dict[str, Any], **settings: Any):
    timings: dict[str, float] = {}
    data = resolve_patient_data(hook_request(body), fhir_settings(**settings), timings)
    return data, timings


def test_missing_keys_are_fetched_with_the_token(fhir_server: FhirServer) -> None:
    patient_id, record = load(fhir_server, conditions=2, medications=1, observations=3)
    body = hook_body(
        patient_id,
        fhir_server=fhir_server.base_url,
        token=fhir_server.token,
        prefetch={"patient": record["patient"][0]},
    )
    data, timings = resolve(body)
    assert data.missing == set()
    assert data.fetched == set(OPTIONAL)
    for key in OPTIONAL:
        assert ids(data.of(key)) == ids(record[key]), key
    assert timings["fetch_ms"] > 0 and "prefetch_ms" in timings


def test_no_prefetch_at_all_fetches_everything_including_the_patient(
    fhir_server: FhirServer,
) -> None:
    patient_id, record = load(fhir_server)
    body = hook_body(patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token)
    data, _ = resolve(body)
    assert data.patient is not None
    assert data.patient["id"] == patient_id
    assert data.patient["birthDate"] == record["patient"][0]["birthDate"]
    assert data.fetched == set(PREFETCH_TEMPLATES)


def test_null_keys_are_not_fetched(fhir_server: FhirServer) -> None:
    # the server HAS conditions and allergies; the EHR says "none" → we believe it
    patient_id, record = load(fhir_server, conditions=3, allergies=2)
    prefetch = {"patient": record["patient"][0], "conditions": None, "allergies": None}
    body = hook_body(
        patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token, prefetch=prefetch
    )
    data, _ = resolve(body)
    assert data.of("conditions") == [] and data.of("allergies") == []
    assert data.empty == {"conditions", "allergies"}
    assert data.fetched == {"medications", "observations"}
    assert ids(data.of("medications")) == ids(record["medications"])


def test_operation_outcome_prefetch_is_treated_as_not_obtained_and_fetched(
    fhir_server: FhirServer,
) -> None:
    patient_id, record = load(fhir_server, conditions=2)
    prefetch = full_prefetch(record)
    prefetch["conditions"] = OUTCOME
    prefetch["patient"] = OUTCOME
    body = hook_body(
        patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token, prefetch=prefetch
    )
    data, _ = resolve(body)
    assert data.fetched == {"conditions", "patient"}
    assert ids(data.of("conditions")) == ids(record["conditions"])
    assert data.patient is not None and data.patient["id"] == patient_id


def test_paginated_search_results_are_followed(fhir_server: FhirServer) -> None:
    # sekmet pages at 20 by default: 45 conditions → 3 pages
    patient_id, record = load(fhir_server, conditions=45)
    body = hook_body(
        patient_id,
        fhir_server=fhir_server.base_url,
        token=fhir_server.token,
        prefetch={"patient": record["patient"][0]},
    )
    data, _ = resolve(body)
    assert ids(data.of("conditions")) == ids(record["conditions"])
    assert "conditions" not in data.missing


def test_next_link_of_a_prefetched_bundle_is_followed(fhir_server: FhirServer) -> None:
    patient_id, record = load(fhir_server, conditions=25)
    # the EHR prefetched only the first page of 10, with its real `next` link
    first_page = fhir_server.get(
        f"Condition?patient={patient_id}&clinical-status=active&_count=10"
    ).json()
    assert any(link["relation"] == "next" for link in first_page["link"])
    prefetch = full_prefetch(record)
    prefetch["conditions"] = first_page
    body = hook_body(
        patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token, prefetch=prefetch
    )
    data, _ = resolve(body)
    assert ids(data.of("conditions")) == ids(record["conditions"])  # 25, no duplicates
    assert data.next_pages == {} and data.missing == set()


def test_wrong_token_degrades_optional_data_with_reasons(fhir_server: FhirServer) -> None:
    patient_id, record = load(fhir_server, conditions=2)
    body = hook_body(
        patient_id,
        fhir_server=fhir_server.base_url,
        token="not-the-token",
        prefetch={"patient": record["patient"][0]},
    )
    data, _ = resolve(body)
    assert data.patient == record["patient"][0]
    assert data.missing == set(OPTIONAL)
    assert data.problems == {key: "http-401" for key in OPTIONAL}


def test_wrong_token_over_http_is_a_200_that_says_what_was_not_known(
    fhir_server: FhirServer, echo_app, caplog: pytest.LogCaptureFixture
) -> None:
    patient_id, record = load(fhir_server)
    token = "wrong-token-a8f3e"
    body = hook_body(
        patient_id,
        fhir_server=fhir_server.base_url,
        token=token,
        prefetch={"patient": record["patient"][0]},
    )
    caplog.set_level(logging.DEBUG)
    response = echo_app().test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert response.status_code == 200
    seen = card_data(response.get_json())
    assert seen["missing"] == OPTIONAL
    assert set(seen["problems"].values()) == {"http-401"}
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert token not in logged
    assert record["patient"][0]["birthDate"] not in logged


def test_patient_missing_everywhere_gives_412_with_an_operation_outcome(
    fhir_server: FhirServer, echo_app
) -> None:
    patient_id = new_patient_id()  # never loaded
    body = hook_body(patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token)
    response = echo_app().test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert "prefetch 'patient' was not sent" in diagnostics
    assert "no such Patient (HTTP 404)" in diagnostics


def test_patient_unobtainable_because_of_the_token_says_so(fhir_server: FhirServer) -> None:
    patient_id, _ = load(fhir_server)
    body = hook_body(patient_id, fhir_server=fhir_server.base_url, token="tok-3b9c1f")
    with pytest.raises(ApiError) as caught:
        resolve(body)
    assert caught.value.status == 412
    assert "refused the access token (HTTP 401)" in caught.value.diagnostics
    assert "tok-3b9c1f" not in caught.value.diagnostics


def test_null_patient_is_412_without_fetching(fhir_server: FhirServer) -> None:
    patient_id, _ = load(fhir_server)  # exists on the server, but the EHR says null
    body = hook_body(
        patient_id,
        fhir_server=fhir_server.base_url,
        token=fhir_server.token,
        prefetch={"patient": None},
    )
    with pytest.raises(ApiError) as caught:
        resolve(body)
    assert caught.value.status == 412
    assert "null" in caught.value.diagnostics


def test_server_not_allowed_means_no_fetch_and_a_generic_412_with_the_rule_in_the_log(
    fhir_server: FhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 17 item 4: the caller learns only that the data could not be fetched; which rule
    # refused the server (or how it failed) is in the log, not a map of the network
    patient_id, _ = load(fhir_server)
    body = hook_body(patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token)
    with pytest.raises(ApiError) as caught:
        resolve(body, fhir_allow_loopback=False, auth="required")
    assert caught.value.status == 412
    assert "loopback" not in caught.value.diagnostics
    assert "could not be fetched from fhirServer" in caught.value.diagnostics
    details = " ".join(str(getattr(r, "fhir_detail", "")) for r in caplog.records)
    assert "loopback" in details
    caplog.clear()
    with pytest.raises(ApiError) as caught:
        resolve(body, fhir_allowlist=(), auth="required")
    assert "https" not in caught.value.diagnostics
    details = " ".join(str(getattr(r, "fhir_detail", "")) for r in caplog.records)
    assert "must use https" in details


def test_request_log_line_carries_fetch_timings_without_phi(
    fhir_server: FhirServer, echo_app, caplog: pytest.LogCaptureFixture
) -> None:
    patient_id, record = load(fhir_server)
    body = hook_body(patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token)
    caplog.set_level(logging.DEBUG)
    response = echo_app().test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert response.status_code == 200
    lines = [r for r in caplog.records if r.name == "cds_service.request"]
    assert len(lines) == 1
    timings = lines[0].__dict__["timings_ms"]
    assert {"prefetch_ms", "fetch_ms", "data_ms", "rules_ms"} <= set(timings)
    assert timings["fetch_ms"] <= timings["data_ms"]
    everything = "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert fhir_server.token not in everything
    assert record["patient"][0]["birthDate"] not in everything


def test_token_is_required_by_the_test_server(fhir_server: FhirServer) -> None:
    """Guards the meaning of the tests above: without the right token nothing is served."""
    patient_id, _ = load(fhir_server)
    response = requests.get(f"{fhir_server.base_url}/Patient/{patient_id}", timeout=5)
    assert response.status_code == 401


def test_wrong_token_with_the_real_engine_cards_say_what_was_not_known(
    fhir_server: FhirServer, make_app
) -> None:
    patient_id, record = load(fhir_server)
    app = make_app(fhir_allowlist=("127.0.0.1",), fhir_allow_loopback=True)
    client = app.test_client()

    def details(token: str) -> str:
        body = hook_body(
            patient_id,
            fhir_server=fhir_server.base_url,
            token=token,
            prefetch={"patient": record["patient"][0]},
        )
        response = client.post("/cds-services/diazepam-order-sign", json=body)
        assert response.status_code == 200
        cards = response.get_json()["cards"]
        assert cards, "a diazepam order for a 79-year-old always gets advice"
        return "\n".join(c.get("detail", "") for c in cards).lower()

    degraded, complete = details("wrong-token"), details(fhir_server.token)
    assert "active medications unknown" in degraded
    assert "active medications unknown" not in complete


def test_request_log_line_with_the_real_engine_has_every_stage(
    fhir_server: FhirServer, make_app, caplog: pytest.LogCaptureFixture
) -> None:
    patient_id, _ = load(fhir_server)
    app = make_app(fhir_allowlist=("127.0.0.1",), fhir_allow_loopback=True)
    body = hook_body(patient_id, fhir_server=fhir_server.base_url, token=fhir_server.token)
    caplog.set_level(logging.INFO)
    response = app.test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert response.status_code == 200 and response.get_json()["cards"]
    (line,) = [r for r in caplog.records if r.name == "cds_service.request"]
    timings = line.__dict__["timings_ms"]
    assert {"prefetch_ms", "fetch_ms", "data_ms", "rules_ms", "render_ms"} <= set(timings)
    assert all(value >= 0 for value in timings.values())
