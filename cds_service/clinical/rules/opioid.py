"""R2: opioid and benzodiazepine together (boxed warning; CDC 2022 Rec 11; Beers Table 5)."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import active_classes, is_older, new_finding


def opioid_benzodiazepine(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["opioid"]
    opioids = sorted(active_classes(record, rule["count_draft_opioids"]).get("opioid", set()))
    if not opioids:
        if "medications" in record.unknown and rule["unknown_indicator"] != "none":
            # silence would read as "no opioid": say the boxed-warning check was not done
            return [
                new_finding(
                    "opioid-benzodiazepine",
                    rule["unknown_indicator"],
                    order,
                    record,
                    variant="unchecked",
                    facts={},
                    audit={"opioids_checked": False},
                )
            ]
        return []
    reasons = []
    if rule["escalate_if_age65"] and is_older(record, policy):
        reasons.append(f"age {record.age_years}")
    reasons += [policy.group_titles[g] for g in rule["escalate_groups"] if record.has(g)]
    indicator = rule["escalated_indicator"] if reasons else rule["indicator"]
    return [
        new_finding(
            "opioid-benzodiazepine",
            indicator,
            order,
            record,
            variant="escalated" if reasons else "default",
            facts={"opioids": ", ".join(opioids), "why": "; ".join(reasons)},
            audit={"opioids": opioids, "escalated": bool(reasons)},
        )
    ]
