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
    age_band,
    chronic_diazepam,
    emergency_order,
    fmt,
    hospice,
    indication,
    is_older,
    new_finding,
    pathway,
    supplied,
    unsure_indication,
)
from cds_service.clinical.suggestions import (
    ADD_SUFFIX,
    LABEL_MAX,
    alternative_request,
    order_label,
    regimen_labels,
    regimen_lines,
    typed_order,
)


@dataclass
class Assessment:
    drug: str
    excluded: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)
    cautions: list[str] = field(default_factory=list)
    # cautions in the drug's own label words: they travel with the option that offers it
    label_notes: list[str] = field(default_factory=list)


def _lower(title: str) -> str:
    """A condition title inside a sentence: 'Heart failure' -> 'heart failure', but an
    initialism keeps its capitals ('AV block', 'COPD')."""
    return title if title[:2].isupper() else title[:1].lower() + title[1:]


def _has_any(record: PatientRecord, groups: list[str]) -> list[str]:
    return [g for g in groups if record.has(g)]


def _class_drugs(record: PatientRecord, cls: str, include_stopped: bool = False) -> list[str]:
    """Ingredients of a class among active medications, the request's other pended orders
    (F.0-2: an exclusion from any source in the request) and, if asked, recent stops."""
    meds = [*record.medications, *record.draft_medications]
    if include_stopped:
        meds += record.recently_stopped
    return sorted({i for m in meds if cls in m.classes for i in m.ingredients})


def _current_relaxants(record: PatientRecord) -> list[str]:
    """R19: skeletal muscle relaxants the patient already takes or has pended."""
    meds = [*record.medications, *record.draft_medications]
    return sorted({i for m in meds if "smr" in m.classes for i in m.ingredients if i != "diazepam"})


def _taking(record: PatientRecord, drug: str) -> bool:
    """R19: the patient already takes (or has pended) this muscle relaxant."""
    return any(drug in m.ingredients for m in [*record.medications, *record.draft_medications])


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
    if alt["duplicate_excluded"] and _taking(record, drug):
        a.excluded.append(f"already taking {drug}: optimise its dose before adding diazepam")
    # hard exclusions
    if ex.get("maoi"):
        maois = _class_drugs(record, "maoi", include_stopped=True)
        if maois:
            days = policy["windows"]["maoi_days"]
            a.excluded.append(f"MAOI {', '.join(maois)} within {days} days")
    for group in _has_any(record, ex.get("groups", [])):
        a.excluded.append(_lower(titles.get(group, group)))
    for group, window_key in ex.get("recent_groups", {}).items():
        if record.has(group):
            when = record.conditions[group]
            days = int(policy["windows"][window_key])
            if when is None or when >= order.order_date - timedelta(days=days):
                a.excluded.append(f"{_lower(titles.get(group, group))} within {days} days")
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
            a.excluded.append(f"on {', '.join(drugs)}, a {policy.class_titles.get(cls, cls)}")
    egfr = record.egfr.value if record.egfr is not None else None
    renal = policy["renal"]
    beers_renal = ex.get("egfr_age65") and older and egfr is not None
    if beers_renal and egfr < renal["baclofen_avoid_egfr_age65"]:
        a.excluded.append(f"eGFR {fmt(egfr)}, below {renal['baclofen_avoid_egfr_age65']}")
    low_any = egfr is not None and egfr < renal["baclofen_avoid_egfr_any_age"]
    if ex.get("egfr_any_age") and low_any and not any("eGFR" in e for e in a.excluded):
        a.excluded.append(f"eGFR {fmt(egfr)}, below {renal['baclofen_avoid_egfr_any_age']}")
    young = record.age_years is not None and not older
    if ex.get("acute_spasm_young") and path == "acute" and young:
        a.excluded.append("not indicated for acute musculoskeletal spasm under 65")
    if ex.get("age65") and older:
        a.excluded.append(f"AGS Beers 2023: avoid at age {record.age_years}")
    # soft findings, each with its risk in a few words where the policy has one (review
    # round 4: "on fluvoxamine" beside a drug did not say why it mattered)
    risks = soft.get("risks", {})
    notes: list[tuple[str, str]] = []
    for cls, effect in soft.get("classes", {}).items():
        drugs = _class_drugs(record, cls)
        if drugs:
            risk = risks.get(cls, "on {drugs}")
            notes.append((effect, risk.format(drugs=", ".join(drugs))))
    for group, effect in soft.get("groups", {}).items():
        if record.has(group):
            own = soft.get("texts", {}).get(group)
            title = _lower(titles.get(group, group))
            notes.append((effect, own or risks.get(group, "{title}").format(title=title)))
            if own:
                a.label_notes.append(f"**{drug.capitalize()}:** {own}.")
    if soft.get("age65") and older:
        text = soft.get("age65_text") or "age {age}: lower individual doses"
        notes.append((soft["age65"], text.format(age=record.age_years)))
    kidney = _kidney(record, policy)
    if soft.get("crcl_low") and kidney is not None and kidney < renal["tizanidine_caution_crcl"]:
        risk = risks.get("crcl_low", "CrCl about {crcl} mL/min")
        notes.append((soft["crcl_low"], risk.format(crcl=fmt(kidney))))
    if soft.get("egfr_unknown_age65") and egfr is None and (older or record.age_years is None):
        notes.append((soft["egfr_unknown_age65"], "renal function unknown"))
    for effect, text in notes:
        (a.demoted if effect == "demote" else a.cautions).append(text)
    return a


