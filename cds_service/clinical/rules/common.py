"""What several rules share: the indication, the clinical pathway, and how findings start.

Pure functions of (order, record, policy); cheap enough to call from each rule.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from cds_service.clinical.models import (
    DiazepamOrder,
    Finding,
    Indication,
    MedicationUse,
    Option,
    PatientRecord,
)
from cds_service.clinical.policy import Policy

# indications for which the table offers only the safety cards (R8-R10) [knowledge F.2]
SAFETY_KINDS = frozenset(
    {"seizure", "tetanus", "alcohol_withdrawal", "benzodiazepine_withdrawal", "procedural"}
)
ANXIETY_KINDS = frozenset({"gad", "rem_sbd", "anxiety"})


def kinds_of(groups: frozenset[str], policy: Policy) -> list[str]:
    ind = policy["indication"]
    kinds = set()
    for group in groups:
        if group in ind["spasticity_groups"]:
            kinds.add("spasticity")
        elif group in ind["acute_spasm_groups"]:
            kinds.add("acute_spasm")
        else:
            kinds.add(group)
    order = [*ind["condition_priority"], "procedural"]
    return [k for k in order if k in kinds]


def indication(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> Indication:
    """F.1: the order's reason, then the route, then active conditions, else unknown."""
    has_reason = bool(order.reason_codings or order.reason_text or order.reason_references)
    if has_reason:
        groups = set(order.reason_groups)
        for ref in order.reason_references:
            groups |= record.condition_refs.get(ref, frozenset())
        kinds = kinds_of(frozenset(groups), policy)
        if kinds:
            return Indication(kinds[0], "reason", frozenset(groups))
        return Indication(policy["indication"]["unrecognised_reason_as"], "reason")
    if order.route in policy["indication"]["rescue_routes"]:
        return Indication("seizure", "route")
    kinds = kinds_of(frozenset(record.conditions), policy)
    if kinds:
        return Indication(kinds[0], "condition", frozenset(record.conditions))
    return Indication("unknown", "none")


def effective_route(order: DiazepamOrder, policy: Policy) -> str:
    if order.route == "unknown":
        return str(policy["indication"]["unknown_route_as"])
    return order.route


