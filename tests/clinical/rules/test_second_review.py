"""Findings of the second independent clinical-pharmacist review, pinned as rules tests."""

from datetime import date

from cds_service.clinical.rules.alternatives import muscle_relaxant_alternative
from cds_service.clinical.rules.contraindication import diazepam_contraindication
from cds_service.clinical.rules.taper import taper_required
from tests.clinical.rules.conftest import med, patient


def test_a_second_muscle_relaxant_is_never_the_default_pick(order, policy, vs):
    """Case 15: already on cyclobenzaprine, 'replace with tizanidine' was recommended."""
    record = patient(40, meds=[med(vs, "cyclobenzaprine")])
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), record, policy)
    assert f.options and not any(o.recommended for o in f.options)
    offered = {policy.products[o.code].ingredient for o in f.options if o.kind == "replace"}
    assert offered and "cyclobenzaprine" not in offered  # R19: not the drug already taken
    assert "a second muscle relaxant adds sedation" in f.facts["after_list"]


def test_no_beers_avoid_last_resort_on_top_of_a_current_relaxant(order, policy, vs):
    """Case 28: 70 y on tizanidine, eGFR 55: cyclobenzaprine (Beers avoid) was recommended."""
    record = patient(70, meds=[med(vs, "tizanidine")], egfr=55)
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), record, policy)
    assert f.topic == "no-suitable-alternative"


def test_a_taper_step_in_oral_solution_says_so(order, policy, vs):
    """Cases 01/02: the step switched tablets to the 1 mg/mL solution without a word."""
    record = patient(55, meds=[med(vs, "diazepam", start=date(2025, 1, 1))])
    [f] = taper_required(order(mg=10, times=3, reason="M62.830"), record, policy)
    [step] = f.options
    assert "mL of 1 mg/mL solution" in step.label
    coding = step.resource["medicationCodeableConcept"]["coding"][0]
    assert coding["code"] == "309843"  # diazepam 1 MG/ML Oral Solution
    # review round 1 M4: the whole step, and which solution it is not
    assert any(
        "oral solution 1 mg/mL (not the 5 mg/mL concentrate)" in note
        and "no refills" in note
        and "oral syringe" in note
        for note in f.notes
    )


def test_withdrawal_with_hepatic_failure_names_lorazepam_or_oxazepam(order, policy):
    """Case 12c (R10): severe liver disease and a stated alcohol withdrawal."""
    record = patient(50, conditions={"hepatic_failure": None})
    [f] = diazepam_contraindication(order(reason="F10.231"), record, policy)
    assert f.options == []  # F.0-3: withdrawal treatment is not offered for removal
    assert any("lorazepam or oxazepam" in note for note in f.notes)


def test_the_gabapentinoid_warning_is_cited_only_with_a_gabapentinoid(order, policy, vs):
    """Case 40: alprazolam alone got 'gabapentinoids … (FDA 2019)'."""
    from cds_service.clinical.rules.cns_combination import cns_depressant_combination

    [f] = cns_depressant_combination(order(), patient(40, meds=[med(vs, "alprazolam")]), policy)
    assert f.variant == "default"
    [g] = cns_depressant_combination(order(), patient(40, meds=[med(vs, "gabapentin")]), policy)
    assert g.variant == "gabapentinoid"
