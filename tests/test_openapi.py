"""openapi.yaml is a valid OpenAPI 3.1 document that describes what the service really does."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from cds_service.hook_request import SCHEMA_FILES
from tests.conftest import with_patient_prefetch

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi.yaml"
SIGN = "/cds-services/diazepam-order-sign"


@pytest.fixture(scope="module")
def spec_dict() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    # the code systems are served as application/fhir+json, which is JSON
    config = Config(extra_media_type_deserializers={"application/fhir+json": json.loads})
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


def test_spec_is_valid_openapi_31(spec_dict):
    validate(spec_dict)
    assert spec_dict["openapi"].startswith("3.1")


@pytest.mark.parametrize(
    ("component", "name"),
    [
        ("OrderSelectRequest", "order-select"),
        ("OrderSignRequest", "order-sign"),
        ("FeedbackRequest", "feedback"),
    ],
)
def test_request_schemas_match_the_ones_the_service_enforces(spec_dict, component, name):
    text = resources.files("cds_service.schemas").joinpath(SCHEMA_FILES[name]).read_text("utf-8")
    package_schema = json.loads(text)
    package_schema.pop("$schema")
    package_schema.pop("$id")
    assert spec_dict["components"]["schemas"][component] == package_schema


def test_every_route_is_described(app, spec_dict):
    rules = {
        re.sub(r"<(?:\w+:)?\w+>", "{id}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert rules <= set(spec_dict["paths"]), rules - set(spec_dict["paths"])


def _check(openapi: OpenAPI, response) -> None:
    request = MockRequest(
        "http://localhost", response.request.method.lower(), response.request.path
    )
    openapi.validate_response(
        request,
        MockResponse(
            response.get_data(),
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=response.mimetype,
        ),
    )


def test_real_responses_conform(client, openapi, sandbox_request):
    body = with_patient_prefetch(sandbox_request("order-sign-request_r4-server"))
    feedback = {
        "feedback": [
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "0f8e7d6c-5b4a-4392-8170-6e5d4c3b2a19"}],
                "outcomeTimestamp": "2026-01-15T10:00:00.000Z",
            }
        ]
    }
    responses = [
        client.get("/cds-services"),
        client.post(SIGN, json=body),
        client.post(SIGN, data=b"{", content_type="application/json"),
        client.post("/cds-services/diazepam-order-select", json=body),
        client.post(SIGN, data=b"{}", content_type="text/plain"),
        client.post(SIGN + "/feedback", json=feedback),
        client.get("/health"),
        client.get("/fhir/CodeSystem/cds-topic"),
        client.get("/fhir/CodeSystem/override-reason"),
        client.get("/fhir/CodeSystem/no-such-system"),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 400, 400, 415, 200, 200, 200, 200, 404]
    for response in responses:
        _check(openapi, response)


def test_a_nonconforming_response_is_caught(client, openapi):
    # Guard against a validator that accepts anything: a discovery body without services fails.
    response = client.get("/cds-services")
    response.set_data(b'{"nope": []}')
    with pytest.raises(Exception, match=r"(?i)invalid|services"):
        _check(openapi, response)


def test_every_admin_route_is_described(make_app, spec_dict):
    """The committee pages exist only with CDS_ADMIN_TOKEN: described all the same."""
    app = make_app(admin_token="t" * 20)
    rules = {
        re.sub(r"<(?:\w+:)?\w+>", "{id}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/admin")
    }
    assert rules and rules <= set(spec_dict["paths"]), rules - set(spec_dict["paths"])
