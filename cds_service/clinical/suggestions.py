"""Suggestions that do the work: alternative orders, the order rewritten to a cap, and how
both are shaped for an EHR profile.

``standard`` follows the spec: a replacement is one suggestion holding ``delete`` + ``create``,
and a card's suggestions are alternatives (``at-most-one``). ``epic`` applies one action per
suggestion and ignores ``update``: each action becomes its own suggestion (``any``), an update
becomes "remove the draft" + "order the rewritten copy", and every label spells the order out
because Epic applies its own defaults to created orders.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cds_service.clinical import dosing
from cds_service.clinical.models import KEEP_ALL, DiazepamOrder, Option
from cds_service.clinical.policy import Policy
from cds_service.clinical.valuesets import RXNORM, AlternativeProduct
from cds_service.jsondata import copy_json

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ORAL_ROUTE = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}
FORM_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
_FORM_CODES = {"tablet": "TAB", "capsule": "CAP"}


def fmt(value: float | None) -> str:
    """Numbers as a clinician writes them: 5, 2.5, 7 (as ``rules.common.fmt``, which this
    module cannot import: the rules import it)."""
    if value is None:
        return "?"
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def whole(value: float) -> float | int:
    """A whole number as an integer (21, not 21.0) in every created or rewritten resource
    (review round 1 L6: ISMP trailing zeros; the JSON says what the label says)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _days(value: float) -> dict[str, Any]:
    return {"value": whole(value), "unit": "days", "system": UCUM, "code": "d"}


def _mg(value: float) -> dict[str, Any]:
    return {"value": whole(value), "unit": "mg", "system": UCUM, "code": "mg"}


def _units(value: float, unit: str | None) -> dict[str, Any]:
    value = whole(value)
    if unit == "mL":
        return {"value": value, "unit": "mL", "system": UCUM, "code": "mL"}
    if unit in _FORM_CODES:
        return {"value": value, "unit": unit, "system": FORM_SYSTEM, "code": _FORM_CODES[unit]}
    return {"value": value, "unit": unit or "unit"}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _clean_concept(concept: Mapping[str, Any]) -> dict[str, Any] | None:
    """A CodeableConcept reduced to codings (system/code/display strings) and text: whatever
    else a draft carried (extensions, wrong types) is not copied into a new order."""
    codings = []
    for coding in concept.get("coding") or []:
        if not isinstance(coding, Mapping) or _text(coding.get("code")) is None:
            continue
        clean = {k: coding[k] for k in ("system", "code", "display") if _text(coding.get(k))}
        codings.append(clean)
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if _text(concept.get("text")):
        out["text"] = concept["text"]
    return out or None


def _clean_reference(ref: Any) -> dict[str, Any] | None:
    """A Reference with a string ``reference`` (display and type kept when strings), else None."""
    if not isinstance(ref, Mapping) or _text(ref.get("reference")) is None:
        return None
    return {k: ref[k] for k in ("reference", "type", "display") if _text(ref.get(k))}


def _reason_codes(order: DiazepamOrder) -> list[Any]:
    raw = order.raw
    reasons = raw.get("reasonCode") or raw.get("reasonCodeableConcept")
    if isinstance(reasons, Mapping):
        reasons = [reasons]
    if not isinstance(reasons, list):
        return []
    cleaned = (_clean_concept(r) for r in reasons if isinstance(r, Mapping))
    return [c for c in cleaned if c]


def _subject(order: DiazepamOrder) -> dict[str, Any] | None:
    return _clean_reference(order.subject)


# F.2a "orders ready to sign": a suggestion's label is read at a glance, the rest is in the card
LABEL_MAX = 80
# an alternative where a replacement is split into actions (Epic) adds; it does not replace
ADD_SUFFIX = "; diazepam stays"
_LINE_KEYS = (
    "mg",
    "frequency",
    "period",
    "period_max",
    "period_unit",
    "prn",
    "max_per_day",
    "when",
    "sequence",
    "days",
    "lead",
)
_UNIT_WORDS = {"h": ("hour", "hours"), "d": ("day", "days"), "wk": ("week", "weeks")}
_WHEN_WORDS = {
    "HS": "at bedtime",
    "WAKE": "on waking",
    "MORN": "in the morning",
    "NOON": "at noon",
    "AFT": "in the afternoon",
    "EVE": "in the evening",
    "NIGHT": "at night",
}


def regimen_lines(
    regimen: Mapping[str, Any], supply_days: float | None = None
) -> list[dict[str, Any]]:
    """The dosage lines of a policy regimen: ``dosages`` as written, else the regimen's own
    dose fields as one line. Lines with the same ``sequence`` run together; a line with
    ``days`` runs that long, in sequence order. A ``rest`` line runs for what is left of a
    course of ``supply_days`` (review round 2 L7: a step-down fits the prescriber's shorter
    course): the fixed steps before it shorten to leave it at least a day, and it is left
    out when nothing is left."""
    if regimen.get("dosages"):
        lines = [dict(line) for line in regimen["dosages"]]
    else:
        lines = [{k: regimen[k] for k in _LINE_KEYS if k in regimen}]
    if supply_days is None or not any(line.get("rest") for line in lines):
        return lines
    left = float(supply_days)
    for line in lines:
        if line.get("rest"):
            continue
        if line.get("days"):
            line["days"] = max(min(float(line["days"]), left - 1), min(left, 1.0))
            left -= line["days"]
    out = []
    for line in lines:
        if line.pop("rest", False):
            if left <= 0:
                continue
            line["days"] = left
        out.append({k: whole(v) if k == "days" else v for k, v in line.items()})
    return out


