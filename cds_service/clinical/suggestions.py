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
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cds_service.clinical import dosing
from cds_service.clinical.models import DiazepamOrder, Option
from cds_service.clinical.policy import Policy
from cds_service.clinical.valuesets import RXNORM, AlternativeProduct
from cds_service.jsondata import copy_json

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ORAL_ROUTE = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}
FORM_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
_FORM_CODES = {"tablet": "TAB", "capsule": "CAP"}


def _days(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "days", "system": UCUM, "code": "d"}


def _mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _units(value: float, unit: str | None) -> dict[str, Any]:
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


def regimen_units_per_day(regimen: Mapping[str, Any], product: AlternativeProduct) -> float:
    """Most units (tablets) a day the regimen allows, for the dispense quantity."""
    freq = regimen.get("frequency_max") or regimen.get("frequency") or 1
    period_days = regimen["period"] * dosing.unit_days(regimen["period_unit"])  # type: ignore
    per_day = freq / period_days
    if regimen.get("max_per_day"):
        per_day = min(per_day, regimen["max_per_day"])
    return per_day * regimen["mg"] / product.mg_per_unit


def alternative_request(
    order: DiazepamOrder,
    regimen: Mapping[str, Any],
    product: AlternativeProduct,
    supply_days: float,
) -> dict[str, Any]:
    """A draft MedicationRequest for an alternative (knowledge F.3 'FHIR encoding')."""
    dosages: list[dict[str, Any]] = []
    if regimen.get("steps"):
        total_units = 0.0
        for seq, step in enumerate(regimen["steps"], start=1):
            dosages.append(
                {
                    "sequence": seq,
                    "text": regimen["text"] if seq == 1 else f"then {step['mg']} mg",
                    "timing": {
                        "repeat": {
                            "boundsDuration": _days(step["days"]),
                            "frequency": step["frequency"],
                            "period": 1,
                            "periodUnit": "d",
                        }
                    },
                    "route": ORAL_ROUTE,
                    "doseAndRate": [{"doseQuantity": _mg(step["mg"])}],
                }
            )
            total_units += step["frequency"] * step["mg"] / product.mg_per_unit * step["days"]
        days = sum(step["days"] for step in regimen["steps"])
        quantity = float(math.ceil(total_units))
    else:
        repeat: dict[str, Any] = {
            "boundsDuration": _days(supply_days),
            "frequency": regimen["frequency"],
            "period": regimen["period"],
            "periodUnit": regimen["period_unit"],
        }
        if regimen.get("frequency_max"):
            repeat["frequencyMax"] = regimen["frequency_max"]
        if regimen.get("period_max"):
            repeat["periodMax"] = regimen["period_max"]
        dosage: dict[str, Any] = {
            "text": regimen["text"],
            "timing": {"repeat": repeat},
            "route": ORAL_ROUTE,
            "doseAndRate": [{"doseQuantity": _mg(regimen["mg"])}],
        }
        if regimen.get("prn"):
            dosage["asNeededBoolean"] = True
        if regimen.get("max_per_day"):
            dosage["maxDosePerPeriod"] = {
                "numerator": _mg(regimen["max_per_day"] * regimen["mg"]),
                "denominator": _days(1),
            }
        dosages.append(dosage)
        days = supply_days
        quantity = dosing.capped_quantity(regimen_units_per_day(regimen, product), days)
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
            "quantity": _units(quantity, product.unit),
            "expectedSupplyDuration": _days(days),
        },
    }
    authored = order.raw.get("authoredOn")
    if isinstance(authored, str) and dosing.parse_date(authored) is not None:
        resource["authoredOn"] = authored
    encounter = _clean_reference(order.raw.get("encounter"))
    if encounter:
        resource["encounter"] = encounter
    return {k: v for k, v in resource.items() if v not in (None, [], {})}


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
            if "maxDosePerPeriod" in first:
                # the old ceiling was in the old dose (or the old tablet strength): restate it
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
        dosages[0]["text"] = _dose_text(order, mg_per_dose, doses_per_day, days)
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
    order: DiazepamOrder, mg: float | None, per_day: float | None, days: float | None
) -> str:
    from cds_service.clinical.rules.common import fmt

    mg = mg if mg is not None else order.mg_per_dose
    per_day = per_day if per_day is not None else order.doses_per_day
    days = days if days is not None else order.days_supply
    parts = []
    if mg is not None:
        parts.append(f"{fmt(mg)} mg")
    if per_day:
        times = {1: "once a day", 2: "twice a day"}.get(per_day, f"{fmt(per_day)} times a day")
        parts.append(f"as needed, up to {times}" if order.prn else times)
    if days:
        parts.append(f"for {fmt(days)} days")
    return " ".join(parts) or "as directed"


