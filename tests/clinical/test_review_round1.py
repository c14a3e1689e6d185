"""Pins for the CDS-committee pharmacist's review, round 1 (ten fixtures in both EHR
profiles): each test names the review item it holds. The requests are the fixtures the
reviewer read, sent through the HTTP API as tests/test_scenarios.py sends them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.scenario_cards import fixture_answer, profile_apps

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"
PROFILES = ("standard", "epic")
RELAXANTS = ("baclofen", "tizanidine", "cyclobenzaprine", "methocarbamol")


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "review-round1")


def answer(apps: dict[str, Flask], name: str, profile: str) -> tuple[dict[str, Any], list[Any]]:
    return fixture_answer(apps, name, profile)


def topic(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


def diazepam_ids(fixture: dict[str, Any]) -> list[str]:
    out = []
    for entry in fixture["request"]["context"]["draftOrders"]["entry"]:
        res = entry["resource"]
        text = str(res.get("medicationCodeableConcept", ""))
        if "diazepam" in text.lower():
            out.append(f"{res['resourceType']}/{res['id']}")
    return out


def decision_cards(cards: list[Any], ids: list[str]) -> list[dict[str, Any]]:
    """Cards with an action on a pended diazepam order (delete, or update of it)."""
    out = []
    for card in cards:
        for s in card.get("suggestions") or []:
            for a in s["actions"]:
                ref = a.get("resourceId")
                res = a.get("resource") or {}
                if ref in ids or f"{res.get('resourceType')}/{res.get('id')}" in ids:
                    out.append(card)
                    break
            else:
                continue
            break
    return out


def is_cancel(suggestion: dict[str, Any]) -> bool:
    return all(a["type"] == "delete" for a in suggestion["actions"])


def creates_relaxant(suggestion: dict[str, Any]) -> bool:
    return any(
        a["type"] == "create" and any(r in str(a.get("resource", "")).lower() for r in RELAXANTS)
        for a in suggestion["actions"]
    )


# -- M1, M2: a critical opioid or contraindication card: cancel first and recommended ----------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", ["opioid-elderly-critical", "rw-41-myasthenia-back-spasm-45"])
def test_critical_card_makes_cancel_first_and_recommended(
    apps: dict[str, Flask], name: str, profile: str
) -> None:
    fixture, cards = answer(apps, name, profile)
    (card,) = decision_cards(cards, diazepam_ids(fixture))
    first = card["suggestions"][0]
    assert is_cancel(first) and first.get("isRecommended"), first["label"]
    assert first["label"].startswith(("Cancel", "Remove"))
    for s in card["suggestions"][1:]:
        assert not s.get("isRecommended"), s["label"]
    for c in cards:
        for s in c.get("suggestions") or []:
            assert not (creates_relaxant(s) and s.get("isRecommended")), s["label"]


@pytest.mark.parametrize("profile", PROFILES)
def test_opioid_decision_summary_says_cancel_not_switch(
    apps: dict[str, Flask], profile: str
) -> None:
    """M1/L3: the card's summary does not contradict its recommended choice."""
    fixture, cards = answer(apps, "opioid-elderly-critical", profile)
    (card,) = decision_cards(cards, diazepam_ids(fixture))
    assert "cancel the diazepam order" in card["summary"]


@pytest.mark.parametrize("profile", PROFILES)
def test_acetaminophen_already_taken_is_counted(apps: dict[str, Flask], profile: str) -> None:
    """M1: she takes hydrocodone/acetaminophen; 'For pain: acetaminophen' must count it."""
    _, cards = answer(apps, "opioid-elderly-critical", profile)
    text = " ".join(c["detail"] for c in cards)
    assert "already taken in hydrocodone/acetaminophen: count the total daily dose" in text