def _monitored(sig: str | None, regimen: dict[str, Any]) -> str | None:
    """The order as typed (Epic) with the monitoring its plan asks for, which the order's
    note holds but Epic does not apply (review round 4: tizanidine liver tests)."""
    if not sig or not regimen.get("monitor"):
        return sig
    return f"{sig.rstrip('.')}; {regimen['monitor']}."


def general_cautions(record: PatientRecord, policy: Policy) -> str | None:
    """F.2a: muscle relaxants sedate and weaken too. With myasthenia gravis, sleep apnea,
    COPD or an opioid, every alternative offered carries this line (policy
    ``alternatives.cautions.all``), on whichever card offers it."""
    rule = policy["alternatives"]["cautions"].get("all", {})
    texts = rule.get("texts", {})
    titles = policy.group_titles
    items = []
    for group in _has_any(record, rule.get("groups", [])):
        items.append(texts.get(group) or f"{titles.get(group, group).lower()}: added sedation")
    for cls in rule.get("classes", []):
        drugs = _class_drugs(record, cls)
        if drugs:
            text = texts.get(cls) or "with {drugs}: added sedation"
            items.append(text.format(drugs=", ".join(drugs)))
    if not items:
        return None
    return f"**{rule.get('lead', 'Caution with any muscle relaxant')}:** " + "; ".join(items) + "."


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