def course_days(regimen: Mapping[str, Any], supply_days: float) -> float:
    """How long the regimen runs: its steps one after another when they state their days,
    else the supply the policy gives the scenario."""
    steps: dict[int, float] = {}
    for line in regimen_lines(regimen, supply_days):
        if line.get("days"):
            seq = int(line.get("sequence", 1))
            steps[seq] = max(steps.get(seq, 0.0), float(line["days"]))
    if not steps:
        return supply_days
    total = sum(steps.values())
    return int(total) if total == int(total) else total


def line_doses_per_day(line: Mapping[str, Any]) -> float:
    """The most doses a day one line allows: its timing, capped by ``max_per_day``."""
    period_days = line["period"] * dosing.unit_days(line["period_unit"])  # type: ignore[operator]
    per_day = line["frequency"] / period_days
    if line.get("max_per_day"):
        per_day = min(per_day, line["max_per_day"])
    return float(per_day)


def regimen_quantity(
    regimen: Mapping[str, Any], product: AlternativeProduct, supply_days: float
) -> float | None:
    """Tablets the course needs at most: each line's most doses a day for its days."""
    course = course_days(regimen, supply_days)
    units = 0.0
    for line in regimen_lines(regimen, supply_days):
        days = line.get("days") or course
        units += line_doses_per_day(line) * line["mg"] / product.mg_per_unit * days
    return dosing.capped_quantity(units, 1)


def _times(n: float) -> str:
    return {1: "once a day", 2: "twice a day"}.get(n, f"{fmt(n)} times a day")


def frequency_words(per_day: float, prn: bool = False) -> str:
    """'twice a day'; an as-needed order: 'as needed, up to twice a day' (F.2a: "up to" only
    where the order is as needed)."""
    return f"as needed, up to {_times(per_day)}" if prn else _times(per_day)


def dose_words(order: DiazepamOrder) -> str:
    """' 5 mg 3 times a day' (leading space) from the order's own numbers; '' when unknown."""
    if order.mg_per_dose is None or not order.doses_per_day:
        return ""
    return f" {fmt(order.mg_per_dose)} mg {frequency_words(order.doses_per_day, order.prn)}"


def fitted(label: str, *optional: str, limit: int = LABEL_MAX) -> str:
    """``label`` with as many of the ``optional`` tails (in order) as fit ``limit``."""
    for tail in optional:
        if len(label + tail) <= limit:
            label += tail
    return label


def _timing_words(repeat: Mapping[str, Any]) -> str | None:
    """'at bedtime', '3 times a day', 'every 6 to 8 hours' from a Timing.repeat; None when
    it says something else or carries a number that is no count (the draft's own junk)."""
    freq, period = repeat.get("frequency", 1), repeat.get("period")
    top = repeat.get("periodMax")
    if not _positive(freq) or (top is not None and not _positive(top)):
        return None
    when = repeat.get("when")
    if isinstance(when, list) and when:
        if freq != 1 or not all(w in _WHEN_WORDS for w in when):
            return None
        return " and ".join(_WHEN_WORDS[w] for w in when)
    unit = repeat.get("periodUnit") or repeat.get("periodUnits")
    if not _positive(period) or unit not in _UNIT_WORDS:
        return None
    if unit == "d" and period == 1:
        return _times(freq)
    span = fmt(period) + (f" to {fmt(top)}" if top else "")
    words = _UNIT_WORDS[unit][0 if span == "1" else 1]
    every = f"every {words}" if span == "1" else f"every {span} {words}"
    return every if freq == 1 else f"{_times(freq).replace(' a day', '')} {every}"


def _dosage_words(
    mg: float | None,
    repeat: Mapping[str, Any],
    prn: bool,
    max_per_day: float | None,
    days: float | None,
    route: str = "",
) -> str:
    """What one dosage line says, from its structured parts only."""
    parts = [f"{fmt(mg)} mg{route}"] if mg is not None else []
    timing = _timing_words(repeat)
    daily = repeat.get("periodUnit", repeat.get("periodUnits")) == "d" and repeat.get("period") == 1
    if (
        prn
        and timing
        and daily
        and not repeat.get("when")
        and max_per_day == repeat.get("frequency", 1)
    ):
        parts.append(f"as needed, up to {timing}")  # 'as needed, up to twice a day'
        max_per_day = None
    else:
        if timing:
            parts.append(timing)
        if prn:
            parts.append("as needed")
    text = " ".join(parts)
    if max_per_day and prn:  # a fixed schedule never says "up to" (F.2a)
        text += f", up to {fmt(max_per_day)} dose{'s' if max_per_day != 1 else ''} a day"
    if days:
        text += f"{',' if ',' in text else ''} for {fmt(days)} days"
    return text or "as directed"


