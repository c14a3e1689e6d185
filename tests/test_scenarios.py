"""Every clinical fixture through the HTTP API, compared semantically with its expected outcome;
and the comparer itself, against reference responses and their mutations.

The expected outcomes were written from the knowledge base's decision table, independently of
the engine: a failure here is either an engine bug or a disagreement to settle with clinical
review — never fix it by loosening the fixture without saying why.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.compare import (
    Mismatch,
    cancel_state,
    card_problems,
    compare,
    daily_dose_mg,
    describe_expected,
    ingredient_of,
    observe,
)
from cds_service.redate import redate
from tests.scenario_cards import TOPIC_SYSTEM, fixture_paths, load, profile_apps, reference_cards

PATHS = fixture_paths()
IDS = [p.stem for p in PATHS]


def _report(name: str, mismatches: list[Mismatch], body: Any) -> str:
    lines = [f"scenario {name} differs from its expected outcome:"]
    lines += [f"  - {m}" for m in mismatches]
    lines.append(f"  got: {observe(body.get('cards') or []).short() if body else body}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    """One app per EHR profile for the whole module, built with conftest's ``make_app``
    defaults (auth off, data under tmp): building an app runs the store migrations, which
    costs more than all the scenario calls together."""
    return profile_apps(tmp_path_factory, "scenario-apps")


@pytest.mark.parametrize("profile", ["standard", "epic"])
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_scenario_through_the_http_api(path: Path, profile: str, apps: dict[str, Flask]) -> None:
    fixture = load(path)
    client = apps[profile].test_client()
    # dated today: the service counts ages and look-backs to the time of the call
    response = client.post(f"/cds-services/{fixture['service']}", json=redate(fixture["request"]))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    body = response.get_json()
    mismatches = compare(fixture["expected"], body, profile=profile, request=fixture["request"])
    assert not mismatches, _report(fixture["name"], mismatches, body)


# --- the comparer ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_reference_response_matches_its_fixture(path: Path) -> None:
    """The expectation is satisfiable by spec-valid cards, and the comparer accepts them; it
    also has teeth: a card of a topic it rules out is rejected."""
    fixture = load(path)
    expected = fixture["expected"]
    cards = reference_cards(fixture)
    assert [card_problems(c) for c in cards] == [[] for _ in cards]
    required = {t for t, spec in expected["topics"].items() if not spec.get("optional")}
    assert required <= set(observe(cards).topics)  # every required topic has its card
    if expected.get("card_count") is not None:
        assert len(cards) == expected["card_count"]
    assert compare(expected, {"cards": cards}, request=fixture["request"]) == []
    if not expected.get("absent_topics"):
        return
    stray = copy.deepcopy(cards[0]) if cards else _minimal_card()
    stray["uuid"] = str(uuid.uuid4())
    stray["source"]["topic"]["code"] = expected["absent_topics"][0]
    stray.pop("suggestions", None)
    stray.pop("selectionBehavior", None)
    assert compare(expected, {"cards": [*cards, stray]}, request=fixture["request"]) != []


def _minimal_card() -> dict[str, Any]:
    return {
        "summary": "stray",
        "indicator": "info",
        "source": {"label": "test", "topic": {"system": TOPIC_SYSTEM, "code": "x"}},
    }


def _fixture(name: str) -> dict[str, Any]:
    return load(next(p for p in PATHS if p.stem == name))


def _card(body: dict[str, Any], topic: str) -> dict[str, Any]:
    return next(c for c in body["cards"] if c["source"]["topic"]["code"] == topic)


def _whats(mismatches: list[Mismatch]) -> list[str]:
    return [m.what for m in mismatches]


def test_comparer_reports_a_missing_topic_and_a_wrong_indicator() -> None:
    fixture = _fixture("elderly-78-egfr45-no-baclofen")
    body = {"cards": reference_cards(fixture)}
    body["cards"].remove(_card(body, "muscle-relaxant-alternative"))
    beers = _card(body, "beers-benzodiazepine")
    beers["indicator"] = "info"
    beers.pop("overrideReasons")  # as a real info card: it offers none (F.2a)
    mismatches = compare(fixture["expected"], body)
    assert sorted(_whats(mismatches)) == [
        "capped days",  # the 7-day choice was on that card too (F.2a: one decision card)
        "drug-free cancel choice",  # and the recommended cancel (lead decision N3)
        "topic beers-benzodiazepine indicator",
        "topic muscle-relaxant-alternative",
    ]
    assert str(mismatches[0]) == (
        "topic beers-benzodiazepine indicator: expected warning, got info"
    )


def test_comparer_reports_an_unwanted_topic_and_card_count() -> None:
    fixture = _fixture("rectal-gel-seizure-cluster")
    intruder = reference_cards(_fixture("young-adult-back-spasm-30d"))[0]  # duration-limit
    mismatches = compare(fixture["expected"], {"cards": [intruder]})
    assert "card count" in _whats(mismatches)
    assert "topic duration-limit" in _whats(mismatches)
    assert "capped days" in _whats(mismatches)


def test_comparer_checks_recommended_and_excluded_alternatives_by_ingredient() -> None:
    # under 65 the rank-1 relaxant is recommended (at 65 and older none is: lead decision N3)
    fixture = _fixture("cyclobenzaprine-excluded-heart-block")
    body = {"cards": reference_cards(fixture)}
    assert compare(fixture["expected"], body) == []
    for suggestion in _card(body, "muscle-relaxant-alternative")["suggestions"]:
        if suggestion["actions"][-1]["type"] != "create":
            continue  # the cancel on the same decision card
        create = suggestion["actions"][-1]["resource"]["medicationCodeableConcept"]
        create["coding"][0].update(code="828348", display="cyclobenzaprine 10 MG Oral Tablet")
    mismatches = compare(fixture["expected"], body)
    assert [str(m) for m in mismatches] == [
        "recommended alternative: expected tizanidine (57258), got cyclobenzaprine (21949)",
        "alternative cyclobenzaprine (21949): expected not offered, got offered",
    ]
    older = _fixture("elderly-78-egfr45-no-baclofen")  # N3: no relaxant recommended at 78
    body = {"cards": reference_cards(older)}
    card = _card(body, "muscle-relaxant-alternative")
    for suggestion in card["suggestions"]:
        suggestion.pop("isRecommended", None)
    replace = next(s for s in card["suggestions"] if s["actions"][-1]["type"] == "create")
    replace["isRecommended"] = True
    assert "recommended alternative" in _whats(compare(older["expected"], body))


def test_comparer_reads_capped_days_from_the_duration_update_in_weeks_too() -> None:
    fixture = _fixture("young-adult-back-spasm-30d")
    body = {"cards": reference_cards(fixture)}
    update = _card(body, "duration-limit")["suggestions"][0]["actions"][0]["resource"]
    update["dispenseRequest"]["expectedSupplyDuration"].update(value=1, code="wk", unit="week")
    assert compare(fixture["expected"], body) == []
    update["dispenseRequest"]["expectedSupplyDuration"].update(value=2, code="wk")
    assert [str(m) for m in compare(fixture["expected"], body)] == [
        "capped days: expected 7 days, got 14 days"
    ]


def test_comparer_checks_exact_action_types() -> None:
    fixture = _fixture("young-adult-back-spasm-30d")
    body = {"cards": reference_cards(fixture)}
    card = _card(body, "duration-limit")  # the decision card
    for suggestion in card["suggestions"]:
        suggestion["actions"] = [a for a in suggestion["actions"] if a["type"] != "delete"]
    card["suggestions"] = [s for s in card["suggestions"] if s["actions"]]  # the cancel goes
    assert [str(m) for m in compare(fixture["expected"], body)] == [
        "topic duration-limit action types: expected [create, delete, update], got "
        "[create, update]",
        "drug-free cancel choice: expected offered, got absent",
    ]


def test_optional_topic_may_be_absent_but_not_wrong() -> None:
    fixture = _fixture("alcohol-withdrawal-70")
    assert compare(fixture["expected"], {"cards": []}) == []
    warning = reference_cards(_fixture("elderly-70-egfr80-baclofen"))[0]
    assert warning["source"]["topic"]["code"] == "beers-benzodiazepine"
    assert _whats(compare(fixture["expected"], {"cards": [warning]})) == [
        "topic beers-benzodiazepine indicator"
    ]


def test_wording_uuids_and_order_do_not_matter() -> None:
    fixture = _fixture("tizanidine-excluded-ciprofloxacin")
    cards = reference_cards(fixture)
    reworded = copy.deepcopy(cards[::-1])
    for card in reworded:
        card["summary"] = "Completely different wording, 74 y, eGFR 50"
        card["detail"] = "**Why**: see the AGS Beers Criteria 2023."
    assert compare(fixture["expected"], {"cards": reworded}) == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda c: c.pop("uuid"), "uuid missing"),
        (lambda c: c.update(summary="x" * 140), "140 characters"),
        (lambda c: c.update(indicator="hard-stop"), "indicator 'hard-stop'"),
        (lambda c: c["source"].pop("label"), "source.label missing"),
        (lambda c: c.pop("selectionBehavior"), "selectionBehavior None"),
        (lambda c: c["overrideReasons"][0].pop("display"), "code, system and display"),
        (lambda c: c.update(detail=None), "detail is null or empty"),
        (lambda c: c.update(links=[]), "links is null or empty"),
        (lambda c: c.update(_audit={"rule": "x"}), "private key"),
        (lambda c: c["suggestions"][0].pop("uuid"), "uuid missing (accepted feedback"),
        (lambda c: c["suggestions"][0]["actions"][0].pop("description"), "description missing"),
        (lambda c: c["suggestions"][0]["actions"][0].pop("resource"), "resource (a FHIR"),
        (
            lambda c: c.update(
                links=[{"label": "x", "url": "https://a", "type": "absolute", "appContext": "{}"}]
            ),
            "appContext is only allowed",
        ),
    ],
)
def test_card_rules_of_cds_hooks_2(mutate: Callable[[dict[str, Any]], Any], problem: str) -> None:
    card = _card(
        {"cards": reference_cards(_fixture("young-adult-back-spasm-30d"))}, "duration-limit"
    )
    assert card_problems(card) == []
    mutate(card)
    problems = card_problems(card)
    assert any(problem in p for p in problems), problems


def test_epic_profile_rules() -> None:
    fixture = _fixture("young-adult-back-spasm-30d")
    body = {"cards": reference_cards(fixture)}  # standard: delete+create together, an update
    whats = [str(m) for m in compare(fixture["expected"], body, profile="epic")]
    assert any("one per suggestion" in w for w in whats)
    assert any("update action" in w for w in whats)


def test_override_reason_rules_of_f2a() -> None:
    """In every profile: an info card offers no override reasons; "acknowledged" is none."""
    fixture = _fixture("young-adult-back-spasm-30d")
    cards = reference_cards(fixture)
    assert compare(fixture["expected"], {"cards": cards}) == []
    asking = next(c for c in cards if c.get("overrideReasons"))
    for profile in ("standard", "epic"):
        info = copy.deepcopy(cards)
        next(c for c in info if c.get("overrideReasons"))["indicator"] = "info"
        whats = [str(m) for m in compare(fixture["expected"], {"cards": info}, profile=profile)]
        assert any("is info but offers overrideReasons" in w for w in whats), whats
    acknowledged = copy.deepcopy(cards)
    card = next(c for c in acknowledged if c["uuid"] == asking["uuid"])
    card["overrideReasons"].append({**card["overrideReasons"][0], "code": "acknowledged"})
    whats = [str(m) for m in compare(fixture["expected"], {"cards": acknowledged})]
    assert any("'acknowledged' is not a reason" in w for w in whats), whats


def test_ingredient_of_resolves_codes_contained_and_names() -> None:
    by_code = {
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}]
        }
    }
    contained = {
        "contained": [
            {"resourceType": "Medication", "id": "m", "code": {"text": "Tizanidine 4 mg tablet"}}
        ],
        "medicationReference": {"reference": "#m"},
    }
    unknown = {"medicationCodeableConcept": {"text": "ibuprofen 400 mg"}}
    assert ingredient_of(by_code) == "21949"
    assert ingredient_of(contained) == "57258"
    assert ingredient_of(unknown) is None


def test_describe_expected_is_one_readable_line() -> None:
    text = describe_expected(_fixture("elderly-78-egfr45-no-baclofen")["expected"])
    # review round 1 L1: the duration finding is a line of the decision card (cap=7 checks it)
    assert "muscle-relaxant-alternative:warning" in text
    assert "cancel=recommended" in text and "cap=7" in text  # lead decision N3
    assert "rec=tizanidine" in describe_expected(
        _fixture("cyclobenzaprine-excluded-heart-block")["expected"]
    )


def test_comparer_checks_the_safety_invariant_keys() -> None:
    """F.0-1 for a long-term user: no delete, no rewrite under 14 days, no cut above 25 %."""
    fixture = _fixture("f01-long-term-renewal-78-taper")
    request = fixture["request"]
    body = {"cards": reference_cards(fixture)}
    assert compare(fixture["expected"], body, request=request) == []
    step = _card(body, "taper-required")["suggestions"][0]["actions"][0]["resource"]
    assert step["dispenseRequest"]["expectedSupplyDuration"]["value"] == 14
    step["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 4  # 8 mg/day: -20 %
    assert compare(fixture["expected"], body, request=request) == []
    step["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 2  # 4 mg/day: -60 %
    step["dispenseRequest"]["expectedSupplyDuration"].update(value=1, code="wk", unit="week")
    _card(body, "taper-required")["suggestions"].append(
        {
            "uuid": "u-remove",
            "label": "Remove the pended diazepam order",
            "actions": [
                {
                    "type": "delete",
                    "description": "Remove",
                    "resourceId": f"MedicationRequest/{step['id']}",
                }
            ],
        }
    )
    assert [str(m) for m in compare(fixture["expected"], body, request=request)] == [
        "drug-free cancel choice: expected absent, got offered",  # F.0-1: never for him
        "topic taper-required suggestion: expected no delete, got a delete action",
        "topic taper-required diazepam order supply: expected at least 14 days, got 7 days",
        "topic taper-required diazepam dose: expected a cut of at most 25 % from 10 mg/day, "
        "got 4 mg/day (60 % less)",
    ]
    assert _whats(compare(fixture["expected"], body)) == [  # no request: the cut is unknowable
        "drug-free cancel choice",
        "topic taper-required suggestion",
        "topic taper-required diazepam order supply",
        "dose reduction",
    ]


def test_comparer_checks_card_bounds_and_not_recommended() -> None:
    fixture = _fixture("f13-typical-68-spasm-at-most-3-cards")
    body = {"cards": reference_cards(fixture)}
    assert compare(fixture["expected"], body) == []
    # two cards since review round 1 L1 folded the duration card: two more exceed the three
    body["cards"].append(copy.deepcopy(body["cards"][0]) | {"uuid": "another"})
    body["cards"].append(copy.deepcopy(body["cards"][0]) | {"uuid": "a-third"})
    assert "card count" in _whats(compare(fixture["expected"], body))
    nasal = _fixture("f08-nasal-spray-age-1-below-minimum")
    assert _whats(compare(nasal["expected"], {"cards": []})) == ["card count"]
    assert compare(nasal["expected"], {"cards": reference_cards(nasal)}) == []
    spasticity = _fixture("f01-long-term-ms-spasticity-taper-info")
    body = {"cards": reference_cards(spasticity)}
    assert compare(spasticity["expected"], body, request=spasticity["request"]) == []
    taper = _card(body, "taper-required")
    taper["selectionBehavior"] = "at-most-one"
    taper["suggestions"] = [{"uuid": "u-step", "label": "First taper step", "isRecommended": True}]
    assert _whats(compare(spasticity["expected"], body, request=spasticity["request"])) == [
        "topic taper-required suggestion"
    ]


def test_an_excluded_alternative_is_caught_on_any_card() -> None:
    """F.2a may put every action on the diazepam order on one card: a tizanidine order offered on
    the duration card is still an offered alternative (F.0-2)."""
    fixture = _fixture("f05-tizanidine-cipro-same-draft-set")
    body = {"cards": reference_cards(fixture)}
    assert compare(fixture["expected"], body) == []
    alternative = _card(body, "muscle-relaxant-alternative")
    alternative["source"]["topic"]["code"] = "duration-limit"
    tizanidine = copy.deepcopy(alternative["suggestions"][0])
    create = tizanidine["actions"][-1]["resource"]["medicationCodeableConcept"]
    create["coding"][0].update(code="313412", display="tizanidine 2 MG Oral Tablet")
    tizanidine.pop("isRecommended", None)
    alternative["suggestions"].append(tizanidine)
    whats = _whats(compare(fixture["expected"], body))
    assert "alternative tizanidine (57258)" in whats


def test_daily_dose_reads_frequency_period_and_units() -> None:
    def order(dose: dict[str, Any], repeat: dict[str, Any]) -> dict[str, Any]:
        return {
            "dosageInstruction": [
                {"timing": {"repeat": repeat}, "doseAndRate": [{"doseQuantity": dose}]}
            ]
        }

    mg = {"value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert daily_dose_mg(order(mg, {"frequency": 3, "period": 1, "periodUnit": "d"})) == 15
    assert daily_dose_mg(order(mg, {"frequency": 1, "period": 12, "periodUnit": "h"})) == 10
    assert daily_dose_mg(order(mg, {"frequency": 1, "frequencyMax": 2, "periodUnit": "d"})) == 10
    assert daily_dose_mg(order({"value": 2, "unit": "mL"}, {"frequency": 2})) is None
    assert daily_dose_mg({"dosageInstruction": [{"text": "5 mg twice daily"}]}) is None


def test_comparer_checks_the_drug_free_cancel_choice() -> None:
    """Review round 2 N2/N3: `cancel_choice` reads the suggestion that only removes the
    pended diazepam order(s); recommended, offered or absent; a "keep only one" of two
    orders is no cancel; in epic the Remove suggestions together must cover every order."""
    fixture = _fixture("elderly-78-egfr45-no-baclofen")
    assert fixture["expected"]["cancel_choice"] == "recommended"
    request = fixture["request"]
    body = {"cards": reference_cards(fixture)}
    assert compare(fixture["expected"], body, request=request) == []
    card = _card(body, "muscle-relaxant-alternative")
    cancel = next(s for s in card["suggestions"] if s["label"].startswith("Cancel"))
    cancel.pop("isRecommended")
    assert [str(m) for m in compare(fixture["expected"], body, request=request)] == [
        "drug-free cancel choice: expected recommended, got offered"
    ]
    card["suggestions"].remove(cancel)
    assert [str(m) for m in compare(fixture["expected"], body, request=request)] == [
        "drug-free cancel choice: expected recommended, got absent"
    ]
    # two pended orders: removing one of them is a "keep only the other", not a cancel
    two = _fixture("rw-20-two-diazepam-drafts-72")
    body = {"cards": reference_cards(two)}
    assert compare(two["expected"], body, request=two["request"]) == []
    card = _card(body, "muscle-relaxant-alternative")
    cancel = next(s for s in card["suggestions"] if s["label"].startswith("Cancel"))
    refs = [a["resourceId"] for a in cancel["actions"]]
    assert len(refs) == 2
    cancel["actions"].pop()
    whats = _whats(compare(two["expected"], body, request=two["request"]))
    assert "drug-free cancel choice" in whats
    # epic: one Remove per order; recommended when each is
    removes = [
        {
            "uuid": f"u-{i}",
            "label": "Remove the pended order",
            "isRecommended": True,
            "actions": [{"type": "delete", "description": "Remove", "resourceId": ref}],
        }
        for i, ref in enumerate(refs)
    ]
    epic = [{**card, "selectionBehavior": "any", "suggestions": removes}]
    assert cancel_state(epic, two["request"], "epic") == "recommended"
    removes[-1].pop("isRecommended")
    assert cancel_state(epic, two["request"], "epic") == "offered"
    removes.pop()
    assert cancel_state(epic, two["request"], "epic") == "absent"  # one order stays
