"""A rewrite of a diazepam draft is signed in one click, so it must never carry an impossible
number from the draft (a -5 mg dose the duration cap leaves in place), and the orders built
for alternatives copy only well-formed reason and subject data from the draft."""

from __future__ import annotations

import copy
import math

import pytest

from cds_service.clinical.cards import load_templates, render
from cds_service.clinical.rules.dose import dose_limit
from cds_service.clinical.rules.duration import duration_limit
from cds_service.clinical.suggestions import alternative_request, impossible_numbers, rewrite_order
from tests.clinical.rules.conftest import patient

BAD_DOSES = [-5, 0, "5", math.nan, math.inf, True, 10**400]


def _with_dose(order, value, times=3):
    """The draft as the reader sees it, with ``value`` as its dose."""
    dosage = {
        "timing": {"repeat": {"frequency": times, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": value, "unit": "mg", "code": "mg"}}],
    }
    return order(days=30, reason="M62.830", dosageInstruction=[dosage])


@pytest.mark.parametrize("value", BAD_DOSES, ids=repr)
def test_duration_cap_offers_no_rewrite_that_keeps_an_impossible_dose(order, policy, value):
    made = _with_dose(order, value)
    assert rewrite_order(made, days=7) is None
    [finding] = duration_limit(made, patient(40), policy)
    assert finding.options == []  # no update, no copy to re-create (epic)
    assert finding.variant.endswith("_no_rewrite")
    assert finding.audit["rewrite_offered"] is False


def test_the_card_warns_about_the_duration_and_says_the_dosage_is_invalid(order, policy):
    made = _with_dose(order, -5)
    [finding] = duration_limit(made, patient(40), policy)
    template = load_templates("cards")["duration-limit"]
    for profile in ("standard", "epic"):
        card = render(finding, template, made, policy, profile, [])
        assert "30 days" in card["summary"] and "not valid" in card["summary"]
        assert len(card["summary"]) < 140
        assert "no rewritten order is offered" in card["detail"]
        assert "-5" not in card["summary"] + card["detail"]  # the impossible dose is not echoed
        assert "suggestions" not in card


def test_a_valid_dose_still_gets_its_rewrite(order, policy):
    made = order(days=30, reason="M62.830", mg=5, times=3)
    [finding] = duration_limit(made, patient(40), policy)
    [option] = finding.options
    assert option.kind == "update" and impossible_numbers(option.resource) == []
    assert finding.audit["rewrite_offered"] is True


def test_an_order_without_a_dose_is_still_capped(order, policy):
    """No number is not an impossible number: the rewrite carries no dose at all."""
    made = order(days=30, reason="M62.830")
    del made.raw["dosageInstruction"][0]["doseAndRate"]
    [finding] = duration_limit(made, patient(40), policy)
    assert [o.kind for o in finding.options] == ["update"]


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("dosageInstruction", 0, "timing", "repeat", "period"), -1),
        (("dosageInstruction", 0, "timing", "repeat", "frequency"), 0),
        (("dosageInstruction", 0, "timing", "repeat", "frequency"), "3"),
    ],
)
def test_impossible_timing_is_not_re_sent_either(order, policy, where, value):
    made = order(days=30, reason="M62.830")
    target = made.raw
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    assert rewrite_order(made, days=7) is None


def test_impossible_numbers_names_each_bad_place():
    good = {"value": 5, "unit": "mg"}
    resource = {
        "dosageInstruction": [
            {"doseAndRate": [{"doseQuantity": good}], "timing": {"repeat": {"frequency": 3}}},
            {"doseAndRate": [{"doseRange": {"low": {"value": 10}, "high": {"value": 2}}}]},
            {"doseQuantity": {"value": -1}},  # DSTU2 keeps the dose on the dosage
            {"maxDosePerPeriod": {"numerator": good, "denominator": {"value": 0}}},
        ],
        "dispenseRequest": {"quantity": {"value": -21}, "expectedSupplyDuration": {"value": 7}},
    }
    assert impossible_numbers(resource) == [
        "dosageInstruction/1/doseRange",  # inverted range
        "dosageInstruction/2/doseQuantity",
        "dosageInstruction/3/maxDosePerPeriod",
        "dispenseRequest/quantity",
    ]
    fixed = copy.deepcopy(resource)
    fixed["dosageInstruction"][1:] = [
        {"doseAndRate": [{"doseRange": {"low": {"value": 0}, "high": {"value": 2}}}]}
    ]
    fixed["dispenseRequest"]["quantity"]["value"] = 21
    assert impossible_numbers(fixed) == []


def test_the_geriatric_dose_rewrite_replaces_the_bad_dose_and_keeps_no_other_junk(order, policy):
    made = _with_dose(order, -5, times=4)
    assert made.mg_per_dose is None  # the reader already refuses to read -5 mg
    [finding] = dose_limit(made, patient(70), policy)
    assert finding.facts["mg"] == "?"  # the card does not echo -5 mg
    [option] = finding.options
    assert impossible_numbers(option.resource) == []
    dose = option.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["value"] == policy["dose"]["geriatric_suggested_mg"]


def test_alternatives_copy_only_well_formed_reason_subject_and_encounter(order, policy):
    made = order(days=30)
    made.raw["reasonCode"] = [
        {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M62.830", "x": {"a": 1}},
                {"system": "s", "code": 42},
                "not a coding",
            ],
            "text": "back spasm",
            "extension": [{"url": "u", "valueString": "junk"}],
        },
        "not a concept",
        {"coding": [{"code": ""}], "text": 7},
    ]
    made.raw["encounter"] = {"reference": 5}
    made.raw["authoredOn"] = "yesterday-ish"
    made.subject = {"reference": "Patient/p", "identifier": {"value": "MRN-1"}, "display": 3}
    regimen = policy["alternatives"]["regimens"]["acute_young"]["tizanidine"]
    product = policy.products[regimen["code"]]
    resource = alternative_request(made, regimen, product, 7)
    assert resource["reasonCode"] == [
        {
            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M62.830"}],
            "text": "back spasm",
        }
    ]
    assert resource["subject"] == {"reference": "Patient/p"}
    assert "encounter" not in resource and "authoredOn" not in resource
    assert impossible_numbers(resource) == []
