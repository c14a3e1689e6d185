"""Review round 9 (APPROVED WITH CONDITIONS; fixtures r9-*): the conditions.

#1: in Epic, the one-click Remove beside a short taper step removed the renewal, so a
skipped hand edit left a long-term user 5 or 10 days of diazepam. #2: "then remove the
pended one" did not say which order when a rescue product was pended too (F.0-3). #3:
"Replace both with baclofen" dropped "(off-label)" (F.0-7). #8: "Keep only" said twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.clinical.review_cards import PROFILES, drafts_by_ref
from tests.clinical.review_cards import cards_of as _cards
from tests.clinical.review_cards import suggestions as _suggestions
from tests.scenario_cards import fixture_answer, fixture_paths, profile_apps


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round9")


def _deleted(cards: list[dict[str, Any]]) -> set[str]:
    return {
        a["resourceId"] for s in _suggestions(cards) for a in s["actions"] if a["type"] == "delete"
    }


def test_epic_one_click_never_leaves_only_a_short_step(apps: dict[str, Flask]) -> None:
    """#1: renewal (30 days) beside a 10-day step: every Remove ticked leaves the renewal;
    the step, extended, is the hand-typed choice (and the recommended one in standard)."""
    fixture, cards = fixture_answer(apps, "r9-gva-renewal-and-10-day-step", "epic")
    drafts = drafts_by_ref(fixture)
    left = set(drafts) - _deleted(cards)
    assert len(left) == 1
    [kept] = [drafts[ref] for ref in left]
    assert kept["dispenseRequest"]["expectedSupplyDuration"]["value"] >= 14
    standard = _cards(apps, "r9-gva-renewal-and-10-day-step", "standard")
    [top] = [s for s in _suggestions(standard) if s.get("isRecommended")]
    [update] = [a for a in top["actions"] if a["type"] == "update"]
    assert update["resource"]["dispenseRequest"]["expectedSupplyDuration"]["value"] == 14
    assert "extended to 14 days" in top["label"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name",
    ["r9-g04-epilepsy-nasal-spray-select-tablets", "r8-f03-epilepsy-rescue-gel-beside-tablets"],
)
def test_a_rescue_product_is_never_the_pended_one_removed(
    apps: dict[str, Flask], profile: str, name: str
) -> None:
    fixture, cards = fixture_answer(apps, name, profile)
    rescue = {
        f"MedicationRequest/{e['resource']['id']}"
        for e in fixture["request"]["context"]["draftOrders"]["entry"]
        if "tablet" not in str(e["resource"].get("medicationCodeableConcept", {})).lower()
    }
    assert rescue and not rescue & _deleted(cards)
    detail = " ".join(c.get("detail", "") for c in cards)
    if profile == "epic" and "the pended one" in detail:
        assert (
            "The pended one is the diazepam 5 mg tablet order; the other diazepam order " in detail
        )


@pytest.mark.parametrize(
    "name", ["r9-g07-new-start-2mg-daily-and-10mg", "r9-gve-glaucoma-two-new-orders"]
)
def test_baclofen_is_called_off_label_when_both_orders_are_replaced(
    apps: dict[str, Flask], name: str
) -> None:
    labels = [s["label"] for s in _suggestions(_cards(apps, name, "standard"))]
    both = [label for label in labels if label.startswith("Replace both with baclofen")]
    assert both and all("(off-label)" in label for label in both), labels


@pytest.mark.parametrize("profile", PROFILES)
def test_keep_only_is_said_once_a_line(apps: dict[str, Flask], profile: str) -> None:
    """#8 over every fixture: no line reads "Keep only: Keep only …"."""
    bad = [
        path.stem
        for path in fixture_paths()
        for card in _cards(apps, path.stem, profile)
        if "keep only:** keep only" in card.get("detail", "").lower()
    ]
    assert not bad, bad


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name",
    [
        "r10-h05-no-dose-renewal-and-5-day-order",
        "r10-hvc-no-dose-78-falls-two-orders",
        "r10-h04-three-orders-short-step",
        "r10-h01-renewal-and-13-day-step",
    ],
)
def test_no_choice_keeps_an_order_that_runs_out_in_days(
    apps: dict[str, Flask], profile: str, name: str
) -> None:
    """Review round 10 #1 (High), over both profiles: a long-term user's order kept alone
    lasts 14 days or more. In standard, each suggestion's result; in Epic, every Remove
    ticked together."""
    fixture, cards = fixture_answer(apps, name, profile)
    drafts = drafts_by_ref(fixture)

    def lasts(resource: dict[str, Any]) -> bool:
        supply = (resource.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
        return float(supply.get("value") or 0) >= 14

    if profile == "standard":
        for s in _suggestions(cards):
            gone = {a["resourceId"] for a in s["actions"] if a["type"] == "delete"}
            updated = {
                f"MedicationRequest/{a['resource']['id']}": a["resource"]
                for a in s["actions"]
                if a["type"] == "update"
            }
            left = {**{r: drafts[r] for r in set(drafts) - gone}, **updated}
            if len(left) == 1:
                [kept] = left.values()
                assert lasts(kept), s["label"]
    else:
        left = set(drafts) - _deleted(cards)
        assert left and all(lasts(drafts[r]) for r in left), left


@pytest.mark.parametrize("profile", PROFILES)
def test_a_short_order_with_no_dose_recorded_can_be_kept_for_14_days(
    apps: dict[str, Flask], profile: str
) -> None:
    """Review round 10 #2: a 5-day order alone, no dose recorded: 'keep this dose, extended
    to 14 days' beside the step; nothing pre-selected; the summary says the step is worked
    out from this order."""
    cards = _cards(apps, "r10-hvb-no-dose-5-day-order-alone", profile)
    [card] = [c for c in cards if c["source"]["topic"]["code"] == "taper-required"]
    # round 11: and that the order lasts only 5 days
    assert card["summary"].endswith("; dose taken not recorded; order lasts 5 days")
    if profile == "standard":
        assert any(
            s["label"].startswith("Keep this dose, extended to 14 days")
            for s in card["suggestions"]
        )
        assert not any(s.get("isRecommended") for s in card["suggestions"])
    else:
        assert (
            "**Or edit the order:** 14 days (189 mL), no refills, the same dose." in card["detail"]
        )


@pytest.mark.parametrize(
    "name", ["r11-i01-two-short-orders-no-dose", "r11-ivb-two-short-orders-dose-recorded"]
)
def test_epic_offers_no_tick_when_every_order_runs_out_in_days(
    apps: dict[str, Flask], name: str
) -> None:
    """Review round 11 (High): two short orders; any Epic Remove would leave the other one,
    which runs out in days, unless its typed extension is made: no Remove is offered; the
    lines say keep which one, extended to 14 days."""
    cards = _cards(apps, name, "epic")
    assert not _deleted(cards)
    detail = " ".join(c.get("detail", "") for c in cards)
    assert detail.count(": edit it to 14 days") >= 2


@pytest.mark.parametrize("profile", PROFILES)
def test_a_7_day_renewal_says_so_and_may_be_kept_for_14_days(
    apps: dict[str, Flask], profile: str
) -> None:
    """Review round 11 (Medium): a same-dose renewal for 7 days, dose recorded."""
    [card] = [
        c
        for c in _cards(apps, "r11-i02-7-day-renewal-same-dose", profile)
        if c["source"]["topic"]["code"] == "taper-required"
    ]
    assert card["summary"].endswith("; this order lasts only 7 days")
    if profile == "standard":
        labels = [s["label"] for s in card["suggestions"]]
        assert any(label.startswith("Keep this dose, extended to 14 days") for label in labels)
    else:
        assert (
            "**Or edit the order:** 14 days (28 tablets), no refills, the same dose."
            in card["detail"]
        )


@pytest.mark.parametrize("profile", PROFILES)
def test_in_hospice_a_short_step_is_info_with_nothing_pushed(
    apps: dict[str, Flask], profile: str
) -> None:
    """Review round 11 (Medium, R13 scope, R20): the control outside hospice is a warning
    with the extension recommended."""
    [card] = [
        c
        for c in _cards(apps, "r11-i03-hospice-short-step", profile)
        if c["source"]["topic"]["code"] == "taper-required"
    ]
    assert card["indicator"] == "info"
    assert not any(s.get("isRecommended") for s in card.get("suggestions") or [])
    assert "Then lower" not in card["detail"]
    [control] = [
        c
        for c in _cards(apps, "r11-iva-no-hospice-short-step-81", profile)
        if c["source"]["topic"]["code"] == "taper-required"
    ]
    assert control["indicator"] == "warning"


@pytest.mark.parametrize("profile", PROFILES)
def test_several_orders_with_no_dose_recorded_ask_to_confirm_it(
    apps: dict[str, Flask], profile: str
) -> None:
    """Rounds 10 and 11, condition 7: the keep-one card says the dose taken is not recorded."""
    [card] = [
        c
        for c in _cards(apps, "r10-h05-no-dose-renewal-and-5-day-order", profile)
        if c["source"]["topic"]["code"] == "taper-required"
    ]
    assert "Dose taken not recorded: confirm it before choosing." in card["detail"]


@pytest.mark.parametrize("profile", PROFILES)
def test_in_hospice_the_dose_taken_comes_first_and_no_step_is_one_click(
    apps: dict[str, Flask], profile: str
) -> None:
    """Review round 12 (condition): hospice, a 7-day renewal beside a 20 % step for 30 days.
    The dose taken (extended to 14 days) is the first choice, the step says it is above
    ASAM's usual start, and Epic offers no tick (one would leave the 20 % step, or 7 days)."""
    cards = _cards(apps, "r12-j04-hospice-7-day-renewal-and-20-pct-step", profile)
    [card] = [c for c in cards if c["source"]["topic"]["code"] == "taper-required"]
    if profile == "standard":
        first, second = card["suggestions"]
        assert first["label"].startswith("Keep only diazepam 5 mg twice a day, extended to 14")
        assert "above ASAM's 5 to 10 %" in second["label"]
        assert not any(s.get("isRecommended") for s in card["suggestions"])
    else:
        assert not card.get("suggestions")
        assert card["detail"].startswith("**Keep only:** diazepam 5 mg twice a day (dose taken")
