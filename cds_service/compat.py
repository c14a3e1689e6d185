"""What real clients send beyond the letter of CDS Hooks 2.0, mapped onto 2.0 before validation.

Each rule below comes from a request body seen in public integration material (see
``tests/data/interop/``); each is applied only when the 2.0 form is absent, so a body that is
already 2.0 passes through unchanged, and the log line of the call says what was mapped
(field names and codes only, never values):

* CDS Hooks 1.0-era and pre-1.0 bodies put the user and patient at the top level
  (``user``/``userId``, ``patient``/``patientId``; PDDI-CDS, older EHR builds): they become
  ``context.userId`` / ``context.patientId`` when those are missing.
* ``fhirAuthorization: null`` (Da Vinci CRD tests) and an empty ``access_token`` mean "no
  token": the block is dropped, so the service fetches without one and only a refused fetch
  of needed data gives the usual 412.
* Prefetch keys the service did not ask for are ignored (a client may hold more data than
  asked; only what the service uses is validated, see the request schemas; their resources
  may still resolve a draft's ``medicationReference``), and for keys it did ask for the 1.0-era
  wrapper ``{"response": {"status": "200 OK"}, "resource": {...}}`` is unwrapped (a non-2xx
  status or no resource counts as "not prefetched", so the service fetches it).

``context.patientId`` written as ``Patient/123`` (cqf-ruler, CDC opioid CDS, HAPI tests) is
read as ``123`` by ``HookRequest`` itself (``patient_id_of``), so every comparison and query
uses one form.
"""

from __future__ import annotations

from typing import Any

from cds_service.discovery import PREFETCH_TEMPLATES

# top-level field of older bodies -> 2.0 context field
_LEGACY_CONTEXT = (("userId", ("userId", "user")), ("patientId", ("patientId", "patient")))


def normalize_body(body: Any) -> tuple[Any, list[str]]:
    """The body as 2.0 would spell it, and short codes naming what was mapped.

    Anything that is not a JSON object (or has no object ``context``) is returned untouched:
    schema validation then answers 400 as for any body wrong under every version."""
    if not isinstance(body, dict):
        return body, []
    notes: list[str] = []
    body = dict(body)
    context = body.get("context")
    if isinstance(context, dict):
        context = dict(context)
        for field, legacy_names in _LEGACY_CONTEXT:
            if field in context:
                continue
            for name in legacy_names:
                value = body.get(name)
                if isinstance(value, str) and value:
                    context[field] = value
                    notes.append(f"context.{field}<-{name}")
                    break
        body["context"] = context
    if "fhirAuthorization" in body and body.get("fhirServer"):
        # (without fhirServer the block stays, and the schema's 400 says fhirServer is missing)
        auth = body["fhirAuthorization"]
        if auth is None:
            del body["fhirAuthorization"]
            notes.append("fhirAuthorization-null")
        elif isinstance(auth, dict) and _blank(auth.get("access_token")):
            del body["fhirAuthorization"]
            notes.append("fhirAuthorization-empty-token")
    prefetch = body.get("prefetch")
    if prefetch is None and "prefetch" in body:
        del body["prefetch"]
        notes.append("prefetch-null")
    elif isinstance(prefetch, dict):
        body["prefetch"], prefetch_notes = _normalize_prefetch(prefetch)
        notes += prefetch_notes
    return body, notes


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _normalize_prefetch(prefetch: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    ignored = 0
    notes: list[str] = []
    for key, value in prefetch.items():
        if key not in PREFETCH_TEMPLATES:
            ignored += 1
            out[key] = value  # not validated, never read as patient data
            continue
        if _is_wrapper(value):
            resource = value.get("resource")
            status = _wrapper_status(value)
            if isinstance(resource, dict) and (status is None or status.startswith("2")):
                out[key] = resource
                notes.append(f"prefetch.{key}-unwrapped")
            else:
                notes.append(f"prefetch.{key}-wrapper-without-resource")
            continue
        out[key] = value
    if ignored:
        notes.append(f"prefetch-ignored-keys:{ignored}")
    return out, notes


def _is_wrapper(value: Any) -> bool:
    """The 1.0-era ``{"response": {...}, "resource": {...}}`` form (no resourceType of its own;
    anything else shaped like it is left for the schema to refuse)."""
    return (
        isinstance(value, dict)
        and bool(value)
        and set(value) <= {"resource", "response"}
        and all(isinstance(v, dict) for v in value.values())
        and (not isinstance(value.get("resource"), dict) or "resourceType" in value["resource"])
    )


def _wrapper_status(value: dict[str, Any]) -> str | None:
    response = value.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    return str(status).strip() if status is not None else None


def patient_id_of(value: str) -> str:
    """``context.patientId`` as a bare id: ``Patient/123`` and ``https://x/fhir/Patient/123``
    (both seen in real clients) become ``123``; anything else is returned as sent."""
    head, sep, tail = value.rstrip("/").rpartition("Patient/")
    if sep and tail and "/" not in tail and (not head or head.endswith("/")):
        return tail
    return value