def alternative_request(
    order: DiazepamOrder,
    regimen: Mapping[str, Any],
    product: AlternativeProduct,
    supply_days: float,
) -> dict[str, Any]:
    """A draft MedicationRequest for an alternative, ready to sign (knowledge F.3 'FHIR
    encoding', F.2a): every dosage line's timing, as-needed flag and daily maximum are
    structured and its text says exactly that; the quantity is what the course needs at
    most; a titration plan is a note for the prescriber, never dispensed."""
    lines = regimen_lines(regimen, supply_days)
    course = course_days(regimen, supply_days)
    dosages: list[dict[str, Any]] = []
    for line in lines:
        days = line.get("days") or course
        repeat: dict[str, Any] = {
            "boundsDuration": _days(days),
            "frequency": line["frequency"],
            "period": line["period"],
            "periodUnit": line["period_unit"],
        }
        if line.get("period_max"):
            repeat["periodMax"] = line["period_max"]
        if line.get("when"):
            repeat["when"] = list(line["when"])
        prn = bool(line.get("prn"))
        text = _dosage_words(
            line["mg"], repeat, prn, line.get("max_per_day"), days, route=" by mouth"
        )
        dosage: dict[str, Any] = {
            "text": f"{line['lead']} {text}" if line.get("lead") else text,
            "timing": {"repeat": repeat},
        }
        if len(lines) > 1:
            dosage = {"sequence": int(line.get("sequence", 1)), **dosage}
        if prn:
            dosage["asNeededBoolean"] = True
        dosage["route"] = ORAL_ROUTE
        dosage["doseAndRate"] = [{"doseQuantity": _mg(line["mg"])}]
        if line.get("max_per_day"):
            dosage["maxDosePerPeriod"] = {
                "numerator": _mg(line["max_per_day"] * line["mg"]),
                "denominator": _days(1),
            }
        dosages.append(dosage)
    quantity = regimen_quantity(regimen, product, supply_days)
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": product.code, "display": product.display}],
            "text": product.display,
        },
        "subject": _subject(order),
        "reasonCode": _reason_codes(order),
        "dosageInstruction": dosages,
        "dispenseRequest": {
            "numberOfRepeatsAllowed": 0,
            "quantity": _units(quantity, product.unit) if quantity is not None else None,
            "expectedSupplyDuration": _days(course),
        },
    }
    if regimen.get("plan"):
        resource["note"] = [{"text": regimen["plan"][0].upper() + regimen["plan"][1:] + "."}]
    authored = order.raw.get("authoredOn")
    if isinstance(authored, str) and dosing.parse_date(authored) is not None:
        resource["authoredOn"] = authored
    encounter = _clean_reference(order.raw.get("encounter"))
    if encounter:
        resource["encounter"] = encounter
    resource["dispenseRequest"] = {
        k: v for k, v in resource["dispenseRequest"].items() if v is not None
    }
    return {k: v for k, v in resource.items() if v not in (None, [], {})}


def typed_order(
    resource: Mapping[str, Any], product: AlternativeProduct, drug: str, quantity: str | None
) -> str:
    """A created order as a prescriber types it where the EHR does not apply its details
    (Epic, review round 2 N4): product strength, then every dosage line's own text (dose,
    route, timing, as needed and maximum, days), the quantity and no refills.
    '**Methocarbamol 500 mg tablets:** 1500 mg by mouth 4 times a day for 3 days, then 1000
    mg by mouth 4 times a day for 2 days; 52 tablets, no refills.'"""
    unit = product.unit or "tablet"
    form = f"{fmt(product.mg_per_unit)} mg {unit}s" if product.mg_per_unit else drug
    lines = ", ".join(
        str(d.get("text")) for d in resource.get("dosageInstruction") or [] if d.get("text")
    )
    refills = (resource.get("dispenseRequest") or {}).get("numberOfRepeatsAllowed", 0)
    tail = "no refills" if not refills else f"{refills} refills"
    amount_words = f"{quantity}, " if quantity else ""
    return f"**{drug.capitalize()} {form}:** {lines}; {amount_words}{tail}."


def typed_orders(options: list[Option], profile: str, policy: Policy) -> list[str]:
    """In a profile that does not apply a created order's details (no updates: Epic), each
    added order as typed: a line of the card that offers it (N4)."""
    spec = policy["profiles"].get(profile) or policy["profiles"]["standard"]
    if spec["updates"]:
        return []
    return [o.sig for o in options if o.sig and o.kind in ("replace", "create")]


