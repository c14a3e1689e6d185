"""R15: alcohol or other substance use disorder (boxed warning: abuse, misuse, addiction)."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import indication, new_finding


def substance_use_risk(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    """On every pathway (F.0-4). Treating a *stated* alcohol withdrawal is appropriate, so
    there the card is information: monitor for oversedation."""
    rule = policy["substance_use"]
    found = [g for g in rule["groups"] if record.has(g)]
    if not found:
        return []
    stated = indication(order, record, policy)
    withdrawal = stated.source == "reason" and stated.kind == "alcohol_withdrawal"
    alcohol = record.has("alcohol_use_disorder")
    return [
        new_finding(
            "substance-use-risk",
            rule["withdrawal_indicator"] if withdrawal else rule["indicator"],
            order,
            record,
            variant="withdrawal" if withdrawal else ("alcohol" if alcohol else "default"),
            facts={"codes": ", ".join(c for g in found for c in record.condition_codes.get(g, []))},
            audit={"conditions": found, "withdrawal": withdrawal},
        )
    ]
