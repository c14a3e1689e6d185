"""PatientRecord from prefetch: age at the order date, classified medications, conditions by
code and prefix, latest eGFR in the look-back, allergies, and what was unknown."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.clinical.orders import OrderReader
from cds_service.clinical.policy import load_policy
from cds_service.clinical.record import build_record
from cds_service.clinical.valuesets import load_valuesets
from cds_service.fhir.prefetch import read_prefetch

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def env():
    vs = load_valuesets()
    policy = load_policy(valuesets=vs)
    order = OrderReader(vs).read(
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
    return vs, policy, order


def bundle(*resources):
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def egfr(value, when, code="98979-8"):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "code": "mL/min/{1.73_m2}"},
    }


def build(env, **prefetch):
    vs, policy, order = env
    base = {
        "patient": {"resourceType": "Patient", "id": "p", "birthDate": "1947-06-20"},
        "medications": bundle(),
        "conditions": bundle(),
        "observations": bundle(),
        "allergies": bundle(),
    }
    base.update(prefetch)
    return build_record(read_prefetch(base), vs, policy, order)


def test_age_at_order_date_not_today(env):
    record = build(env)
    assert record.age_years == 78  # 2026-01-15 minus 1947-06-20
    assert (
        build(
            env, patient={"resourceType": "Patient", "id": "p", "birthDate": "1961-01-16"}
        ).age_years
        == 64
    )


def test_missing_patient_and_keys_are_unknown(env):
    vs, policy, order = env
    record = build_record(read_prefetch({"medications": bundle()}), vs, policy, order)
    assert {"age", "patient", "conditions", "observations", "allergies"} <= record.unknown
    assert "medications" not in record.unknown


def test_medications_classified_by_code_and_text(env):
    oxy = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1049621"}]},
    }
    text = {
        "resourceType": "MedicationRequest",
        "id": "m2",
        "status": "active",
        "medicationCodeableConcept": {"text": "Sertraline 50 mg"},
    }
    stopped = {
        "resourceType": "MedicationRequest",
        "id": "m3",
        "status": "stopped",
        "medicationCodeableConcept": {"text": "phenelzine 15 mg"},
        "dispenseRequest": {"validityPeriod": {"start": "2025-12-01", "end": "2026-01-08"}},
    }
    record = build(env, medications=bundle(oxy, text, stopped))
    assert "opioid" in record.classes() and "antidepressant" in record.classes()
    assert [m.ingredients for m in record.recently_stopped] == [frozenset({"phenelzine"})]


def test_running_diazepam_dose_is_read_from_the_prescription(env):
    """Review round 6 M-3: a long-term user's taper is measured from what they take, so the
    running diazepam prescription carries its dose; an as-needed supply or a
    MedicationStatement carries none (how much is taken is not known from them)."""
    twice = {
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
    }

    def running(dosage, kind="MedicationRequest"):
        med = {
            "resourceType": kind,
            "id": "run",
            "status": "active",
            "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": "197591"}]},
        }
        if kind == "MedicationRequest":
            med.update(intent="order", authoredOn="2025-03-02", dosageInstruction=[dosage])
        else:
            med.update(effectivePeriod={"start": "2025-03-02"}, dosage=[dosage])
        [use] = build(env, medications=bundle(med)).medications
        return use

    use = running(twice)
    assert (use.mg_per_dose, use.doses_per_day) == (5, 2)
    assert running({**twice, "asNeededBoolean": True}).mg_per_dose is None
    assert running(twice, "MedicationStatement").mg_per_dose is None


def test_conditions_by_snomed_and_icd_prefix_and_refuted_ignored(env):
    conds = bundle(
        {
            "resourceType": "Condition",
            "id": "c1",
            "code": {"coding": [{"system": ICD, "code": "G35.D"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {"coding": [{"system": SCT, "code": "78275009"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c3",
            "verificationStatus": {"coding": [{"code": "refuted"}]},
            "code": {"coding": [{"system": ICD, "code": "G70.00"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c4",
            "clinicalStatus": {"coding": [{"code": "resolved"}]},
            "code": {"coding": [{"system": ICD, "code": "Z91.81"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c5",
            "clinicalStatus": {"coding": [{"code": "resolved"}]},
            "code": {"coding": [{"system": ICD, "code": "F41.1"}]},
        },
    )
    record = build(env, conditions=conds)
    assert record.has("multiple_sclerosis") and record.has("sleep_apnea")
    assert not record.has("myasthenia_gravis")
    assert record.has("falls")  # history counts even when resolved
    assert not record.has("gad")
    assert record.condition_refs["Condition/c1"] == frozenset({"multiple_sclerosis"})


def test_latest_egfr_within_lookback(env):
    obs = bundle(egfr(45, "2025-11-01"), egfr(80, "2025-06-01"), egfr(20, "2024-06-01"))
    record = build(env, observations=obs)
    assert (record.egfr.value, record.egfr.when) == (45, date(2025, 11, 1))
    old_only = build(env, observations=bundle(egfr(20, "2024-06-01")))
    assert old_only.egfr is None


def test_same_day_prefers_non_race_adjusted(env):
    obs = bundle(egfr(70, "2025-11-01", "48643-1"), egfr(58, "2025-11-01", "48642-3"))
    assert build(env, observations=obs).egfr.value == 58


def test_allergies(env):
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a",
        "code": {"coding": [{"system": RX, "code": "3322", "display": "diazepam"}]},
    }
    refuted = {
        "resourceType": "AllergyIntolerance",
        "id": "b",
        "verificationStatus": {"coding": [{"code": "refuted"}]},
        "code": {"text": "baclofen"},
    }
    assert build(env, allergies=bundle(allergy, refuted)).allergies == frozenset({"diazepam"})
