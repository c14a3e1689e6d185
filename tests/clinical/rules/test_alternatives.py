from datetime import date

from cds_service.clinical.rules.alternatives import muscle_relaxant_alternative
from cds_service.clinical.valuesets import RXNORM
from tests.clinical.rules.conftest import med, patient


def offered(findings):
    [f] = findings
    return f, [o.resource["medicationCodeableConcept"]["coding"][0]["code"] for o in f.options]


def test_young_acute_ranks_cyclobenzaprine_first(order, policy):
    f, codes = offered(muscle_relaxant_alternative(order(reason="M62.830"), patient(34), policy))
    assert codes == ["828320", "313412", "197943"]
    assert [o.recommended for o in f.options] == [True, False, False]
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
    assert f.topic == "no-suitable-alternative" and not f.options


def test_alternative_resource_is_a_valid_draft_carrying_reason_and_subject(order, policy):
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    made = order(reason="M62.830")
    f, _ = offered(muscle_relaxant_alternative(made, patient(34), policy))
    for option in f.options:
        res = option.resource
        MedicationRequest.model_validate(res)
        assert (res["status"], res["intent"]) == ("draft", "order")
        assert res["subject"] == {"reference": "Patient/p"}
        assert res["reasonCode"][0]["coding"][0]["code"] == "M62.830"
        assert res["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
        assert res["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    cyclo = f.options[0].resource
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
    assert f.topic == "no-suitable-alternative" and not f.options
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
    assert [o.code for o in f.options] == ["828320"]
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
