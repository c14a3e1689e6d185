from datetime import date

from cds_service.clinical.rules.alternatives import muscle_relaxant_alternative
from cds_service.clinical.valuesets import RXNORM
from tests.clinical.rules.conftest import med, patient


def replacements(f):
    return [o for o in f.options if o.kind == "replace"]


def cancels(f):
    return [o for o in f.options if o.kind == "delete"]


def offered(findings):
    [f] = findings
    return f, [o.code for o in replacements(f)]


def test_young_acute_ranks_cyclobenzaprine_first(order, policy):
    f, codes = offered(muscle_relaxant_alternative(order(reason="M62.830"), patient(34), policy))
    assert codes == ["828320", "313412", "197943"]
    assert [o.recommended for o in replacements(f)] == [True, False, False]
    assert f.indicator == "info"


def test_older_with_good_kidneys_gets_baclofen(order, policy):
    f, codes = offered(
        muscle_relaxant_alternative(order(reason="M62.830"), patient(70, egfr=80), policy)
    )
    assert codes[0] == "430902" and f.indicator == "warning"
    assert "828320" not in codes  # cyclobenzaprine only if both others are excluded


def test_older_with_egfr_45_never_gets_baclofen(order, policy):
    f, codes = offered(
        muscle_relaxant_alternative(order(reason="M62.830"), patient(78, egfr=45), policy)
    )
    assert codes == ["313412"]
    assert "baclofen" in f.audit["excluded"]


def test_unknown_renal_function_demotes_baclofen_and_says_so(order, policy):
    f, codes = offered(muscle_relaxant_alternative(order(reason="M62.830"), patient(78), policy))
    assert codes == ["313412", "430902"]
    assert any("renal function unknown" in u and "baclofen" in u for u in f.unknowns)


def test_ciprofloxacin_excludes_tizanidine(order, policy, vs):
    f, codes = offered(
        muscle_relaxant_alternative(
            order(reason="M62.830"), patient(40, meds=[med(vs, "ciprofloxacin")]), policy
        )
    )
    assert "313412" not in codes


def test_maoi_within_14_days_and_heart_block_exclude_cyclobenzaprine(order, policy, vs):
    stopped = med(vs, "phenelzine", status="stopped", end=date(2026, 1, 10))
    record = patient(40)
    record.recently_stopped.append(stopped)
    _, codes = offered(muscle_relaxant_alternative(order(reason="M62.830"), record, policy))
    assert "828320" not in codes
    _, codes = offered(
        muscle_relaxant_alternative(
            order(reason="M62.830"), patient(40, conditions={"heart_block": None}), policy
        )
    )
    assert "828320" not in codes


def test_spasticity_offers_baclofen_then_tizanidine_never_cyclobenzaprine(order, policy):
    f, codes = offered(
        muscle_relaxant_alternative(
            order(), patient(45, conditions={"multiple_sclerosis": None}), policy
        )
    )
    assert codes == ["430902", "313412"] and f.variant == "spasticity"
    assert f.options[0].resource["dispenseRequest"]["expectedSupplyDuration"]["value"] == 14  # L9


def test_everything_excluded_gives_one_no_suitable_card(order, policy, vs):
    record = patient(78, egfr=25, conditions={"liver_disease": None})
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), record, policy)
    assert f.topic == "no-suitable-alternative" and [o.kind for o in f.options] == ["delete"]


