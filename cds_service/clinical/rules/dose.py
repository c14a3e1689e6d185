"""R6 dose: geriatric starting dose (label) and the 40 mg/day ceiling [D, derived]."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    age_band,
    chronic_diazepam,
    effective_route,
    fmt,
    hospice,
    indication,
    is_older,
    new_finding,
    pathway,
    supplied,
    times_a_day,
)
from cds_service.clinical.suggestions import (
    changed_product,
    fitted,
    frequency_words,
    rewrite_order,
)


def dose_limit(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Finding]:
    rule = policy["dose"]
    kind = indication(order, record, policy).kind
    if (
        kind == "alcohol_withdrawal"
        and policy["hepatic"]["alcohol_withdrawal_note"]
        and any(record.has(g) for g in policy["hepatic"]["impaired_groups"])
        and not any(record.has(g) for g in policy["hepatic"]["severe_groups"])
    ):
        return [
            new_finding(
                "dose-limit",
                policy["hepatic"]["alcohol_withdrawal_indicator"],
                order,
                record,
                variant="hepatic",
                facts={},
                audit={"indication": kind},
            )
        ]
    # R6: every oral indication off the stated safety pathway (anxiety and inferred ones too)
    if pathway(order, record, policy) == "safety" or effective_route(order, policy) != "oral":
        return []
    chronic = chronic_diazepam(order, record, policy) is not None
    per_dose, per_day, mg_day = order.mg_per_dose, order.doses_per_day, order.mg_per_day
    facts = {
        "mg": fmt(per_dose),
        "times": fmt(per_day),
        "how_often": times_a_day(per_day),
        "mg_day": fmt(mg_day),
        "max": fmt(rule["max_mg_per_day"]),
        "age": record.age_years,
        "start_mg": fmt(rule["geriatric_max_mg_per_dose"]),
        "start_times": fmt(rule["geriatric_max_doses_per_day"]),
    }
    audit = {"mg_per_dose": per_dose, "doses_per_day": per_day, "mg_per_day": mg_day}
    if mg_day is not None and mg_day > rule["max_mg_per_day"]:
        return [
            new_finding(
                "dose-limit",
                rule["max_indicator"],
                order,
                record,
                variant="max",
                facts=facts,
                audit=audit,
            )
        ]
    band = age_band(record, policy)
    if band == "child" and not chronic:
        over = (per_dose is not None and per_dose > rule["child_max_mg_per_dose"]) or (
            per_day is not None and per_day > rule["child_max_doses_per_day"]
        )
        if not over:
            return []
        facts.update(
            start_mg=fmt(rule["child_max_mg_per_dose"]),
            start_times=fmt(rule["child_max_doses_per_day"]),
        )
        return [
            new_finding(
                "dose-limit",
                rule["child_indicator"],
                order,
                record,
                variant="child",
                facts=facts,
                audit=audit,
            )
        ]
    # the geriatric starting dose is for new starts only: a long-term user's dose is lowered
    # by taper steps (R13, F.0-1), never cut to a starting dose in one click
    if not is_older(record, policy) or chronic:
        return []
    too_much = (per_dose is not None and per_dose > rule["geriatric_max_mg_per_dose"]) or (
        per_day is not None and per_day > rule["geriatric_max_doses_per_day"]
    )
    if not too_much:
        return []
    options = []
    if order.unit in (None, "tablet"):
        mg, times = rule["geriatric_suggested_mg"], rule["geriatric_suggested_doses_per_day"]
        cap = policy["duration"]["cap_to_days"]
        # R20: in hospice the supply is not shortened, only the dose
        # the 7-day cap belongs to the acute-spasm path only (R6); anxiety keeps its supply
        acute = pathway(order, record, policy) == "acute"
        long_supply = acute and order.days_supply and order.days_supply > cap
        days = cap if long_supply and not hospice(record) else None
        product = policy.diazepam_product(rule["geriatric_suggested_code"])
        resource = rewrite_order(
            order, days=days, mg_per_dose=mg, doses_per_day=times, product=product
        )
        if resource is not None:  # None: an impossible number the rewrite keeps (no offer)
            how = frequency_words(times, order.prn)
            supply = days or order.days_supply
            qty = (resource.get("dispenseRequest") or {}).get("quantity") or {}
            # it changes the dose (and the product): "Change to", not "Keep" (review round 1 L8)
            label = fitted(
                f"Change to diazepam {fmt(mg)} mg {how}",
                f" for {fmt(supply)} days" if supply else "",
                f" ({supplied(qty, order.prn)})" if qty.get("value") else "",
                ", no refills" if days else "",
            )
            options.append(
                Option(
                    kind="update",
                    label=label,
                    description=f"Change the diazepam order to {fmt(mg)} mg {how} "
                    "(the label's starting dose for older adults)",
                    resource=resource,
                    recommended=True,
                    code=rule["geriatric_suggested_code"],
                    product=changed_product(order, rule["geriatric_suggested_code"], policy),
                )
            )
    return [
        new_finding(
            "dose-limit",
            rule["geriatric_indicator"],
            order,
            record,
            variant="geriatric",
            facts=facts,
            audit=audit,
            options=options,
        )
    ]
