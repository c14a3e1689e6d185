"""The HTTP surface of issue 2 through the Flask test client: every route, every error status."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from cds_service.discovery import PREFETCH_TEMPLATES, SERVICES
from tests.conftest import with_patient_prefetch

SIGN = "/cds-services/diazepam-order-sign"
SELECT = "/cds-services/diazepam-order-select"


def _outcome_text(response: Any) -> str:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert response.mimetype == "application/json"
    return body["issue"][0]["diagnostics"]


def test_discovery_lists_two_services_with_prefetch(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert {k: v["hook"] for k, v in services.items()} == {
        "diazepam-order-select": "order-select",
        "diazepam-order-sign": "order-sign",
    }
    for service in services.values():
        assert service["title"] and service["description"] and service["usageRequirements"]
        assert service["prefetch"] == PREFETCH_TEMPLATES
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"


def test_prefetch_templates_use_only_allowed_tokens():
    # CDS Hooks 2.0 §3.2: only context.patientId/userId/encounterId and user identity tokens.
    allowed = {"{{context.patientId}}", "{{context.userId}}", "{{context.encounterId}}"}
    for template in PREFETCH_TEMPLATES.values():
        tokens = {"{{" + t.split("}}")[0] + "}}" for t in template.split("{{")[1:]}
        assert tokens <= allowed, template
        assert "today()" not in template


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("order-select-request_r4-server", SELECT),
        ("order-sign-request_r4-server", SIGN),
    ],
)
def test_sandbox_requests_are_accepted(client, sandbox_request, name, path):
    response = client.post(path, json=with_patient_prefetch(sandbox_request(name)))
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    # diazepam 5 mg daily for 30 days, adult, no indication: the engine has advice
    topics = {card["source"]["topic"]["code"] for card in cards}
    assert "duration-limit" in topics


@pytest.mark.parametrize("name", ["order-select-request_r4-server", "order-sign-request_r4-server"])
def test_sandbox_request_without_reachable_patient_is_412(client, sandbox_request, name):
    # As shipped, the files carry no prefetch and a fhirServer this machine cannot reach:
    # the patient (age) is unobtainable, which CDS Hooks answers with 412.
    path = SELECT if "select" in name else SIGN
    response = client.post(path, json=sandbox_request(name))
    assert response.status_code == 412
    assert "Patient" in _outcome_text(response)


def test_no_medication_yet_gives_no_cards(client, sandbox_request):
    body = sandbox_request("order-select-request_r4-no-medication-yet")
    response = client.post(SELECT, json=body)
    assert response.get_json() == {"cards": []}


def test_sandbox_draft_quirks_are_tolerated(client, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    resource = body["context"]["draftOrders"]["entry"][0]["resource"]
    resource.pop("intent", None)
    assert "type" not in body["context"]["draftOrders"]
    assert isinstance(resource["category"], dict)  # sandbox sends an object, R4 wants a list
    assert client.post(SIGN, json=with_patient_prefetch(body)).status_code == 200


def test_malformed_json_is_400(client):
    response = client.post(SIGN, data=b'{"hook": ', content_type="application/json")
    assert response.status_code == 400
    assert "Malformed JSON" in _outcome_text(response)


def test_non_object_body_is_400(client):
    response = client.post(SIGN, data=b"[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in _outcome_text(response)


def test_empty_body_is_400(client):
    response = client.post(SIGN, data=b"", content_type="application/json")
    assert response.status_code == 400
    assert "empty" in _outcome_text(response)


def test_non_utf8_body_is_400(client):
    response = client.post(SIGN, data=b'{"a": "\xff"}', content_type="application/json")
    assert response.status_code == 400
    assert "UTF-8" in _outcome_text(response)


def test_deep_nesting_is_400_not_500(client):
    response = client.post(SIGN, data=b"[" * 100_000, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (lambda b: b["context"].pop("userId"), "context.userId"),
        (lambda b: b["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda b: b.pop("context"), "context"),
        (lambda b: b["context"].update(patientId=42), "context.patientId"),
        (lambda b: b["context"]["draftOrders"].update(resourceType="Patient"), "resourceType"),
    ],
)
def test_schema_violation_names_the_field(client, sandbox_request, mutate, field):
    body = sandbox_request("order-sign-request_r4-server")
    mutate(body)
    response = client.post(SIGN, json=body)
    assert response.status_code == 400
    assert field in _outcome_text(response)


def test_order_select_requires_selections(client, sandbox_request):
    body = sandbox_request("order-select-request_r4-server")
    del body["context"]["selections"]
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert "context.selections" in _outcome_text(response)


def test_fhir_authorization_requires_fhir_server(client, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body.pop("fhirServer")
    body["fhirAuthorization"] = {
        "access_token": "secret-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read",
        "subject": "cds-service",
    }
    response = client.post(SIGN, json=body)
    assert response.status_code == 400
    text = _outcome_text(response)
    assert "fhirServer" in text and "secret-token" not in text


def test_hook_not_matching_service_is_400(client, sandbox_request):
    body = sandbox_request("order-select-request_r4-server")
    response = client.post(SIGN, json=body)
    assert response.status_code == 400
    assert "order-sign" in _outcome_text(response)


def test_unknown_service_is_404(client, sandbox_request):
    response = client.post(
        "/cds-services/no-such", json=sandbox_request("order-sign-request_r4-server")
    )
    assert response.status_code == 404
    assert "no-such" in _outcome_text(response)
    assert client.post("/cds-services/no-such/feedback", json={}).status_code == 404
    assert client.get("/nothing-here").status_code == 404


def test_wrong_method_is_405_with_allow(client):
    response = client.get(SIGN)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    _outcome_text(response)
    assert client.post("/cds-services", json={}).status_code == 405


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_unsupported_media_type_is_415(client, sandbox_request, content_type):
    data = json.dumps(sandbox_request("order-sign-request_r4-server"))
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post(SIGN, data=data, **kwargs)
    assert response.status_code == 415
    assert "application/json" in _outcome_text(response)


def test_fhir_json_media_type_is_accepted(client, sandbox_request):
    data = json.dumps(with_patient_prefetch(sandbox_request("order-sign-request_r4-server")))
    response = client.post(SIGN, data=data, content_type="application/fhir+json; charset=utf-8")
    assert response.status_code == 200
    # the body was read and advised on, not just accepted
    assert "duration-limit" in {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}


def test_body_over_limit_is_413(make_app, sandbox_request):
    client = make_app(max_body_bytes=2000).test_client()
    body = sandbox_request("order-select-request_r4-no-medication-yet")
    assert client.post(SELECT, json=body).status_code == 200  # < 1 KB fits
    body["extension"] = {"org.example.padding": "x" * 5000}
    response = client.post(SELECT, json=body)
    assert response.status_code == 413
    assert "2000" in _outcome_text(response)


def test_unexpected_exception_is_generic_500(app, sandbox_request, caplog):
    class Exploding:
        def orders_in_scope(self, request):
            raise RuntimeError("boom: internal detail")

    app.extensions["cds.advisor"] = Exploding()
    with caplog.at_level(logging.ERROR):
        response = app.test_client().post(
            SIGN, json=sandbox_request("order-sign-request_r4-server")
        )
    assert response.status_code == 500
    text = _outcome_text(response)
    assert "boom" not in text and "Traceback" not in response.get_data(as_text=True)
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
    logged = [r for r in caplog.records if "RuntimeError" in r.getMessage()]
    assert "orders_in_scope" in logged[0].stack  # where it failed is logged
    # the message (which may quote patient input) is not
    assert all("boom" not in r.getMessage() and not r.exc_info for r in caplog.records)


def test_feedback_validates_body(client):
    ok = {
        "feedback": [
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "x", "system": "https://example.org/r"}},
                "outcomeTimestamp": "2026-01-15T10:00:00.000Z",
            }
        ]
    }
    assert client.post(SIGN + "/feedback", json=ok).status_code == 200
    bad = copy.deepcopy(ok)
    bad["feedback"][0]["outcome"] = "accepted"  # accepted needs acceptedSuggestions
    response = client.post(SIGN + "/feedback", json=bad)
    assert response.status_code == 400
    assert "acceptedSuggestions" in _outcome_text(response)
    response = client.post(SIGN + "/feedback", json={"feedback": []})
    assert response.status_code == 400
    response = client.post(SIGN + "/feedback", data=b"nope", content_type="application/json")
    assert response.status_code == 400


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_cors_preflight_without_auth(make_app):
    client = make_app(auth="required", env="development").test_client()
    response = client.options(
        SIGN,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_cors_off_by_default_in_production(make_app):
    client = make_app(env="production").test_client()
    response = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_origin_allowlist(make_app):
    client = make_app(allowed_origins=("https://sandbox.cds-hooks.org",)).test_client()
    good = client.get("/health", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    bad = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_every_service_is_routable(client, sandbox_request):
    for service in SERVICES.values():
        body = with_patient_prefetch(sandbox_request(f"{service.hook}-request_r4-server"))
        # one user per service: the sandbox's order-select and order-sign bodies name the same
        # user and draft, and order-sign would not repeat what order-select showed (fire once)
        body["context"]["userId"] = f"Practitioner/{service.id}"
        response = client.post(f"/cds-services/{service.id}", json=body)
        assert response.status_code == 200
        cards = response.get_json()["cards"]
        assert cards and all(c["source"]["topic"]["code"] for c in cards), service.id


def test_answers_orjson_cannot_encode_still_go_out(make_app):
    from cds_service.api import json_response

    app = make_app()
    with app.app_context():
        fast = json_response({"cards": [{"summary": "≥ 65 years"}]})
        slow = json_response({"cards": [{"quantity": 2**70}]})  # past orjson's 64 bits
    assert fast.mimetype == slow.mimetype == "application/json"
    assert json.loads(fast.get_data()) == {"cards": [{"summary": "≥ 65 years"}]}
    assert json.loads(slow.get_data()) == {"cards": [{"quantity": 2**70}]}