@pytest.mark.parametrize("profile", PROFILES)
def test_myasthenia_methocarbamol_and_neurology(apps: dict[str, Flask], profile: str) -> None:
    """M2: methocarbamol may reduce pyridostigmine's effect (label); neurology first."""
    fixture, cards = answer(apps, "rw-41-myasthenia-back-spasm-45", profile)
    (card,) = decision_cards(cards, diazepam_ids(fixture))
    assert "pyridostigmine" in card["detail"]
    assert "check with neurology first" in card["detail"]


# -- L7: a replacement never runs longer than the prescriber's shorter course --------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", ["opioid-elderly-critical", "rw-21d-typical-2mg-bid-5d-egfr90-66"])
def test_replacement_matches_a_shorter_course(
    apps: dict[str, Flask], name: str, profile: str
) -> None:
    _, cards = answer(apps, name, profile)
    created = [
        a["resource"]
        for c in cards
        for s in c.get("suggestions") or []
        for a in s["actions"]
        if a["type"] == "create" and creates_relaxant({"actions": [a]})
    ]
    assert created
    for res in created:
        dispense = res["dispenseRequest"]
        assert dispense["expectedSupplyDuration"]["value"] == 5
        if "baclofen" in str(res["medicationCodeableConcept"]):
            assert dispense["quantity"]["value"] == 15


# -- M5: above the older-adult start, the dose change comes first; "keep" says the dose ------


@pytest.mark.parametrize("name", ["elderly-78-egfr45-no-baclofen", "rw-34-order-select-typical-72"])
def test_dose_change_first_and_keep_states_the_dose(apps: dict[str, Flask], name: str) -> None:
    fixture, cards = answer(apps, name, "standard")
    (card,) = decision_cards(cards, diazepam_ids(fixture))
    labels = [s["label"] for s in card["suggestions"]]
    change = next(i for i, x in enumerate(labels) if x.startswith("Change to diazepam 2 mg"))
    keep = next(i for i, x in enumerate(labels) if x.startswith("Keep diazepam"))
    assert change < keep
    # second review N9: plain words, not "(above older-adult start)"
    assert labels[keep].startswith(
        "Keep diazepam 5 mg 3 times a day (above usual start from age 65), 7 days"
    )
    assert "5 mg 3 times a day, above the usual start at 65 and older" in card["summary"]
    _, epic = answer(apps, name, "epic")
    (card,) = decision_cards(epic, diazepam_ids(fixture))
    # the 2 mg start is another product than the pended 5 mg tablet: a line of its own that
    # names it (review round 3), the dose as written another
    lines = card["detail"].split("\n\n")
    change = (
        "**Or new order, then remove the pended one:** diazepam 2 mg tablets: 2 mg twice a "
        "day for 7 days (14 tablets), no refills."
    )
    keep = "**Or edit the order:** the dose as written for 7 days (21 tablets), no refills."
    assert lines.index(change) < lines.index(keep)


# -- H1: several pended diazepam orders are one decision ------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name",
    ["rw-20-two-diazepam-drafts-72", "rv-22-duplicate-diazepam-drafts-clonazepam-omeprazole-40"],
)
def test_two_diazepam_drafts_are_one_decision(
    apps: dict[str, Flask], name: str, profile: str
) -> None:
    fixture, cards = answer(apps, name, profile)
    ids = diazepam_ids(fixture)
    assert len(ids) == 2
    (card,) = decision_cards(cards, ids)  # one card acts on the pended orders
    assert card["summary"].startswith("Two diazepam orders")
    assert "mg a day" in card["summary"] and card["summary"].endswith("Keep at most one.")
    # second review N9: both orders' courses are stated
    assert card["summary"].count(" days") == 2, card["summary"]
    texts = " ".join(c["summary"] + c["detail"] for c in cards)
    assert "CNS depression of diazepam" not in texts
    assert "another pended order" not in texts
    duration = [c for c in cards if topic(c) == "duration-limit" and c is not card]
    assert len(duration) <= 1
    if profile == "standard":
        assert card["selectionBehavior"] == "at-most-one"
        for s in card["suggestions"]:
            deleted = {a["resourceId"] for a in s["actions"] if a["type"] == "delete"}
            assert len(set(ids) - deleted) <= 1, f"keeps both orders: {s['label']}"
            assert sum(creates_relaxant({"actions": [a]}) for a in s["actions"]) <= 1
        kept = {
            a["resource"]["id"]
            for s in card["suggestions"]
            for a in s["actions"]
            if a["type"] == "update"
        }
        assert len(kept) >= 1
    else:  # one action per suggestion: a Remove for each order, the text says keep one
        removes = [
            s["actions"][0]["resourceId"]
            for s in card["suggestions"]
            if s["actions"][0]["type"] == "delete"
        ]
        assert sorted(removes) == sorted(ids)
        # how to keep one: edit one and remove the others, or (another product, review
        # round 6 M-2) enter a new order and remove every pended one
        assert (
            "To keep one instead, remove the others and edit it" in card["detail"]
            or "New order instead, then remove all pended orders" in card["detail"]
            or "**Keep only:**" in card["detail"]  # keep one as it is, remove the others
        )


