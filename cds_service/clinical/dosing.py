"""Dose and duration arithmetic on FHIR Dosage / dispenseRequest JSON (R4 and DSTU2 shapes).

Pure functions on plain values, so they are property-tested on their own (tests/test_dosing.py).
Every function returns ``None`` rather than guessing when the input does not say enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

# FHIR units-of-time / UCUM duration codes → days
_DAYS_PER_UNIT = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.0,
    "a": 365.0,
}
_UNIT_WORDS = {
    "second": "s",
    "seconds": "s",
    "minute": "min",
    "minutes": "min",
    "hour": "h",
    "hours": "h",
    "hr": "h",
    "day": "d",
    "days": "d",
    "week": "wk",
    "weeks": "wk",
    "month": "mo",
    "months": "mo",
    "year": "a",
    "years": "a",
}
# HL7 v3 GTSAbbreviation timing codes → doses per day
TIMING_CODES = {
    "QD": 1.0,
    "QOD": 0.5,
    "BID": 2.0,
    "TID": 3.0,
    "QID": 4.0,
    "AM": 1.0,
    "PM": 1.0,
    "HS": 1.0,
    "Q4H": 6.0,
    "Q6H": 4.0,
    "Q8H": 3.0,
    "Q12H": 2.0,
}
TABLET_UNITS = {
    "{tbl}",
    "tbl",
    "tab",
    "tabs",
    "tablet",
    "tablets",
    "{tablet}",
    "{tablets}",
    "{pill}",
    "pill",
    "pills",
    "{capsule}",
    "cap",
    "caps",
    "capsule",
    "capsules",
}
ML_UNITS = {"ml", "milliliter", "millilitre", "milliliters", "millilitres", "cm3"}
MG_FACTORS = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001, "µg": 0.001}
PIECE_UNITS = {
    "spray": {"spray", "sprays", "{spray}", "{actuat}", "actuat", "actuation"},
    "film": {"film", "films", "{film}"},
    "suppository": {"suppository", "suppositories", "{suppository}", "supp"},
}


def num(value: Any) -> float | None:
    """A finite non-negative number from JSON, or None (strings, bools and NaN rejected)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        if not math.isfinite(value) or value < 0:
            return None
    except OverflowError:  # an integer too large for a float (valid JSON: 400 digits)
        return None
    return float(value)


def _sane(value: float, *, zero_ok: bool = False) -> float | None:
    """A computed amount a rule may use: finite and positive. Absurd inputs (1e308 mg,
    periods of 5e-324 s) overflow to inf or underflow to 0, which would divide by zero or be
    printed on a card as "inf mg/day"; they are treated as unknown instead."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        return None
    return value


def unit_days(unit: Any) -> float | None:
    if not isinstance(unit, str):
        return None
    key = unit.strip()
    key = _UNIT_WORDS.get(key.lower(), key)
    return _DAYS_PER_UNIT.get(key)


def duration_days(quantity: Mapping[str, Any] | None) -> float | None:
    """Days in a FHIR Duration (code first, then unit)."""
    if not isinstance(quantity, Mapping):
        return None
    value = num(quantity.get("value"))
    if value is None:
        return None
    per = unit_days(quantity.get("code")) or unit_days(quantity.get("unit"))
    return None if per is None else _sane(value * per, zero_ok=True)


def quantity_unit(quantity: Mapping[str, Any] | None) -> str | None:
    """Normalised unit of a Quantity: 'mg', 'tablet', 'mL', 'spray', … or None."""
    if not isinstance(quantity, Mapping):
        return None
    for raw in (quantity.get("code"), quantity.get("unit")):
        if not isinstance(raw, str) or not raw.strip():
            continue
        low = raw.strip().lower()
        if low in MG_FACTORS:
            return low
        if low in TABLET_UNITS or low in {"tab", "tbl"}:
            return "tablet"
        if low in ML_UNITS:
            return "mL"
        for kind, words in PIECE_UNITS.items():
            if low in words:
                return kind
    return None


def doses_per_day(timing: Mapping[str, Any] | None, use_max: bool = True) -> float | None:
    """Administrations per day from Timing.repeat (frequency/period/periodUnit), timeOfDay,
    when, or Timing.code. ``use_max`` takes frequencyMax and the shorter period where a range
    is given, because limits are checked against the most the order allows."""
    if not isinstance(timing, Mapping):
        return None
    repeat = timing.get("repeat")
    if isinstance(repeat, Mapping):
        freq = num(repeat.get("frequency"))
        fmax = num(repeat.get("frequencyMax"))
        if use_max and fmax is not None and (freq is None or fmax > freq):
            freq = fmax
        if freq == 0:
            return None  # "0 times a day" says nothing usable
        period = num(repeat.get("period"))
        unit = repeat.get("periodUnit") or repeat.get("periodUnits")  # DSTU2 spelling
        per = unit_days(unit)
        if period is not None and per is not None and period > 0:
            if freq is None:
                freq = 1.0
            span = period * per  # 5e-324 s underflows to 0
            return _sane(freq / span) if span > 0 else None
        times = repeat.get("timeOfDay")
        if isinstance(times, list) and times:
            return float(len(times))
        when = repeat.get("when")
        if isinstance(when, list) and when:
            return float(len(when))
        if freq is not None and unit is None:
            return None
    code = timing.get("code")
    if isinstance(code, Mapping):
        for coding in code.get("coding") or []:
            if isinstance(coding, Mapping) and str(coding.get("code", "")).upper() in TIMING_CODES:
                return TIMING_CODES[str(coding["code"]).upper()]
        text = str(code.get("text") or "").upper().strip()
        if text in TIMING_CODES:
            return TIMING_CODES[text]
    return None


def max_per_day(dosage: Mapping[str, Any]) -> tuple[float, str | None] | None:
    """maxDosePerPeriod as (amount per day, unit), e.g. (3, 'tablet') or (6, 'mg')."""
    ratio = dosage.get("maxDosePerPeriod")
    if isinstance(ratio, list):  # R5 made it a list; accept the first
        ratio = ratio[0] if ratio else None
    if not isinstance(ratio, Mapping):
        return None
    top, bottom = ratio.get("numerator"), ratio.get("denominator")
    amount = num(top.get("value")) if isinstance(top, Mapping) else None
    span = duration_days(bottom) if isinstance(bottom, Mapping) else None
    per_day = _sane(amount / span, zero_ok=True) if amount is not None and span else None
    if per_day is None:
        return None
    return per_day, quantity_unit(top)


def dose_quantity(dosage: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The dose of a Dosage: R4 doseAndRate[].doseQuantity/doseRange.high, DSTU2 doseQuantity."""
    for item in dosage.get("doseAndRate") or []:
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("doseQuantity"), Mapping):
            return item["doseQuantity"]
        rng = item.get("doseRange")
        if isinstance(rng, Mapping) and isinstance(rng.get("high"), Mapping):
            return rng["high"]
    if isinstance(dosage.get("doseQuantity"), Mapping):
        return dosage["doseQuantity"]
    rng = dosage.get("doseRange")
    if isinstance(rng, Mapping) and isinstance(rng.get("high"), Mapping):
        return rng["high"]
    return None


