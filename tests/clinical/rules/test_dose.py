from cds_service.clinical.rules.dose import dose_limit
from tests.clinical.rules.conftest import patient


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


def test_geriatric_rewrite_of_a_prn_order_is_consistent(order, policy):
    """The rewritten PRN order keeps 'as needed', and its daily maximum follows the new dose
    (a stale '4 tablets a day' would mean 4 x 2 mg after the product change, not what it said)."""
    raw_dosage = {
        "asNeededBoolean": True,
        "timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}},
        "maxDosePerPeriod": {
            "numerator": {"value": 4, "unit": "tablet", "code": "{tbl}"},
            "denominator": {"value": 1, "unit": "d", "code": "d"},
        },
        "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
    }
    made = order(reason="M62.830", dosageInstruction=[raw_dosage])
    [f] = dose_limit(made, patient(70), policy)
    dosage = f.options[0].resource["dosageInstruction"][0]
    assert dosage["asNeededBoolean"] is True
    assert "as needed" in dosage["text"]
    ceiling = dosage["maxDosePerPeriod"]["numerator"]
    assert (ceiling["value"], ceiling["code"]) == (4, "mg")  # 2 mg x 2 a day


def test_capped_bounds_period_keeps_the_start_format(order, policy):
    from cds_service.clinical.suggestions import rewrite_order

    dosage = {
        "timing": {
            "repeat": {
                "frequency": 3,
                "period": 1,
                "periodUnit": "d",
                "boundsPeriod": {"start": "2026-01-15T10:00:00Z", "end": "2026-02-14T10:00:00Z"},
            }
        },
        "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
    }
    made = order(dosageInstruction=[dosage], dispenseRequest={})
    bounds = rewrite_order(made, days=7)["dosageInstruction"][0]["timing"]["repeat"]
    assert bounds["boundsPeriod"]["end"] == "2026-01-22T10:00:00Z"
