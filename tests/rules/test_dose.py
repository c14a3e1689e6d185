from cds_service.rules.dose import dose_limit
from tests.rules.conftest import patient


def test_geriatric_start_dose(order, policy):
    [f] = dose_limit(order(mg=5, times=3, reason="M62.830"), patient(70), policy)
    assert (f.indicator, f.variant) == ("info", "geriatric")
    [opt] = f.options
    dosage = opt.resource["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 2
    assert dosage["timing"]["repeat"]["frequency"] == 2
    assert opt.resource["medicationCodeableConcept"]["coding"][0]["code"] == "197590"
    assert dose_limit(order(mg=2, times=2, reason="M62.830"), patient(70), policy) == []
    assert dose_limit(order(mg=5, times=3, reason="M62.830"), patient(40), policy) == []


def test_over_40_mg_a_day_at_any_age(order, policy):
    [f] = dose_limit(order(mg=10, times=5, reason="M62.830"), patient(30), policy)
    assert (f.indicator, f.facts["mg_day"]) == ("warning", "50")
    assert dose_limit(order(mg=10, times=4, reason="M62.830"), patient(30), policy) == []


def test_alcohol_withdrawal_with_cirrhosis_gets_the_hepatic_note(order, policy):
    record = patient(70, conditions={"liver_disease": None})
    [f] = dose_limit(order(reason="F10.230"), record, policy)
    assert (f.indicator, f.variant) == ("info", "hepatic")
    assert dose_limit(order(reason="F10.230"), patient(70), policy) == []
