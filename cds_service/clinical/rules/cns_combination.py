"""R16: another non-opioid CNS depressant active or pended (gabapentinoid, Z-drug, another
benzodiazepine, barbiturate), at any age: additive CNS and respiratory depression."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.beers import beers_cns_fires
from cds_service.clinical.rules.common import drug_classes, new_finding


def cns_depressant_combination(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["cns_combination"]
    by_class = drug_classes(record)
    drugs = sorted(
        {d for cls in rule["classes"] for d in by_class.get(cls, set()) if d != "diazepam"}
    )
    # another pended diazepam order in the same set doubles the benzodiazepine (a duplicate)
    if any("diazepam" in m.ingredients for m in record.draft_medications):
        drugs = sorted({*drugs, "diazepam (another pended order)"})
    if not drugs:
        return []
    if beers_cns_fires(order, record, policy) and not any("another" in d for d in drugs):
        return []  # at 65+ the Beers three-or-more card names them: one card, not two
    return [
        new_finding(
            "cns-depressant-combination",
            rule["indicator"],
            order,
            record,
            # the FDA 2019 gabapentinoid warning is cited only when a gabapentinoid is there
            variant="gabapentinoid" if by_class.get("gabapentinoid") else "default",
            facts={"drugs": ", ".join(drugs)},
            audit={"cns_depressants": drugs},
        )
    ]
