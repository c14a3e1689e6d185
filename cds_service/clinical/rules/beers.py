"""R3/R3x/R4: AGS Beers 2023 benzodiazepine entry; R5: three or more CNS-active drugs."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    active_classes,
    hospice,
    indication,
    is_older,
    new_finding,
    pathway,
)


def _beers_applies(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> bool:
    """Both Beers statements share who they are about: an older adult, outside the safety
    pathway (``pathway``: seizure, tetanus, withdrawal, procedural, or a non-oral route with
    no musculoskeletal reason), and not in hospice when the policy says so."""
    if not is_older(record, policy) or pathway(order, record, policy) == "safety":
        return False
    return not (policy["beers"]["hospice_suppresses"] and hospice(record))


def beers_benzodiazepine(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["beers"]
    if not _beers_applies(order, record, policy):
        return []
    kind = indication(order, record, policy).kind
    if kind in rule["exception_indications"]:
        if rule["exception_card"] != "info":
            return []
        return [
            new_finding(
                "beers-benzodiazepine",
                rule["exception_indicator"],
                order,
                record,
                variant="exception",
                facts={"age": record.age_years, "indication": kind.replace("_", " ")},
                audit={"indication": kind},
            )
        ]
    syndromes = [g for g in rule["geriatric_syndromes"] if record.has(g)]
    names = [policy.group_titles.get(g, g).lower() for g in syndromes]
    return [
        new_finding(
            "beers-benzodiazepine",
            rule["geriatric_syndrome_indicator"] if syndromes else rule["indicator"],
            order,
            record,
            variant="syndrome" if syndromes else "default",
            facts={"age": record.age_years, "syndromes": " and ".join(names)},
            audit={"indication": kind, "syndromes": syndromes},
        )
    ]


def beers_cns_active(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Finding]:
    rule = policy["beers"]
    if not _beers_applies(order, record, policy):
        return []
    kind = indication(order, record, policy).kind
    if not rule["cns_applies_to_exceptions"] and kind in rule["exception_indications"]:
        return []
    by_class = active_classes(record, rule["cns_count_includes_drafts"])
    drugs: set[str] = set()
    for cls in policy.cns_active_classes:
        drugs |= by_class.get(cls, set())
    if rule["cns_count_includes_ordered_drug"]:
        drugs.add("diazepam")
    if len(drugs) < rule["cns_active_threshold"]:
        return []
    listed = sorted(drugs)
    return [
        new_finding(
            "beers-cns-active",
            rule["indicator"],
            order,
            record,
            facts={"count": len(listed), "drugs": ", ".join(listed)},
            audit={"cns_count": len(listed), "cns_drugs": listed},
        )
    ]
