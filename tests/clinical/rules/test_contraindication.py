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


def test_copd_is_silent_and_cirrhosis_a_warning_without_delete(order, policy):
    assert diazepam_contraindication(order(), patient(conditions={"copd": None}), policy) == []
    record = patient(conditions={"copd": None, "liver_disease": None})
    [f] = diazepam_contraindication(order(), record, policy)  # R1: relative caution
    assert (f.indicator, f.variant, f.options) == ("warning", "caution", [])


def test_rescue_routes_use_their_shorter_list_and_never_delete(order, policy):
    gel = order(code="801961")  # rectal gel: only glaucoma/hypersensitivity are absolute
    [f] = diazepam_contraindication(gel, patient(conditions={"sleep_apnea": None}), policy)
    assert (f.indicator, f.options) == ("warning", [])
    [f] = diazepam_contraindication(
        gel, patient(conditions={"acute_angle_closure_glaucoma": None}), policy
    )
    assert f.indicator == "critical" and f.options == []  # F.0-3: rescue therapy stays


def test_injection_ignores_the_tablet_list_and_is_never_deleted(order, policy):
    iv = order(code="309845", reason="G41.9")
    record = patient(conditions={"sleep_apnea": None, "myasthenia_gravis": None})
    [f] = diazepam_contraindication(iv, record, policy)
    assert (f.indicator, f.options) == ("warning", [])  # sleep apnea: caution only
    [f] = diazepam_contraindication(
        iv, patient(conditions={"acute_angle_closure_glaucoma": None}), policy
    )
    assert f.indicator == "critical" and f.options == []


def test_stated_seizure_oral_order_is_not_offered_for_removal(order, policy):
    record = patient(conditions={"myasthenia_gravis": None})
    [f] = diazepam_contraindication(order(reason="G40.909"), record, policy)
    assert f.indicator == "critical" and f.options == []


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
