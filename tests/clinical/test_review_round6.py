"""Review round 6 (pharmacist check of issue 19): a long-term user's pended orders are read
against the dose the patient takes now.

H-1: a taper-step order pended beside the running dose's renewal was two taper cards, a
"diazepam with diazepam" warning and no "keep one" choice (19 mg a day against a 9 mg step).
M-2: with several pended orders, Epic was told to "keep diazepam 5 mg ..., change it to
diazepam 2 mg tablets" (an edit Epic cannot make), even with a 2 mg order already pended.
M-3: a pended order that already is a taper step was taken for a new start of tapering: its
summary printed "first taper step ? % lower" and the step was cut from the pended dose.

The running dose here is 5 mg tablets twice a day (10 mg a day) since 2026-03-02, at 70,
with a history of falls (fixtures r6-*).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.clinical.review_cards import cards_of as _cards
from tests.clinical.review_cards import topic as _topic
from tests.scenario_cards import profile_apps

RENEWAL = "MedicationRequest/r6-c04-diazepam-1"  # 5 mg tablets twice a day, 30 days
STEP = "MedicationRequest/r6-c04-diazepam-2"  # oral solution 4.5 mg twice a day, 14 days


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round6")


def _taper(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if _topic(c) == "taper-required"]


def _deleted(suggestion: dict[str, Any]) -> set[str]:
    return {a["resourceId"] for a in suggestion["actions"] if a["type"] == "delete"}


def _daily_mg(resource: dict[str, Any]) -> float:
    dosage = resource["dosageInstruction"][0]
    mg = float(dosage["doseAndRate"][0]["doseQuantity"]["value"])
    repeat = dosage["timing"]["repeat"]
    return mg * float(repeat["frequency"]) / float(repeat.get("period") or 1)


def _everything(cards: list[dict[str, Any]]) -> str:
    return " ".join(
        [c["summary"] + " " + c.get("detail", "") for c in cards]
        + [s["label"] for c in cards for s in c.get("suggestions") or []]
    )


# -- M-3: the pended order measured against the running dose ---------------------------------


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_a_pended_taper_step_is_said_and_not_stepped_again(
    apps: dict[str, Flask], profile: str
) -> None:
    """p06sol: the oral solution 4.5 mg twice a day for a 10 mg a day user is the first step:
    info, no further step, no '?', and no 'use the oral solution' to someone ordering it."""
    cards = _cards(apps, "r6-long-term-solution-taper-step-pended-70", profile)
    [card] = _taper(cards)
    assert card["indicator"] == "info"
    assert "this order is a taper step, 10 % below the 10 mg a day taken" in card["summary"]
    assert not card.get("suggestions")
    assert "?" not in _everything(cards)
    assert "use the oral solution" not in card["detail"]


def test_a_20_pct_step_says_it_is_bigger_than_the_usual_start(apps: dict[str, Flask]) -> None:
    [card] = _taper(_cards(apps, "r6-long-term-tablet-step-20-pct-pended-70", "standard"))
    assert "20 % below the 10 mg a day taken" in card["summary"]
    assert "A 20 % step is bigger than ASAM's usual 5 to 10 % start" in card["detail"]
    assert not card.get("suggestions")


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_a_cut_over_25_pct_is_warned_and_stepped_from_the_dose_taken(
    apps: dict[str, Flask], profile: str
) -> None:
    """6 mg a day pended against 10 mg taken (40 %): F.0-1 forbids more than 25 % in one step;
    the step offered is 10 % below the 10 mg taken (9 mg a day), not 10 % below the 6 mg."""
    [card] = _taper(_cards(apps, "r6-long-term-cut-40-pct-pended-70", profile))
    assert card["indicator"] == "warning"
    assert "order cuts 40 % at once, over 25 %" in card["summary"]
    if profile == "standard":
        steps = [s for s in card["suggestions"] if s["actions"][0]["type"] == "update"]
        assert steps and steps[0]["isRecommended"]
        for step in steps:  # every step is within 25 % of the dose taken
            assert 7.5 <= _daily_mg(step["actions"][0]["resource"]) < 10
        assert _daily_mg(steps[0]["actions"][0]["resource"]) == 9
    else:
        assert "4.5 mg = 4.5 mL twice a day for 14 days" in card["detail"]


# -- H-1: two pended orders for a long-term user -------------------------------------------------


def test_step_beside_renewal_is_one_keep_one_card(apps: dict[str, Flask]) -> None:
    """Every choice leaves exactly one diazepam order (F.0-1: never none); keeping the step
    is recommended; no second taper card, no 'diazepam with diazepam' card."""
    cards = _cards(apps, "r6-long-term-step-beside-renewal-70", "standard")
    [card] = _taper(cards)
    assert not [c for c in cards if _topic(c) == "cns-depressant-combination"]
    assert "Two diazepam orders pended" in card["summary"] and "Keep one" in card["summary"]
    assert (
        "19 mg a day against 10 mg a day taken; removing all stops diazepam abruptly"
        in card["detail"]
    )
    assert card["selectionBehavior"] == "at-most-one"
    for suggestion in card["suggestions"]:
        gone = _deleted(suggestion)
        assert len(gone) == 1, suggestion["label"]  # one removed, one kept
        assert not any(a["type"] in ("create",) for a in suggestion["actions"])
    [top] = [s for s in card["suggestions"] if s.get("isRecommended")]
    assert _deleted(top) == {RENEWAL}
    assert "10 % taper step" in top["label"]


def test_step_beside_renewal_in_epic_preselects_no_remove(apps: dict[str, Flask]) -> None:
    """Epic lets any number of suggestions be ticked (review round 7 F2): the step, the order
    to keep, has no Remove, so ticking every Remove still leaves it; none is pre-selected.
    The text says which order each choice keeps."""
    [card] = _taper(_cards(apps, "r6-long-term-step-beside-renewal-70", "epic"))
    removes = [s for s in card["suggestions"] if s["actions"][0]["type"] == "delete"]
    assert {r["actions"][0]["resourceId"] for r in removes} == {RENEWAL}
    assert not any(s.get("isRecommended") for s in card["suggestions"])
    assert (
        "**Keep only:** diazepam 4.5 mg twice a day (10 % taper step): remove diazepam "
        "5 mg twice a day." in card["detail"]
    )
    assert "removing all stops diazepam abruptly" in card["detail"]


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_an_order_cut_over_25_pct_is_not_a_keep_choice(
    apps: dict[str, Flask], profile: str
) -> None:
    """5 mg twice a day renewal beside 2 mg twice a day (60 % lower): keeping the 2 mg order
    alone is not offered; the first step of the renewal (removing the 2 mg order) is."""
    cards = _cards(apps, "r6-long-term-over-25-beside-renewal-70", profile)
    [card] = _taper(cards)
    assert "Diazepam 2 mg twice a day cuts 60 % at once: not offered." in card["detail"]
    renewal, low = "MedicationRequest/r6-c05-diazepam-1", "MedicationRequest/r6-c05-diazepam-2"
    if profile == "standard":
        # no choice removes the renewal and keeps the 2 mg order as it is
        assert not any(_deleted(s) == {renewal} for s in card["suggestions"])
        [top] = [s for s in card["suggestions"] if s.get("isRecommended")]
        update = next(a for a in top["actions"] if a["type"] == "update")
        assert update["resource"]["id"] == "r6-c05-diazepam-1"
        assert _daily_mg(update["resource"]) == 9
        assert _deleted(top) == {low}
    else:
        assert (
            "**New order, first taper step, then remove all pended orders:** diazepam "
            "oral solution 1 mg/mL" in card["detail"]
        )
        # the renewal (the dose taken) is what every Remove ticked leaves (round 7 F2)
        removed = {s["actions"][0]["resourceId"] for s in card["suggestions"]}
        assert removed == {low}
        assert not any(s.get("isRecommended") for s in card["suggestions"])


# -- M-2: several pended orders for a new start ------------------------------------------------


def test_another_product_for_several_orders_is_a_new_order_in_epic(
    apps: dict[str, Flask],
) -> None:
    cards = _cards(apps, "r6-two-drafts-older-adult-start-new-order-70", "epic")
    text = _everything(cards)
    assert (
        "**New order instead, then remove all pended orders:** diazepam 2 mg tablets: "
        "2 mg twice a day for 7 days (14 tablets), no refills." in text
    )
    assert "change it to" not in text
    [card] = [c for c in cards if "New order instead" in c["detail"]]
    removed = {
        s["actions"][0]["resourceId"]
        for s in card["suggestions"]
        if s["actions"][0]["type"] == "delete"
    }
    assert removed == {"MedicationRequest/r6-c06-diazepam-1", "MedicationRequest/r6-c06-diazepam-2"}


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_a_pended_2_mg_order_is_kept_not_re_made(apps: dict[str, Flask], profile: str) -> None:
    """5 mg twice a day beside 2 mg twice a day pended at 70: the older-adult start is the
    2 mg order itself, so keeping it is the choice; no change of the 5 mg order to 2 mg."""
    cards = _cards(apps, "r6-two-drafts-2-mg-already-pended-70", profile)
    text = _everything(cards)
    assert "Change to one order" not in text
    assert "New order instead" not in text and "change it to" not in text
    if profile == "standard":
        keeps = [
            s
            for c in cards
            for s in c.get("suggestions") or []
            if s["label"].startswith("Keep only diazepam 2 mg twice a day")
        ]
        [keep] = keeps
        update = next(a for a in keep["actions"] if a["type"] == "update")
        assert update["resource"]["id"] == "r6-c07-diazepam-2"
        assert _deleted(keep) == {"MedicationRequest/r6-c07-diazepam-1"}
    else:
        assert (
            "**Or keep only:** diazepam 2 mg twice a day: edit it to 7 days (14 tablets), no "
            "refills; remove diazepam 5 mg twice a day." in text
        )


def test_a_raised_dose_is_said_and_stepped_from_the_dose_taken(apps: dict[str, Flask]) -> None:
    """15 mg a day pended against 10 mg taken: the card says the order raises the dose, and
    the step is 10 % below the 10 mg taken, not 10 % below the 15 mg pended."""
    [card] = _taper(_cards(apps, "r6-long-term-dose-raised-70", "standard"))
    assert "raises the 10 mg a day taken to 15 mg: confirm the reason" in card["detail"]
    [top] = [s for s in card["suggestions"] if s.get("isRecommended")]
    assert _daily_mg(top["actions"][0]["resource"]) == 9