# -- profile shaping ---------------------------------------------------------------------------


def _new_id() -> str:
    return str(uuid.uuid4())


def _action_delete(order: DiazepamOrder) -> dict[str, Any]:
    return {
        "type": "delete",
        "description": f"Remove the diazepam draft ({order.display or 'diazepam'})",
        "resourceId": order.ref,
    }


def shape_suggestions(
    options: list[Option], order: DiazepamOrder, profile: str, policy: Policy
) -> tuple[list[dict[str, Any]], str | None]:
    """Suggestions and selectionBehavior for one card in the given EHR profile."""
    if not options:
        return [], None
    spec = policy["profiles"].get(profile) or policy["profiles"]["standard"]
    suggestions: list[dict[str, Any]] = []
    if spec["replace"] == "combined":
        for opt in options:
            actions: list[dict[str, Any]] = []
            if opt.kind == "replace":
                actions = [
                    _action_delete(order),
                    {"type": "create", "description": opt.description, "resource": opt.resource},
                ]
            elif opt.kind == "update" and spec["updates"]:
                actions = [
                    {"type": "update", "description": opt.description, "resource": opt.resource}
                ]
            elif opt.kind == "delete":
                actions = [_action_delete(order)]
            elif opt.kind == "create" and opt.resource is not None:
                actions = [
                    {"type": "create", "description": opt.description, "resource": opt.resource}
                ]
            if actions:
                suggestions.append(_suggestion(opt.label, actions, opt.recommended))
        return suggestions, spec["selection"] if suggestions else None
    # split (Epic, F.2a): one action per suggestion, and diazepam is never re-created. A cap
    # or dose change is an edit stated in the card text (``edits_in_text``); the pended order
    # is removed only by one "Remove" suggestion, listed first; an alternative is an addition
    # labelled as such, never recommended (ticking it alone must not read as a switch).
    removes = any(opt.kind in ("replace", "delete") for opt in options)
    if removes:
        suggestions.append(
            _suggestion(
                f"Remove the pended diazepam order ({order.display or 'diazepam'})",
                [_action_delete(order)],
                False,
            )
        )
    for opt in options:
        if opt.kind not in ("replace", "create") or opt.resource is None:
            continue
        label = opt.label
        if opt.kind == "replace":
            label = _addition_label(opt.label)
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
            )
        )
    return suggestions, spec["selection"] if suggestions else None


def _addition_label(label: str) -> str:
    """'Replace with tizanidine: 2 mg …' → 'Add tizanidine: 2 mg … (diazepam stays unless you
    also remove it)' — what one Epic action really does."""
    prefix = ""
    if label.startswith("If for muscle spasm: "):
        prefix, label = "If for muscle spasm: ", label[len("If for muscle spasm: ") :]
        label = label[0].upper() + label[1:]
    if label.lower().startswith("replace with "):
        label = "Add " + label[len("replace with ") :]
    return f"{prefix}{label} (diazepam stays unless you also remove it)"


def edits_in_text(options: list[Option], profile: str, policy: Policy) -> list[str]:
    """In a profile without updates (Epic), the rewrites of the pended order as edits to make
    by hand: 'Keep diazepam, 7 days (21 tablets), no refills'."""
    spec = policy["profiles"].get(profile) or policy["profiles"]["standard"]
    if spec["updates"]:
        return []
    return [opt.label for opt in options if opt.kind == "update"]


def _spelled(resource: Mapping[str, Any]) -> str:
    dosages = resource.get("dosageInstruction") or []
    drug = (resource.get("medicationCodeableConcept") or {}).get("text") or "diazepam"
    dose = dosages[0].get("text") if dosages and dosages[0].get("text") else "dose as written"
    return f"{drug}, {dose}"


def _suggestion(label: str, actions: list[dict[str, Any]], recommended: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"label": label[:200], "uuid": _new_id(), "actions": actions}
    if recommended:
        out["isRecommended"] = True
    return out
