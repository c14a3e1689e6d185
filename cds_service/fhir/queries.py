"""Turn discovery's prefetch templates into the relative URLs the service fetches itself.

The fallback must ask exactly what the EHR was asked to prefetch, so both come from
``PREFETCH_TEMPLATES``. The patient id is checked against the FHIR id grammar before it goes into
a URL: ``context.patientId`` is caller-supplied text and must not be able to add search
parameters or path segments (``x&_include=*``, ``../Practitioner``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from cds_service.discovery import PREFETCH_TEMPLATES

PATIENT_TOKEN = "{{context.patientId}}"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Query:
    key: str
    relative_url: str
    resource_type: str
    is_read: bool


def valid_fhir_id(value: str) -> bool:
    # "." and ".." match the grammar but are path segments: `Patient/..` would be sent as
    # `GET {base}/`, with the EHR's token, to whatever answers there.
    return bool(FHIR_ID.fullmatch(value)) and value not in (".", "..")


def build_query(key: str, patient_id: str) -> Query:
    """The template for ``key`` with the patient id substituted and the query re-encoded."""
    if not valid_fhir_id(patient_id):
        raise ValueError("patient id is not a FHIR id")
    template = PREFETCH_TEMPLATES[key]
    path, _, query = template.partition("?")
    path = path.replace(PATIENT_TOKEN, quote(patient_id, safe=""))
    resource_type = path.split("/", 1)[0]
    if not query:
        return Query(key, path, resource_type, is_read="/" in path)
    pairs = [
        (name, value.replace(PATIENT_TOKEN, patient_id))
        for name, value in parse_qsl(query, keep_blank_values=True)
    ]
    encoded = urlencode(pairs, quote_via=quote, safe=":/,")
    return Query(key, f"{path}?{encoded}", resource_type, is_read=False)
