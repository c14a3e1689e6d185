"""R13: a long-term diazepam user: never an abrupt stop (F.0-1); offer the first taper step.

The step is an ``update`` of the same order: the daily dose lowered by ``taper.step_pct``
(ASAM 2025: 5-10 % every 2-4 weeks, never more than 25 % in 2 weeks), in doses the 2, 5 and
10 mg tablets can make (whole tablets unless ``taper.tablet_halves``), else the 1 mg/mL oral
solution, for ``taper.step_days`` days. Where that step needs the solution, the smallest step
whole tablets can make within 25 % is offered beside it, not recommended (review round 2 N6),
or the card says none fits.
"""

from __future__ import annotations

import math
from typing import Any

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    chronic_diazepam,
    effective_route,
    fmt,
    hospice,
    indication,
    new_finding,
    pathway,
    running_dose,
    supplied,
    times_a_day,
)
from cds_service.clinical.suggestions import (
    LABEL_MAX,
    changed_product,
    fitted,
    frequency_words,
    rewrite_order,
)


def _tablet_for(mg: float, policy: Policy) -> tuple[str, str, float] | None:
    """The first of the policy's tablets that makes ``mg`` within the per-dose tablet limit,
    whole tablets only unless ``taper.tablet_halves`` (knowledge D.1 lists the 2, 5 and 10
    mg strengths and says nothing about splitting them); None when none does."""
    rule = policy["taper"]
    parts = 2 if rule["tablet_halves"] else 1
    for code in rule["tablet_codes"]:
        product = policy.diazepam_product(code)
        if product is None:
            continue
        units = mg / product[2]
        if (
            abs(units * parts - round(units * parts)) < 1e-9
            and units <= rule["max_tablets_per_dose"]
        ):
            return product
    return None


def tablet_step(mg_day: float, doses: float, policy: Policy) -> float | None:
    """Review round 2 N6: the smallest reduction the tablets can make with the same number of
    doses a day, at least ``min_step_pct`` and at most ``max_step_pct`` (F.0-1: never above
    25 % in one step); None when no tablet dose fits."""
    rule = policy["taper"]
    low, high = rule["min_step_pct"], rule["max_step_pct"]
    per_dose = mg_day / doses
    candidates = []
    for code in rule["tablet_codes"]:
        product = policy.diazepam_product(code)
        if product is None:
            continue
        for count in range(1, int(rule["max_tablets_per_dose"]) + 1):
            mg = product[2] * count
            cut = 100 * (1 - mg * doses / mg_day)
            if mg < per_dose and low - 1e-9 <= cut <= high + 1e-9:
                candidates.append((cut, mg))
    return min(candidates)[1] if candidates else None


def taper_step(mg_day: float, doses: float, policy: Policy) -> float | None:
    """The new dose per administration for the first taper step (R13, ASAM 2025): the daily
    dose lowered by ``min_step_pct`` to ``default_max_step_pct`` (5-10 %), as close to
    ``step_pct`` as possible. Tablet doses (whole or half tablets of one strength) first;
    else a dose the 1 mg/mL oral solution measures (0.1 mL). None when neither can make it."""
    rule = policy["taper"]
    low, high, aim = rule["min_step_pct"], rule["default_max_step_pct"], rule["step_pct"]

    def cut(per_dose: float) -> float:
        return 100 * (1 - per_dose * doses / mg_day)

    per_dose = mg_day / doses
    tablets = [
        v / 2
        for v in range(int(per_dose * 2), 0, -1)
        if _tablet_for(v / 2, policy) is not None and low - 1e-9 <= cut(v / 2) <= high + 1e-9
    ]
    if tablets:
        return min(tablets, key=lambda v: abs(cut(v) - aim))
    # 0.1 mL of the solution: the measures either side of the aim (4.05 mg is 4.0 or 4.1)
    aimed = per_dose * (1 - aim / 100)
    measured = [
        v
        for v in sorted({math.floor(aimed * 10) / 10, math.ceil(aimed * 10) / 10})
        if v > 0 and low - 1e-9 <= cut(v) <= high + 1e-9
    ]
    return min(measured, key=lambda v: abs(cut(v) - aim)) if measured else None


