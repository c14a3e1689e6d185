"""R13: already on a benzodiazepine for weeks: do not stop abruptly (boxed warning, CDC)."""

from __future__ import annotations

from datetime import timedelta

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import new_finding, pathway


def taper_required(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Finding]:
    if pathway(order, record, policy) == "safety":
        return []
    since = order.order_date - timedelta(days=int(policy["windows"]["taper_min_days"]))
    long_term = sorted(
        {
            ingredient
            for med in record.medications
            if "benzodiazepine" in med.classes and med.start is not None and med.start <= since
            for ingredient in med.ingredients
            if "benzodiazepine" in policy.classes_of(ingredient)
        }
    )
    if not long_term:
        return []
    weeks = max(
        (order.order_date - med.start).days // 7
        for med in record.medications
        if "benzodiazepine" in med.classes and med.start is not None and med.start <= since
    )
    return [
        new_finding(
            "taper-required",
            policy["taper"]["indicator"],
            order,
            record,
            facts={"drugs": ", ".join(long_term), "weeks": weeks},
            audit={"benzodiazepines": long_term, "weeks": weeks},
        )
    ]
