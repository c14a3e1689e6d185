"""R14: pregnancy or breastfeeding: information, not a hard stop (knowledge A.5)."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import new_finding, pathway


def pregnancy_lactation(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    if pathway(order, record, policy) == "safety":
        return []
    found = [g for g in policy["pregnancy"]["groups"] if record.has(g)]
    if not found:
        return []
    return [
        new_finding(
            "pregnancy-lactation",
            policy["pregnancy"]["indicator"],
            order,
            record,
            variant=found[0],
            facts={"status": " and ".join(policy.group_titles.get(g, g).lower() for g in found)},
            audit={"conditions": found},
        )
    ]
