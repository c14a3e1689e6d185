"""R6/R7/R11 alternatives: rank and filter baclofen, tizanidine, cyclobenzaprine (and
methocarbamol as listed) for this patient (knowledge F.3), or say that none suits.

Hard exclusions remove a drug; soft findings either demote it below the others or keep its rank
and say why (the policy decides which). Every threshold and list comes from the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    amount,
    fmt,
    indication,
    is_older,
    new_finding,
    pathway,
)
from cds_service.clinical.suggestions import alternative_request


@dataclass
class Assessment:
    drug: str
    excluded: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)
    cautions: list[str] = field(default_factory=list)


def _has_any(record: PatientRecord, groups: list[str]) -> list[str]:
    return [g for g in groups if record.has(g)]


def _class_drugs(record: PatientRecord, cls: str, include_stopped: bool = False) -> list[str]:
    meds = list(record.medications) + (list(record.recently_stopped) if include_stopped else [])
    return sorted({i for m in meds if cls in m.classes for i in m.ingredients})


def _kidney(record: PatientRecord, policy: Policy) -> float | None:
    if record.crcl is not None:
        return record.crcl.value
    if policy["renal"]["tizanidine_crcl_from_egfr"] and record.egfr is not None:
        return record.egfr.value
    return None


def assess(
    drug: str, order: DiazepamOrder, record: PatientRecord, policy: Policy, path: str
) -> Assessment:
    alt = policy["alternatives"]
    ex = alt["exclusions"].get(drug, {})
    soft = alt["cautions"].get(drug, {})
    titles = policy.group_titles
    older = is_older(record, policy)
    a = Assessment(drug)
    if drug in record.allergies:
        a.excluded.append(f"recorded {drug} allergy")
    # hard exclusions
    if ex.get("maoi"):
        maois = _class_drugs(record, "maoi", include_stopped=True)
        if maois:
            days = policy["windows"]["maoi_days"]
            a.excluded.append(f"MAOI ({', '.join(maois)}) within {days} days")
    for group in _has_any(record, ex.get("groups", [])):
        a.excluded.append(titles.get(group, group).lower())
    for group, window_key in ex.get("recent_groups", {}).items():
        if record.has(group):
            when = record.conditions[group]
            days = int(policy["windows"][window_key])
            if when is None or when >= order.order_date - timedelta(days=days):
                a.excluded.append(f"{titles.get(group, group).lower()} within {days} days")
    hepatic = policy["hepatic"]
    severe = _has_any(record, hepatic["severe_groups"])
    impaired = _has_any(record, hepatic["impaired_groups"])
    if ex.get("hepatic") and (
        severe or (impaired and hepatic["cyclobenzaprine_excluded_if"] == "impaired")
    ):
        a.excluded.append("hepatic impairment")
    if ex.get("hepatic_any") and (severe or impaired):
        a.excluded.append("hepatic impairment")
    if ex.get("spasticity") and path == "spasticity":
        a.excluded.append("not effective for spasticity (label)")
    for cls in ex.get("classes", []):
        drugs = _class_drugs(record, cls)
        if drugs:
            a.excluded.append(f"on {', '.join(drugs)} (potent CYP1A2 inhibitor)")
    egfr = record.egfr.value if record.egfr is not None else None
    renal = policy["renal"]
    beers_renal = ex.get("egfr_age65") and older and egfr is not None
    if beers_renal and egfr < renal["baclofen_avoid_egfr_age65"]:
        a.excluded.append(
            f"eGFR {fmt(egfr)} < {renal['baclofen_avoid_egfr_age65']} at age "
            f"{record.age_years} (AGS Beers 2023)"
        )
    low_any = egfr is not None and egfr < renal["baclofen_avoid_egfr_any_age"]
    if ex.get("egfr_any_age") and low_any and not any("eGFR" in e for e in a.excluded):
        a.excluded.append(f"eGFR {fmt(egfr)} < {renal['baclofen_avoid_egfr_any_age']}")
    young = record.age_years is not None and not older
    if ex.get("acute_spasm_young") and path == "acute" and young:
        a.excluded.append("not indicated for acute musculoskeletal spasm under 65")
    if ex.get("age65") and older:
        a.excluded.append(f"AGS Beers 2023: avoid at age {record.age_years}")
    # soft findings
    notes: list[tuple[str, str]] = []
    for cls, effect in soft.get("classes", {}).items():
        drugs = _class_drugs(record, cls)
        if drugs:
            notes.append((effect, f"on {', '.join(drugs)}"))
    for group, effect in soft.get("groups", {}).items():
        if record.has(group):
            notes.append((effect, titles.get(group, group).lower()))
    if soft.get("age65") and older:
        text = soft.get("age65_text") or "age {age}: lower individual doses"
        notes.append((soft["age65"], text.format(age=record.age_years)))
    kidney = _kidney(record, policy)
    if soft.get("crcl_low") and kidney is not None and kidney < renal["tizanidine_caution_crcl"]:
        notes.append((soft["crcl_low"], f"CrCl about {fmt(kidney)} mL/min"))
    if soft.get("egfr_unknown_age65") and egfr is None and (older or record.age_years is None):
        notes.append((soft["egfr_unknown_age65"], "renal function unknown"))
    for effect, text in notes:
        (a.demoted if effect == "demote" else a.cautions).append(text)
    return a


def _scenario(record: PatientRecord, policy: Policy, path: str) -> str:
    if path == "spasticity":
        return "spasticity"
    if record.age_years is None:
        return str(policy["alternatives"]["unknown_age_ranking"])
    return "acute_old" if is_older(record, policy) else "acute_young"


def _lead(record: PatientRecord) -> str:
    parts = []
    if record.age_years is not None:
        parts.append(f"Age {record.age_years}")
    if record.egfr is not None:
        parts.append(f"eGFR {fmt(record.egfr.value)}")
    return ", ".join(parts)


def muscle_relaxant_alternative(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    alt = policy["alternatives"]
    path = pathway(order, record, policy)
    if path == "anxiety":
        if not alt["anxiety_note"]:
            return []
        return [
            new_finding(
                "muscle-relaxant-alternative",
                alt["anxiety_indicator"],
                order,
                record,
                variant="anxiety",
                facts={},
                audit={"pathway": path},
            )
        ]
    if path not in ("acute", "spasticity"):
        return []
    scenario = _scenario(record, policy, path)
    assessed = {d: assess(d, order, record, policy, path) for d in alt["ranking"][scenario]}
    last = set(alt["last_resort"].get(scenario, []))
    kept = [d for d, a in assessed.items() if not a.excluded and d not in last]
    if not kept:
        kept = [d for d, a in assessed.items() if not a.excluded and d in last]
    kept.sort(key=lambda d: bool(assessed[d].demoted))  # stable: rank order within each tier
    excluded = [f"{d}: {'; '.join(a.excluded)}" for d, a in assessed.items() if a.excluded]
    unknowns = []
    if record.age_years is None and path == "acute":
        unknowns.append("age unknown: alternatives ranked as for an older adult")
    for d in kept:
        unknowns += [f"{t}: {d} not ranked first" for t in assessed[d].demoted if "unknown" in t]
    if "medications" in record.unknown:
        unknowns.append("active medications unknown: MAOI and CYP1A2-inhibitor checks not done")
    if "conditions" in record.unknown:
        unknowns.append("conditions unknown: heart, liver and kidney exclusions not checked")
    audit: dict[str, Any] = {
        "pathway": path,
        "scenario": scenario,
        "excluded": sorted(d for d, a in assessed.items() if a.excluded),
    }
    if record.egfr is not None:
        audit["egfr"] = record.egfr.value
    if not kept:
        return [
            new_finding(
                "no-suitable-alternative",
                alt["no_suitable_indicator"],
                order,
                record,
                facts={
                    "lead": _lead(record) or "This patient",
                    "excluded_md": "\n".join(f"- {e}" for e in excluded),
                    "drugs": ", ".join(assessed),
                },
                audit=audit,
                unknowns=unknowns,
            )
        ]
    supply = alt["supply_days_spasticity"] if path == "spasticity" else alt["supply_days_acute"]
    options = []
    lines = []
    for rank, drug in enumerate(kept):
        regimen = alt["regimens"][scenario][drug]
        product = policy.products[regimen["code"]]
        resource = alternative_request(order, regimen, product, supply)
        qty = resource["dispenseRequest"]["quantity"]
        label = f"Replace with {drug}: {regimen['text']} ({amount(qty['value'], qty['unit'])})"
        options.append(
            Option(
                kind="replace",
                label=label,
                description=f"Order {product.display}: {regimen['text']}",
                resource=resource,
                recommended=rank == 0,
                code=product.code,
            )
        )
        notes = assessed[drug].demoted + assessed[drug].cautions
        note = f" (caution: {'; '.join(notes)})" if notes else ""
        lines.append(f"{rank + 1}. **{drug}** {regimen['text']}{note}")
    top = kept[0]
    top_regimen = alt["regimens"][scenario][top]
    audit["offered"] = [o.code for o in options]
    audit["recommended"] = top
    indicator = alt["indicator"]
    if path == "acute" and is_older(record, policy):
        indicator = alt["indicator_age65_acute"]
    lead = _lead(record)
    return [
        new_finding(
            "muscle-relaxant-alternative",
            indicator,
            order,
            record,
            variant=path
            if path == "spasticity"
            else ("older" if scenario == "acute_old" else "default"),
            facts={
                "lead": f"{lead}: " if lead else "",
                "top": top,
                "top_mg": fmt(top_regimen.get("mg") or top_regimen["steps"][0]["mg"]),
                "days": fmt(supply),
                "options_md": "\n".join(lines),
                "excluded_md": "\n".join(f"- {e}" for e in excluded) or "- none",
                "for_what": "for acute muscle spasm"
                if indication(order, record, policy).kind == "acute_spasm"
                else "(no indication recorded)",
            },
            audit=audit,
            options=options,
            unknowns=unknowns,
        )
    ]
