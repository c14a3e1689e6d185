from cds_service.clinical.rules.opioid import opioid_benzodiazepine
from tests.clinical.rules.conftest import med, patient


def test_active_opioid_warns_and_names_it(order, policy, vs):
    [f] = opioid_benzodiazepine(order(), patient(meds=[med(vs, "oxycodone")]), policy)
    assert (f.indicator, f.facts["opioids"]) == ("warning", "oxycodone")


def test_escalates_for_age_and_breathing_conditions(order, policy, vs):
    oxy = [med(vs, "oxycodone")]
    assert opioid_benzodiazepine(order(), patient(70, meds=oxy), policy)[0].indicator == "critical"
    copd = patient(40, meds=oxy, conditions={"copd": None})
    assert opioid_benzodiazepine(order(), copd, policy)[0].indicator == "critical"


def test_opioid_in_the_same_draft_set_counts(order, policy, vs):
    record = patient(draft_medications=[med(vs, "hydrocodone", status="draft")])
    assert opioid_benzodiazepine(order(), record, policy)[0].facts["opioids"] == "hydrocodone"


def test_no_opioid_no_card(order, policy, vs):
    assert opioid_benzodiazepine(order(), patient(meds=[med(vs, "sertraline")]), policy) == []
