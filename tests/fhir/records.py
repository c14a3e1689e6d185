"""Builders for the FHIR data tests: patient records, prefetch, hook bodies, a data-echo advisor.

Every test writes its own patient under a fresh id, so tests sharing one FHIR server never see
each other's data.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cds_service.config import Settings, load_settings
from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.hook_request import HookRequest, build_hook_request
from tests.conftest import DATA, load_json

DIAZEPAM_SIGN = "order-sign-request_r4-server"
RESOURCE_TYPES = {
    "patient": "Patient",
    "medications": "MedicationRequest",
    "conditions": "Condition",
    "observations": "Observation",
    "allergies": "AllergyIntolerance",
}


def fhir_settings(**overrides: Any) -> Settings:
    """Settings that let the service call a FHIR server on this machine's loopback."""
    values: dict[str, Any] = {
        "auth": "disabled",
        "fhir_allowlist": ("127.0.0.1",),
        "fhir_allow_loopback": True,
    }
    values.update(overrides)
    return load_settings(environ={}, overrides=values)


def new_patient_id() -> str:
    return f"pt-{uuid.uuid4().hex[:20]}"


def make_record(
    patient_id: str,
    *,
    conditions: int = 1,
    medications: int = 1,
    observations: int = 1,
    allergies: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """A small, valid R4 record per prefetch key (ids derived from the patient id)."""
    subject = {"reference": f"Patient/{patient_id}"}
    active = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active",
            }
        ]
    }
    record: dict[str, list[dict[str, Any]]] = {
        "patient": [
            {
                "resourceType": "Patient",
                "id": patient_id,
                "gender": "female",
                "birthDate": "1946-04-12",
            }
        ],
        "conditions": [
            {
                "resourceType": "Condition",
                "id": f"{patient_id}-c{i}",
                "subject": subject,
                "clinicalStatus": active,
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            }
            for i in range(conditions)
        ],
        "medications": [
            {
                "resourceType": "MedicationRequest",
                "id": f"{patient_id}-m{i}",
                "status": "active",
                "intent": "order",
                "subject": subject,
                "medicationCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                            "code": "1049621",
                            "display": "oxycodone hydrochloride 5 MG Oral Tablet",
                        }
                    ]
                },
            }
            for i in range(medications)
        ],
        "observations": [
            {
                "resourceType": "Observation",
                "id": f"{patient_id}-o{i}",
                "status": "final",
                "subject": subject,
                "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
                "effectiveDateTime": f"2025-0{1 + i % 9}-15",
                "valueQuantity": {
                    "value": 40 + i,
                    "unit": "mL/min/{1.73_m2}",
                    "system": "http://unitsofmeasure.org",
                    "code": "mL/min/{1.73_m2}",
                },
            }
            for i in range(observations)
        ],
        "allergies": [
            {
                "resourceType": "AllergyIntolerance",
                "id": f"{patient_id}-a{i}",
                "patient": subject,
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "allergyintolerance-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {
                    "coding": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980"}
                    ]
                },
            }
            for i in range(allergies)
        ],
    }
    return record


def searchset(resources: Sequence[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def full_prefetch(record: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What an EHR honouring every template would send for this record."""
    prefetch: dict[str, Any] = {}
    for key in PREFETCH_TEMPLATES:
        resources = record.get(key, [])
        if key == "patient":
            prefetch[key] = resources[0] if resources else None
        else:
            prefetch[key] = searchset(resources)
    return prefetch


def hook_body(
    patient_id: str,
    *,
    fhir_server: str | None,
    token: str | None,
    prefetch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sandbox's diazepam order-sign call, re-pointed at this patient and server."""
    body = copy.deepcopy(load_json(DATA / "sandbox" / f"{DIAZEPAM_SIGN}.json"))
    body["context"]["patientId"] = patient_id
    for entry in body["context"]["draftOrders"].get("entry", []):
        entry["resource"]["subject"] = {"reference": f"Patient/{patient_id}"}
    if fhir_server is None:
        body.pop("fhirServer", None)
    else:
        body["fhirServer"] = fhir_server
    if token is not None:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/MedicationRequest.read user/Condition.read",
            "subject": "diazepam-cds",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def hook_request(body: dict[str, Any]) -> HookRequest:
    return build_hook_request(body)


class DataEchoAdvisor:
    """Stands in for the clinical engine (another module) where only the data matters.

    Every draft is in scope; the single card reports, as codes, what data the rules would have
    had: counts per key and which keys are missing. Real-engine behaviour is covered by the
    fixture scenarios test.
    """

    default_profile = "standard"

    def orders_in_scope(self, request: HookRequest) -> Sequence[Any]:
        return request.draft_resources

    def advise(self, request, orders, data, profile, timings):  # type: ignore[no-untyped-def]
        timings["rules_ms"] = 0.1
        return [
            {
                "summary": "data seen",
                "indicator": "info",
                "source": {"label": "test"},
                "extension": {
                    "counts": {k: len(v) for k, v in sorted(data.resources.items())},
                    "missing": sorted(data.missing),
                    "problems": dict(sorted(data.problems.items())),
                    "patient": (data.patient or {}).get("id"),
                },
            }
        ]


def card_data(response_json: dict[str, Any]) -> dict[str, Any]:
    """The echo card's data; empty lists/objects were pruned from the answer, so default them."""
    cards = response_json["cards"]
    assert len(cards) == 1, cards
    seen = dict(cards[0]["extension"])
    seen.setdefault("missing", [])
    seen.setdefault("problems", {})
    seen["counts"] = {**dict.fromkeys(RESOURCE_TYPES, 0), **seen.get("counts", {})}
    return seen


FIXTURES_DIR = Path(__file__).resolve().parents[2] / "fixtures"
