"""Prefetch semantics of CDS Hooks 2.0 §3: what each key's value means for the service.

key present with a resource or Bundle → use it; ``null`` → the client knows there is no data;
an OperationOutcome (whole value or Bundle entry) → the client failed, treat as not obtained;
key absent → not obtained (the FHIR client may fetch it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.discovery import PREFETCH_TEMPLATES


@dataclass
class PatientData:
    """Raw FHIR resources per prefetch key, plus which keys could not be obtained.

    A key in ``missing`` may still have some ``resources`` (a first page, or the part of a
    Bundle before the client's error): the rules must treat that data as incomplete.
    ``problems`` says, per missing key, why (short codes such as ``prefetch-absent``,
    ``http-401``, ``timeout``; never contents); ``empty`` holds keys the client sent as
    ``null`` (known to have no data, never fetched).
    """

    patient: dict[str, Any] | None = None
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    # keys whose Bundle had a `next` page we have not followed (the FHIR client follows them)
    next_pages: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    empty: set[str] = field(default_factory=set)
    fetched: set[str] = field(default_factory=set)

    def of(self, key: str) -> list[dict[str, Any]]:
        return self.resources.get(key, [])

    def mark_missing(self, key: str, problem: str) -> None:
        self.missing.add(key)
        self.problems[key] = problem

    def mark_obtained(self, key: str) -> None:
        self.missing.discard(key)
        self.problems.pop(key, None)


# What each key's template asks for. A value holding none of these (the Da Vinci CRD test kit
# sends a Bundle of Medication under "medications") is not the data asked for: it counts as not
# obtained, so it is fetched, or the cards say the check could not run. DSTU2 and STU3 clients
# may answer the medications query with MedicationOrder / MedicationStatement.
EXPECTED_TYPES: dict[str, frozenset[str]] = {
    "patient": frozenset({"Patient"}),
    "medications": frozenset({"MedicationRequest", "MedicationOrder", "MedicationStatement"}),
    "conditions": frozenset({"Condition"}),
    "observations": frozenset({"Observation"}),
    "allergies": frozenset({"AllergyIntolerance"}),
}


def wrong_type(key: str, resources: list[dict[str, Any]]) -> bool:
    """Resources were sent for ``key`` but none is of a type its query returns."""
    expected = EXPECTED_TYPES.get(key)
    if not expected or not resources:
        return False
    return not any(r.get("resourceType") in expected for r in resources)


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def bundle_resources(bundle: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Resources of a Bundle and whether an OperationOutcome entry signalled a partial failure.

    Search-mode ``outcome`` entries are informational in FHIR; an OperationOutcome with an
    error or fatal issue means the client could not complete the query.
    """
    found: list[dict[str, Any]] = []
    failed = False
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if _is_outcome(resource):
            issues = resource.get("issue")
            issues = issues if isinstance(issues, list) else []
            if any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues):
                failed = True
            continue
        found.append(resource)
    return found, failed


def next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def _first_patient(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in resources if r.get("resourceType") == "Patient"), None)


def read_prefetch(prefetch: dict[str, Any] | None) -> PatientData:
    """Interpret the request's prefetch for every key this service asks for."""
    data = PatientData()
    prefetch = prefetch if isinstance(prefetch, dict) else {}
    for key in PREFETCH_TEMPLATES:
        if key not in prefetch:
            data.mark_missing(key, "prefetch-absent")
            continue
        value = prefetch[key]
        if value is None:
            # the client knows there is no data: use "none" and never fetch
            data.resources[key] = []
            data.empty.add(key)
            continue
        if _is_outcome(value):
            data.mark_missing(key, "prefetch-outcome")
            continue
        if not isinstance(value, dict):
            data.mark_missing(key, "prefetch-invalid")
            continue
        if value.get("resourceType") == "Bundle":
            found, failed = bundle_resources(value)
            data.resources[key] = found
            if wrong_type(key, found) and key != "patient":
                data.resources[key] = []
                data.mark_missing(key, "prefetch-wrong-type")
                continue
            if failed:
                data.mark_missing(key, "prefetch-outcome")
            link = next_link(value)
            if link:
                data.next_pages[key] = link
        elif key != "patient" and wrong_type(key, [value]):
            data.mark_missing(key, "prefetch-wrong-type")
        else:
            data.resources[key] = [value]
    data.patient = _first_patient(data.of("patient"))
    if data.patient is None and "patient" not in data.empty and "patient" not in data.missing:
        # a value was sent but holds no Patient: not usable, try to fetch it
        data.mark_missing("patient", "prefetch-invalid")
    return data


def prefetch_resources(prefetch: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """Every resource the prefetch values hold, Bundles opened (for reference look-ups)."""
    out: list[Mapping[str, Any]] = []
    for value in (prefetch or {}).values():
        if not isinstance(value, Mapping):
            continue
        if value.get("resourceType") == "Bundle":
            for entry in value.get("entry") or []:
                if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                    out.append(entry["resource"])
        else:
            out.append(value)
    return out
