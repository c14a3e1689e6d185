"""R16: another non-opioid CNS depressant active or pended (gabapentinoid, Z-drug, another
benzodiazepine, barbiturate), at any age: additive CNS and respiratory depression."""

from __future__ import annotations

from typing import Any

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.beers import beers_cns_fires
from cds_service.clinical.rules.common import (
    chronic_diazepam,
    drug_classes,
    effective_route,
    fmt,
    new_finding,
    times_a_day,
)


def cns_depressant_combination(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["cns_combination"]
    by_class = drug_classes(record)
    drugs = sorted(
        {d for cls in rule["classes"] for d in by_class.get(cls, set()) if d != "diazepam"}
    )
    # another pended diazepam order in the same set doubles the benzodiazepine (a duplicate);
    # a rescue product beside the daily tablets is not one (review round 8 F1: F.0-3)
    if _same_kind_drafts(order, record, policy):
        drugs = sorted({*drugs, "diazepam (another pended order)"})
    if not drugs:
        return []
    if beers_cns_fires(order, record, policy) and not any("another" in d for d in drugs):
        return []  # at 65+ the Beers three-or-more card names them: one card, not two
    if drugs == ["diazepam (another pended order)"]:
        return [_duplicate(order, record, policy, drugs)]
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


def _duplicate(
    order: DiazepamOrder, record: PatientRecord, policy: Policy, drugs: list[str]
) -> Finding:
    """Another pended diazepam order and nothing else (review round 7 F3: order-select on
    one of two pended orders said "avoid the combination, or use the lowest doses"): a
    duplicate to resolve, keep only one; for a long-term user, never none (F.0-1)."""
    other = _same_kind_drafts(order, record, policy)[0]
    said = (
        f" ({fmt(other.mg_per_dose)} mg {times_a_day(other.doses_per_day)})"
        if other.mg_per_dose and other.doses_per_day
        else ""
    )
    both = (
        order.mg_per_day + other.mg_per_dose * other.doses_per_day
        if order.mg_per_day and other.mg_per_dose and other.doses_per_day
        else None
    )
    long_term = chronic_diazepam(order, record, policy) is not None
    return new_finding(
        "cns-depressant-combination",
        policy["cns_combination"]["indicator"],
        order,
        record,
        variant="duplicate_long_term" if long_term else "duplicate",
        facts={
            "drugs": ", ".join(drugs),
            "other": said,
            "together": f" (together {fmt(both)} mg a day)" if both else "",
        },
        audit={"cns_depressants": drugs, "duplicate_order": True},
    )


def _same_kind_drafts(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Any]:
    """The other pended diazepam orders of the same kind as this one: daily oral ones beside
    an oral order (a route not known counts as oral, F.1), rescue or injection ones beside a
    non-oral one."""
    oral = effective_route(order, policy) == "oral"
    return [
        m
        for m in record.draft_medications
        if "diazepam" in m.ingredients and (m.route in (None, "oral", "unknown")) == oral
    ]