def test_total_daily_dose_is_checked_against_the_label(apps: dict[str, Flask]) -> None:
    """H1: the label dose check applies to the total across the pended orders."""
    _, cards = answer(apps, "rv-22-duplicate-diazepam-drafts-clonazepam-omeprazole-40", "standard")
    assert any(
        "75 mg a day" in c["summary"] and "above the label's 40" in c["detail"] for c in cards
    )
    _, cards = answer(apps, "rw-20-two-diazepam-drafts-72", "standard")
    assert any(
        "25 mg a day" in c["summary"] and "above the usual start at 65 and older" in c["detail"]
        for c in cards
    )


# -- M3, M4: a long-term user (13 months, 74) -------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_long_term_user_beers_card_says_taper_not_start_dose(
    apps: dict[str, Flask], profile: str
) -> None:
    """M3: the older-adult starting dose is for new starts only (F.0-1, R13); 'avoid' to a
    long-term user says taper."""
    _, cards = answer(apps, "rw-02-long-term-anxiety-2mg-bid-74", profile)
    (beers,) = [c for c in cards if topic(c) == "beers-benzodiazepine"]
    assert "taper" in beers["summary"] and "do not stop abruptly" in beers["detail"]
    assert "2 to 2.5 mg" not in beers["detail"] and "label start" not in beers["detail"]


@pytest.mark.parametrize("profile", PROFILES)
def test_taper_step_in_solution_is_spelled_out(apps: dict[str, Flask], profile: str) -> None:
    """M4: strength, not the concentrate, mg = mL, days, volume, no refills, oral syringe; in
    Epic the edit text carries all of it."""
    _, cards = answer(apps, "rw-02-long-term-anxiety-2mg-bid-74", profile)
    (taper,) = [c for c in cards if topic(c) == "taper-required"]
    line = (
        "oral solution 1 mg/mL (not the 5 mg/mL concentrate): 1.8 mg = 1.8 mL twice a day "
        "for 14 days, 51 mL, no refills; give an oral syringe"
    )
    assert line in taper["detail"].replace("**", "")
    if profile == "epic":
        edit = taper["detail"].split("\n\n")[0]
        assert edit.startswith("**New order, first taper step, then remove the pended one:**")
        assert "for 14 days, 51 mL, no refills" in edit


# -- L6: whole numbers as integers in every created or rewritten resource -------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name",
    [
        "elderly-78-egfr45-no-baclofen",
        "rw-20-two-diazepam-drafts-72",
        "rw-02-long-term-anxiety-2mg-bid-74",
        "ms-spasticity",
        "young-adult-back-spasm-30d",
    ],
)
def test_whole_quantities_are_integers(apps: dict[str, Flask], name: str, profile: str) -> None:
    _, cards = answer(apps, name, profile)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            value = node.get("value")
            assert not (isinstance(value, float) and value.is_integer()), node
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for card in cards:
        for s in card.get("suggestions") or []:
            for a in s["actions"]:
                walk(a.get("resource"))


