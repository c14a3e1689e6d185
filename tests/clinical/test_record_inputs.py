"""Record inputs for issue 14: drugs recognised by RxNorm product code alone (no display, no
text), the request's other drafts always classified, the earliest start of a medication, and
the condition groups the new rules read (severe hepatic, stiff-man, substance use, falls risk)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.clinical.orders import OrderReader
from cds_service.clinical.policy import load_policy
from cds_service.clinical.record import build_record
from cds_service.fhir.prefetch import read_prefetch

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"



def diazepam_order(vs):
    return OrderReader(vs).read(
        {
            "resourceType": "MedicationRequest",
            "id": "dz",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": "Patient/p"},
            "authoredOn": "2026-01-15",
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": "197591"}]},
        }
    )


def bundle(*resources):
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


def record(vs, policy=None, drafts=(), meds=(), conditions=()):
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p", "birthDate": "1950-03-01"},
        "medications": bundle(*meds),
        "conditions": bundle(*conditions),
        "observations": bundle(),
        "allergies": bundle(),
    }
    policy = policy or load_policy(valuesets=vs)
    return build_record(read_prefetch(prefetch), vs, policy, diazepam_order(vs), drafts)


def coded_only(rid, code, status="active", **extra):
    """A medication order that carries only an RxNorm code: no display, no text."""
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": code}]},
        **extra,
    }


def condition(rid, system, code):
    return {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": "Patient/p"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": system, "code": code}]},
    }


# -- product codes with no display ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "ingredient", "cls"),
    [
        ("197511", "ciprofloxacin", "cyp1a2_strong"),  # ciprofloxacin 250 MG Oral Tablet
        ("197512", "ciprofloxacin", "cyp1a2_strong"),  # ciprofloxacin 750 MG Oral Tablet
        ("903884", "fluvoxamine", "cyp3a4_2c19_strong"),  # fluvoxamine maleate 100 MG Tablet
        ("310431", "gabapentin", "gabapentinoid"),  # gabapentin 300 MG Oral Capsule
        ("483440", "pregabalin", "gabapentinoid"),  # pregabalin 150 MG Oral Capsule
        ("857002", "hydrocodone", "opioid"),  # APAP 325 / hydrocodone 5 MG Oral Tablet
    ],
)
def test_product_code_without_display_is_recognised(vs, code, ingredient, cls):
    rec = record(vs, meds=[coded_only("m1", code)])
    assert [m.ingredients for m in rec.medications] == [frozenset({ingredient})]
    assert cls in rec.classes()


def test_fluvoxamine_is_both_cyp1a2_and_cyp3a4_2c19(vs):
    classes = record(vs, meds=[coded_only("m1", "903884")]).classes()
    assert {"cyp1a2_strong", "cyp3a4_2c19_inhibitor", "cyp3a4_2c19_strong"} <= classes


def test_suboxone_is_not_rescue_naloxone_but_narcan_is(vs):
    suboxone = record(vs, meds=[coded_only("m1", "1010600")])  # buprenorphine / naloxone film
    assert suboxone.medications[0].ingredients == frozenset({"buprenorphine"})
    assert "naloxone" not in suboxone.classes()
    narcan = record(vs, meds=[coded_only("m1", "1725059")])  # naloxone 40 MG/ML Nasal Spray
    assert "naloxone" in narcan.classes()


def test_unknown_code_without_text_stays_unrecognised(vs):
    assert record(vs, meds=[coded_only("m1", "999999999")]).medications == []


# -- drafts -----------------------------------------------------------------------------------


def test_other_drafts_are_classified_whatever_the_policy_flags(vs):
    off = load_policy(
        valuesets=vs,
        overrides={
            "beers": {"cns_count_includes_drafts": False},
            "opioid": {"count_draft_opioids": False},
        },
    )
    cipro = coded_only("cipro", "197511", status="draft")
    rec = record(vs, policy=off, drafts=[cipro])
    assert [m.ref for m in rec.draft_medications] == ["MedicationRequest/cipro"]
    assert rec.draft_medications[0].classes >= {"cyp1a2_strong"}
    assert rec.medications == []  # a draft is not an active medication


def test_the_order_itself_is_not_its_own_draft(vs):
    itself = coded_only("dz", "197591", status="draft")
    assert record(vs, drafts=[itself]).draft_medications == []


# -- start date -------------------------------------------------------------------------------


def test_start_is_the_earliest_of_authored_validity_and_bounds(vs):
    renewal = coded_only(
        "m1",
        "197591",
        authoredOn="2026-01-10",  # the renewal was written recently ...
        dispenseRequest={"validityPeriod": {"start": "2025-11-20", "end": "2026-02-10"}},
        dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": {"start": "2025-10-01"}}}}],
    )
    use = record(vs, meds=[renewal]).medications[0]
    assert use.start == date(2025, 10, 1)  # ... but the course began with the bounds period
    assert use.end == date(2026, 2, 10)


def test_later_dates_do_not_move_the_start(vs):
    order = coded_only(
        "m1",
        "197591",
        authoredOn="2025-09-01",
        dispenseRequest={"validityPeriod": {"start": "2025-12-01"}},
    )
    assert record(vs, meds=[order]).medications[0].start == date(2025, 9, 1)


@pytest.mark.parametrize(
    ("effective", "expected"),
    [
        ({"effectivePeriod": {"start": "2025-06-01", "end": "2026-06-01"}}, date(2025, 6, 1)),
        ({"effectiveDateTime": "2025-07-04"}, date(2025, 7, 4)),
    ],
)
def test_statement_effective_start_counts(vs, effective, expected):
    statement = {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "status": "active",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "197591"}]},
        "dateAsserted": "2026-01-01",
        **effective,
    }
    assert record(vs, meds=[statement]).medications[0].start == expected


# -- conditions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code", "present", "absent"),
    [
        (ICD, "K70.40", {"hepatic_failure"}, {"liver_disease"}),  # alcoholic hepatic failure
        (ICD, "K70.41", {"hepatic_failure"}, {"liver_disease"}),
        (ICD, "K76.82", {"hepatic_failure"}, set()),  # hepatic encephalopathy
        (ICD, "K72.90", {"hepatic_failure"}, set()),
        (SCT, "59927004", {"hepatic_failure"}, set()),
        (ICD, "K70.30", {"liver_disease"}, {"hepatic_failure"}),  # alcoholic cirrhosis
        (ICD, "K74.60", {"liver_disease"}, {"hepatic_failure"}),
        (ICD, "G25.82", {"stiff_man_syndrome"}, set()),
        (ICD, "G80.3", {"athetosis", "cerebral_palsy"}, set()),
        (ICD, "F17.210", set(), {"substance_use_disorder"}),  # nicotine dependence
        (ICD, "Z71.42", set(), {"substance_use_disorder", "alcohol_use_disorder"}),
        (ICD, "Z71.52", set(), {"substance_use_disorder"}),
        (ICD, "F55.2", set(), {"substance_use_disorder"}),  # laxative abuse
        (ICD, "Z71.41", {"substance_use_disorder", "alcohol_use_disorder"}, set()),
        (ICD, "F10.20", {"substance_use_disorder", "alcohol_use_disorder"}, set()),
        (ICD, "F11.20", {"substance_use_disorder"}, {"alcohol_use_disorder"}),
        (ICD, "F13.20", {"substance_use_disorder"}, set()),
        (SCT, "7200002", {"substance_use_disorder", "alcohol_use_disorder"}, set()),
        (ICD, "Z91.81", {"falls"}, {"falls_risk"}),
        (ICD, "W19.XXXA", {"falls"}, set()),
        (SCT, "129839007", {"falls_risk"}, {"falls"}),
        (ICD, "K25.4", {"gi_bleed_or_ulcer"}, set()),
        (ICD, "K92.2", {"gi_bleed_or_ulcer"}, set()),
        (ICD, "Z87.11", {"gi_bleed_or_ulcer"}, set()),
        (ICD, "J43.9", {"chronic_lung_disease"}, {"copd"}),
        (ICD, "J84.10", {"chronic_lung_disease"}, set()),
        (ICD, "J44.9", {"copd"}, {"chronic_lung_disease"}),
        (ICD, "O91.03", {"breastfeeding"}, set()),
    ],
)
def test_condition_groups(vs, system, code, present, absent):
    groups = set(record(vs, conditions=[condition("c1", system, code)]).conditions)
    assert present <= groups
    assert not (absent & groups)


def test_at_risk_for_falls_text_is_not_a_history_of_falls(vs):
    def groups(text):
        res = {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": "Patient/p"},
            "code": {"text": text},
        }
        return set(record(vs, conditions=[res]).conditions)

    assert groups("At risk for falls") == {"falls_risk"}
    assert groups("High fall risk") == {"falls_risk"}
    assert groups("Falls") == {"falls"}
    assert groups("History of falls") == {"falls"}
    assert groups("Stiff person syndrome") == {"stiff_man_syndrome"}
