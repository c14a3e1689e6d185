"""The client's FHIR version from its drafts, and suggested orders rewritten for it
(cds_service/fhir/versions.py), validated with the matching fhir.resources models; and
actions that must address exactly one draft (cds_service/actions.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds_service.actions import HAND_NOTE, address_actions
from cds_service.fhir.versions import convert_resource, detect_version, version_of_resource
from tests.support.fhir_versions import validation_errors

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"

# What the engine writes for an alternative (suggestions.alternative_request), in full.
R4_ORDER: dict[str, Any] = {
    "resourceType": "MedicationRequest",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [{"system": RXNORM, "code": "313412", "display": "tizanidine 2 MG Oral Tablet"}],
        "text": "tizanidine 2 MG Oral Tablet",
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "requester": {"reference": "Practitioner/u1"},
    "authoredOn": "2026-12-06",
    "reasonCode": [
        {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M62.830"}]}
    ],
    "note": [{"text": "short course"}],
    "category": [{"text": "community"}],
    "dosageInstruction": [
        {
            "sequence": 1,
            "text": "2 mg at bedtime",
            "timing": {
                "repeat": {
                    "boundsDuration": {"value": 7, "unit": "days", "code": "d"},
                    "frequency": 1,
                    "frequencyMax": 3,
                    "period": 1,
                    "periodUnit": "d",
                }
            },
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
            "asNeededBoolean": True,
            "maxDosePerPeriod": {
                "numerator": {"value": 6, "unit": "mg"},
                "denominator": {"value": 1, "unit": "d"},
            },
            "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "mg", "code": "mg"}}],
        }
    ],
    "dispenseRequest": {
        "numberOfRepeatsAllowed": 0,
        "quantity": {"value": 21, "unit": "tablet"},
        "expectedSupplyDuration": {"value": 7, "unit": "days", "code": "d"},
    },
}


@pytest.mark.parametrize("version", ["DSTU2", "STU3", "R4", "R5"])
def test_engine_order_converted_is_valid_in_each_version(version):
    converted = convert_resource(R4_ORDER, version)
    assert validation_errors(version, [converted]) == [None]
    assert R4_ORDER["resourceType"] == "MedicationRequest"  # the input is not changed


def test_version_specific_shapes():
    dstu2 = convert_resource(R4_ORDER, "DSTU2")
    assert dstu2["resourceType"] == "MedicationOrder"
    assert dstu2["patient"] == {"reference": "Patient/p1"} and "subject" not in dstu2
    assert dstu2["dateWritten"] == "2026-12-06" and dstu2["prescriber"]
    assert dstu2["reasonCodeableConcept"]["coding"][0]["code"] == "M62.830"
    assert dstu2["dosageInstruction"][0]["doseQuantity"]["value"] == 2
    assert dstu2["dosageInstruction"][0]["timing"]["repeat"]["periodUnits"] == "d"
    assert dstu2["dosageInstruction"][0]["timing"]["repeat"]["boundsQuantity"]["value"] == 7
    assert "intent" not in dstu2 and "numberOfRepeatsAllowed" not in dstu2["dispenseRequest"]
    stu3 = convert_resource(R4_ORDER, "STU3")
    assert stu3["dosageInstruction"][0]["doseQuantity"]["value"] == 2
    assert "doseAndRate" not in stu3["dosageInstruction"][0]
    assert stu3["context"] == {"reference": "Encounter/e1"}
    assert stu3["requester"] == {"agent": {"reference": "Practitioner/u1"}}
    r4 = convert_resource(R4_ORDER, "R4")
    assert r4 == R4_ORDER
    r5 = convert_resource(R4_ORDER, "R5")
    assert r5["medication"]["concept"]["coding"][0]["code"] == "313412"
    assert "medicationCodeableConcept" not in r5
    assert r5["reason"][0]["concept"]["coding"][0]["code"] == "M62.830"
    assert r5["dosageInstruction"][0]["asNeeded"] is True


@pytest.mark.parametrize(
    ("draft", "version"),
    [
        ({"resourceType": "MedicationOrder"}, "DSTU2"),
        (
            {"resourceType": "MedicationRequest", "dosageInstruction": [{"doseQuantity": {}}]},
            "STU3",
        ),
        ({"resourceType": "MedicationRequest", "requester": {"agent": {}}}, "STU3"),
        ({"resourceType": "MedicationRequest", "dosageInstruction": [{"doseAndRate": []}]}, "R4"),
        ({"resourceType": "MedicationRequest", "encounter": {}}, "R4"),
        ({"resourceType": "MedicationRequest", "medication": {"concept": {}}}, "R5"),
        ({"resourceType": "MedicationRequest", "status": "draft"}, None),
        ({"resourceType": "NutritionOrder"}, None),
    ],
)
def test_version_of_a_draft(draft, version):
    assert version_of_resource(draft) == version


def test_detect_version_falls_back_to_the_server_path_then_r4():
    bare = [{"resourceType": "MedicationRequest", "status": "draft"}]
    assert detect_version(bare, "https://launch.smarthealthit.org/v/r2/fhir") == "DSTU2"
    assert detect_version(bare, "https://dikb.org/baseDstu3") == "STU3"
    assert detect_version(bare, "https://ehr.example.org/fhir") == "R4"
    assert detect_version([*bare, {"resourceType": "MedicationOrder"}], None) == "DSTU2"


def _card(*actions: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": "s",
        "detail": "d",
        "selectionBehavior": "at-most-one",
        "suggestions": [{"label": "L", "uuid": "u", "actions": list(actions)}],
    }


DELETE = {"type": "delete", "description": "x", "resourceId": "MedicationRequest/a"}
CREATE = {"type": "create", "description": "x", "resource": copy.deepcopy(R4_ORDER)}


def test_actions_on_an_addressable_draft_are_kept():
    drafts = [{"resourceType": "MedicationRequest", "id": "a"}]
    update = {"type": "update", "description": "x", "resource": {**R4_ORDER, "id": "a"}}
    cards = address_actions([_card(DELETE, CREATE), _card(update)], drafts)
    assert cards[0]["suggestions"][0]["actions"] == [DELETE, CREATE]
    assert cards[1]["suggestions"][0]["actions"] == [update]
    assert HAND_NOTE not in cards[0]["detail"]


@pytest.mark.parametrize(
    "drafts",
    [
        [{"resourceType": "MedicationRequest"}],  # no id
        [{"resourceType": "MedicationRequest", "id": "a"}] * 2,  # the same id twice
    ],
    ids=["id-less", "duplicate-id"],
)
def test_unaddressable_drafts_get_create_only_suggestions_plus_text(drafts):
    update = {"type": "update", "description": "x", "resource": {**R4_ORDER, "id": "a"}}
    delete_only = _card({**DELETE, "resourceId": "MedicationRequest"})
    cards = address_actions([_card(DELETE, CREATE), _card(update), delete_only], drafts)
    replace, rewrite, removed = cards
    assert [a["type"] for a in replace["suggestions"][0]["actions"]] == ["create"]
    assert replace["suggestions"][0]["label"].endswith("(then remove the original diazepam draft)")
    created = rewrite["suggestions"][0]["actions"][0]
    assert created["type"] == "create" and "id" not in created["resource"]
    assert "suggestions" not in removed and "selectionBehavior" not in removed
    assert all(HAND_NOTE in card["detail"] for card in cards)


def test_orders_with_impossible_numbers_are_never_offered():
    bad = copy.deepcopy(R4_ORDER)
    bad["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = -1e308
    card = _card({"type": "create", "description": "x", "resource": bad})
    (out,) = address_actions([card], [{"resourceType": "MedicationRequest", "id": "a"}])
    assert "suggestions" not in out and HAND_NOTE not in out["detail"]


def _draft_orders() -> list[dict]:
    """Every draft order of the fixtures and the real-client bodies (all four versions)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = []
    for path in [*root.glob("fixtures/**/*.json"), *root.glob("tests/data/interop/**/*.json")]:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        stack = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if node.get("resourceType") in ("MedicationRequest", "MedicationOrder"):
                    found.append(node)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return found


def test_conversion_never_changes_its_input():
    """convert_resource no longer deep-copies: each converter must copy what it changes."""
    import copy

    from cds_service.fhir.versions import convert_resource

    orders = _draft_orders()
    assert len(orders) > 20
    for order in orders:
        before = copy.deepcopy(order)
        for version in ("DSTU2", "STU3", "R4", "R5"):
            out = convert_resource(order, version)
            assert order == before, (version, order.get("id"))
            # the output is its own object at the top level (the answer is pruned into a
            # fresh tree by the pipeline right after)
            assert out is not order
