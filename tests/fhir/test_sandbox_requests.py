"""The CDS Hooks sandbox's own requests, end to end against a real FHIR server.

The sandbox sends no prefetch key whose fetch failed, so our service reads the patient from
``fhirServer`` itself. Here that server is the real test FHIR server holding the sandbox's
default patient; the request files are used as shipped except for the server URL and the
bearer token (the sandbox adds ``fhirAuthorization`` when it was SMART-launched).
"""

from __future__ import annotations

import pytest

from tests.conftest import SANDBOX_PATIENT
from tests.support.fhir_server import FhirServer

SERVICE = {
    "order-select-request_r4-server": "diazepam-order-select",
    "order-sign-request_r4-server": "diazepam-order-sign",
}


@pytest.fixture
def sandbox_app(make_app):
    return make_app(fhir_allowlist=("127.0.0.1",), fhir_allow_loopback=True)


@pytest.mark.parametrize("name", sorted(SERVICE))
def test_sandbox_request_fetches_patient_and_advises(
    fhir_server: FhirServer, sandbox_app, sandbox_request, name
):
    fhir_server.transaction([dict(SANDBOX_PATIENT)])
    body = sandbox_request(name)
    assert "prefetch" not in body
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = {
        "access_token": fhir_server.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.* user/*.* launch openid profile online_access",
        "subject": "48163c5e-88b5-4cb3-92d3-23b800caa927",
    }
    response = sandbox_app.test_client().post(f"/cds-services/{SERVICE[name]}", json=body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    topics = {card["source"]["topic"]["code"] for card in cards}
    # 30-day supply of diazepam 5 mg for an adult of 45 at the order date, no indication
    assert {"duration-limit", "indication-missing"} <= topics
    assert "beers-benzodiazepine" not in topics  # under 65: Beers does not apply
    duration = next(c for c in cards if c["source"]["topic"]["code"] == "duration-limit")
    assert "30" in duration["summary"]


def test_sandbox_request_with_wrong_fhir_token_is_412(
    fhir_server: FhirServer, sandbox_app, sandbox_request
):
    fhir_server.transaction([dict(SANDBOX_PATIENT)])
    body = sandbox_request("order-sign-request_r4-server")
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = {
        "access_token": "not-the-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.*",
        "subject": "cds",
    }
    response = sandbox_app.test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "not-the-token" not in response.get_data(as_text=True)