def regimen_labels(regimen: Mapping[str, Any], supply_days: float) -> list[str]:
    """The regimen in a label's words, fullest first ('2 mg at bedtime, up to 3 times a
    day, for 7 days'; then each ``label_short`` form for when the full one does not fit).
    ``{days}`` is the course; ``{days_1}``, ``{days_2}`` the days of each step. A step-down
    whose later step has no day left in the course (a 1-day course) says ``label_single``."""
    lines = regimen_lines(regimen, supply_days)
    steps = {f"days_{int(line.get('sequence', 1))}": fmt(line.get("days")) for line in lines}
    shorts = regimen.get("label_short") or []
    forms = [regimen["label"], *([shorts] if isinstance(shorts, str) else shorts)]
    if regimen.get("label_single") and len(lines) < len(regimen.get("dosages") or lines):
        forms = [regimen["label_single"]]
    days = fmt(course_days(regimen, supply_days))
    return [str(form).format(days=days, **steps) for form in forms]


def order_label(
    verb: str,
    drug: str,
    cores: list[str],
    *,
    prefix: str = "",
    quantity: str | None = None,
    suffix: str | None = None,
    off_label: bool = False,
    off_words: tuple[str, ...] = (),
    verbless: bool = False,
    limit: int = LABEL_MAX,
) -> str:
    """The fullest label that fits ``limit`` characters. What goes last: first '(off-label)'
    (the card says it next to the drug too), then the quantity (the order carries it), then
    the full regimen for its short form; the suffix (Epic: 'diazepam stays', what the action
    really does) goes only when nothing else can. Where the action is plain from the card
    (``verbless``: one choice among keep, replace and cancel), the verb goes before the
    regimen shortens. Never cut mid-word: when nothing fits, the shortest form.

    ``off_words`` (with ``off_label``): forms of the off-label words to keep, fullest first
    (review round 2 N13: Epic's baclofen label says "off-label for acute spasm"), before the
    quantity or the full regimen, never instead of the suffix; when none fits, the label is
    made as without them."""
    if off_label and off_words:
        tail = str(suffix or "")
        for words in off_words:
            for core in cores:
                text = prefix + (f"{verb.lower()} {drug}" if prefix else f"{verb} {drug}")
                text += f" {words}" + (core if core.startswith(",") else f" {core}")
                for extra in ([f" ({quantity})"] if quantity else []) + [""]:
                    if len(text + extra + tail) <= limit:
                        return text + extra + tail
    optional = [
        (name, weight)
        for name, weight, present in (("quantity", 2, bool(quantity)), ("off", 1, off_label))
        if present
    ]
    subsets: list[set[str]] = [set()]
    for name, _ in optional:
        subsets += [s | {name} for s in subsets]
    weights = dict(optional)
    subsets.sort(key=lambda s: -sum(weights[n] for n in s))
    tails = [str(suffix), ""] if suffix else [""]
    # With a prefix ("If for muscle spasm:", no indication recorded) the verb and the suffix
    # are what make the label true: "replace with" deletes diazepam, Epic's "diazepam stays"
    # says it does not (F.2a; round-3 review p15). They are never dropped there: the regimen
    # shortens to its dose instead (the order, or in Epic the card's typed line, holds the rest)
    # (a bedtime dose stays with its timing). A regimen that opens otherwise (a titration's
    # ", start ...") keeps the older rule: the verb may go before the regimen shortens.
    verbs = [verb, ""] if verbless and prefix else [verb]
    dose = re.match(r"\d+(?:\.\d+)? mg(?: at bedtime)?", cores[0]) if prefix and cores else None
    if dose:
        verbs = [verb]
        cores = [*cores, dose.group(0)] if dose.group(0) not in cores else cores
        tails = [str(suffix)] if suffix else [""]
    candidates = []
    for tail in tails:
        for core in cores:
            for v in verbs:
                for chosen in subsets:
                    text = prefix + (f"{v.lower() if prefix else v} {drug}" if v else drug)
                    if "off" in chosen:
                        text += " (off-label)"
                    text += core if core.startswith(",") else f" {core}"
                    if "quantity" in chosen:
                        text += f" ({quantity})"
                    text += tail
                    if len(text) <= limit:
                        return text
                    candidates.append(text)
    return min(candidates, key=len)