def _product(mg: float, policy: Policy) -> tuple[str, str, float] | None:
    """Whole or half tablets of one strength, else the oral solution (mL measure any dose)."""
    tablet = _tablet_for(mg, policy)
    if tablet is not None or policy.valuesets is None:
        return tablet
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
    notes: list[str] = []
    now = running_dose(record)
    taken = (now.mg_per_dose or 0) * (now.doses_per_day or 0) if now else None
    # review round 7 F6: an as-needed running prescription does not say what is taken
    unsure = now is None and any(
        "diazepam" in m.ingredients and m.as_needed for m in record.medications
    )
    if unsure:
        # a step worked out from the most allowed is no step: the card says how to find the
        # dose taken, and offers none (the percentages would mislead)
        audit["taken_unknown_as_needed"] = True
        return [
            new_finding(
                "taper-required",
                rule["legit_indicator"] if legit else rule["indicator"],
                order,
                record,
                variant="as_needed",
                facts=facts,
                audit=audit,
            )
        ]
    # round 8 F7: with no dose on the running prescription, the summary says the step is
    # worked out from this order
    unrecorded = now is None and any(
        "diazepam" in m.ingredients and m.status == "active" for m in record.medications
    )
    short = bool(order.days_supply and order.days_supply < rule["step_days"] - 1e-9)
    said = "unrecorded_short" if unrecorded and short else "unrecorded" if unrecorded else None
    said = said or ("short" if short else None)
    facts["basis"] = rule["basis_words"][said].format(days=fmt(order.days_supply)) if said else ""
    if taken and mg_day and mg_day < taken - 1e-9:
        # review round 6 M-3: the pended order already lowers what the patient takes
        lower = round(100 * (1 - mg_day / taken), 1)
        facts.update(taken=fmt(taken), lower=fmt(lower))
        audit.update(taken_mg_per_day=taken, pended_cut_pct=lower)
        if lower <= rule["max_step_pct"] + 1e-9:
            # a taper step (at most 25 %): said, no further step offered on top of it
            if lower > rule["default_max_step_pct"] + 1e-9:
                notes.append(rule["step_bigger_note"].format(lower=fmt(lower)))
            # R13: a step lasts 14 days or more; a long-term user whose step runs out after
            # 5 days stops abruptly (review round 8 F2): the step, extended
            extend = extended_step(order, policy)
            short = "step_short"
            if extend is not None:
                facts["days"] = fmt(order.days_supply)
                if legit:  # hospice or a stated long-term use: a supply fix, no taper push
                    extend.recommended, short = False, "step_short_legit"
            return [
                new_finding(
                    "taper-required",
                    (rule["step_indicator"] if legit else rule["indicator"])
                    if extend
                    else rule["step_indicator"],
                    order,
                    record,
                    variant=short if extend else "step",
                    facts=facts,
                    audit=audit,
                    notes=notes,
                    options=[extend] if extend else [],
                )
            ]
        # more than 25 % in one step (F.0-1): the step is offered from the dose taken
        variant, legit = "too_big", False
    if taken and mg_day and mg_day > taken + 1e-9:
        # the order raises the dose: said, and the step below is from the dose taken
        notes.append(rule["above_note"].format(taken=fmt(taken), pended=fmt(mg_day)))
        audit["taken_mg_per_day"] = taken
    if taken and (not mg_day or abs(mg_day - taken) > 1e-9) and now and now.doses_per_day:
        mg_day, doses = taken, now.doses_per_day  # a step lowers what the patient takes
    new_mg = taper_step(mg_day, doses, policy) if mg_day and doses else None
    product = _product(new_mg, policy) if new_mg else None
    if new_mg is not None and product is not None and doses and mg_day:
        liquid = product[0] not in rule["tablet_codes"]
        step = _rewritten_step(order, new_mg, doses, mg_day, product, liquid, policy)
        if step is not None:
            resource, cut, qty, qty_words, changed = step
            facts.update(
                new_mg=fmt(new_mg), times=fmt(doses), how_often=times_a_day(doses), cut=fmt(cut)
            )
            audit.update(taper_mg_per_dose=new_mg, taper_cut_pct=cut)
            # a switch to the oral solution is said in the label and the card (second review:
            # a silent change of form invites dispensing and measuring errors)
            words = {
                "ml": fmt(new_mg / product[2]),
                "strength": f"{fmt(product[2])} mg/mL",
                "mg": fmt(new_mg),
                "how": frequency_words(doses, order.prn),
                "days": fmt(rule["step_days"]),
                "qty": qty_words,
            }
            form = rule["solution_label"].format(**words) if liquid else ""
            solution_line = rule["solution_note"].format(**words) if liquid else None
            if solution_line:
                notes.append(solution_line)
            options.append(
                Option(
                    kind="update",
                    label=fitted(
                        f"First taper step: diazepam {fmt(new_mg)} mg{form} "
                        f"{frequency_words(doses, order.prn)}",
                        f" for {fmt(rule['step_days'])} days",
                        f" ({supplied(qty, order.prn)})" if qty.get("value") else "",
                    ),
                    description=f"Lower the daily dose by {fmt(cut)} % for "
                    f"{fmt(rule['step_days'])} days (first taper step)",
                    resource=resource,
                    edit_text="First taper step: " + _step_words(solution_line, changed)
                    if solution_line
                    else "First taper step: "
                    + _step_words(
                        f"diazepam: {fmt(new_mg)} mg {frequency_words(doses, order.prn)} for "
                        f"{fmt(rule['step_days'])} days ({qty_words}), no refills",
                        changed,
                    ),
                    # round 9: a step from a dose not known to be the one taken is offered,
                    # not pre-selected
                    recommended=not legit and not unrecorded,
                    product=changed,
                )
            )
    too_big = variant == "too_big"
    liquid_step = bool(options) and product is not None and product[0] not in rule["tablet_codes"]
    if mg_day and doses and (liquid_step or not options):
        # N6: the 5-10 % step needs the oral solution; a step the tablets can make, up to
        # 25 %, is offered beside it (not recommended), or the card says none fits
        option = _tablet_option(order, mg_day, doses, legit, policy)
        if option is not None:
            options.append(option)
            tablet_mg = _dose_of(option.resource or {})
            audit["tablet_step_mg_per_dose"] = tablet_mg
            if tablet_mg is not None:
                # the summary names the step offered when the tablets make the only one
                # (review round 6: it printed "first taper step ? % lower")
                facts.setdefault("cut", fmt(round(100 * (1 - tablet_mg * doses / mg_day), 1)))
        else:
            notes.append(
                rule["no_tablet_step_note"].format(
                    mg_day=fmt(mg_day), max_step=fmt(rule["max_step_pct"])
                )
            )
    if not too_big:
        # a pended order shorter than 14 days (with no dose recorded it may itself be a
        # step) may be kept at its dose for 14 days: never run out in days (review rounds
        # 10 #2, 11: a 7-day renewal dismissed with the card was signed for 7 days)
        extend = extended_step(order, policy, known_step=False)
        if extend is not None:
            extend.recommended = False
            options.append(extend)
    if not options:
        variant += "_solution"
    indicator = rule["legit_indicator"] if legit else rule["indicator"]
    if too_big:
        indicator = rule["too_big_indicator"]
    finding_notes = notes
    for option in options[:1]:
        # the step's own lines (the solution's measure, no tablet step): they go where the
        # step goes (compose._one_taper_decision drops them with it)
        option.notes = list(notes)
    return [
        new_finding(
            "taper-required",
            indicator,
            order,
            record,
            variant=variant,
            facts=facts,
            audit=audit,
            options=options,
            notes=finding_notes,
        )
    ]


