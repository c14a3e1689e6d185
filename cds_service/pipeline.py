"""One hook call, start to finish: orders in scope → patient data → findings → cards.

The HTTP layer (api.py) only parses and validates; everything clinical happens behind the
``Advisor`` protocol so it can be tested without Flask. Orders come first: a request with no
diazepam order in scope is answered at once, without touching patient data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from cds_service.actions import address_actions
from cds_service.config import Settings
from cds_service.fhir.medication import Unidentified, fetch_medications, unidentified_drafts
from cds_service.fhir.prefetch import PatientData
from cds_service.fhir.resolve import resolve_patient_data
from cds_service.fhir.versions import answer_in_version, detect_version
from cds_service.hook_request import HookRequest, drafts_for_other_patients
from cds_service.jsondata import prune

__all__ = ["Advisor", "prune", "run_hook"]

log = logging.getLogger("cds_service.orders")


class Advisor(Protocol):
    """What the clinical engine offers the pipeline."""

    def orders_in_scope(self, request: HookRequest) -> Sequence[Any]: ...

    def advise(
        self,
        request: HookRequest,
        orders: Sequence[Any],
        data: PatientData,
        profile: str,
        timings: dict[str, float],
    ) -> list[dict[str, Any]]: ...


def run_hook(
    request: HookRequest,
    *,
    advisor: Advisor,
    settings: Settings,
    profile: str,
    timings: dict[str, float],
) -> dict[str, Any]:
    extra = fetch_medications(request, settings, timings)
    if extra:
        request = dataclasses.replace(request, extra_resources=extra)
    started = time.perf_counter()
    orders = advisor.orders_in_scope(request)
    timings["orders_ms"] = (time.perf_counter() - started) * 1000
    unknown = unidentified_drafts(request, (getattr(o, "ref", "") for o in orders), extra)
    if unknown:
        # never skipped silently: the drafts' own ids (no patient data) and why
        log.warning(
            "draft orders whose medication could not be identified",
            extra={"unidentified": [f"{u.ref} ({u.reason})" for u in unknown][:20]},
        )
    elsewhere = drafts_for_other_patients(request)
    if elsewhere:
        # an EHR integration fault, not a clinical finding: no advice, but never silent
        log.warning(
            "draft orders naming another patient than context.patientId were not advised on",
            extra={"other_patient_drafts": elsewhere[:20]},
        )
        unknown = [*unknown, *(Unidentified(ref, "subject-other-patient") for ref in elsewhere)]
    if not orders:
        return {"cards": [], "_unidentified": unknown, "_orders": 0}
    started = time.perf_counter()
    data = resolve_patient_data(request, settings, timings)
    timings.setdefault("data_ms", (time.perf_counter() - started) * 1000)
    cards = advisor.advise(request, orders, data, profile, timings)
    # output stage: every action addresses exactly one draft, in the client's FHIR version
    cards = address_actions(cards, request.draft_resources)
    version = detect_version(request.draft_resources, request.fhir_server)
    cards = answer_in_version(cards, version)
    return {
        "cards": [prune(card) for card in cards],
        "_unidentified": unknown,
        "_fhir_version": version,
        "_orders": len(orders),  # diazepam orders in scope: the alert burden's denominator
    }
