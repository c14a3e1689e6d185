"""R1: contraindications of the ordered diazepam *product* (knowledge A.3, injection and
rescue labels), and R18's minimum ages.

Tablets and oral solution carry the A.3 list (hepatic failure graded per F.1); injections only
hypersensitivity and glaucoma; rescue products (rectal gel, nasal, buccal) hypersensitivity
and acute narrow-angle glaucoma. Relative cautions are the same topic at ``warning`` with no
delete. A delete is offered only for an oral order off the safety pathway that is not a
long-term user's renewal (F.0-1, F.0-3).
"""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    cancel_pended,
    chronic_diazepam,
    effective_route,
    emergency_order,
    in_sentence,
    indication,
    new_finding,
)


def _product_kind(order: DiazepamOrder, policy: Policy) -> str:
    route = effective_route(order, policy)
    if route in policy["indication"]["rescue_routes"]:
        return "rescue"
    return "parenteral" if route == "parenteral" else "oral"


def diazepam_contraindication(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["contraindication"]
    kind = _product_kind(order, policy)
    titles = policy.group_titles
    hard_groups = {
        "oral": rule["groups"],
        "parenteral": rule["parenteral_groups"],
        "rescue": rule["rescue_route_groups"],
    }[kind]
    caution_groups = {
        "oral": rule["oral_caution_groups"],
        "parenteral": rule["parenteral_caution_groups"],
        "rescue": rule["rescue_caution_groups"],
    }[kind]
    found = [g for g in hard_groups if record.has(g)]
    reasons = [in_sentence(titles.get(g, g)) for g in found]
    if {"diazepam", "benzodiazepine"} & record.allergies:
        reasons.append("recorded diazepam/benzodiazepine allergy")
    min_months = policy["age"]["min_age_months"]
    if kind == "oral" and record.age_months is not None and record.age_months < min_months:
        reasons.append(f"age {record.age_months} months (under {min_months} months)")
    cautions = [
        in_sentence(titles.get(g, g)) for g in caution_groups if record.has(g) and g not in found
    ]
    min_years = policy["age"]["rescue_min_age_years"]
    if kind == "rescue" and record.age_years is not None and record.age_years < min_years:
        cautions.append(f"age under {min_years} years (rescue product not established)")
    codes = [c for g in found for c in record.condition_codes.get(g, [])]
    if not reasons and not cautions:
        return []
    chronic = chronic_diazepam(order, record, policy) is not None
    options = []
    may_delete = kind == "oral" and not emergency_order(order, record, policy) and not chronic
    if reasons and may_delete:
        options.append(cancel_pended(order))
    if reasons:
        indicator = rule["indicator"]
        variant = "chronic" if chronic else ("emergency" if not may_delete else "default")
        listed = reasons + cautions
    else:
        indicator = rule["caution_indicator"]
        variant = "caution"
        listed = cautions
    notes = []
    found_kind = indication(order, record, policy)
    if (
        found_kind.kind == "alcohol_withdrawal"
        and found_kind.source == "reason"
        and any(record.has(g) for g in policy["hepatic"]["severe_groups"])
    ):
        # R10: in severe liver disease name the agents without oxidative metabolism
        notes.append(rule["withdrawal_hepatic_note"])
    allergy = bool({"diazepam", "benzodiazepine"} & record.allergies)
    findings = [
        new_finding(
            "diazepam-contraindication",
            indicator,
            order,
            record,
            variant=variant,
            facts={
                "conditions": "; ".join(listed),
                "first": listed[0],
                "product": {
                    "oral": "tablets and oral solution",
                    "parenteral": "injection",
                    "rescue": "rescue product",
                }[kind],
            },
            audit={"conditions": found, "condition_codes": codes, "product_kind": kind},
            options=options,
            notes=notes,
        )
    ]
    if not allergy:  # "intolerance, not a true allergy" only on an allergy card (L4)
        findings[0].unfit_reasons.add("intolerance-not-allergy")
    return findings
