from cds_service.clinical.rules.contraindication import diazepam_contraindication
from tests.clinical.rules.conftest import patient


def test_each_label_contraindication_is_critical_with_a_delete(order, policy):
    for group in (
        "myasthenia_gravis",
        "sleep_apnea",
        "respiratory_failure",
        "hepatic_failure",
        "acute_angle_closure_glaucoma",
    ):
        [f] = diazepam_contraindication(order(), patient(conditions={group: None}), policy)
        assert f.indicator == "critical"
        assert [o.kind for o in f.options] == ["delete"]
        assert group in f.audit["conditions"]


def test_copd_and_cirrhosis_are_not_hard_stops(order, policy):
    record = patient(conditions={"copd": None, "liver_disease": None})
    assert diazepam_contraindication(order(), record, policy) == []


def test_rescue_routes_use_their_shorter_list(order, policy):
    gel = order(code="801961")  # rectal gel: only glaucoma/hypersensitivity apply
    assert diazepam_contraindication(gel, patient(conditions={"sleep_apnea": None}), policy) == []
    [f] = diazepam_contraindication(
        gel, patient(conditions={"acute_angle_closure_glaucoma": None}), policy
    )
    assert f.indicator == "critical"


def test_allergy_and_infant_age(order, policy):
    [f] = diazepam_contraindication(order(), patient(allergies=frozenset({"diazepam"})), policy)
    assert "allergy" in f.facts["conditions"]
    infant = patient(age=0)
    infant.age_months = 3
    [f] = diazepam_contraindication(order(), infant, policy)
    assert "3 months" in f.facts["first"]


def test_infant_age_limit_and_its_text_follow_the_policy(order, policy):
    import copy

    from cds_service.clinical.policy import Policy

    data = copy.deepcopy(policy.data)
    data["age"]["min_age_months"] = 12
    stricter = Policy(data, policy.valuesets)
    infant = patient(age=0)
    infant.age_months = 9
    assert diazepam_contraindication(order(), infant, policy) == []  # 9 >= 6 months
    [f] = diazepam_contraindication(order(), infant, stricter)
    assert "under 12 months" in f.facts["first"]
