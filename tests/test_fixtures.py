"""The shipped clinical fixtures are well formed: format schema, real R4 FHIR, valid hook requests,
internally consistent, de-identified. (Whether the service answers as they expect is
tests/test_scenarios.py.)"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from cds_service.discovery import PREFETCH_TEMPLATES, SERVICES
from cds_service.errors import ApiError
from cds_service.hook_request import validate as validate_hook_request
from tests.scenario_cards import SCHEMA_PATH, diazepam_draft, draft_resources, fixture_paths, load

PATHS = fixture_paths()
IDS = [p.stem for p in PATHS]
PHI_FIELDS = ("name", "identifier", "address", "telecom", "photo", "contact")


@pytest.fixture(scope="module")
def schema_validator() -> Draft202012Validator:
    schema = load(SCHEMA_PATH)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def fhir_resources(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    """Every FHIR resource in the request: the two kinds of Bundle, their entries, prefetch."""
    request = fixture["request"]
    found = [request["context"]["draftOrders"], *draft_resources(fixture)]
    for value in request["prefetch"].values():
        if value is None:
            continue
        found.append(value)
        found.extend(e["resource"] for e in value.get("entry") or [])
    return found


def validate_fhir(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_there_are_at_least_25_scenarios_with_unique_names() -> None:
    names = [load(p)["name"] for p in PATHS]
    assert len(names) >= 25
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_fixture_matches_the_format_schema(
    path: Path, schema_validator: Draft202012Validator
) -> None:
    fixture = load(path)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in schema_validator.iter_errors(fixture)
    ]
    assert errors == []
    assert fixture["name"] == path.stem


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_fhir_resource_validates_as_r4(path: Path) -> None:
    fixture = load(path)
    resources = fhir_resources(fixture)
    assert len(resources) >= 7  # draft Bundle + ≥1 draft + Patient + 4 searchset Bundles
    for resource in resources:
        validate_fhir(resource)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_request_is_a_valid_complete_hook_request(path: Path) -> None:
    fixture = load(path)
    request = fixture["request"]
    validate_hook_request(request["hook"], request)  # the service's own request schema
    assert SERVICES[fixture["service"]].hook == request["hook"]
    assert set(request["prefetch"]) == set(PREFETCH_TEMPLATES)
    for key, value in request["prefetch"].items():
        expected_type = "Patient" if key == "patient" else "Bundle"
        assert value["resourceType"] == expected_type, key
        if expected_type == "Bundle":
            assert value["type"] == "searchset"
            assert value["total"] == len(value.get("entry") or [])
    drafts = {f"{r['resourceType']}/{r['id']}" for r in draft_resources(fixture)}
    if request["hook"] == "order-select":
        assert request["context"]["selections"]
        assert set(request["context"]["selections"]) <= drafts


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_fixture_is_consistent_and_de_identified(path: Path) -> None:
    fixture = load(path)
    request = fixture["request"]
    patient = request["prefetch"]["patient"]
    patient_ref = f"Patient/{request['context']['patientId']}"
    assert patient["id"] == request["context"]["patientId"]
    assert not [f for f in PHI_FIELDS if f in patient]
    for resource in fhir_resources(fixture):
        link = resource.get("subject") or resource.get("patient")
        if link is not None:
            assert link["reference"] == patient_ref, resource["id"]
    # fixed dates in 2026, and the documented age is the age at the order date
    order = diazepam_draft(fixture)
    authored = date.fromisoformat(order["authoredOn"])
    assert authored.year == 2026
    born = date.fromisoformat(patient["birthDate"])
    age = authored.year - born.year - ((authored.month, authored.day) < (born.month, born.day))
    assert age == fixture["patient_age"]
    for obs in (e["resource"] for e in request["prefetch"]["observations"].get("entry") or []):
        taken = date.fromisoformat(obs["effectiveDateTime"][:10])
        assert 0 <= (authored - taken).days <= 365  # inside the 12-month look-back (D.4)
    # the expectation does not contradict itself
    expected = fixture["expected"]
    assert not set(expected["topics"]) & set(expected.get("absent_topics") or [])
    recommended = expected.get("recommended_alternative")
    assert recommended not in (expected.get("excluded_alternatives") or [])
    if expected.get("card_count") == 0:
        assert not expected["topics"] and recommended is None
    if expected.get("no_delete"):
        for spec in expected["topics"].values():
            assert "delete" not in (
                spec.get("action_types") or spec.get("action_types_include") or []
            )
    if expected.get("min_cards") is not None and expected.get("max_cards") is not None:
        assert expected["min_cards"] <= expected["max_cards"]
    if expected.get("max_cards") is not None:
        assert (
            len([s for s in expected["topics"].values() if not s.get("optional")])
            <= (expected["max_cards"])
        )
    if expected.get("min_supply_days") and expected.get("capped_days"):
        assert expected["capped_days"] >= expected["min_supply_days"]


def test_schema_rejects_a_malformed_expectation(schema_validator: Draft202012Validator) -> None:
    fixture = load(PATHS[0])
    bad = copy.deepcopy(fixture)
    bad["expected"]["topics"]["duration-limit"] = {"indicator": "hard-stop"}
    bad["expected"]["absent_topics"] = ["not-a-topic"]
    bad["expected"]["recommended_alternative"] = "baclofen"
    messages = " ".join(e.message for e in schema_validator.iter_errors(bad))
    assert "hard-stop" in messages and "not-a-topic" in messages and "baclofen" in messages


def test_fhir_validation_rejects_a_broken_resource() -> None:
    fixture = load(PATHS[0])
    order = copy.deepcopy(diazepam_draft(fixture))
    order["dispenseRequest"]["expectedSupplyDuration"]["value"] = "thirty"
    with pytest.raises(ValidationError):
        validate_fhir(order)
    order = copy.deepcopy(diazepam_draft(fixture))
    order["authoredOn"] = "02/03/2026"
    with pytest.raises(ValidationError):
        validate_fhir(order)


def test_request_schema_rejects_a_request_without_draft_orders() -> None:
    request = copy.deepcopy(load(PATHS[0])["request"])
    del request["context"]["draftOrders"]
    with pytest.raises(ApiError):
        validate_hook_request(request["hook"], request)
