"""Dose and duration arithmetic: properties that must hold for any order, plus worked cases."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.clinical import dosing

freqs = st.integers(min_value=1, max_value=6)
periods = st.sampled_from([(1, "d"), (12, "h"), (8, "h"), (6, "h"), (1, "wk"), (2, "d")])


@given(freqs, periods)
def test_doses_per_day_matches_frequency_over_period(freq, period):
    value, unit = period
    days = {"d": 1, "h": 1 / 24, "wk": 7}[unit] * value
    got = dosing.doses_per_day({"repeat": {"frequency": freq, "period": value, "periodUnit": unit}})
    assert got == pytest.approx(freq / days)


@given(freqs)
def test_dstu2_period_units_spelling_is_read(freq):
    timing = {"repeat": {"frequency": freq, "period": 1, "periodUnits": "d"}}
    assert dosing.doses_per_day(timing) == freq


@given(st.integers(1, 3), st.integers(4, 6))
def test_frequency_max_is_used_for_limits(freq, fmax):
    timing = {"repeat": {"frequency": freq, "frequencyMax": fmax, "period": 1, "periodUnit": "d"}}
    assert dosing.doses_per_day(timing) == fmax
    assert dosing.doses_per_day(timing, use_max=False) == freq


@given(
    st.floats(min_value=0.25, max_value=60, allow_nan=False),
    st.integers(0, 5),
)
def test_supply_days_multiplies_by_fills(days, repeats):
    got = dosing.supply_days(days, None, None, None, repeats)
    assert got is not None
    assert got[0] == pytest.approx(days * (1 + repeats))
    assert got[1] == "expectedSupplyDuration"


@given(st.integers(1, 400), st.floats(min_value=0.5, max_value=8, allow_nan=False))
def test_quantity_rule_inverts_daily_use(quantity, per_day):
    days, source = dosing.supply_days(None, quantity, per_day, None, 0)
    assert source == "quantity"
    assert days * per_day == pytest.approx(quantity)


@given(st.floats(min_value=0.5, max_value=8, allow_nan=False), st.integers(1, 60))
def test_capped_quantity_covers_the_days_and_no_more_than_one_unit_extra(per_day, days):
    qty = dosing.capped_quantity(per_day, days)
    assert qty >= per_day * days - 1e-6
    assert qty - per_day * days < 1
    assert qty == int(qty)


@given(st.sampled_from(["mg", "g", "ug", "mcg"]), st.floats(min_value=0.001, max_value=100))
def test_mass_units_convert_to_mg(unit, amount):
    expected = amount * {"mg": 1, "g": 1000, "ug": 0.001, "mcg": 0.001}[unit]
    assert dosing.to_mg(amount, unit, None, None) == pytest.approx(expected)


@given(st.floats(min_value=0.5, max_value=4), st.sampled_from([2.0, 5.0, 10.0]))
def test_tablets_and_mg_round_trip(tablets, strength):
    mg = dosing.to_mg(tablets, "tablet", strength, None)
    assert dosing.to_units(mg, "tablet", strength, None) == pytest.approx(tablets)


def test_ml_uses_concentration_and_unknown_units_give_none():
    assert dosing.to_mg(2, "mL", None, 5.0) == 10
    assert dosing.to_mg(2, "mL", 5.0, None) is None
    assert dosing.to_mg(1, None, 5.0, None) is None


@pytest.mark.parametrize(
    ("duration", "days"),
    [
        ({"value": 2, "code": "wk"}, 14),
        ({"value": 30, "unit": "days"}, 30),
        ({"value": 1, "code": "mo"}, 30),
        ({"value": 48, "code": "h"}, 2),
        ({"value": "7", "code": "d"}, None),
        ({"value": 7}, None),
        ({"value": True, "code": "d"}, None),
    ],
)
def test_duration_days(duration, days):
    got = dosing.duration_days(duration)
    assert got == (pytest.approx(days) if days is not None else None)


def test_timing_codes_time_of_day_and_bounds():
    assert dosing.doses_per_day({"code": {"coding": [{"code": "TID"}]}}) == 3
    assert dosing.doses_per_day({"repeat": {"timeOfDay": ["08:00:00", "20:00:00"]}}) == 2
    assert dosing.doses_per_day({"repeat": {"frequency": 2}}) is None
    span = {"repeat": {"boundsPeriod": {"start": "2026-01-01", "end": "2026-01-11"}}}
    assert dosing.bounds_days(span) == 10
    assert dosing.bounds_days({"repeat": {"boundsDuration": {"value": 5, "code": "d"}}}) == 5


def test_max_dose_per_period():
    dosage = {
        "maxDosePerPeriod": {
            "numerator": {"value": 3, "unit": "tablet"},
            "denominator": {"value": 1, "code": "d"},
        }
    }
    assert dosing.max_per_day(dosage) == (3, "tablet")
    assert dosing.max_per_day({}) is None


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)))
def test_age_never_negative_and_years_match_months(birth):
    years, months = dosing.age_on(birth, date(2026, 1, 15))
    assert years == months // 12
    assert years >= 0
    # a birthday exactly N years before is N completed years
    if birth.month != 2 or birth.day != 29:
        on = birth.replace(year=birth.year + 70)
        assert dosing.age_on(birth, on)[0] == 70


def test_parse_date_forms():
    assert dosing.parse_date("2026-01-15T10:00:00Z") == date(2026, 1, 15)
    assert dosing.parse_date("1950") == date(1950, 1, 1)
    assert dosing.parse_date("1950-06") == date(1950, 6, 1)
    assert dosing.parse_date("not a date") is None
    assert dosing.parse_date(19500101) is None