def pathway(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> str:
    """safety (R8-R10, stated) | acute (R6/R12) | spasticity (R7) | anxiety (R11).

    Only a *stated* indication (the order's reason) or the route puts an order on the safety
    pathway (F.0-4). A seizure or withdrawal code found only on the problem list does not:
    the oral order gets the R6 defaults (R12), every safety check runs, the alternatives are
    labelled "If for muscle spasm" with none recommended, and the indication card asks to
    document the inferred indication."""
    found = indication(order, record, policy)
    kind = found.kind
    route = effective_route(order, policy)
    if kind in SAFETY_KINDS:
        # inferred from the problem list: R12 applies the R6 defaults to the oral order
        if found.source in ("reason", "route") or route != "oral":
            return "safety"
        return "acute"
    if kind == "spasticity":
        return "spasticity"
    if kind == "acute_spasm":
        return "acute"
    if route != "oral":
        return "safety"  # R8: non-oral route with no musculoskeletal reason
    if kind in ANXIETY_KINDS:
        return "anxiety"
    return "acute"  # unknown + oral: R12 applies the R6 defaults


def unsure_indication(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> bool:
    """R12: no indication at all, or one inferred off the acute-spasm path: alternatives are
    offered "if for muscle spasm" and none is recommended."""
    found = indication(order, record, policy)
    return found.source == "none" or (found.source == "condition" and found.kind in SAFETY_KINDS)


def stated_safety(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> bool:
    """F.0-4: the only pathway on which safety checks may stay quiet."""
    return pathway(order, record, policy) == "safety"


def emergency_order(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> bool:
    """F.0-3: seizure or emergency therapy, which is never offered for removal: a non-oral
    product, or a stated reason of seizure, status epilepticus, tetanus or withdrawal."""
    if effective_route(order, policy) != "oral":
        return True
    found = indication(order, record, policy)
    return found.source == "reason" and found.kind in SAFETY_KINDS


def chronic_diazepam(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> MedicationUse | None:
    """F.1 chronic_benzo: a running diazepam prescription started at least
    ``windows.taper_min_days`` before this order (the earliest start of several), i.e. this
    order renews or continues long-term use. Another benzodiazepine alone is R16, not R13."""
    since = order.order_date - timedelta(days=int(policy["windows"]["taper_min_days"]))
    running = [
        med
        for med in record.medications
        if "diazepam" in med.ingredients and med.start is not None and med.start <= since
    ]
    return min(running, key=lambda med: med.start or date.max) if running else None


def running_dose(record: PatientRecord) -> MedicationUse | None:
    """The running diazepam prescription a taper is measured from (review round 6 M-3): the
    one whose daily dose is known, or several with the same daily dose (a renewal beside
    the old one); None when none is known or they differ (which one is taken is unclear)."""
    known = [
        med
        for med in record.medications
        if "diazepam" in med.ingredients and med.mg_per_dose and med.doses_per_day
    ]
    doses = {round((m.mg_per_dose or 0) * (m.doses_per_day or 0), 3) for m in known}
    return known[0] if len(doses) == 1 else None


def age_band(record: PatientRecord, policy: Policy) -> str:
    """infant (< 6 months) | child (< 18 years) | adult | older | unknown (F.1 age_band)."""
    if record.age_years is None:
        return "unknown"
    if record.age_months is not None and record.age_months < policy["age"]["min_age_months"]:
        return "infant"
    if record.age_years < policy["age"]["adult_age"]:
        return "child"
    return "older" if policy.is_older(record.age_years) else "adult"


def drug_classes(record: PatientRecord) -> dict[str, set[str]]:
    """class -> ingredients among active medications AND the request's other drafts (F.1
    "interacting drugs": every drug-based input reads both)."""
    return active_classes(record, include_drafts=True)


def is_older(record: PatientRecord, policy: Policy) -> bool:
    return policy.is_older(record.age_years)


def hospice(record: PatientRecord) -> bool:
    return record.has("hospice")


def active_classes(record: PatientRecord, include_drafts: bool) -> dict[str, set[str]]:
    """class → ingredient names among active (and optionally draft) medications."""
    out: dict[str, set[str]] = {}
    meds = list(record.medications) + (list(record.draft_medications) if include_drafts else [])
    for med in meds:
        for ingredient in med.ingredients:
            for cls in med.classes:
                out.setdefault(cls, set()).add(ingredient)
    return out


# a "keep" label whose dose is above the label's older-adult start says so in plain words
# (second review N9: "above older-adult start" read as jargon); short enough for 80 characters
ABOVE_START_LABEL = "above usual start from age 65"


def in_sentence(title: str) -> str:
    """A condition title after other words of a sentence: 'Myasthenia gravis' ->
    'myasthenia gravis' ("contraindicated in myasthenia gravis"), but an initialism keeps its
    capitals ('COPD', 'AV block', 'REM sleep behaviour disorder')."""
    return title if title[:2].isupper() else title[:1].lower() + title[1:]


def fmt(value: float | None) -> str:
    """Numbers as a clinician writes them: 5, 2.5, 7."""
    if value is None:
        return "?"
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def times_a_day(doses: float | None) -> str:
    """'once a day', 'twice a day', '3 times a day' (ISMP: no 'x3/day', no Latin)."""
    if doses == 1:
        return "once a day"
    if doses == 2:
        return "twice a day"
    return f"{fmt(doses)} times a day"


def new_finding(
    topic: str, indicator: str, order: DiazepamOrder, record: PatientRecord, **kw: Any
) -> Finding:
    audit = {"order_id": order.ref, "rule": topic}
    if order.code:
        audit["codes"] = [order.code]
    if record.age_years is not None:
        audit["age"] = record.age_years
    audit.update(kw.pop("audit", {}))
    return Finding(topic=topic, indicator=indicator, order_ref=order.ref, audit=audit, **kw)


def amount(value: float, unit: str | None) -> str:
    """'21 tablets', '1 tablet', '70 mL'."""
    unit = unit or "units"
    if unit in ("tablet", "capsule", "film", "spray", "suppository") and value != 1:
        unit += "s"
    return f"{fmt(value)} {unit}"


def supplied(quantity: dict[str, Any] | None, as_needed: bool) -> str | None:
    """'21 tablets'; for an as-needed order the most its sig allows, 'up to 21 tablets'
    (review round 2 N13: a fixed count beside 'as needed' reads as a schedule); None when
    the order has no quantity."""
    if not quantity or not quantity.get("value"):
        return None
    return ("up to " if as_needed else "") + amount(quantity["value"], quantity.get("unit"))


def cancel_pended(order: DiazepamOrder) -> Option:
    """The recommended cancel of the pended diazepam order, offered where cancelling is the
    decision: an absolute contraindication (review round 1 M2) or an opioid in a high-risk
    patient (M1). The caller checks F.0-1 and F.0-3 first; ``compose._one_cancel`` keeps one
    cancel per decision card when the alternatives offer their drug-free one too."""
    return Option(
        kind="delete",
        label="Cancel the pended diazepam order",
        description=f"Remove the pended diazepam order {order.ref}",
        recommended=True,
    )
