"""Dose and duration arithmetic is total: fed ANY JSON (the shapes a hostile or broken EHR
can send), every function returns None or a finite, non-negative number — it never raises
and never hands a rule inf or nan to print on a card.

``tests/test_dosing.py`` (the engine's own) checks the arithmetic is right on sensible input;
this file adds what it leaves out: arbitrary, extreme and ill-typed input.
"""

from __future__ import annotations

import math
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.clinical import dosing

FAST = settings(max_examples=300, deadline=None, database=None, derandomize=True)

numbers = st.one_of(
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1e-300),
    st.floats(min_value=1e300, max_value=1e308),
    st.sampled_from([0, -0.0, 5e-324, 1e308, 10**400]),
)
scalars = st.one_of(
    st.none(), st.booleans(), numbers, st.text(max_size=12), st.sampled_from(["5", "NaN", "1e999"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
units = st.one_of(
    st.sampled_from(["s", "min", "h", "d", "wk", "mo", "a", "days", "[lb_av]", "fortnight", ""]),
    json_values,
)
quantities = st.one_of(
    json_values,
    st.fixed_dictionaries({"value": numbers}, optional={"code": units, "unit": units}),
)
timings = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "repeat": st.fixed_dictionaries(
                {},
                optional={
                    "frequency": numbers,
                    "frequencyMax": numbers,
                    "period": numbers,
                    "periodUnit": units,
                    "periodUnits": units,
                    "timeOfDay": json_values,
                    "when": json_values,
                    "boundsDuration": quantities,
                    "boundsPeriod": json_values,
                },
            ),
            "code": json_values,
        },
    ),
)


def finite_or_none(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isfinite(value) and value >= 0)


@FAST
@given(json_values)
def test_num_accepts_only_finite_non_negative_numbers(value):
    got = dosing.num(value)
    assert finite_or_none(got)
    if got is not None:
        assert not isinstance(value, bool)


@FAST
@given(quantities)
def test_duration_days_is_total(quantity):
    assert finite_or_none(dosing.duration_days(quantity))


@FAST
@given(timings, st.booleans())
def test_doses_per_day_is_total(timing, use_max):
    got = dosing.doses_per_day(timing, use_max=use_max)
    assert finite_or_none(got)
    assert got != 0


@FAST
@given(timings)
def test_bounds_days_is_total(timing):
    assert finite_or_none(dosing.bounds_days(timing))


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "maxDosePerPeriod": st.one_of(
                json_values,
                st.fixed_dictionaries({"numerator": quantities, "denominator": quantities}),
            )
        },
    )
)
def test_max_per_day_is_total(dosage):
    got = dosing.max_per_day(dosage)
    assert got is None or finite_or_none(got[0])


@FAST
@given(
    st.one_of(st.none(), st.floats(0, 1e308)),
    st.one_of(st.none(), st.floats(0, 1e308)),
    st.one_of(st.none(), st.floats(0, 1e308)),
    st.one_of(st.none(), st.floats(0, 1e308)),
    st.integers(-5, 10**6),
)
def test_supply_days_is_finite_whatever_the_inputs(expected, quantity, per_day, bounds, repeats):
    got = dosing.supply_days(expected, quantity, per_day, bounds, repeats)
    assert got is None or finite_or_none(got[0])


@FAST
@given(st.floats(0, 1e308), st.floats(0, 1e308))
def test_capped_quantity_is_whole_and_covers_or_is_none(per_day, days):
    got = dosing.capped_quantity(per_day, days)
    assert got is None or (got == int(got) and got >= per_day * days - 1e-6 * max(1, got))


@FAST
@given(json_values)
def test_parse_date_never_raises(value):
    got = dosing.parse_date(value)
    assert got is None or isinstance(got, date)


@FAST
@given(st.dates(), st.dates())
def test_age_is_never_negative(birth, on):
    years, months = dosing.age_on(birth, on)
    assert years >= 0 and months >= 0 and years == months // 12