def test_alternative_resource_is_a_valid_draft_carrying_reason_and_subject(order, policy):
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    made = order(reason="M62.830")
    f, _ = offered(muscle_relaxant_alternative(made, patient(34), policy))
    for option in replacements(f):
        res = option.resource
        MedicationRequest.model_validate(res)
        assert (res["status"], res["intent"]) == ("draft", "order")
        assert res["subject"] == {"reference": "Patient/p"}
        assert res["reasonCode"][0]["coding"][0]["code"] == "M62.830"
        assert res["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
        assert res["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    cyclo = replacements(f)[0].resource
    assert cyclo["dispenseRequest"]["quantity"]["value"] == 21


def test_seizure_and_anxiety_offer_no_relaxant(order, policy):
    assert muscle_relaxant_alternative(order(reason="G40.909"), patient(40), policy) == []
    [f] = muscle_relaxant_alternative(order(reason="F41.9"), patient(40), policy)
    assert f.variant == "anxiety" and not f.options


def test_hepatic_failure_excludes_cyclobenzaprine_and_tizanidine(order, policy):
    """Hepatic failure is the policy's severe hepatic group: it excludes cyclobenzaprine
    (label) and tizanidine (any impairment); with baclofen out for eGFR 40 at 72, nothing is
    left to offer."""
    record = patient(72, conditions={"hepatic_failure": None}, egfr=40)
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), record, policy)
    # no relaxant: the drug-free cancel is the only choice (N2), recommended at 72 (N3);
    # liver disease: acetaminophen at most 2 g a day
    assert f.topic == "no-suitable-alternative" and [o.kind for o in f.options] == ["delete"]
    assert f.options[0].recommended and "acetaminophen 2 g a day at most" in f.options[0].label
    assert f.audit["excluded"] == ["baclofen", "cyclobenzaprine", "tizanidine"]
    reasons = dict(
        line.removeprefix("- ").split(": ", 1) for line in f.facts["excluded_md"].splitlines()
    )
    assert "hepatic" in reasons["cyclobenzaprine"] and "hepatic" in reasons["tizanidine"]
    assert "eGFR" in reasons["baclofen"]


def test_cyclobenzaprine_last_resort_at_65_carries_the_beers_warning(order, policy):
    """F.3: for 65+ cyclobenzaprine only when baclofen and tizanidine are excluded, 'with Beers
    warning text' (SMR avoid + strong anticholinergic), not a generic 'lower doses' note."""
    record = patient(72, egfr=40, meds=[med(policy.valuesets, "ciprofloxacin")])
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), record, policy)
    assert f.topic == "muscle-relaxant-alternative"
    assert f.audit["excluded"] == ["baclofen", "tizanidine"]  # eGFR at 72; CYP1A2 inhibitor
    assert [o.code for o in replacements(f)] == ["828320"]
    text = f.facts["options_line"]  # each drug with its caution, in the card's words
    assert "Beers" in text and "anticholinergic" in text


def test_indication_levels_are_policy(order, policy):
    """Indicators of the no-suitable, anxiety, Beers-exception and hepatic cards come from the
    policy file like every other [D] level."""
    from cds_service.clinical.policy import load_policy
    from cds_service.clinical.rules.beers import beers_benzodiazepine
    from cds_service.clinical.rules.dose import dose_limit

    warn = load_policy(
        valuesets=policy.valuesets,
        overrides={
            "alternatives": {"no_suitable_indicator": "warning", "anxiety_indicator": "warning"},
            "beers": {"exception_card": "info", "exception_indicator": "warning"},
            "hepatic": {"alcohol_withdrawal_indicator": "warning"},
        },
    )
    [f] = muscle_relaxant_alternative(order(reason="F41.9"), patient(40), warn)
    assert f.indicator == "warning"
    [f] = beers_benzodiazepine(order(reason="F41.1"), patient(70), warn)  # GAD
    assert f.indicator == "warning"
    [f] = dose_limit(order(reason="F10.230"), patient(70, conditions={"liver_disease": None}), warn)
    assert f.indicator == "warning"
    excluded = patient(
        72,
        egfr=40,
        conditions={"heart_failure": None},
        meds=[med(policy.valuesets, "ciprofloxacin")],
    )
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), excluded, warn)
    assert (f.topic, f.indicator) == ("no-suitable-alternative", "warning")


# -- committee review round 2: N2 a drug-free choice; N3 nothing pre-selected but it at 65+ ----


