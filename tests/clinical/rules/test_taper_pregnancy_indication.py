from dataclasses import replace
from datetime import date

import pytest

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


def _running(vs, mg: float, times: float, start: date):
    """A running diazepam prescription whose dose is recorded (review round 9: with none the
    step is offered, not recommended)."""
    return replace(med(vs, "diazepam", start=start), mg_per_dose=mg, doses_per_day=times)


def test_first_taper_step_is_within_25_percent_and_14_days(order, policy, vs):
    base = order(reason="M62.830")
    long = patient(78, meds=[_running(vs, base.mg_per_dose, base.doses_per_day, date(2025, 6, 1))])
    [f] = taper_required(order(reason="M62.830"), long, policy)
    step, *others = f.options
    assert step.kind == "update" and step.recommended
    assert not any(o.recommended for o in others)  # the tablet step beside it (N6)
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


def _cut(option, mg_day):
    dosage = option.resource["dosageInstruction"][0]
    new_mg = dosage["doseAndRate"][0]["doseQuantity"]["value"]
    return 100 * (1 - new_mg * dosage["timing"]["repeat"]["frequency"] / mg_day)


def test_a_tablet_step_beside_the_solution_step(order, policy, vs):
    """Review round 2 N6: 5 mg twice a day: the recommended first step, 10 % lower, needs
    the 1 mg/mL solution (4.5 mg); whole tablets make 4 mg twice a day (two 2 mg tablets),
    20 % lower, within F.0-1's 25 %: offered beside it, not recommended, its label saying it
    is bigger than ASAM's usual 5 to 10 % start; 14 days, 56 tablets."""
    long = patient(74, meds=[_running(vs, 5, 2, date(2025, 1, 1))])
    [f] = taper_required(order(mg=5, times=2, reason="F41.9"), long, policy)
    solution, tablets = f.options
    assert solution.recommended and 5 <= _cut(solution, 10) <= 10
    assert "mL of 1 mg/mL solution" in solution.label
    assert not tablets.recommended and tablets.kind == "update"
    assert _cut(tablets, 10) == pytest.approx(20)
    assert tablets.label == (
        "Or tablets: diazepam 4 mg twice a day (20 % step, above ASAM's usual 5 to 10 %)"
    )
    coding = tablets.resource["medicationCodeableConcept"]["coding"][0]
    assert coding["code"] == "197590"  # diazepam 2 MG Oral Tablet: whole tablets
    dispense = tablets.resource["dispenseRequest"]
    assert dispense["quantity"]["value"] == 56 and dispense["expectedSupplyDuration"]["value"] == 14
    # another product than the pended 5 mg tablet: named first, and a new order in Epic
    assert tablets.product == "diazepam 2 mg tablets"
    assert "Tablet step: diazepam 2 mg tablets: 4 mg (2 tablets)" in tablets.edit_text
    assert "no refills" in tablets.edit_text


def test_a_step_names_a_product_change_only_when_there_is_one(order, policy, vs):
    """Review round 3: Epic types the step by hand. On a 5 mg tablet order of 20 mg twice a
    day the solution step changes the product and says so; the tablet step (15 mg, 3 tablets
    of 5 mg) is the pended product and is a plain edit."""
    long = patient(74, meds=[med(vs, "diazepam", start=date(2025, 1, 1))])
    [f] = taper_required(order(mg=20, times=2, code="197591", reason="F41.9"), long, policy)
    solution, tablets = f.options
    assert solution.product == "diazepam oral solution 1 mg/mL"
    assert solution.edit_text.startswith(
        "First taper step: diazepam oral solution 1 mg/mL (not the 5 mg/mL "
        "concentrate): 18 mg = 18 mL twice a day for 14 days"
    )
    assert tablets.resource["medicationCodeableConcept"]["coding"][0]["code"] == "197591"
    assert tablets.product is None
    assert tablets.edit_text.startswith(
        "Tablet step: diazepam 15 mg (3 tablets of 5 mg) twice a day for 14 days"
    )


def test_no_tablet_step_fits_2_mg_twice_a_day_and_the_card_says_so(order, policy, vs):
    """N6, case 06 (74, 2 mg twice a day for anxiety): no whole tablet makes a dose below 2
    mg, and 2 mg once a day is 50 % lower: no tablet step is offered, and the card says why."""
    long = patient(74, meds=[med(vs, "diazepam", start=date(2025, 1, 1))])
    [f] = taper_required(order(mg=2, times=2, code="197590", reason="F41.9"), long, policy)
    [solution] = f.options
    assert "solution" in solution.label
    assert any(
        "No tablet step fits" in n and "not with 1 to 3 tablets of one strength" in n
        for n in f.notes
    )


def test_every_tablet_step_is_whole_tablets_within_25_percent(policy):
    """F.0-1 over many doses: a tablet step, when there is one, lowers the daily dose by 5 to
    25 %, with at most max_tablets_per_dose whole tablets of one strength."""
    from cds_service.clinical.rules.taper import tablet_step

    strengths = (2, 5, 10)
    for mg in (1, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10, 12, 15, 20):
        for doses in (1, 2, 3, 4):
            step = tablet_step(mg * doses, doses, policy)
            if step is None:
                continue
            assert 5 <= 100 * (1 - step / mg) <= 25, (mg, doses, step)
            assert any(step % s == 0 and step / s <= 3 for s in strengths), (mg, doses, step)


def test_with_no_recorded_dose_the_step_is_offered_not_recommended(order, policy, vs):
    """Review rounds 8 (F7) and 9: a running prescription with no dose: the step is worked
    out from the pended order, offered but not pre-selected, and the summary says so."""
    long = patient(74, meds=[med(vs, "diazepam", start=date(2025, 1, 1))])
    [f] = taper_required(order(mg=5, times=2, reason="F41.9"), long, policy)
    assert f.options and not any(o.recommended for o in f.options)
    assert f.facts["basis"] == "; from this order: confirm the dose taken"