def extended_step(order: DiazepamOrder, policy: Policy, known_step: bool = True) -> Option | None:
    """A long-term user's pended order shorter than ``taper.step_days`` (a taper step, or
    the order kept of several), rewritten to that many days (same dose and product,
    quantity recomputed, no refills): F.0-1, no supply under 14 days; None when it is long
    enough or cannot be rewritten."""
    days = policy["taper"]["step_days"]
    if not order.days_supply or order.days_supply >= days - 1e-9:
        return None
    resource = rewrite_order(order, days=days)
    qty = ((resource or {}).get("dispenseRequest") or {}).get("quantity") or {}
    amount = supplied(qty, order.prn)
    if resource is None or not amount:
        return None
    if not known_step:  # the dose taken is not known: it may or may not be a step
        return Option(
            kind="update",
            label=fitted(f"Keep this dose, extended to {fmt(days)} days", f" ({amount})"),
            description=f"Keep the pended dose for {fmt(days)} days (F.0-1: no supply under "
            f"{fmt(days)} days for a long-term user)",
            resource=resource,
            edit_text=f"{fmt(days)} days ({amount}), no refills, the same dose",
            extends=True,
        )
    return Option(
        kind="update",
        label=fitted(f"Extend this taper step to {fmt(days)} days", f" ({amount})", ", no refills"),
        description=f"Extend the pended taper step to {fmt(days)} days (R13: a step lasts 2 "
        "to 4 weeks)",
        resource=resource,
        recommended=True,
        edit_text=f"Longer step: {fmt(days)} days ({amount}), no refills",
        extends=True,
    )


