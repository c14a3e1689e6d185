"""Benchmark request bodies, derived from the clinical fixtures so the load is realistic.

Two warm-path bodies (everything prefetched, so no FHIR call happens):

- ``large``: an order-sign call for a 78-year-old with 25 active medications, 40 active
  conditions and 10 kidney-function observations. The fixture's own record comes first, padded
  with ordinary filler from ``bench/data/elderly-record.json`` so the rules have to walk every
  resource and stay quiet on most of them, which is what a busy geriatric chart looks like.
- ``small``: the CDS Hooks sandbox's order-sign request with a minimal prefetch.

The cold path uses the same bodies without ``prefetch``, pointed at a FHIR server that holds
the same record (``record_resources``), so warm and cold differ only in where data comes from.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO / "fixtures" / "scenarios"
SANDBOX_SIGN = REPO / "tests" / "data" / "sandbox" / "order-sign-request_r4-server.json"
FILLER = Path(__file__).resolve().parent / "data" / "elderly-record.json"
# The scenario the large request grows from: a 78-year-old with acute back spasm and eGFR 45,
# whose answer uses most rules (Beers, duration, dose, alternative ranking with exclusions).
PREFERRED_BASE = "elderly-78-egfr45-no-baclofen"

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PREFETCH_KEYS = ("patient", "medications", "conditions", "observations", "allergies")
BUNDLE_KEYS = {
    "medications": "MedicationRequest",
    "conditions": "Condition",
    "observations": "Observation",
    "allergies": "AllergyIntolerance",
}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_requests(fixtures_dir: Path = FIXTURES_DIR) -> list[tuple[str, dict[str, Any]]]:
    """``(fixture name, hook request)`` for every fixture that carries a request."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(fixtures_dir.rglob("*.json")) if fixtures_dir.is_dir() else []:
        try:
            doc = load_json(path)
        except ValueError:
            continue
        request = doc.get("request") if isinstance(doc, dict) else None
        if isinstance(request, dict) and isinstance(request.get("context"), dict):
            found.append((path.stem, request))
    return found


def _prefetched(request: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = (request.get("prefetch") or {}).get(key)
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") != "Bundle":
        return [value]
    return [
        e["resource"]
        for e in value.get("entry") or []
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def _is_diazepam_sign(request: dict[str, Any]) -> bool:
    text = json.dumps(request.get("context", {}).get("draftOrders", {})).lower()
    return request.get("hook") == "order-sign" and "diazepam" in text


def pick_base(
    candidates: Iterable[tuple[str, dict[str, Any]]], preferred: str = PREFERRED_BASE
) -> tuple[str, dict[str, Any]]:
    """The fixture closest to the large case: ``preferred`` if present, else an order-sign for
    diazepam with the richest prefetched record (ties broken by name, so the choice is stable
    run to run); the sandbox request when there are no fixtures at all."""
    candidates = list(candidates)
    for name, req in candidates:
        if name == preferred and _is_diazepam_sign(req):
            return name, req

    def richness(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
        _, req = item
        return (-sum(len(_prefetched(req, k)) for k in BUNDLE_KEYS), item[0])

    usable = sorted((c for c in candidates if _is_diazepam_sign(c[1])), key=richness)
    if usable:
        return usable[0]
    return ("sandbox:" + SANDBOX_SIGN.stem, load_json(SANDBOX_SIGN))


def birth_date_for_age(age: int, today: date) -> str:
    """A birth date that makes the patient ``age`` today and for the next ~3 months."""
    anchor = today - timedelta(days=120)
    try:
        born = anchor.replace(year=anchor.year - age)
    except ValueError:  # 29 February
        born = anchor.replace(year=anchor.year - age, day=28)
    return born.isoformat()


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:bench:{r['resourceType']}/{r.get('id', i)}", "resource": r}
            for i, r in enumerate(resources)
        ],
    }


def _ref(patient_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def _medication(patient_id: str, n: int, code: str, display: str, today: date) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"bench-med-{n}",
        "status": "active",
        "intent": "order",
        "subject": _ref(patient_id),
        "authoredOn": (today - timedelta(days=30 + 11 * n)).isoformat(),
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        },
        "dosageInstruction": [
            {"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
        ],
    }


def _condition(patient_id: str, n: int, code: str, display: str, today: date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"bench-cond-{n}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": ICD10CM, "code": code, "display": display}],
            "text": display,
        },
        "subject": _ref(patient_id),
        "onsetDateTime": (today - timedelta(days=200 + 37 * n)).isoformat(),
    }


def _observations(patient_id: str, series: list[list[Any]], today: date) -> list[dict[str, Any]]:
    """Newest first (the prefetch sorts by -date), one result per code per visit. The newest
    is four months before the order, older than a fixture's own recent result, so padding
    never changes which kidney value is the latest."""
    out: list[dict[str, Any]] = []
    visits = max(len(s[3]) for s in series)
    for visit in range(visits):
        when = (today - timedelta(days=120 + 90 * visit)).isoformat()
        for code, display, unit, values in series:
            if visit >= len(values):
                continue
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"bench-obs-{code}-{visit}",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "observation-category",
                                    "code": "laboratory",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                    "subject": _ref(patient_id),
                    "effectiveDateTime": when,
                    "valueQuantity": {
                        "value": values[visit],
                        "unit": unit,
                        "system": UCUM,
                        "code": unit,
                    },
                }
            )
    return out


