"""Review round 7 (an independent pharmacist's own patients, fixtures r7-*): the keep-one
decision for a long-term user's several pended orders holds on every pathway and in Epic.

F1: a stated seizure skipped it (two taper cards, "diazepam with diazepam"). F2: Epic could
tick a Remove for every order. F3: order-select on one of two orders said "avoid the
combination, or use the lowest doses". F4: a stated long-term use got a recommended step.
F6: an as-needed running prescription was taken for the dose taken. F8: an Epic keep line
said neither what to edit nor what to remove. F9: two orders read the same.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.clinical.review_cards import cards_of as _cards
from tests.clinical.review_cards import drafts_by_ref
from tests.clinical.review_cards import suggestions as _suggestions
from tests.clinical.review_cards import topic as _topic
from tests.scenario_cards import fixture_answer, fixture_paths, load, profile_apps


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round7")


def _diazepam_drafts(fixture: dict[str, Any]) -> set[str]:
    return {ref for ref, resource in drafts_by_ref(fixture).items() if "diazepam" in resource["id"]}


def _long_term(fixture: dict[str, Any]) -> bool:
    """A running diazepam prescription started 28 days or more before the order (F.1), read
    from the fixture, not from the service."""
    authored = [
        e["resource"].get("authoredOn")
        for e in fixture["request"]["context"]["draftOrders"]["entry"]
        if e["resource"].get("authoredOn")
    ]
    if not authored:
        return False
    since = date.fromisoformat(authored[0][:10]) - timedelta(days=28)
    for entry in (fixture["request"]["prefetch"].get("medications") or {}).get("entry") or []:
        med = entry["resource"]
        text = str(med.get("medicationCodeableConcept", {}).get("text", "")).lower()
        started = med.get("authoredOn")
        active = "diazepam" in text and med.get("status") == "active" and started
        if active and date.fromisoformat(started[:10]) <= since:
            return True
    return False


SEVERAL_LONG_TERM = [
    p for p in fixture_paths() if len(_diazepam_drafts(load(p))) > 1 and _long_term(load(p))
]


def test_the_several_orders_long_term_fixtures_exist() -> None:
    assert len(SEVERAL_LONG_TERM) >= 8, [p.stem for p in SEVERAL_LONG_TERM]


@pytest.mark.parametrize("profile", ["standard", "epic"])
@pytest.mark.parametrize("path", SEVERAL_LONG_TERM, ids=lambda p: p.stem)
def test_no_ticks_remove_every_order_of_a_long_term_user(
    path: Path, profile: str, apps: dict[str, Flask]
) -> None:
    """F.0-1 over every fixture with a long-term user and several pended orders: no single
    suggestion, and in Epic (any number may be ticked) not all of them together, deletes
    every pended diazepam order; no 'diazepam with diazepam' combination wording."""
    fixture, cards = fixture_answer(apps, path.stem, profile)
    drafts = _diazepam_drafts(fixture)
    deleted_by = [
        {a["resourceId"] for a in s["actions"] if a["type"] == "delete"}
        for s in _suggestions(cards)
    ]
    # an update keeps the order it rewrites
    kept_by = [
        {f"MedicationRequest/{a['resource']['id']}" for a in s["actions"] if a["type"] == "update"}
        for s in _suggestions(cards)
    ]
    for gone, kept in zip(deleted_by, kept_by, strict=True):
        assert drafts - gone or kept, f"one suggestion removes every order: {gone}"
    if profile == "epic":
        every = set().union(*deleted_by) if deleted_by else set()
        assert drafts - every, "ticking every Remove stops diazepam"
    # no "diazepam with diazepam (another pended order) … avoid the combination" card
    assert not any(
        "another pended order" in c["summary"] or c["summary"].startswith("Another diazepam")
        for c in cards
    )
    assert len([c for c in cards if _topic(c) == "taper-required"]) <= 1


@pytest.mark.parametrize("profile", ["standard", "epic"])
@pytest.mark.parametrize(
    "name", ["r7-l11-seizure-three-orders", "r7-l14-seizure-renewal-and-step-sign"]
)
def test_a_stated_seizure_gets_the_keep_one_card_as_lines(
    apps: dict[str, Flask], profile: str, name: str
) -> None:
    """F1: one card; F.0-3: no delete suggestion on a stated seizure order, so the choices
    are lines; nothing recommended (R13 scope); the dose taken first."""
    cards = _cards(apps, name, profile)
    [card] = [c for c in cards if _topic(c) == "taper-required"]
    assert "Keep one; do not stop abruptly" in card["summary"]
    assert not [c for c in cards if _topic(c) == "cns-depressant-combination"]
    assert not any(a["type"] == "delete" for s in _suggestions(cards) for a in s["actions"])
    assert not any(s.get("isRecommended") for s in _suggestions(cards))
    lines = [p for p in card["detail"].split("\n\n") if "keep only:**" in p.lower()]
    assert len(lines) >= 2 and "(dose taken now)" in lines[0]


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_order_select_on_one_of_two_says_keep_only_one(
    apps: dict[str, Flask], profile: str
) -> None:
    """F3, and review round 8 F3: the step selected, the renewal pended beside it, for a
    long-term user: the set is the one keep-one card, as at order-sign (no "avoid the
    combination", no second step offered on either order)."""
    cards = _cards(apps, "r7-l07b-select-step-beside-renewal", profile)
    [card] = [c for c in cards if _topic(c) == "taper-required"]
    assert "Two diazepam orders" in card["summary"] and "Keep one" in card["summary"]
    assert not [c for c in cards if _topic(c) == "cns-depressant-combination"]
    assert not any("First taper step" in s["label"] for s in _suggestions(cards))


def test_order_select_on_one_of_two_new_start_says_keep_only_one(apps: dict[str, Flask]) -> None:
    """A new start (not long-term) selected beside another pended diazepam order: the
    duplicate card says keep only one, not "avoid the combination"."""
    cards = _cards(apps, "r8-new-start-select-one-of-two", "standard")
    [card] = [c for c in cards if _topic(c) == "cns-depressant-combination"]
    assert card["summary"].startswith("Another diazepam order is pended (")
    assert card["summary"].endswith(": keep only one")
    assert "Avoid the combination" not in card["detail"]


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_a_stated_long_term_use_recommends_no_order(apps: dict[str, Flask], profile: str) -> None:
    """F4: MS spasticity stated: keep one, nothing recommended, the dose taken first, and
    no 'keep the step' push."""
    [card] = [
        c
        for c in _cards(apps, "r7-l10-ms-renewal-and-step", profile)
        if _topic(c) == "taper-required"
    ]
    assert not any(s.get("isRecommended") for s in card.get("suggestions") or [])
    assert "Keep the 10 % step" not in card["detail"]
    if profile == "standard":
        assert "(dose taken now)" in card["suggestions"][0]["label"]
    else:
        assert card["detail"].startswith("**Keep only:** diazepam 5 mg 3 times a day (dose taken")


def test_an_as_needed_running_prescription_is_not_the_dose_taken(apps: dict[str, Flask]) -> None:
    """F6: a step worked out from the most allowed would mislead: none is offered, and the
    card says how to find the dose actually taken."""
    [card] = [
        c
        for c in _cards(apps, "r7-l06-as-needed-running", "standard")
        if _topic(c) == "taper-required"
    ]
    assert "base the taper on the dose actually taken" in card["summary"]
    assert card["detail"].startswith("Ask the patient or check fills for the dose actually")
    assert not card.get("suggestions")


def test_epic_keep_lines_say_what_to_edit_and_remove(apps: dict[str, Flask]) -> None:
    """F8 (N02: 5 mg twice a day for 14 days beside 5 mg 3 times a day, at 68)."""
    detail = " ".join(c["detail"] for c in _cards(apps, "r7-n02-new-start-two-5mg-orders", "epic"))
    assert (
        "**Or keep only:** diazepam 5 mg twice a day (above usual start from age 65): edit it to "
        "7 days (14 tablets), no refills; remove diazepam 5 mg 3 times a day." in detail
    )


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_two_orders_of_one_dose_are_told_apart(apps: dict[str, Flask], profile: str) -> None:
    """F9: a tablet and an oral solution order, both 5 mg twice a day."""
    [card] = [
        c
        for c in _cards(apps, "r7-l08-tablet-and-solution-renewals", profile)
        if _topic(c) == "taper-required"
    ]
    labels = [s["label"] for s in card["suggestions"]]
    assert len(set(labels)) == len(labels)
    text = card["detail"] + " ".join(labels)
    assert "5 mg twice a day, tablets" in text and "5 mg twice a day, oral solution" in text


def test_three_orders_say_remove_the_others(apps: dict[str, Flask]) -> None:
    """F10: a keep that removes two orders says so."""
    cards = _cards(apps, "r7-l11b-back-pain-three-orders", "standard")
    keeps = [s["label"] for s in _suggestions(cards) if s["label"].startswith("Keep only")]
    assert keeps and all(k.endswith("; remove the others") for k in keeps), keeps


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_a_note_about_each_order_is_said_once(apps: dict[str, Flask], profile: str) -> None:
    """F11 (hospice, anxiety, two orders): the anxiety note was a line of the keep-one card
    and a card of its own for the other order; it is said once."""
    cards = _cards(apps, "r7-l12-hospice-renewal-and-60-pct-cut", profile)
    text = " ".join(c["summary"] + " " + c.get("detail", "") for c in cards)
    assert text.count("do not treat anxiety") == 1, [c["summary"] for c in cards]
