"""Review round 8 (an independent pharmacist's own patients, fixtures r8-*).

F1: a rescue gel pended beside the maintenance tablets was called a duplicate to remove
(F.0-3). F2: a 5-day taper step was recommended as the only order kept (a long-term user runs
out). F3: order-select on the renewal beside a pended step offered a second step. F4: a
stated withdrawal or tetanus course got two duplicate cards. F5: the contraindication card
offered to keep a diazepam order. F6: keeping the 2 mg order at 84 was no choice. F7: no dose
on the running prescription was not said. Lows: Remove labels cut mid-word, a summary in
lower case.
"""

from __future__ import annotations

import pytest
from flask import Flask

from tests.clinical.review_cards import PROFILES
from tests.clinical.review_cards import cards_of as _cards
from tests.clinical.review_cards import suggestions as _suggestions
from tests.clinical.review_cards import text as _text
from tests.scenario_cards import fixture_paths, profile_apps


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round8")


@pytest.mark.parametrize("profile", PROFILES)
def test_a_rescue_gel_is_no_duplicate_of_the_tablets(apps: dict[str, Flask], profile: str) -> None:
    cards = _cards(apps, "r8-f03-epilepsy-rescue-gel-beside-tablets", profile)
    text = _text(cards)
    assert "keep only one" not in text.lower() and "Keep one" not in text
    assert "together" not in text
    assert not any(a["type"] == "delete" for s in _suggestions(cards) for a in s["actions"])


@pytest.mark.parametrize("profile", PROFILES)
def test_a_short_step_is_kept_extended(apps: dict[str, Flask], profile: str) -> None:
    """F2: renewal beside a 5-day step (9 mg twice a day): the step is kept for 14 days."""
    cards = _cards(apps, "r8-f11-renewal-and-5-day-step", profile)
    if profile == "standard":
        [top] = [s for s in _suggestions(cards) if s.get("isRecommended")]
        [update] = [a for a in top["actions"] if a["type"] == "update"]
        supply = update["resource"]["dispenseRequest"]["expectedSupplyDuration"]["value"]
        assert supply == 14
        assert [a["resourceId"] for a in top["actions"] if a["type"] == "delete"] == [
            "MedicationRequest/r8-f11-diazepam-1"
        ]
    else:
        assert "edit it to 14 days (252 mL), no refills; remove diazepam 10 mg" in _text(cards)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_short_step_alone_is_warned(apps: dict[str, Flask], profile: str) -> None:
    cards = _cards(apps, "r8-v11-5-day-step-alone", profile)
    [card] = [c for c in cards if c["source"]["topic"]["code"] == "taper-required"]
    assert card["indicator"] == "warning"
    assert "lasts only 5 days; make it 14 days or more" in card["summary"]
    if profile == "epic":
        assert (
            "**Edit the order to the longer step:** 14 days (252 mL), no refills." in card["detail"]
        )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name", ["r8-f07-select-renewal-beside-step", "r8-v07e-select-renewal-epilepsy"]
)
def test_selecting_the_renewal_beside_a_step_offers_no_second_step(
    apps: dict[str, Flask], profile: str, name: str
) -> None:
    cards = _cards(apps, name, profile)
    assert "Keep one; do not stop abruptly" in _text(cards)
    assert not any("First taper step" in s["label"] for s in _suggestions(cards))
    assert "first taper step" not in _text(cards).lower()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name", ["r8-f02-alcohol-withdrawal-two-orders", "r8-v02t-tetanus-two-orders"]
)
def test_a_withdrawal_or_tetanus_course_gets_one_keep_one_card(
    apps: dict[str, Flask], profile: str, name: str
) -> None:
    cards = _cards(apps, name, profile)
    assert sum("Keep one" in c["summary"] for c in cards) == 1
    assert not [c for c in cards if c["summary"].startswith("Another diazepam order")]
    assert not any(a["type"] == "delete" for s in _suggestions(cards) for a in s["actions"])


@pytest.mark.parametrize("profile", PROFILES)
def test_a_contraindication_offers_no_keep(apps: dict[str, Flask], profile: str) -> None:
    cards = _cards(apps, "r8-f09-sleep-apnea-two-new-orders", profile)
    critical = [c for c in cards if c["source"]["topic"]["code"] == "diazepam-contraindication"]
    assert len(critical) == 1
    assert not any(s["label"].startswith("Keep only") for s in _suggestions(cards))
    assert "keep only" not in critical[0]["detail"].lower()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", ["r8-f10-hospice-84-two-new-orders", "r8-v10-84-two-new-orders"])
def test_the_2_mg_order_can_be_kept(apps: dict[str, Flask], profile: str, name: str) -> None:
    cards = _cards(apps, name, profile)
    if profile == "standard":
        assert any(
            s["label"].startswith("Keep only diazepam 2 mg twice a day")
            for s in _suggestions(cards)
        )
    else:
        assert (
            "keep only:** diazepam 2 mg twice a day: remove diazepam 5 mg" in _text(cards).lower()
        )


@pytest.mark.parametrize("profile", PROFILES)
def test_no_dose_on_the_running_prescription_is_said(apps: dict[str, Flask], profile: str) -> None:
    [card] = [
        c
        for c in _cards(apps, "r8-f06-running-prescription-no-dose", profile)
        if c["source"]["topic"]["code"] == "taper-required"
    ]
    assert card["summary"].endswith("; from this order: confirm the dose taken")
    # round 9: a step from a dose not known to be the one taken is not pre-selected
    assert not any(s.get("isRecommended") for s in card.get("suggestions") or [])


@pytest.mark.parametrize("profile", PROFILES)
def test_labels_are_whole_and_summaries_start_with_a_capital(
    apps: dict[str, Flask], profile: str
) -> None:
    """Over every fixture: no suggestion label cut inside a parenthesis, no summary in
    lower case (review round 8, Low)."""
    bad = []
    for path in fixture_paths():
        for card in _cards(apps, path.stem, profile):
            if card["summary"][:1].islower():
                bad.append(f"{path.stem}: {card['summary'][:40]}")
            for s in card.get("suggestions") or []:
                if s["label"].count("(") != s["label"].count(")"):
                    bad.append(f"{path.stem}: {s['label']}")
    assert not bad, bad[:5]
