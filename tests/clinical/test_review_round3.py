"""Round-3 reviews (issue 19): what the independent pharmacist's own patients found.

p15 (no indication recorded): a label that starts "If for muscle spasm:" must still say what
its action does. In ``standard`` a suggestion that deletes diazepam and creates a relaxant
says "replace"; in ``epic`` an added relaxant says "diazepam stays" (F.2a: label alternatives
truthfully). p19 (hospice, 85): the alternatives card keeps its plain level and cites no AGS
Beers source, which excludes hospice care (R20, F.0-7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.robustness.hostile import CORPUS, build_body
from tests.scenario_cards import fixture_paths, load, profile_apps

PROFILES = ("standard", "epic")
PREFIX = "If for muscle spasm: "
RELAXANTS = ("cyclobenzaprine", "tizanidine", "methocarbamol", "baclofen")


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round3")


def _cards(apps: dict[str, Flask], path: Path, profile: str) -> list[dict[str, Any]]:
    fixture = load(path)
    client = apps[profile].test_client()
    answer = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"])
    assert answer.status_code == 200
    return answer.get_json()["cards"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_unsure_labels_say_what_their_action_does(
    path: Path, profile: str, apps: dict[str, Flask]
) -> None:
    for card in _cards(apps, path, profile):
        for suggestion in card.get("suggestions") or []:
            label = suggestion["label"]
            types = sorted(a["type"] for a in suggestion["actions"])
            if not label.startswith(PREFIX) or not any(d in label for d in RELAXANTS):
                continue
            if types == ["create", "delete"]:
                assert label.startswith(PREFIX + "replace with "), label
            elif types == ["create"] and profile == "epic":
                assert label.endswith("diazepam stays"), label


def test_the_no_indication_patient_exercises_the_rule(apps: dict[str, Flask]) -> None:
    """The round-3 patient p15 has such labels in both profiles (so the test above bites)."""
    path = next(p for p in fixture_paths() if p.stem == "r3-p15-no-indication")
    for profile in PROFILES:
        labels = [
            s["label"] for c in _cards(apps, path, profile) for s in c.get("suggestions") or []
        ]
        assert sum(label.startswith(PREFIX) for label in labels) >= 3, labels


@pytest.mark.parametrize("profile", PROFILES)
def test_hospice_alternatives_card_is_plain_and_cites_no_beers(
    profile: str, apps: dict[str, Flask]
) -> None:
    path = next(p for p in fixture_paths() if p.stem == "r3-p19-hospice-85")
    cards = _cards(apps, path, profile)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "muscle-relaxant-alternative"]
    assert card["indicator"] == "info"
    cited = " ".join([card["source"]["label"], *(link["label"] for link in card["links"])])
    assert "Beers" not in cited, cited


def test_unknown_age_cancel_says_what_is_safe_at_65(apps: dict[str, Flask]) -> None:
    """An unknown age is ranked as an older adult (lead decision N3), so the drug-free cancel
    it recommends names acetaminophen, not an NSAID (AGS Beers 2023 NSAID rows)."""
    spec = json.loads((CORPUS / "087-birth-date-future.json").read_text(encoding="utf-8"))
    body = json.loads(build_body(spec))
    client = apps["standard"].test_client()
    cards = client.post(f"/cds-services/diazepam-{body['hook']}", json=body).get_json()["cards"]
    cancels = [
        s for c in cards for s in c.get("suggestions") or [] if s["label"].startswith("Cancel")
    ]
    assert cancels and all("NSAID" not in s["label"] for s in cancels), cancels
    assert cancels[0]["isRecommended"] is True


@pytest.mark.parametrize("profile", PROFILES)
def test_critical_opioid_card_keeps_its_cancel_beside_naloxone(
    profile: str, apps: dict[str, Flask]
) -> None:
    """Final review: with no alternatives card (an anxiety order), the critical opioid card is
    the only one acting on the order; its recommended cancel (review round 1 M1) stays beside
    the naloxone order, and both may be accepted."""
    path = next(
        p
        for p in fixture_paths()
        if p.stem == "opioid-elderly-anxiety-critical-cancel-and-naloxone"
    )
    cards = _cards(apps, path, profile)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "opioid-benzodiazepine"]
    kinds = {a["type"]: s for s in card["suggestions"] for a in s["actions"]}
    assert kinds["delete"]["isRecommended"] is True
    assert "naloxone" in kinds["create"]["label"]
    assert card["selectionBehavior"] == "any"