def _forms(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def drug_free_instead(record: PatientRecord, policy: Policy) -> list[str]:
    """What a patient gets instead of diazepam when it is cancelled, fullest first (N2): a
    child, non-drug care; liver disease, acetaminophen at most 2 g a day; 65 and older,
    non-drug care and acetaminophen first (F.3 'Always shown'); otherwise an NSAID only when
    no F.3 NSAID caution holds (ACP 2017: non-drug care, then an NSAID)."""
    words = policy["alternatives"]["cancel"]["instead"]
    if age_band(record, policy) == "child":
        return _forms(words["child"])
    if _liver(record, policy):
        return _forms(words["liver"])
    if record.age_years is None or is_older(record, policy):
        # an unknown age is ranked as an older adult (N3): the label says what is safe at 65+
        return _forms(words["older"])
    if _nsaid_reasons(record, policy):
        return _forms(words["no_nsaid"])
    return _forms(words["nsaid"])


def cancel_option(
    order: DiazepamOrder, record: PatientRecord, policy: Policy, scenario: str | None
) -> Option | None:
    """N2: the drug-free choice on the decision card of an acute-spasm (or unknown
    indication) oral order: cancel it, the label saying what the patient gets instead.
    Never for a long-term user (F.0-1: taper) nor seizure or emergency therapy (F.0-3).
    N3 (lead decision): at 65 and older (``acute_old``, which an unknown age is ranked as)
    with an acute-spasm or unknown indication, it is the recommended choice; an indication
    inferred off the acute-spasm path (R12), and hospice (R20: comfort goals first; Beers
    scope), are offered it, never recommended."""
    rule = policy["alternatives"]["cancel"]
    if not rule["offer"] or pathway(order, record, policy) != "acute":
        return None
    if emergency_order(order, record, policy) or chronic_diazepam(order, record, policy):
        return None
    unsure = unsure_indication(order, record, policy)
    kind = indication(order, record, policy).kind
    template = rule["label_unsure"] if unsure else rule["label"]
    forms = drug_free_instead(record, policy)
    instead = next(
        (f for f in forms if len(template.format(instead=f)) <= LABEL_MAX), forms[-1]
    )
    return Option(
        kind="delete",
        label=template.format(instead=instead),
        description=f"Cancel the pended diazepam order {order.ref}: {instead}",
        recommended=(
            (bool(rule["recommend_age65"]) and scenario == "acute_old")
            # no relaxant is recommended in pregnancy and diazepam carries neonatal risks
            # (R14): the drug-free choice is, rather than "keep diazepam" (round 4 review)
            or (bool(rule["recommend_in_pregnancy"]) and record.has("pregnancy"))
        )
        and kind in rule["recommend_kinds"]
        and not (hospice(record) and not rule["recommend_in_hospice"]),
        instead=instead,
    )


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
    if chronic_diazepam(order, record, policy) is not None:
        return []  # F.0-1: no replacement for a long-term user; the taper card leads (R13)
    band = age_band(record, policy)
    if band == "infant":
        return []  # R18: the contraindication card (under 6 months) is the whole answer
    if band == "child" and alt["child_excluded"]:
        cancel = cancel_option(order, record, policy, "child")
        return [
            new_finding(
                "no-suitable-alternative",
                alt["no_suitable_indicator"],
                order,
                record,
                variant="child",
                facts={"lead": _lead(record) or "This patient"},
                audit={"pathway": path, "scenario": "child"},
                options=[cancel] if cancel else [],
            )
        ]
    scenario = _scenario(record, policy, path)
    assessed = {d: assess(d, order, record, policy, path) for d in alt["ranking"][scenario]}
    last = set(alt["last_resort"].get(scenario, []))
    kept = [d for d, a in assessed.items() if not a.excluded and d not in last]
    current = _current_relaxants(record)
    if not kept and not current:
        # a Beers-avoid last resort only when no relaxant is taken already (second review
        # case 28: cyclobenzaprine added to tizanidine at 70 is neither first nor last resort)
        kept = [d for d, a in assessed.items() if not a.excluded and d in last]
    kept.sort(key=lambda d: bool(assessed[d].demoted))  # stable: rank order within each tier
    excluded = [f"{d}: {'; '.join(a.excluded)}" for d, a in assessed.items() if a.excluded]
    shown = [  # on the alternatives card, "Already on" says it for a drug taken and nothing else
        f"{d} ({'; '.join(a.excluded)})"
        for d, a in assessed.items()
        if a.excluded
        and not (d in current and len(a.excluded) == 1 and a.excluded[0].startswith("already"))
    ]
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
    analgesic = nsaid_text(record, policy)
    cancel = cancel_option(order, record, policy, scenario)
    if cancel is not None:
        audit["cancel_recommended"] = cancel.recommended
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
                    "analgesic": analgesic,
                },
                audit=audit,
                unknowns=unknowns,
                options=[cancel] if cancel else [],
            )
        ]
    supply = alt["supply_days_spasticity"] if path == "spasticity" else alt["supply_days_acute"]
    course = order.days_supply
    if path == "acute" and course is not None and 1 <= course < supply:
        # a replacement never runs longer than the prescriber's own shorter course (review
        # round 1 L7): a 5-day order becomes a 5-day replacement, not 7
        supply = int(course)
    options = []
    lines: list[str] = []
    lines_typed: list[str] = []  # the same where an added order is typed out (Epic)
    # R12: with no indication at all nothing is recommended, and each label says what for
    no_reason = unsure_indication(order, record, policy)
    prefix = "If for muscle spasm: " if no_reason else ""
    removable = not emergency_order(order, record, policy)
    caution = general_cautions(record, policy)
    plan_notes: list[str] = []
    cautioned: list[str] = []  # per drug, for the sentence this card becomes when folded
    cautioned_typed: list[str] = []
    older = is_older(record, policy)
    pregnant = record.has("pregnancy")
    for rank, drug in enumerate(kept):
        regimen = alt["regimens"][scenario][drug]
        card_plan = regimen.get("plan")  # the plan line of the card: one choice, short
        older_plan = regimen.get("plan_older") if card_plan and older else None
        if older_plan:
            # N12 (second review): older-adult words never reach a younger patient. The
            # order's note holds all of it; the card says them beside the drug
            regimen = {**regimen, "plan": f"{regimen['plan']}; {older_plan}"}
        product = policy.products[regimen["code"]]
        resource = alternative_request(order, regimen, product, supply)
        qty = resource["dispenseRequest"].get("quantity")
        # an as-needed course dispenses the most its sig allows: "up to 21 tablets", never a
        # fixed count that reads as a dose schedule (review round 2 N13)
        as_needed = any(line.get("prn") for line in regimen_lines(regimen, supply))
        qty_text = supplied(qty, as_needed)
        off_label = path == "acute" and drug in alt["off_label_for_acute"]
        cores = regimen_labels(regimen, supply)
        shared = {"prefix": prefix, "quantity": qty_text, "off_label": off_label}
        if removable:  # F.0-3: a non-oral (rescue, injection) order is never replaced
            sigs = "; ".join(d["text"] for d in resource["dosageInstruction"])
            label = order_label("Replace with", drug, cores, verbless=True, **shared)
            # Epic: "off-label for acute spasm" next to the drug where it fits (N13, F.3)
            add_label = order_label(
                "Add",
                drug,
                cores,
                suffix=ADD_SUFFIX,
                off_words=tuple(alt["off_label_words"]),
                **shared,
            )
            # what the label had no room for travels with the option to whichever card
            # offers it: the off-label status (F.3) and the cautions (F.2a)
            notes = ([caution] if caution else []) + assessed[drug].label_notes
            if off_label and not ("off-label" in label and "off-label" in add_label):
                notes.append(alt["off_label_note"].format(drug=drug))
            # the whole order in words where the label cannot hold it (review round 1 M7),
            # for the first choice (second review N5: the others' orders carry theirs, and in
            # Epic their typed orders, N4)
            spelled = None
            if regimen.get("card_text"):
                spelled = (
                    f"**{drug.capitalize()}:** "
                    + regimen["card_text"].format(days=fmt(supply), qty=qty_text or "?")
                    + "."
                )
                if rank == 0:
                    notes.append(spelled)
                    plan_notes.append(spelled)
            # the titration plan is part of the order, like its label: it travels with the
            # option (a paragraph after the card text), not in the card's own words
            if regimen.get("plan") and rank == 0:
                # the first choice's titration in words (N12); the others' travel in their
                # orders' notes
                plan_note = f"**{drug.capitalize()}:** {card_plan}."
                notes.append(plan_note)
                plan_notes.append(plan_note)
            options.append(
                Option(
                    kind="replace",
                    label=label,
                    add_label=add_label,
                    description=f"Order {product.display}: {sigs}",
                    resource=resource,
                    # R19: already on a muscle relaxant, a second one is never the default
                    # pick; N3: at 65 and older the drug-free cancel is, no muscle relaxant
                    recommended=rank == 0
                    and not no_reason
                    and (not current or alt["recommend_when_on_relaxant"])
                    and not (cancel is not None and scenario == "acute_old")
                    # no source supports any of them in pregnancy (review round 4 p09)
                    and not (pregnant and not alt["recommend_in_pregnancy"]),
                    code=product.code,
                    drug=product.ingredient,
                    notes=notes,
                    # where a created order's details are not applied (Epic), the order as
                    # typed (N4); a regimen's own card_text already says all of it
                    # (the first choice's is a line of the card already; the others' is
                    # their typed line, the shortest complete form)
                    sig=_monitored(
                        (None if rank == 0 else spelled)
                        if spelled
                        else typed_order(resource, product, drug, qty_text),
                        regimen if rank else {},
                    ),
                )
            )
        # the card lists the drug with what the prescriber must know about it here; the
        # regimen is in the suggestion's label, so it is written out only when there is no
        # suggestion to carry it (F.0-3: a rescue or injection order is never replaced)
        # "renal function unknown" is said once, in the card's "Not known" line
        notes = [t for t in assessed[drug].demoted if "unknown" not in t] + assessed[drug].cautions
        if older_plan and removable and rank == 0:  # beside its plan line (F.2a, N12)
            notes.append(older_plan)
        # the first choice's plan line says what to monitor; a later choice's plan is only in
        # its order's note, which Epic does not apply: said beside the drug, and in Epic in
        # its typed order line instead (review round 4: tizanidine liver tests)
        monitor = [regimen["monitor"]] if regimen.get("monitor") and removable and rank else []
        labelled = assessed[drug].label_notes
        own = [n for n in notes if f"**{drug.capitalize()}:** {n}." not in labelled]
        course = cores[0].lstrip(", ")
        amount_text = f" ({qty_text})" if qty_text else ""
        regimen_text = "" if removable else f" {course}{amount_text}"
        plan = f": {regimen['plan']}" if regimen.get("plan") and not removable else ""
        for said, extra in ((lines, monitor), (lines_typed, [])):
            inside = (["off-label"] if off_label else []) + notes + extra
            note = f" ({'; '.join(inside)})" if inside else ""
            said.append(f"**{drug}**{regimen_text}{note}{plan}")
        for said, extra in ((cautioned, monitor), (cautioned_typed, [])):
            if own + extra:  # a caution in the drug's own label words travels with its option
                said.append(f"{drug.capitalize()}: {'; '.join(own + extra)}.")
    after = []
    if current:  # the same for every drug listed: said once
        after.append(
            f"Already on {', '.join(current)}: a second muscle relaxant adds sedation; "
            "optimise the current one first."
        )
    if shown:
        after.append("Not offered: " + "; ".join(shown) + ".")
    top = kept[0]
    top_regimen = alt["regimens"][scenario][top]
    audit["offered"] = [o.code for o in options]
    if cancel is not None:
        options.append(cancel)  # after the relaxants: F.3's order among them is kept
    audit["recommended"] = "cancel" if cancel is not None and cancel.recommended else top
    indicator = alt["indicator"]
    # R20 and F.0-7: AGS Beers excludes hospice and end-of-life care, so there the card keeps
    # the plain level and cites no Beers source (review round 3, own-patient review p19)
    in_hospice = hospice(record)
    if path == "acute" and is_older(record, policy) and not in_hospice:
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
            else ("older" if scenario == "acute_old" and not in_hospice else "default"),
            facts={
                "lead": f"{lead}: " if lead else "",
                "top": top,
                "top_mg": fmt(regimen_lines(top_regimen)[0]["mg"]),
                "days": fmt(supply),
                # ranked, in one sentence: the regimens are in the choices' labels
                "options_line": ", then ".join(lines),
                # folded into the card that offers them, the list is that card's choices:
                # only each drug's cautions remain to be said
                "cautions_line": "".join(f" {c}" for c in cautioned),
                # nothing excluded: no "Not offered" at all (F.2a: no "- none"); a drug
                # excluded only because the patient takes it is the "Already on" sentence
                "after_list": "".join(f" {a}" for a in after),
                "analgesic": analgesic,
                "for_what": "for acute muscle spasm"
                if indication(order, record, policy).kind == "acute_spasm"
                else "(no indication recorded)",
            },
            typed_facts={
                "options_line": ", then ".join(lines_typed),
                "cautions_line": "".join(f" {c}" for c in cautioned_typed),
            },
            audit=audit,
            options=options,
            unknowns=unknowns,
            # the first choice's order in words second (after the card's opening), then
            # the caution for any relaxant (second review N5)
            notes=plan_notes + ([caution] if caution else []),
        )
    ]