# -- M7: the older-adult tizanidine regimen is unambiguous ----------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_tizanidine_older_adult_regimen_is_spelled_out(
    apps: dict[str, Flask], profile: str
) -> None:
    fixture, cards = answer(apps, "elderly-78-egfr45-no-baclofen", profile)
    (card,) = decision_cards(cards, diazepam_ids(fixture))
    # review round 2 N4/N13: with the route and the refills; an as-needed course says the
    # most it dispenses ("up to")
    assert (
        "**Tizanidine:** 2 mg by mouth at bedtime, plus 2 mg up to twice a day as needed, 6 mg "
        "a day at most; 7 days, up to 21 tablets, no refills."
    ) in card["detail"]
    labels = " ".join(s["label"] for s in card["suggestions"])
    assert "up to 3 times a day" not in labels


# -- L4: override reasons that fit the patient --------------------------------------------


def reasons(cards: list[Any], code: str) -> list[str]:
    return [r["code"] for c in cards if topic(c) == code for r in c.get("overrideReasons") or []]


@pytest.mark.parametrize("profile", PROFILES)
def test_override_reasons_fit_the_patient(apps: dict[str, Flask], profile: str) -> None:
    _, cards = answer(apps, "opioid-elderly-critical", profile)  # hydrocodone, M62.830 stated
    assert "oud-treatment" not in reasons(cards, "opioid-benzodiazepine")
    assert "beers-exception" not in reasons(cards, "beers-benzodiazepine")
    assert "non-musculoskeletal-indication" not in reasons(cards, "muscle-relaxant-alternative")
    _, cards = answer(apps, "rw-41-myasthenia-back-spasm-45", profile)
    assert "intolerance-not-allergy" not in reasons(cards, "diazepam-contraindication")
    _, cards = answer(apps, "rw-23-diazepam-allergy-back-spasm-45", profile)
    assert "intolerance-not-allergy" in reasons(cards, "diazepam-contraindication")
    _, cards = answer(apps, "rv-30-respiratory-failure-buprenorphine-oud-50", profile)
    assert "oud-treatment" in reasons(cards, "opioid-benzodiazepine")


# -- L1, L3: no actionless duration/anxiety card; no text the card contradicts -------------

REVIEWED = [
    "elderly-78-egfr45-no-baclofen",
    "young-adult-back-spasm-30d",
    "rw-23-diazepam-allergy-back-spasm-45",
    "opioid-elderly-critical",
    "rw-20-two-diazepam-drafts-72",
    "rw-02-long-term-anxiety-2mg-bid-74",
    "rw-21d-typical-2mg-bid-5d-egfr90-66",
    "rw-41-myasthenia-back-spasm-45",
    "ms-spasticity",
    "rw-34-order-select-typical-72",
]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", REVIEWED)
def test_no_actionless_duration_or_anxiety_card_and_no_contradiction(
    apps: dict[str, Flask], name: str, profile: str
) -> None:
    _, cards = answer(apps, name, profile)
    acting = any(c.get("suggestions") for c in cards)
    for card in cards:
        text = card["detail"]
        assert "only one can be accepted" not in text  # epic: selectionBehavior any
        assert "(keep, change, replace or cancel)" not in text  # choices the card may lack
        if acting and card["indicator"] == "info" and not card.get("suggestions"):
            assert topic(card) != "duration-limit", card["summary"]
            assert "muscle relaxants are not alternatives" not in card["summary"]


@pytest.mark.parametrize("profile", PROFILES)
def test_duration_host_summary_names_the_recommended_replacement(
    apps: dict[str, Flask], profile: str
) -> None:
    """L3, case 02: the summary said 'limit to 7 days' while the recommended choice is to
    replace."""
    fixture, cards = answer(apps, "young-adult-back-spasm-30d", profile)
    (card,) = decision_cards(cards, diazepam_ids(fixture))
    assert "cyclobenzaprine suggested instead" in card["summary"]
