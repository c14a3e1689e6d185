from cds_service.clinical.rules.beers import beers_benzodiazepine, beers_cns_active
from tests.clinical.rules.conftest import med, patient


def test_65_and_over_gets_the_beers_warning_not_64(order, policy):
    assert beers_benzodiazepine(order(reason="M62.830"), patient(64), policy) == []
    [f] = beers_benzodiazepine(order(reason="M62.830"), patient(65), policy)
    assert (f.indicator, f.facts["age"]) == ("warning", 65)


def test_geriatric_syndrome_raises_to_critical_and_is_named(order, policy):
    for group in ("falls", "fracture", "dementia", "delirium"):
        [f] = beers_benzodiazepine(order(), patient(80, conditions={group: None}), policy)
        assert (f.indicator, f.variant) == ("critical", "syndrome")
        assert f.audit["syndromes"] == [group]  # the one the patient has, by code
        assert policy.group_titles[group].lower() in f.facts["syndromes"].lower()
    both = patient(80, conditions={"falls": None, "delirium": None})
    [f] = beers_benzodiazepine(order(), both, policy)
    assert sorted(f.audit["syndromes"]) == ["delirium", "falls"]
    for group in ("falls", "delirium"):
        assert policy.group_titles[group].lower() in f.facts["syndromes"].lower()
    assert policy.group_titles["dementia"].lower() not in f.facts["syndromes"].lower()


def test_exceptions_and_hospice_are_quiet(order, policy):
    assert beers_benzodiazepine(order(reason="F10.230"), patient(70), policy) == []  # withdrawal
    assert beers_benzodiazepine(order(reason="F41.1"), patient(70), policy) == []  # GAD
    assert beers_benzodiazepine(order(), patient(70, conditions={"hospice": None}), policy) == []
    assert beers_benzodiazepine(order(code="801961"), patient(70), policy) == []  # rescue gel


def test_three_cns_active_counts_the_ordered_drug(order, policy, vs):
    two = [med(vs, "sertraline"), med(vs, "gabapentin")]
    [f] = beers_cns_active(order(), patient(70, meds=two), policy)
    assert f.facts["count"] == 3 and "diazepam" in f.facts["drugs"]
    assert beers_cns_active(order(), patient(70, meds=two[:1]), policy) == []
    assert beers_cns_active(order(), patient(50, meds=two), policy) == []


def test_duplicate_ingredients_count_once(order, policy, vs):
    meds = [med(vs, "sertraline"), med(vs, "sertraline"), med(vs, "diazepam")]
    assert beers_cns_active(order(), patient(70, meds=meds), policy) == []
