"""R14: pregnancy or breastfeeding: information, not a hard stop (knowledge A.5), on every
pathway, seizure, withdrawal and rescue products included; never a delete."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import new_finding


def pregnancy_lactation(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
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
