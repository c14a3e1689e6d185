"""What several rules share: the indication, the clinical pathway, and how findings start.

Pure functions of (order, record, policy); cheap enough to call from each rule.
"""

from __future__ import annotations

from typing import Any

from cds_service.clinical.models import DiazepamOrder, Finding, Indication, PatientRecord
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
    """safety (R8-R10) | acute (R6/R12) | spasticity (R7) | anxiety (R11)."""
    kind = indication(order, record, policy).kind
    route = effective_route(order, policy)
    if kind in SAFETY_KINDS:
        return "safety"
    if kind == "spasticity":
        return "spasticity"
    if kind == "acute_spasm":
        return "acute"
    if route != "oral":
        return "safety"  # R8: non-oral route with no musculoskeletal reason
    if kind in ANXIETY_KINDS:
        return "anxiety"
    return "acute"  # unknown + oral: R12 applies the R6 defaults


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


def fmt(value: float | None) -> str:
    """Numbers as a clinician writes them: 5, 2.5, 7."""
    if value is None:
        return "?"
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


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
