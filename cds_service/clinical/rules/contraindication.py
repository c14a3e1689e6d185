"""R1: label contraindications of diazepam (knowledge A.3)."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import new_finding


def diazepam_contraindication(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["contraindication"]
    rescue = order.route in policy["indication"]["rescue_routes"]
    groups = rule["rescue_route_groups"] if rescue else rule["groups"]
    found = [g for g in groups if record.has(g)]
    reasons = [policy.group_titles.get(g, g) for g in found]
    codes = [c for g in found for c in record.condition_codes.get(g, [])]
    min_months = policy["age"]["min_age_months"]
    if record.age_months is not None and record.age_months < min_months:
        reasons.append(f"age {record.age_months} months (under {min_months} months)")
    if {"diazepam", "benzodiazepine"} & record.allergies:
        reasons.append("recorded diazepam/benzodiazepine allergy")
    if not reasons:
        return []
    return [
        new_finding(
            "diazepam-contraindication",
            rule["indicator"],
            order,
            record,
            facts={"conditions": "; ".join(reasons), "first": reasons[0]},
            audit={"conditions": found, "condition_codes": codes},
            options=[
                Option(
                    kind="delete",
                    label="Cancel the diazepam order",
                    description=f"Remove the diazepam draft {order.ref}",
                )
            ],
        )
    ]
