"""R13: a long-term diazepam user: never an abrupt stop (F.0-1); offer the first taper step.

The step is an ``update`` of the same order: the daily dose lowered by ``taper.step_pct``
(ASAM 2025: 5-10 % every 2-4 weeks, never more than 25 % in 2 weeks), in whole milligrams per
dose that the 2, 5 and 10 mg tablets can make, for ``taper.step_days`` days. Where the
tablets cannot make a step within the limit, no order is offered and the card names the oral
solution instead.
"""

from __future__ import annotations

import math

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    amount,
    chronic_diazepam,
    effective_route,
    fmt,
    hospice,
    indication,
    new_finding,
    pathway,
)
from cds_service.clinical.suggestions import fitted, frequency_words, rewrite_order

# scored diazepam tablets (halves allowed) and the 1 mg/mL oral solution for the rest
_TABLETS = (("197589", 10.0), ("197591", 5.0), ("197590", 2.0))
_MAX_TABLETS_PER_DOSE = 3


def taper_step(mg_day: float, doses: float, policy: Policy) -> float | None:
    """The new dose per administration (a multiple of 0.5 mg): the daily dose lowered as
    close to ``step_pct`` as possible, by at least ``min_step_pct`` and at most
    ``max_step_pct`` (ASAM 2025). None when no such dose exists."""
    rule = policy["taper"]
    best: tuple[float, float] | None = None
    per_dose = mg_day / doses
    candidate = math.floor(per_dose * 2) / 2
    while candidate >= 0.5:
        cut = 100 * (1 - candidate * doses / mg_day)
        if cut > rule["max_step_pct"] + 1e-9:
            break
        if cut >= rule["min_step_pct"] - 1e-9:
            distance = abs(cut - rule["step_pct"])
            if best is None or distance < best[0]:
                best = (distance, candidate)
        candidate -= 0.5
    return best[1] if best else None


def _product(mg: float, policy: Policy) -> tuple[str, str, float] | None:
    """Whole or half tablets of one strength, else the oral solution (mL measure any dose)."""
    for code, strength in _TABLETS:
        units = mg / strength
        if (units * 2) % 1 == 0 and units <= _MAX_TABLETS_PER_DOSE:
            return code, f"diazepam {fmt(strength)} MG Oral Tablet", strength
    if policy.valuesets is None:
        return None
    solution = policy.valuesets.diazepam_products.get(policy["taper"]["solution_code"])
    if solution is None or not solution.mg_per_ml:
        return None
    return solution.code, solution.display, solution.mg_per_ml


def taper_required(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Finding]:
    rule = policy["taper"]
    if effective_route(order, policy) != "oral":
        return []  # rescue and injection products are not a daily regimen to taper
    running = chronic_diazepam(order, record, policy)
    if running is None or running.start is None:
        return []
    path = pathway(order, record, policy)
    found = indication(order, record, policy)
    legit = (found.source == "reason" and found.kind in rule["legit_kinds"]) or hospice(record)
    if path == "safety" and not legit:
        return []  # stated withdrawal/tetanus treatment: R8-R10
    weeks = (order.order_date - running.start).days // 7
    facts = {
        "since": running.start.isoformat(),
        "weeks": weeks,
        "step": fmt(rule["step_pct"]),
        "max_step": fmt(rule["max_step_pct"]),
        "step_days": fmt(rule["step_days"]),
    }
    audit = {"diazepam_since": running.start.isoformat(), "weeks": weeks, "legit": legit}
    options: list[Option] = []
    variant = "legit" if legit else "default"
    mg_day, doses = order.mg_per_day, order.doses_per_day
    new_mg = taper_step(mg_day, doses, policy) if mg_day and doses else None
    product = _product(new_mg, policy) if new_mg else None
    if new_mg is not None and product is not None and doses:
        resource = rewrite_order(
            order,
            days=rule["step_days"],
            mg_per_dose=new_mg,
            doses_per_day=doses,
            product=product,
            product_unit="tablet" if product[0] in dict(_TABLETS) else "mL",
        )
        if resource is not None:
            cut = round(100 * (1 - new_mg * doses / mg_day), 1)  # type: ignore[operator]
            facts.update(new_mg=fmt(new_mg), times=fmt(doses), cut=fmt(cut))
            audit.update(taper_mg_per_dose=new_mg, taper_cut_pct=cut)
            qty = (resource.get("dispenseRequest") or {}).get("quantity") or {}
            options.append(
                Option(
                    kind="update",
                    label=fitted(
                        f"First taper step: diazepam {fmt(new_mg)} mg "
                        f"{frequency_words(doses, order.prn)}",
                        f" for {fmt(rule['step_days'])} days",
                        f" ({amount(qty['value'], qty.get('unit'))})" if qty.get("value") else "",
                    ),
                    description=f"Lower the daily dose by {fmt(cut)} % for "
                    f"{fmt(rule['step_days'])} days (first taper step)",
                    resource=resource,
                    recommended=not legit,
                    recreate=False,
                )
            )
    if not options:
        variant += "_solution"
    return [
        new_finding(
            "taper-required",
            rule["legit_indicator"] if legit else rule["indicator"],
            order,
            record,
            variant=variant,
            facts=facts,
            audit=audit,
            options=options,
        )
    ]
