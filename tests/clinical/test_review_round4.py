"""Round-4 reviews: what the independent pharmacists found on their own patients.

p14 (88, hospice, pancreatic cancer, on morphine): the opioid + benzodiazepine card is at most
info in hospice or end-of-life care (R20; CDC Rec 11's CDS applicability excludes limited life
expectancy, end-of-life therapies and terminal conditions, knowledge E.1): no cancel, no
naloxone, no CDC source (the diazepam label's boxed warning instead, knowledge A.4), no
override reasons (F.2a: info cards carry none).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.scenario_cards import FIXTURES_DIR, load, profile_apps

PROFILES = ("standard", "epic")


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round4")


def _post(apps: dict[str, Flask], profile: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = apps[profile].test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert answer.status_code == 200
    return answer.get_json()["cards"]


def _fixture(name: str) -> dict[str, Any]:
    return load(Path(FIXTURES_DIR, f"{name}.json"))


def _opioid_cards(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if c["source"]["topic"]["code"] == "opioid-benzodiazepine"]


def _hospice_on_morphine_with_back_spasm() -> dict[str, Any]:
    """The round-3 hospice patient (85, back spasm) given the p14 patient's morphine."""
    body = copy.deepcopy(_fixture("r3-p19-hospice-85")["request"])
    p14 = _fixture("r4-p14-hospice-opioid-88")["request"]
    med = copy.deepcopy(p14["prefetch"]["medications"]["entry"][0])
    med["resource"]["subject"] = {"reference": f"Patient/{body['context']['patientId']}"}
    body["prefetch"]["medications"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [med],
    }
    return body


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", ["p14", "p19-with-morphine"])
def test_opioid_card_in_hospice_is_info_comfort_first_and_cites_the_label(
    case: str, profile: str, apps: dict[str, Flask]
) -> None:
    body = (
        _fixture("r4-p14-hospice-opioid-88")["request"]
        if case == "p14"
        else _hospice_on_morphine_with_back_spasm()
    )
    cards = _post(apps, profile, body)
    assert all(c["indicator"] != "critical" for c in cards)
    text = " ".join(c["summary"] + " " + c["detail"] for c in cards)
    assert "over-sedation" in text and "comfort goals first" in text, text
    for card in _opioid_cards(cards):
        assert card["indicator"] == "info"
        assert not card.get("suggestions") and not card.get("overrideReasons")
        assert "boxed warning" in card["source"]["label"]
    # nowhere: a CDC Rec 11 source, a naloxone order or a recommended cancel (R20 offers one)
    for card in cards:
        cited = " ".join([card["source"]["label"], *(k["label"] for k in card.get("links") or [])])
        assert "CDC" not in cited, cited
        for suggestion in card.get("suggestions") or []:
            assert "naloxone" not in suggestion["label"].lower()
            if [a["type"] for a in suggestion["actions"]] == ["delete"]:
                assert not suggestion.get("isRecommended"), suggestion["label"]


def test_outside_hospice_the_opioid_card_is_unchanged(apps: dict[str, Flask]) -> None:
    """The same p14 patient without the hospice finding keeps the critical CDC card."""
    body = copy.deepcopy(_fixture("r4-p14-hospice-opioid-88")["request"])
    conditions = body["prefetch"]["conditions"]
    conditions["entry"] = [
        e for e in conditions["entry"] if e["resource"]["code"]["coding"][0]["code"] != "170935008"
    ]
    conditions["total"] = len(conditions["entry"])
    (card,) = _opioid_cards(_post(apps, "standard", body))
    assert card["indicator"] == "critical"
    assert "CDC" in card["source"]["label"]
    assert any("naloxone" in s["label"] for s in card["suggestions"])