def _codes(resource: dict[str, Any], field: str) -> set[str]:
    concept = resource.get(field) or {}
    return {c.get("code") for c in concept.get("coding") or [] if isinstance(c, dict)}


def _pad(
    own: list[dict[str, Any]], extra: Iterable[dict[str, Any]], count: int, field: str
) -> list[dict[str, Any]]:
    """The fixture's resources first, then filler whose codes are not already there."""
    out = list(own[:count])
    seen = set().union(*(_codes(r, field) for r in out)) if out else set()
    for resource in extra:
        if len(out) >= count:
            break
        codes = _codes(resource, field)
        if codes & seen:
            continue
        seen |= codes
        out.append(resource)
    return out


def order_date(body: dict[str, Any]) -> date | None:
    """The first draft's ``authoredOn``: fixtures use fixed dates, and ages and look-back
    windows are judged against the order, so filler dates are anchored there too."""
    for entry in body.get("context", {}).get("draftOrders", {}).get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        authored = resource.get("authoredOn") if isinstance(resource, dict) else None
        if isinstance(authored, str):
            try:
                return date.fromisoformat(authored[:10])
            except ValueError:
                continue
    return None


def large_request(
    base: dict[str, Any], today: date | None = None, filler_path: Path = FILLER
) -> dict[str, Any]:
    """The base request with the 78-year-old's full record prefetched (counts from the filler
    file), so one call exercises every rule against a realistic geriatric chart."""
    today = today or order_date(base) or date.today()
    filler = load_json(filler_path)
    counts = filler["counts"]
    body = copy.deepcopy(base)
    body["hook"] = "order-sign"
    patient_id = body["context"]["patientId"]
    patients = [r for r in _prefetched(base, "patient") if r.get("resourceType") == "Patient"]
    patient = copy.deepcopy(patients[0]) if patients else {"resourceType": "Patient"}
    patient.update(
        id=patient_id,
        birthDate=birth_date_for_age(int(filler["age_years"]), today),
        gender=patient.get("gender", "female"),
    )
    own_meds = [
        r
        for r in _prefetched(base, "medications")
        if r.get("resourceType") == "MedicationRequest" and r.get("status") == "active"
    ]
    meds = _pad(
        own_meds,
        (_medication(patient_id, n, c, d, today) for n, (c, d) in enumerate(filler["medications"])),
        counts["medications"],
        "medicationCodeableConcept",
    )
    own_conditions = [
        r for r in _prefetched(base, "conditions") if r.get("resourceType") == "Condition"
    ]
    conditions = _pad(
        own_conditions,
        (_condition(patient_id, n, c, d, today) for n, (c, d) in enumerate(filler["conditions"])),
        counts["conditions"],
        "code",
    )
    own_observations = [
        r for r in _prefetched(base, "observations") if r.get("resourceType") == "Observation"
    ]
    observations = (own_observations + _observations(patient_id, filler["observations"], today))[
        : counts["observations"]
    ]
    allergies = [
        r for r in _prefetched(base, "allergies") if r.get("resourceType") == "AllergyIntolerance"
    ]
    body["prefetch"] = {
        "patient": patient,
        "medications": bundle(meds),
        "conditions": bundle(conditions),
        "observations": bundle(observations),
        "allergies": bundle(allergies),
    }
    return body


def small_request(
    sandbox: dict[str, Any] | None = None, today: date | None = None
) -> dict[str, Any]:
    """The sandbox order-sign call with the least prefetch that still answers without a FHIR
    call: the patient (aged 78, so the Beers rules engage) and empty searches."""
    body = copy.deepcopy(sandbox if sandbox is not None else load_json(SANDBOX_SIGN))
    today = today or order_date(body) or date.today()
    patient_id = body["context"]["patientId"]
    body["prefetch"] = {
        "patient": {
            "resourceType": "Patient",
            "id": patient_id,
            "gender": "male",
            "birthDate": birth_date_for_age(78, today),
        },
        "medications": bundle([]),
        "conditions": bundle([]),
        "observations": bundle([]),
        "allergies": bundle([]),
    }
    return body


def without_prefetch(
    body: dict[str, Any], fhir_server: str, access_token: str | None = None
) -> dict[str, Any]:
    """The cold-path twin: no prefetch, so the service must fetch everything from
    ``fhir_server``."""
    cold = copy.deepcopy(body)
    cold.pop("prefetch", None)
    cold["fhirServer"] = fhir_server.rstrip("/")
    if access_token:
        cold["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "patient/*.read",
            "subject": "diazepam-cds",
        }
    else:
        cold.pop("fhirAuthorization", None)
    return cold


def record_resources(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every prefetched resource, to load into a FHIR server for the cold path."""
    out: list[dict[str, Any]] = []
    for key in PREFETCH_KEYS:
        out.extend(_prefetched(body, key))
    return out


def build_all(today: date | None = None) -> dict[str, Any]:
    """Both warm bodies plus where the large one came from (recorded in the results)."""
    name, base = pick_base(fixture_requests())
    return {
        "large": large_request(base, today),
        "small": small_request(today=today),
        "large_base": name,
    }