def _step_words(line: str, changed: str | None) -> str:
    """A step as typed by hand from '**Diazepam oral solution 1 mg/mL (not the 5 mg/mL
    concentrate):** 4.5 mg = 4.5 mL ...' (or 'diazepam: 4 mg ...'): the product and its
    warning, then the dose; the new product named first when the step orders another
    product than the pended one (its option's ``product``: a new order in Epic, cards.py),
    else the dose alone after 'diazepam'."""
    product, _, rest = line.replace("**", "").split(". No tablet")[0].partition(": ")
    product = product[:1].lower() + product[1:]
    if changed is not None:
        return f"{changed if product == 'diazepam' else product}: {rest}"
    return f"{product} {rest}" if product == "diazepam" else f"{product}: {rest}"


def _dose_of(resource: dict[str, Any]) -> float | None:
    try:
        return float(resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _rewritten_step(
    order: DiazepamOrder,
    mg: float,
    doses: float,
    base_mg_day: float,
    product: tuple[str, str, float],
    liquid: bool,
    policy: Policy,
) -> tuple[dict[str, Any], float, dict[str, Any], str, str | None] | None:
    """The pended order rewritten to ``mg`` a dose of ``product`` for ``taper.step_days``
    days: (resource, % cut of ``base_mg_day`` (what the patient takes), quantity, quantity
    in words, the new product's words when it is another product than the pended one, else
    None: Epic types the step by hand and most EHRs need the product re-selected, review
    round 3). None when the order cannot be rewritten or its amount not worked out."""
    resource = rewrite_order(
        order,
        days=policy["taper"]["step_days"],
        mg_per_dose=mg,
        doses_per_day=doses,
        product=product,
        product_unit="mL" if liquid else "tablet",
    )
    if resource is None or not base_mg_day:
        return None
    cut = round(100 * (1 - mg * doses / base_mg_day), 1)
    qty = (resource.get("dispenseRequest") or {}).get("quantity") or {}
    qty_words = supplied(qty, order.prn)
    if not qty_words:  # F.2a orders ready to sign: a step with no amount is not offered
        return None
    return resource, cut, qty, qty_words, changed_product(order, product[0], policy)


def _tablet_option(
    order: DiazepamOrder, mg_day: float, doses: float, legit: bool, policy: Policy
) -> Option | None:
    """The tablet step (N6): whole tablets of one strength, the same doses a day, for
    ``step_days`` days, never recommended; its label says when it is a bigger step than
    ASAM's usual 5 to 10 % start."""
    rule = policy["taper"]
    mg = tablet_step(mg_day, doses, policy)
    product = _tablet_for(mg, policy) if mg is not None else None
    if mg is None or product is None:
        return None
    step = _rewritten_step(order, mg, doses, mg_day, product, False, policy)
    if step is None:
        return None
    resource, cut, _, qty_words, changed = step
    count = round(mg / product[2])
    tablets = f"{count} tablet{'s' if count != 1 else ''}"
    if changed is None:  # a product change names the strength before the dose
        tablets += f" of {fmt(product[2])} mg"
    bigger = cut > rule["default_max_step_pct"] + 1e-9
    how = frequency_words(doses, order.prn)
    words = {
        "cut": fmt(cut),
        "low": fmt(rule["min_step_pct"]),
        "high": fmt(rule["default_max_step_pct"]),
    }
    size = rule["tablet_step_bigger"].format(**words) if bigger else f"{fmt(cut)} % lower"
    head = f"Or tablets: diazepam {fmt(mg)} mg {how}"
    forms = [f.format(**words) for f in rule["tablet_step_bigger_label"]] if bigger else [size]
    # the size of the step before the days: the label never hides a bigger step (N6)
    short = next((f for f in forms if len(f"{head} ({f})") <= LABEL_MAX), forms[-1])
    label = fitted(head, f" ({short})", f", {fmt(rule['step_days'])} days")
    return Option(
        kind="update",
        label=label,
        description=f"Lower the daily dose by {fmt(cut)} % for {fmt(rule['step_days'])} days "
        f"with {fmt(product[2])} mg tablets (tablet taper step)",
        resource=resource,
        edit_text="Tablet step: "
        + _step_words(
            f"diazepam: {fmt(mg)} mg ({tablets}) {how} for {fmt(rule['step_days'])} days "
            f"({qty_words}), no refills; {size}",
            changed,
        ),
        recommended=False,
        code=product[0],
        product=changed,
    )