def to_mg(
    amount: float, unit: str | None, mg_per_unit: float | None, mg_per_ml: float | None
) -> float | None:
    """Convert an amount in mg/g/mcg, tablets (× strength) or mL (× concentration) to mg."""
    if unit in MG_FACTORS:
        return amount * MG_FACTORS[unit]
    if unit == "mL" and mg_per_ml is not None:
        return amount * mg_per_ml
    if unit in ("tablet", "spray", "film", "suppository") and mg_per_unit is not None:
        return amount * mg_per_unit
    return None


def to_units(
    mg: float, product_unit: str | None, mg_per_unit: float | None, mg_per_ml: float | None
) -> float | None:
    """Inverse of ``to_mg``: mg → amount in the product's dispensing unit."""
    if product_unit == "mL" and mg_per_ml:
        return mg / mg_per_ml
    if product_unit in ("tablet", "spray", "film", "suppository") and mg_per_unit:
        return mg / mg_per_unit
    return None


def bounds_days(timing: Mapping[str, Any] | None) -> float | None:
    if not isinstance(timing, Mapping):
        return None
    repeat = timing.get("repeat")
    if not isinstance(repeat, Mapping):
        return None
    days = duration_days(repeat.get("boundsDuration"))
    if days is not None:
        return days
    period = repeat.get("boundsPeriod")
    if isinstance(period, Mapping):
        start, end = parse_date(period.get("start")), parse_date(period.get("end"))
        if start and end and end >= start:
            return float((end - start).days)
    return None


def supply_days(
    expected: float | None,
    quantity: float | None,
    units_per_day: float | None,
    bounds: float | None,
    repeats: int,
) -> tuple[float, str] | None:
    """Days supplied, by the first rule that applies (knowledge F.1), times 1 + repeats."""
    fills = 1 + max(0, repeats)
    if expected is not None and expected > 0:
        days, source = _sane(expected * fills), "expectedSupplyDuration"
    elif quantity and units_per_day:
        days, source = _sane(quantity / units_per_day * fills), "quantity"
    elif bounds is not None and bounds > 0:
        days, source = _sane(bounds * fills), "bounds"
    else:
        return None
    return None if days is None else (days, source)


def capped_quantity(units_per_day: float, days: float) -> float | None:
    """Dispense quantity for ``days`` of use, rounded up to whole units (tablets, mL); None
    when the product overflows (absurd doses such as 1e308 mg)."""
    total = units_per_day * days
    if not math.isfinite(total):
        return None
    return float(math.ceil(round(total, 6)))


def parse_date(value: Any) -> date | None:
    """The date part of a FHIR date/dateTime/instant (year-only and year-month → first day)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def age_on(birth: date, on: date) -> tuple[int, int]:
    """Completed years and completed months of age on a date."""
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    if on.day < birth.day:
        months -= 1
    months = max(months, 0)
    return months // 12, months