def _acetaminophen_taken(record: PatientRecord) -> list[str]:
    """Active products that already hold acetaminophen, by name ('hydrocodone/acetaminophen'):
    the ingredient catalogue does not classify it, the product name says it."""
    out = []
    for med in record.medications:
        if med.display and "acetaminophen" in med.display.lower():
            others = sorted(i for i in med.ingredients if i != "acetaminophen")
            out.append("/".join([*others, "acetaminophen"]))
    return sorted(set(out))


def nsaid_text(record: PatientRecord, policy: Policy) -> str:
    """F.3 NSAID rule, with acetaminophen already taken said (review round 1 M1): advice to
    take acetaminophen to a patient on hydrocodone/acetaminophen must count what is taken."""
    text = _nsaid_text(record, policy)
    taken = _acetaminophen_taken(record)
    if taken:
        names = ", ".join(taken)
        text += f" Acetaminophen is already taken in {names}: count the total daily dose."
    return text


def _nsaid_reasons(record: PatientRecord, policy: Policy) -> list[str]:
    """F.3 NSAID rule: each caution that holds (kidney, heart failure, pregnancy, liver,
    anticoagulant or antiplatelet, GI bleed or ulcer without a PPI); empty when none does."""
    rule = policy["alternatives"]["nsaid"]
    titles = policy.group_titles
    reasons = []
    # named as measured, in the summary's words ("eGFR 28"): shorter than "kidney function
    # about 28 mL/min", so a drug's caution has room beside it (review round 4)
    if record.crcl is not None and record.crcl.value < rule["egfr_below"]:
        reasons.append(f"CrCl about {fmt(record.crcl.value)} mL/min")
    elif record.crcl is None and record.egfr is not None and record.egfr.value < rule["egfr_below"]:
        reasons.append(f"eGFR {fmt(record.egfr.value)}")
    reasons += [titles.get(g, g).lower() for g in rule["groups"] if record.has(g)]
    for cls in rule["classes"]:
        drugs = _class_drugs(record, cls)
        if drugs:
            reasons.append(f"on {', '.join(drugs)}")
    gi = [titles.get(g, g).lower() for g in rule["gi_groups"] if record.has(g)]
    protected = any(_class_drugs(record, cls) for cls in rule["gi_protect_classes"])
    if gi and not protected:
        reasons.append(f"{' and '.join(gi)} without a proton-pump inhibitor")
    return reasons


def _liver(record: PatientRecord, policy: Policy) -> bool:
    hepatic = policy["hepatic"]
    return any(record.has(g) for g in [*hepatic["severe_groups"], *hepatic["impaired_groups"]])


def _nsaid_text(record: PatientRecord, policy: Policy) -> str:
    """F.3 NSAID rule: name an NSAID only when no NSAID caution holds; otherwise say which
    holds. Acetaminophen is mentioned on its own, not attributed to the ACP guideline."""
    rule = policy["alternatives"]["nsaid"]
    reasons = _nsaid_reasons(record, policy)
    if reasons:
        # the reasons, not the citations: the card links AGS Beers 2023, the NSAID labels
        # and, with a pregnancy, the FDA 2020 warning (F.0-7; second review N5)
        liver = _liver(record, policy)
        acetaminophen = rule["acetaminophen_liver_text"] if liver else "For pain: acetaminophen."
        return acetaminophen[:-1] + "; avoid NSAIDs (" + "; ".join(reasons) + ")."
    if is_older(record, policy):
        return "For pain: acetaminophen or a topical NSAID."
    return "For pain: an NSAID or acetaminophen."