def rewrite_order(
    order: DiazepamOrder,
    days: float | None = None,
    mg_per_dose: float | None = None,
    doses_per_day: float | None = None,
    product: tuple[str, str, float] | None = None,
    product_unit: str | None = None,
) -> dict[str, Any] | None:
    """The complete diazepam order rewritten to a cap (CDS Hooks ``update`` carries the whole
    resource): supply, quantity and bounds recomputed from the same numbers.

    None when the result would still carry a dose, rate, timing or quantity that is not a
    positive finite number (a -5 mg dose the cap does not replace): one click would sign it."""
    res = copy_json(order.raw)
    mg_unit = order.mg_per_unit
    if product is not None:
        code, display, mg_unit = product
        res["medicationCodeableConcept"] = {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        }
        res.pop("medicationReference", None)
    dosages = [d for d in res.get("dosageInstruction") or [] if isinstance(d, dict)]
    if (mg_per_dose is not None or doses_per_day is not None) and dosages:
        first = dosages[0]
        if mg_per_dose is not None:
            if "doseAndRate" in first or order.resource_type == "MedicationRequest":
                first["doseAndRate"] = [{"doseQuantity": _mg(mg_per_dose)}]
                first.pop("doseQuantity", None)
            else:  # DSTU2 MedicationOrder
                first["doseQuantity"] = _mg(mg_per_dose)
        if doses_per_day is not None:
            timing = first.setdefault("timing", {})
            repeat = timing.setdefault("repeat", {})
            for key in ("frequencyMax", "periodMax", "timeOfDay", "when"):
                repeat.pop(key, None)
            timing.pop("code", None)
            repeat.update(frequency=int(doses_per_day), period=1)
            repeat["periodUnits" if "periodUnits" in repeat else "periodUnit"] = "d"
            if "maxDosePerPeriod" in first or order.prn:
                # the old ceiling was in the old dose (or the old tablet strength): restate
                # it; an as-needed order says "up to", so it carries its ceiling (F.2a)
                mg = mg_per_dose if mg_per_dose is not None else order.mg_per_dose
                if mg is not None:
                    first["maxDosePerPeriod"] = {
                        "numerator": _mg(mg * int(doses_per_day)),
                        "denominator": _days(1),
                    }
                else:
                    first.pop("maxDosePerPeriod")
        res["dosageInstruction"] = [first]
    if dosages and (days is not None or mg_per_dose is not None or doses_per_day is not None):
        dosages[0]["text"] = _dose_text(order, dosages[0], mg_per_dose, days)
    dispense = res.get("dispenseRequest")
    dispense = dispense if isinstance(dispense, dict) else {}
    if days is not None:
        dispense["expectedSupplyDuration"] = _days(days)
        dispense["numberOfRepeatsAllowed"] = 0
        for dosage in res.get("dosageInstruction") or []:
            timing = dosage.get("timing") if isinstance(dosage, dict) else None
            repeat = timing.get("repeat") if isinstance(timing, dict) else None
            if not isinstance(repeat, dict):
                continue
            if "boundsDuration" in repeat:
                repeat["boundsDuration"] = _days(days)
            period = repeat.get("boundsPeriod")
            if isinstance(period, dict):
                start = dosing.parse_date(period.get("start"))
                if start is not None:
                    end = (start + timedelta(days=int(days))).isoformat()
                    # keep the start's time and zone so the Period stays in one format
                    period["end"] = end + str(period["start"])[10:]
    total_days = days if days is not None else order.days_supply
    per_dose_units = None
    mg = mg_per_dose if mg_per_dose is not None else order.mg_per_dose
    unit = product_unit or order.unit
    if mg is not None and mg_unit:
        per_dose_units = mg / mg_unit if (product_unit or order.unit != "mL") else None
    if per_dose_units is None and order.unit == "mL" and mg is not None and order.mg_per_ml:
        per_dose_units = mg / order.mg_per_ml
    per_day = doses_per_day if doses_per_day is not None else order.doses_per_day
    if "quantity" in dispense or days is not None:
        if per_dose_units and per_day and total_days and unit:
            units = dosing.capped_quantity(per_dose_units * per_day, total_days)
            if units is None:
                dispense.pop("quantity", None)
            else:
                dispense["quantity"] = _units(units, unit)
        else:
            dispense.pop("quantity", None)  # cannot be recomputed: the supply duration rules
    res["dispenseRequest"] = dispense
    return None if impossible_numbers(res) else res


# Quantities of a Dosage (R4 and DSTU2) that must hold a positive finite number when present.
_DOSE_QUANTITIES = (
    "doseQuantity",
    "rateQuantity",
    "maxDosePerAdministration",
    "maxDosePerLifetime",
)
_DOSE_PAIRS = {"doseRange": ("low", "high"), "rateRange": ("low", "high")}
_RATIOS = ("rateRatio", "maxDosePerPeriod")
_REPEAT_NUMBERS = (
    "frequency",
    "frequencyMax",
    "period",
    "periodMax",
    "count",
    "countMax",
    "duration",
    "durationMax",
)


