"""R17: a CYP3A4/CYP2C19 inhibitor active or pended raises and prolongs diazepam levels."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import drug_classes, new_finding


def diazepam_interaction(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["interaction"]
    by_class = drug_classes(record)
    drugs = sorted({d for cls in rule["classes"] for d in by_class.get(cls, set())})
    strong = sorted({d for cls in rule["strong_classes"] for d in by_class.get(cls, set())})
    drugs = sorted(set(drugs) | set(strong))
    if not drugs:
        return []
    return [
        new_finding(
            "diazepam-interaction",
            rule["strong_indicator"] if strong else rule["indicator"],
            order,
            record,
            variant="strong" if strong else "default",
            facts={"drugs": ", ".join(drugs)},
            audit={"inhibitors": drugs, "strong": strong},
        )
    ]
