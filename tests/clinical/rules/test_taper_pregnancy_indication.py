from datetime import date

from cds_service.clinical.rules.indication import indication_missing
from cds_service.clinical.rules.pregnancy import pregnancy_lactation
from cds_service.clinical.rules.taper import taper_required
from tests.clinical.rules.conftest import med, patient


def test_taper_after_four_weeks_of_diazepam_only(order, policy, vs):
    long = patient(50, meds=[med(vs, "diazepam", start=date(2025, 10, 1))])
    [f] = taper_required(order(reason="M62.830"), long, policy)
    # 2025-10-01 to the order date 2026-01-15: 106 days, 15 whole weeks
    assert f.indicator == "warning" and f.facts["since"] == "2025-10-01"
    assert f.facts["weeks"] == 15 == f.audit["weeks"]
    # the threshold is 28 days (4 weeks): day 28 counts, day 27 does not
    four = patient(50, meds=[med(vs, "diazepam", start=date(2025, 12, 18))])
    [f] = taper_required(order(reason="M62.830"), four, policy)
    assert f.facts["weeks"] == 4
    short = patient(50, meds=[med(vs, "diazepam", start=date(2025, 12, 19))])
    assert taper_required(order(reason="M62.830"), short, policy) == []
    recent = patient(50, meds=[med(vs, "diazepam", start=date(2026, 1, 5))])
    assert taper_required(order(reason="M62.830"), recent, policy) == []
    undated = patient(50, meds=[med(vs, "diazepam")])
    assert taper_required(order(reason="M62.830"), undated, policy) == []
    # another long-term benzodiazepine alone is R16, not R13
    other = patient(50, meds=[med(vs, "lorazepam", start=date(2025, 1, 5))])
    assert taper_required(order(reason="M62.830"), other, policy) == []


def test_first_taper_step_is_within_25_percent_and_14_days(order, policy, vs):
    long = patient(78, meds=[med(vs, "diazepam", start=date(2025, 6, 1))])
    [f] = taper_required(order(reason="M62.830"), long, policy)
    [step] = f.options
    assert step.kind == "update" and step.recommended
    dosage = step.resource["dosageInstruction"][0]
    new_mg = dosage["doseAndRate"][0]["doseQuantity"]["value"]
    times = dosage["timing"]["repeat"]["frequency"]
    base = order(reason="M62.830")
    cut = 1 - new_mg * times / base.mg_per_day
    assert 0.05 <= cut <= 0.25
    assert step.resource["dispenseRequest"]["expectedSupplyDuration"]["value"] >= 14


def test_taper_is_info_and_not_recommended_for_stated_spasticity(order, policy, vs):
    long = patient(50, meds=[med(vs, "diazepam", start=date(2025, 6, 1))])
    [f] = taper_required(order(reason="G35"), long, policy)
    assert f.indicator == "info" and not any(o.recommended for o in f.options)


def test_pregnancy_and_breastfeeding_are_info(order, policy):
    [f] = pregnancy_lactation(
        order(reason="M62.830"), patient(30, conditions={"pregnancy": None}), policy
    )
    assert (f.indicator, f.variant) == ("info", "pregnancy")
    [f] = pregnancy_lactation(order(), patient(30, conditions={"breastfeeding": None}), policy)
    assert f.variant == "breastfeeding"
    # R14 (turn 2): on every pathway, rescue products included, and never a delete
    [f] = pregnancy_lactation(
        order(code="801961"), patient(30, conditions={"pregnancy": None}), policy
    )
    assert f.indicator == "info" and not f.options


def test_missing_indication_offers_reason_updates(order, policy):
    [f] = indication_missing(order(), patient(40), policy)
    assert f.indicator == "info"
    codes = [o.resource["reasonCode"][0]["coding"][0]["code"] for o in f.options]
    assert "M62.830" in codes and all(o.kind == "update" for o in f.options)
    assert indication_missing(order(reason="M62.830"), patient(40), policy) == []
    # a problem-list condition counts as the indication
    assert indication_missing(order(), patient(40, conditions={"muscle_spasm": None}), policy) == []
    assert indication_missing(order(code="309845"), patient(40), policy) == []  # IV: R8
