"""One hook call, start to finish: orders in scope → patient data → findings → cards.

The HTTP layer (api.py) only parses and validates; everything clinical happens behind the
``Advisor`` protocol so it can be tested without Flask. Orders come first: a request with no
diazepam order in scope is answered at once, without touching patient data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from cds_service.config import Settings
from cds_service.fhir.prefetch import PatientData
from cds_service.fhir.resolve import resolve_patient_data
from cds_service.hook_request import HookRequest
from cds_service.jsondata import prune

__all__ = ["Advisor", "prune", "run_hook"]


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
    started = time.perf_counter()
    orders = advisor.orders_in_scope(request)
    timings["orders_ms"] = (time.perf_counter() - started) * 1000
    if not orders:
        return {"cards": []}
    started = time.perf_counter()
    data = resolve_patient_data(request, settings, timings)
    timings.setdefault("data_ms", (time.perf_counter() - started) * 1000)
    cards = advisor.advise(request, orders, data, profile, timings)
    return {"cards": [prune(card) for card in cards]}
