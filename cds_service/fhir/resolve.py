"""Gather the patient data a hook call needs. Today: prefetch only (see fhir/prefetch.py)."""

from __future__ import annotations

from cds_service.config import Settings
from cds_service.fhir.prefetch import PatientData, read_prefetch
from cds_service.hook_request import HookRequest


def resolve_patient_data(
    request: HookRequest, settings: Settings, timings: dict[str, float]
) -> PatientData:
    return read_prefetch(request.prefetch)
