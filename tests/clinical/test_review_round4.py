"""Round-4 reviews: what the independent pharmacists found on their own patients.

p14 (88, hospice, pancreatic cancer, on morphine): the opioid + benzodiazepine card is at most
info in hospice or end-of-life care (R20; CDC Rec 11's CDS applicability excludes limited life
expectancy, end-of-life therapies and terminal conditions, knowledge E.1): no cancel, no
naloxone, no CDC source (the diazepam label's boxed warning instead, knowledge A.4), no
override reasons (F.2a: info cards carry none).

p03, p16, p17 (cyclobenzaprine with fluvoxamine or tramadol, tizanidine with amiodarone): a
soft caution beside an offered drug states its risk, not a bare "(on X)" tag. p18 (hepatic
failure): methocarbamol stays offered (no exclusion in knowledge B.4/F.3), its caution worded
as a risk. p09 (pregnant, MS spasticity): every offered relaxant carries a pregnancy caution
and none is recommended. ms-spasticity: tizanidine as the second choice says its liver tests
beside the drug (standard) or in its typed order line (Epic).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.clinical.test_card_words import TYPED_CAP, choice_lines, words
from tests.scenario_cards import FIXTURES_DIR, fixture_paths, load, profile_apps

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


# --- cautions beside an offered drug say the risk (p03, p16, p17, p18) ---------------------

RELAXANTS = ("baclofen", "tizanidine", "cyclobenzaprine", "methocarbamol")
# "**cyclobenzaprine** (…; …)" in a card's list, "Cyclobenzaprine: …; …." in a folded line
_BESIDE = re.compile(r"\*\*(baclofen|tizanidine|cyclobenzaprine|methocarbamol)\*\* \(([^)]*)\)")
_FOLDED = re.compile(r"\b(Baclofen|Tizanidine|Cyclobenzaprine|Methocarbamol): ([^.*]*)\.")
_BARE = re.compile(r"^(?:on [\w ,/-]+|severe hepatic insufficiency|[\w ]*liver disease[\w ()]*)$")


def _cautions_beside(cards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(drug, caution) for every caution written beside an offered drug."""
    found = []
    for card in cards:
        for rx in (_BESIDE, _FOLDED):
            for m in rx.finditer(card["detail"]):
                found += [(m.group(1).lower(), c.strip()) for c in m.group(2).split(";")]
    return found


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_no_bare_tag_beside_an_offered_drug(
    path: Path, profile: str, apps: dict[str, Flask]
) -> None:
    """'(on tramadol)' or 'Methocarbamol: severe hepatic insufficiency.' does not say why it
    matters: each soft caution beside a drug states its risk in a few words."""
    fixture = load(path)
    cards = _post_to(apps, profile, fixture)
    bare = [(d, c) for d, c in _cautions_beside(cards) if _BARE.match(c)]
    assert not bare, bare


def _post_to(apps: dict[str, Flask], profile: str, fixture: dict[str, Any]) -> list[Any]:
    client = apps[profile].test_client()
    answer = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"])
    assert answer.status_code == 200
    return answer.get_json()["cards"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    ("name", "drug", "words"),
    [
        ("r4-p03-fluvoxamine-cyclobenzaprine-45", "cyclobenzaprine", ("serotonin syndrome",)),
        ("r4-p16b-tramadol-draft-cyclobenzaprine-41", "cyclobenzaprine", ("serotonin syndrome",)),
        ("r4-p17-amiodarone-tizanidine-95", "tizanidine", ("hypotension", "bradycardia")),
    ],
)
def test_reviewer_patients_read_the_risk_beside_the_drug(
    name: str, drug: str, words: tuple[str, ...], profile: str, apps: dict[str, Flask]
) -> None:
    cards = _post_to(apps, profile, _fixture(name))
    said = " ".join(c for d, c in _cautions_beside(cards) if d == drug)
    assert all(w in said for w in words), (drug, said)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "name",
    ["r4-p18-hepatic-failure-methocarbamol-29", "r3-p08-hepatic-failure", "r3-p07-cirrhosis"],
)
def test_methocarbamol_is_not_offered_with_hepatic_impairment(
    name: str, profile: str, apps: dict[str, Flask]
) -> None:
    """Review round 5 M-2: one click ordered methocarbamol at 6 g a day beside a card saying
    "lower doses in liver disease" (label: clearance about 70 % lower in cirrhosis, no
    labelled dose). With hepatic impairment, severe or not, it is not offered; the card names
    it among the drugs that do not suit, and the drug-free cancel remains."""
    cards = _post_to(apps, profile, _fixture(name))
    labels = [s["label"] for c in cards for s in c.get("suggestions") or []]
    assert not any("methocarbamol" in label.lower() for label in labels), labels
    assert any(label.startswith(("Cancel", "Remove")) for label in labels), labels
    text = " ".join(c["detail"] for c in cards)
    assert "methocarbamol" in text and "hepatic" in text, text


# --- pregnancy: a caution on every offered relaxant, none recommended (p09) ----------------

PREGNANT = (
    "r4-p09-pregnant-ms-spasticity-39",
    "r3-p11-pregnancy",
    "rv-11-pregnant-back-spasm-28",
    "rw-10-pregnant-low-back-pain-30",
)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", PREGNANT)
def test_pregnancy_caution_on_every_offered_relaxant_and_none_recommended(
    name: str, profile: str, apps: dict[str, Flask]
) -> None:
    cards = _post_to(apps, profile, _fixture(name))
    offering = [
        c
        for c in cards
        if any(d in s["label"] for s in c.get("suggestions") or [] for d in RELAXANTS)
    ]
    assert offering
    for card in offering:
        drugs = {d for s in card["suggestions"] for d in RELAXANTS if d in s["label"]}
        assert "pregnancy: limited safety data, weigh the risk" in card["detail"]
        if "baclofen" in drugs:
            assert "pregnancy: neonatal withdrawal reported" in card["detail"]
        for suggestion in card["suggestions"]:
            if any(d in suggestion["label"] for d in RELAXANTS):
                assert not suggestion.get("isRecommended"), suggestion["label"]


# --- tizanidine liver tests where the prescriber reads them (ms-spasticity) ----------------

LIVER = "liver tests: start, 1 month after top dose"


@pytest.mark.parametrize("name", ["ms-spasticity", "r4-p09-pregnant-ms-spasticity-39"])
def test_second_choice_tizanidine_says_its_liver_tests(name: str, apps: dict[str, Flask]) -> None:
    """Tizanidine for spasticity, not the first choice: its plan is only in the created
    order's note, which Epic does not apply. Standard: beside the drug in the card text.
    Epic: in its typed order line (a choice line of at most 40 words), said once."""
    fixture = _fixture(name)
    (card,) = [
        c
        for c in _post_to(apps, "standard", fixture)
        if c["source"]["topic"]["code"] == "muscle-relaxant-alternative"
    ]
    beside = [c for d, c in _cautions_beside([card]) if d == "tizanidine"]
    assert LIVER in beside, card["detail"]
    (card,) = [
        c
        for c in _post_to(apps, "epic", fixture)
        if c["source"]["topic"]["code"] == "muscle-relaxant-alternative"
    ]
    typed = [p for p in choice_lines(card) if p.startswith("**Tizanidine 2 mg tablets:**")]
    assert len(typed) == 1 and typed[0].endswith(f"; {LIVER}."), typed
    assert words(typed[0]) <= TYPED_CAP
    assert card["detail"].count(LIVER) == 1, card["detail"]
