"""R6 duration: short-term use for acute spasm (ideal 7, maximum 14 days) [D]."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    ABOVE_START_LABEL,
    chronic_diazepam,
    effective_route,
    fmt,
    hospice,
    indication,
    is_older,
    new_finding,
    pathway,
    supplied,
)
from cds_service.clinical.suggestions import dose_words, fitted, rewrite_order

# where the supply was read, in words a prescriber uses (F.2a: no FHIR field names)
_SOURCE_WORDS = {
    "expectedSupplyDuration": "the days supply",
    "quantity": "the quantity and the dose",
    "bounds": "the dosing period",
}


def duration_limit(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Finding]:
    rule = policy["duration"]
    if pathway(order, record, policy) != "acute":
        return []
    if chronic_diazepam(order, record, policy) is not None:
        return []  # R13 replaces the cap for a long-term user (F.0-1: never an abrupt stop)
    if effective_route(order, policy) not in rule["routes"] or order.days_supply is None:
        return []
    days = order.days_supply
    if days <= rule["ideal_days"]:
        return []
    older = is_older(record, policy)
    if days > rule["max_days"]:
        indicator = rule["indicator_over_max_age65"] if older else rule["indicator_over_max"]
        variant = "over_max"
    else:
        indicator, variant = rule["indicator_over_ideal"], "over_ideal"
    cap = rule["cap_to_days"]
    in_hospice = hospice(record)
    if in_hospice:
        # R20: comfort goals first: at most info, and no rewrite
        indicator, variant = rule["hospice_indicator"], "hospice"
    may_rewrite = not in_hospice or rule["hospice_rewrite"]
    rewritten = rewrite_order(order, days=cap) if may_rewrite else None
    options = []
    if in_hospice:
        pass
    elif rewritten is None:
        # the order carries an impossible dose or timing: warn about the duration, offer no
        # copy of it to sign (the card says why instead of echoing the number)
        variant += "_no_rewrite"
    else:
        qty = (rewritten.get("dispenseRequest") or {}).get("quantity") or {}
        qty_text = f" ({supplied(qty, order.prn)})" if qty.get("value") else ""
        # the label says the dose it keeps (review round 1 M5)
        dose = dose_words(order)
        options.append(
            Option(
                kind="update",
                label=fitted(f"Keep diazepam{dose} for {fmt(cap)} days", qty_text, ", no refills")
                if dose
                else f"Keep diazepam, {fmt(cap)} days{qty_text}, no refills",
                label_above_start=fitted(
                    f"Keep diazepam{dose} ({ABOVE_START_LABEL}), {fmt(cap)} days",
                    qty_text,
                )
                if dose
                else None,
                description=f"Change the pended diazepam order to a {fmt(cap)}-day supply, "
                "no refills",
                resource=rewritten,
                recommended=True,
            )
        )
    return [
        new_finding(
            "duration-limit",
            indicator,
            order,
            record,
            variant=variant,
            facts={
                "what": "Diazepam",  # several pended orders: the order's own dose (H1)
                "days": fmt(days),
                "cap": fmt(cap),
                "ideal": fmt(rule["ideal_days"]),
                "max": fmt(rule["max_days"]),
                "source": _SOURCE_WORDS.get(order.days_source or "", "the order"),
                "from_source": ""
                if order.days_source == "expectedSupplyDuration"
                else rule["source_note"].format(
                    source=_SOURCE_WORDS.get(order.days_source or "", "the order")
                ),
                "use": "acute muscle spasm use"
                if indication(order, record, policy).kind == "acute_spasm"
                else "use without a recorded indication",
            },
            audit={
                "days_supply": round(days, 2),
                "cap_days": cap,
                "days_source": order.days_source,
                "rewrite_offered": rewritten is not None,
            },
            options=options,
        )
    ]