def test_n3_at_65_and_older_the_drug_free_cancel_is_recommended_not_a_relaxant(order, policy):
    """Lead decision N3 (F.3 'Always shown' at 65+: non-drug care and acetaminophen first;
    F.4: baclofen first is judgment against the 2025 injury data): the cancel is the one
    recommended choice, no muscle relaxant is, and the relaxants keep F.3's rank order."""
    for age in (65, 70, 88):
        f, codes = offered(
            muscle_relaxant_alternative(order(reason="M62.830"), patient(age, egfr=80), policy)
        )
        assert codes == ["430902", "313412"]  # baclofen, then tizanidine (F.3 rank)
        assert not any(o.recommended for o in replacements(f))
        [cancel] = cancels(f)
        assert cancel.recommended
        assert cancel.label == "Cancel diazepam: non-drug care and acetaminophen first"
        assert f.audit["recommended"] == "cancel"


def test_n3_under_65_nothing_changes_but_the_cancel_is_offered(order, policy):
    """Under 65 the rank-1 relaxant stays recommended (N3); the drug-free cancel is there
    (N2), not recommended, and names an NSAID only when no F.3 NSAID caution holds."""
    f, codes = offered(muscle_relaxant_alternative(order(reason="M62.830"), patient(64), policy))
    assert codes[0] == "828320" and replacements(f)[0].recommended
    [cancel] = cancels(f)
    assert not cancel.recommended
    assert cancel.label == "Cancel diazepam: non-drug care first, then an NSAID or acetaminophen"
    failing_heart = patient(50, conditions={"heart_failure": None})
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), failing_heart, policy)
    [cancel] = cancels(f)
    assert "NSAID" not in cancel.label and "acetaminophen" in cancel.label


def test_unknown_indication_at_65_recommends_the_cancel_inferred_seizure_does_not(
    order, policy
):
    """N3 names 'acute spasm (or unknown)'; R12: an indication inferred off the acute-spasm
    path is offered the cancel as 'if for muscle spasm', never recommended."""
    [f] = muscle_relaxant_alternative(order(), patient(70, egfr=80), policy)
    [cancel] = cancels(f)
    assert cancel.recommended and cancel.label.startswith("If for muscle spasm: cancel diazepam")
    assert len(cancel.label) <= 80
    assert not any(o.recommended for o in replacements(f))
    seizure = patient(70, egfr=80, conditions={"seizure": None})
    [f] = muscle_relaxant_alternative(order(), seizure, policy)
    [cancel] = cancels(f)
    assert not cancel.recommended and cancel.label.startswith("If for muscle spasm:")
    assert not any(o.recommended for o in f.options)


def test_no_drug_free_cancel_for_a_long_term_user_spasticity_or_hospice_pick(order, policy, vs):
    """F.0-1: a long-term user is tapered (no alternatives finding at all); R7 spasticity is
    a labelled long-term use (no cancel); in hospice (R20) the cancel is offered at 70 but
    not recommended, and no relaxant is either."""
    long = patient(70, meds=[med(vs, "diazepam", start=date(2025, 6, 1))])
    assert muscle_relaxant_alternative(order(reason="M62.830"), long, policy) == []
    ms = patient(45, conditions={"multiple_sclerosis": None})
    [f] = muscle_relaxant_alternative(order(), ms, policy)
    assert not cancels(f)
    dying = patient(70, egfr=80, conditions={"hospice": None})
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), dying, policy)
    [cancel] = cancels(f)
    assert not any(o.recommended for o in f.options)


def test_a_child_is_offered_the_cancel_and_no_relaxant(order, policy):
    """R18: no adult muscle relaxant for a child; N2: the cancel (non-drug care first)."""
    [f] = muscle_relaxant_alternative(order(reason="M62.830"), patient(10), policy)
    assert f.topic == "no-suitable-alternative"
    [cancel] = f.options
    assert cancel.kind == "delete" and not cancel.recommended
    assert cancel.label == "Cancel diazepam: non-drug care first"
