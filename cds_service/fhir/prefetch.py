"""Prefetch semantics of CDS Hooks 2.0 §3: what each key's value means for the service.

key present with a resource or Bundle → use it; ``null`` → the client knows there is no data;
an OperationOutcome (whole value or Bundle entry) → the client failed, treat as not obtained;
key absent → not obtained (the FHIR client may fetch it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds_service.discovery import PREFETCH_TEMPLATES


@dataclass
class PatientData:
    """Raw FHIR resources per prefetch key, plus which keys could not be obtained."""

    patient: dict[str, Any] | None = None
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    # keys whose Bundle had a `next` page we have not followed (the FHIR client follows them)
    next_pages: dict[str, str] = field(default_factory=dict)

    def of(self, key: str) -> list[dict[str, Any]]:
        return self.resources.get(key, [])


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def bundle_resources(bundle: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Resources of a Bundle and whether an OperationOutcome entry signalled a partial failure.

    Search-mode ``outcome`` entries are informational in FHIR; an OperationOutcome with an
    error or fatal issue means the client could not complete the query.
    """
    found: list[dict[str, Any]] = []
    failed = False
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if _is_outcome(resource):
            issues = resource.get("issue") or []
            if any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues):
                failed = True
            continue
        found.append(resource)
    return found, failed


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def read_prefetch(prefetch: dict[str, Any] | None) -> PatientData:
    """Interpret the request's prefetch for every key this service asks for."""
    data = PatientData()
    prefetch = prefetch or {}
    for key in PREFETCH_TEMPLATES:
        if key not in prefetch:
            data.missing.add(key)
            continue
        value = prefetch[key]
        if value is None:
            data.resources[key] = []
            continue
        if _is_outcome(value):
            data.missing.add(key)
            continue
        if not isinstance(value, dict):
            data.missing.add(key)
            continue
        if value.get("resourceType") == "Bundle":
            found, failed = bundle_resources(value)
            data.resources[key] = found
            if failed:
                data.missing.add(key)
            link = next_link(value)
            if link:
                data.next_pages[key] = link
        else:
            data.resources[key] = [value]
    patients = [r for r in data.of("patient") if r.get("resourceType") == "Patient"]
    data.patient = patients[0] if patients else None
    if "patient" in data.resources and data.patient is None and "patient" not in data.missing:
        # a null patient key: the client says the patient does not exist
        data.patient = None
    return data