def _positive(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an integer too large for a float
        return False


def _quantity_ok(quantity: Any, *, zero_ok: bool = False) -> bool:
    if not isinstance(quantity, Mapping):
        return False
    value = quantity.get("value")
    return _positive(value) or (zero_ok and value == 0 and not isinstance(value, bool))


def _range_ok(rng: Any, low: str, high: str) -> bool:
    if not isinstance(rng, Mapping):
        return False
    low_ok = low not in rng or _quantity_ok(rng[low], zero_ok=True)
    if not (low_ok and (high not in rng or _quantity_ok(rng[high]))):
        return False
    if low in rng and high in rng:  # both positive numbers here: an inverted range is no dose
        return bool(rng[low]["value"] <= rng[high]["value"])
    return True


def _dose_parts(dosage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The dosage itself (DSTU2 keeps doses there) and each R4 ``doseAndRate`` item."""
    items = [i for i in dosage.get("doseAndRate") or [] if isinstance(i, Mapping)]
    return [dosage, *items]


def impossible_numbers(resource: Mapping[str, Any]) -> list[str]:
    """Where an order to be signed carries a dose, rate, timing or dispense number that is not
    a positive finite number (a range's low end may be 0); empty when none."""
    out: list[str] = []
    dosages = resource.get("dosageInstruction")
    for i, dosage in enumerate(dosages if isinstance(dosages, list) else []):
        if not isinstance(dosage, Mapping):
            continue
        where = f"dosageInstruction/{i}"
        for part in _dose_parts(dosage):
            for key in _DOSE_QUANTITIES:
                if key in part and not _quantity_ok(part[key]):
                    out.append(f"{where}/{key}")
            for key, (low, high) in _DOSE_PAIRS.items():
                if key in part and not _range_ok(part[key], low, high):
                    out.append(f"{where}/{key}")
            for key in _RATIOS:
                ratio = part.get(key)
                if key in part and not (
                    isinstance(ratio, Mapping)
                    and all(_quantity_ok(ratio.get(end)) for end in ("numerator", "denominator"))
                ):
                    out.append(f"{where}/{key}")
        timing = dosage.get("timing")
        repeat = timing.get("repeat") if isinstance(timing, Mapping) else None
        if isinstance(repeat, Mapping):
            for key in _REPEAT_NUMBERS:
                if key in repeat and not _positive(repeat[key]):
                    out.append(f"{where}/timing/repeat/{key}")
            if "boundsDuration" in repeat and not _quantity_ok(repeat["boundsDuration"]):
                out.append(f"{where}/timing/repeat/boundsDuration")
    dispense = resource.get("dispenseRequest")
    if isinstance(dispense, Mapping):
        for key in ("quantity", "expectedSupplyDuration"):
            if key in dispense and not _quantity_ok(dispense[key]):
                out.append(f"dispenseRequest/{key}")
    return out


def _dose_text(
    order: DiazepamOrder, dosage: Mapping[str, Any], mg: float | None, days: float | None
) -> str:
    """The rewritten dosage's text, read from its structure (F.2a: the text says exactly what
    the structured dose says): '2 mg twice a day for 7 days', '5 mg at bedtime for 7 days',
    '2 mg as needed, up to twice a day for 7 days'."""
    mg = mg if mg is not None else order.mg_per_dose
    days = days if days is not None else order.days_supply
    timing = dosage.get("timing")
    repeat = timing.get("repeat") if isinstance(timing, Mapping) else None
    if not isinstance(repeat, Mapping) or _timing_words(repeat) is None:
        # timing by code (BID) or none: say the doses a day the order works out to
        per_day = order.doses_per_day
        repeat = {"frequency": per_day, "period": 1, "periodUnit": "d"} if per_day else {}
    max_doses = None
    ceiling = dosage.get("maxDosePerPeriod")
    if isinstance(ceiling, Mapping) and mg:
        num, den = ceiling.get("numerator") or {}, ceiling.get("denominator") or {}
        per_day = den.get("value") == 1 and den.get("code", den.get("unit")) in ("d", "day")
        if num.get("code", num.get("unit")) == "mg" and per_day:
            max_doses = num.get("value", 0) / mg
    return _dosage_words(mg, repeat, order.prn, max_doses, days)


# -- profile shaping ---------------------------------------------------------------------------


# Suggestion roles the feedback report reads (the Epic switch check, F.2a): a removal of the
# pended diazepam order, and an alternative added beside it (split profile: diazepam stays).
ROLE_REMOVE = "remove"
ROLE_ADD = "add-alternative"


def _new_id() -> str:
    return str(uuid.uuid4())


def _action_delete(order: DiazepamOrder, policy: Policy) -> dict[str, Any]:
    words = product_words(order, policy) or "diazepam"
    return {
        "type": "delete",
        "description": f"Remove the pended diazepam order ({words})",
        "resourceId": order.ref,
    }


def _action_delete_ref(ref: str, words: str) -> dict[str, Any]:
    return {
        "type": "delete",
        "description": f"Remove the pended diazepam order ({words})",
        "resourceId": ref,
    }


def _remove_label(words: str) -> str:
    """'Remove the pended order: diazepam 5 mg twice a day', shorter where that would be cut
    mid-word (review round 8: '… 14 days (' lost '(order 2)')."""
    for head in ("Remove the pended order: ", "Remove: "):
        if len(head + words) <= LABEL_MAX:
            return head + words
    return ("Remove: " + words)[: LABEL_MAX - 1].rsplit(" ", 1)[0] + "…"


def shape_suggestions(
    options: list[Option],
    order: DiazepamOrder,
    profile: str,
    policy: Policy,
    keeper: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Suggestions and selectionBehavior for one card in the given EHR profile. ``keeper``:
    the pended order a profile without at-most-one (Epic) offers no Remove for, so that
    ticking every Remove still leaves it (a long-term user's several orders, review round 7
    F2: never an abrupt stop)."""
    if not options:
        return [], None
    spec = policy["profiles"].get(profile) or policy["profiles"]["standard"]
    suggestions: list[dict[str, Any]] = []
    if spec["replace"] == "combined":
        for opt in options:
            actions: list[dict[str, Any]] = []
            role = opt.kind
            # several pended orders (review round 1 H1): the option names every order it
            # removes, so one accepted suggestion leaves one diazepam order at most
            deletes = (
                [_action_delete_ref(ref, words) for ref, words in opt.removes]
                if opt.removes is not None
                else None
            )
            if opt.kind == "replace":
                actions = [
                    *(deletes if deletes is not None else [_action_delete(order, policy)]),
                    {"type": "create", "description": opt.description, "resource": opt.resource},
                ]
            elif opt.kind == "update" and spec["updates"]:
                actions = [
                    {"type": "update", "description": opt.description, "resource": opt.resource},
                    *(deletes or []),
                ]
            elif opt.kind == "delete":
                actions = deletes if deletes is not None else [_action_delete(order, policy)]
                role = ROLE_REMOVE
            elif opt.kind == "create" and opt.resource is not None:
                actions = [
                    {"type": "create", "description": opt.description, "resource": opt.resource}
                ]
            if actions:
                suggestions.append(
                    _suggestion(opt.label, actions, opt.recommended, role, _taken(opt))
                )
        if not suggestions:
            return suggestions, None
        # F.2a: choices on the pended order exclude each other. A card with one such choice
        # beside orders that leave it alone (the critical opioid card: cancel, and naloxone)
        # has nothing to exclude: both may be accepted
        on_order = [o for o in options if o.kind in ("replace", "update", "delete")]
        if len(on_order) <= 1 and any(o.kind == "create" for o in options):
            return suggestions, "any"
        return suggestions, spec["selection"]
    # split (Epic, F.2a): one action per suggestion, and diazepam is never re-created. A cap
    # or dose change is an edit stated in the card text (``cards._edits``); the pended order
    # is removed only by one "Remove" suggestion, listed first; an alternative is an addition
    # labelled as such, never recommended (ticking it alone must not read as a switch).
    removes = any(opt.kind in ("replace", "delete") for opt in options)
    # recommended only when a critical card makes cancelling the decision (review round 1
    # M1/M2); an alternative is never recommended here (F.2a)
    several: dict[str, str] = {}
    if any(o.kind == "update" and o.product and o.removes for o in options):
        # another product is a new order that replaces every pended order, this one too
        # (review round 6 M-2): it gets its Remove, listed first
        several[order.ref] = f"diazepam{dose_words(order)}"
    for opt in options:
        for ref, words in opt.removes or []:
            several.setdefault(ref, words)
    # ... a cancel of every pended order, not a recommended "keep only one" (review round 6
    # H-1: pre-selecting each Remove would stop a long-term user's diazepam abruptly)
    cancel = any(
        opt.kind == "delete"
        and opt.recommended
        and (opt.removes is None or {ref for ref, _ in opt.removes} == set(several))
        for opt in options
    )
    if keeper == KEEP_ALL:  # no order may be removed with a tick
        several.clear()
        removes = False
    elif keeper is not None and keeper in several:
        several.pop(keeper)
        removes = False  # ... and never the own-order Remove below
    if len(several) > 1 or (keeper is not None and several):
        # several pended orders (review round 1 H1): one Remove per order, the card says
        # which to keep
        for ref, words in several.items():
            suggestions.append(
                _suggestion(
                    _remove_label(words),
                    [_action_delete_ref(ref, words)],
                    cancel,
                    ROLE_REMOVE,
                    {"kind": "remove", "drug": "diazepam"},
                )
            )
    elif removes:
        suggestions.append(
            _suggestion(
                remove_label(order, policy),
                [_action_delete(order, policy)],
                cancel,
                ROLE_REMOVE,
                {"kind": "remove", "drug": "diazepam"},
            )
        )
    for opt in options:
        if opt.kind not in ("replace", "create") or opt.resource is None:
            continue
        label = opt.label
        if opt.kind == "replace":
            label = opt.add_label or _addition_label(opt.label)
        suggestions.append(
            _suggestion(
                label,
                [
                    {
                        "type": "create",
                        "description": opt.description,
                        "resource": copy_json(opt.resource),
                    }
                ],
                opt.recommended and opt.kind == "create",
                ROLE_ADD if opt.kind == "replace" else opt.kind,
                {**_taken(opt), "kind": "add" if opt.kind == "replace" else opt.kind},
            )
        )
    return suggestions, spec["selection"] if suggestions else None


def remove_label(order: DiazepamOrder, policy: Policy) -> str:
    """'Remove the pended diazepam order (diazepam 5 mg tablet)', the product in the words a
    prescriber writes (review round 3: not RxNorm's 'diazepam 5 MG Oral Tablet'), left out
    when it would take the label past ``LABEL_MAX``."""
    label = f"Remove the pended diazepam order ({product_words(order, policy) or 'diazepam'})"
    return label if len(label) <= LABEL_MAX else "Remove the pended diazepam order"


# RxNorm writes units and dose forms in capitals ("diazepam 5 MG Oral Tablet"); a card writes
# them as a prescriber does ("diazepam 5 mg oral tablet"). A bracketed brand keeps its words
_RXNORM_UNITS = {"MG/ML": "mg/mL", "MG": "mg", "ML": "mL", "MCG": "mcg", "HR": "hr"}
_UNIT = re.compile(r"\b(?:MG/ML|MG|ML|MCG|HR)\b")
_TITLE_WORD = re.compile(r"\b[A-Z][a-z]+\b")
_BRACKETED = re.compile(r"(\[[^\]]*\])")


def display_words(display: str | None) -> str | None:
    """A product's display with RxNorm's capitals lowered: units ('MG' -> 'mg', 'MG/ML' ->
    'mg/mL') and dose-form words ('Oral Tablet' -> 'oral tablet'); a bracketed brand
    ('[Valium]') keeps its capital."""
    if not display:
        return None
    parts = _BRACKETED.split(" ".join(display.split()))
    out = []
    for part in parts:
        part = _UNIT.sub(lambda m: _RXNORM_UNITS[m.group(0)], part)
        if not part.startswith("["):
            part = _TITLE_WORD.sub(lambda m: m.group(0).lower(), part)
        out.append(part)
    return "".join(out)


def product_words(item: Any, policy: Policy, plural: bool = False) -> str | None:
    """A diazepam product as a prescriber names it, from its strength and form (an order or
    a value-set product: ``unit``, ``mg_per_unit``, ``mg_per_ml``, ``display``): 'diazepam 2
    mg tablets', 'diazepam oral solution 1 mg/mL' (``compose.product_words``); any other
    product its display with RxNorm's capitals lowered."""
    words = policy["compose"]["product_words"]
    display = getattr(item, "display", None)
    if getattr(item, "unit", None) == "tablet" and getattr(item, "mg_per_unit", None):
        return str(words["tablets" if plural else "tablet"]).format(mg=fmt(item.mg_per_unit))
    solution = "oral solution" in (display or "").lower()
    if getattr(item, "unit", None) == "mL" and getattr(item, "mg_per_ml", None) and solution:
        return str(words["oral_solution"]).format(mg_per_ml=fmt(item.mg_per_ml))
    return display_words(display)


def changed_product(order: DiazepamOrder, code: str | None, policy: Policy) -> str | None:
    """The words of the product a rewrite of ``order`` orders ('diazepam 2 mg tablets') when
    it is not the pended order's own strength and form (Epic types the product change by
    hand: review round 3); None when it is the same product or not a known one."""
    new = policy.valuesets.diazepam_products.get(code) if policy.valuesets and code else None
    if new is None:
        return None
    same = (new.unit, new.mg_per_unit, new.mg_per_ml) == (
        order.unit,
        order.mg_per_unit,
        order.mg_per_ml,
    )
    return None if same else product_words(new, policy, plural=True)


def _addition_label(label: str) -> str:
    """'Replace with tizanidine 2 mg …' → 'Add tizanidine 2 mg …; diazepam stays' — what one
    Epic action really does (for options that did not state their ``add_label``)."""
    prefix = ""
    if label.startswith("If for muscle spasm: "):
        prefix, label = "If for muscle spasm: ", label[len("If for muscle spasm: ") :]
    if label.lower().startswith("replace with "):
        label = ("add " if prefix else "Add ") + label[len("replace with ") :]
    return f"{prefix}{label}{ADD_SUFFIX}"


def _spelled(resource: Mapping[str, Any]) -> str:
    dosages = resource.get("dosageInstruction") or []
    drug = (resource.get("medicationCodeableConcept") or {}).get("text") or "diazepam"
    dose = dosages[0].get("text") if dosages and dosages[0].get("text") else "dose as written"
    return f"{drug}, {dose}"


def _taken(opt: Option) -> dict[str, Any]:
    """What accepting this option does, in codes: the kind of change and the drug ordered (a
    change of the pended order itself is a change of diazepam)."""
    drug = opt.drug or ("diazepam" if opt.kind in ("update", "delete") else None)
    return {"kind": opt.kind, "drug": drug, "code": opt.code}


def _suggestion(
    label: str,
    actions: list[dict[str, Any]],
    recommended: bool,
    role: str,
    taken: dict[str, Any],
) -> dict[str, Any]:
    """A suggestion with two private keys ``cards.render`` moves off it: ``_role`` (what
    accepting it does to the pended order: ``remove``, ``add-alternative``, ``replace``,
    ``update``, ``create``), to the card's ``_suggestion_roles`` for the Epic switch check,
    and ``_taken`` (kind of change and drug, in codes), to the card's audit for the
    dashboard's "which suggestion was taken". Clients see neither."""
    out: dict[str, Any] = {
        "label": label[:200],
        "uuid": _new_id(),
        "actions": actions,
        "_taken": {k: v for k, v in taken.items() if v is not None},
    }
    if recommended:
        out["isRecommended"] = True
    out["_role"] = role
    return out
