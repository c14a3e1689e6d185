"""Round-3 pharmacist reviews (two reviewers, Medium): in Epic an edit of the pended diazepam
order is typed by hand (no update is applied), so an edit that changes the product must say so.

1. "Or edit the order: to 7 days, no refills: 2 mg twice a day (14 tablets) ..." on a 5 mg
   tablet order, typed as written, is 14 tablets of 5 mg with a 2 mg sig: the standard
   profile's update switches the product to the 2 mg tablet. The line names the new product
   first ("change to diazepam 2 mg tablets: ..."), one choice a line; with several pended
   orders it also says which order to keep and edit.
2. The taper step in the 1 mg/mL oral solution (or in another tablet strength) changes the
   product of a tablet order: its line says "change to diazepam oral solution 1 mg/mL ...".
3. (Low) "Remove the pended diazepam order (diazepam 5 MG Oral Tablet)": RxNorm's capitals;
   a card writes "(diazepam 5 mg tablet)". A condition title inside a sentence is lower case
   ("contraindicated in myasthenia gravis"), an initialism keeps its capitals (COPD).

The expected product of each rewrite is read from the standard profile's ``update`` actions
and the value set, not from the service's own wording code.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.config import REPO_DIR
from tests.scenario_cards import draft_resources, fixture_paths, profile_apps
from tests.scenario_cards import fixture_answer as answer

PROFILES = ("standard", "epic")
PRODUCTS = json.loads(
    (REPO_DIR / "cds_service/data/valuesets/diazepam-products.json").read_text(encoding="utf-8")
)["codes"]
CONDITIONS = json.loads(
    (REPO_DIR / "cds_service/data/valuesets/conditions.json").read_text(encoding="utf-8")
)["groups"]
# Epic's edit lines of the pended order (cards.render): every bold head that edits it
EDIT_HEADS = re.compile(
    r"^\*\*(?:Edit the order|Or edit the order|Or the [a-z ]+step|To keep one instead|"
    r"Or keep only|New order|Or new order)[^*]*:\*\* "
)
RXNORM_CAPS = re.compile(
    r"\b(?:MG|ML|MCG)\b|\b(?:Oral|Tablet|Solution|Suspension|Injectable|Rectal|Nasal|Spray|"
    r"Gel|Enema|Suppository)\b"
)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    return profile_apps(tmp_path_factory, "round3-products")


def _code(resource: dict[str, Any]) -> str | None:
    codings = (resource.get("medicationCodeableConcept") or {}).get("coding") or [{}]
    return codings[0].get("code")


def _shape(code: str | None) -> tuple[Any, ...] | None:
    product = PRODUCTS.get(code or "")
    if product is None:
        return None
    return product.get("unit"), product.get("mg_per_unit"), product.get("mg_per_ml")


def _words(code: str) -> str:
    """How a prescriber names the product (independent of the service's code)."""
    product = PRODUCTS[code]
    number = lambda v: f"{v:g}"  # noqa: E731
    if product["unit"] == "tablet":
        return f"diazepam {number(product['mg_per_unit'])} mg tablets"
    return f"diazepam oral solution {number(product['mg_per_ml'])} mg/mL"


def _product_changes(
    fixture: dict[str, Any], cards: list[dict[str, Any]]
) -> tuple[Counter, Counter]:
    """From the standard answer: the new products of the updates that change a pended
    diazepam order's product, counted (``coded``: the pended order's product is a known code;
    ``any``: also where it is not, so any coded rewrite may be a change)."""
    drafts = {d.get("id"): d for d in draft_resources(fixture)}
    coded: Counter = Counter()
    every: Counter = Counter()
    for card in cards:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                if action["type"] != "update" or resource.get("id") not in drafts:
                    continue
                new, old = _code(resource), _code(drafts[resource["id"]])
                if _shape(new) is None or _shape(new) == _shape(old):
                    continue
                every[_words(new)] += 1
                if _shape(old) is not None:
                    coded[_words(new)] += 1
    return coded, every


def _edit_lines(cards: list[dict[str, Any]]) -> list[str]:
    return [
        p.strip()
        for card in cards
        for p in re.split(r"\n\s*\n", card["detail"])
        if EDIT_HEADS.match(p.strip())
    ]


def _said_changes(lines: list[str]) -> Counter:
    said: Counter = Counter()
    for line in lines:
        # a new order of <product> (review round 5 M-1: "New order, ..., then remove the
        # pended one:** <product>: "; round 6 M-2, several orders: "... then remove every
        # pended diazepam order:** <product>: ")
        found = re.search(
            r"(?:then remove (?:the pended one|all pended orders):\*\* )"
            r"(diazepam [^:(]*?)"
            r"(?: \(not [^)]*\))?: ",
            line,
        )
        if found:
            said[found.group(1)] += 1
    return said


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_every_edit_that_changes_the_product_names_it(path: Path, apps: dict[str, Flask]) -> None:
    """Over every fixture: each standard update that changes a pended order's product is an
    Epic edit line that names the new product first ("change to diazepam 2 mg tablets: ..."),
    and no Epic line claims a product change the standard update does not make."""
    fixture, standard = answer(apps, path.stem, "standard")
    _, epic = answer(apps, path.stem, "epic")
    coded, every = _product_changes(fixture, standard)
    said = _said_changes(_edit_lines(epic))
    assert coded <= said, (coded, _edit_lines(epic))
    assert said <= every, (every, _edit_lines(epic))


def test_the_fixtures_exercise_every_kind_of_product_change(apps: dict[str, Flask]) -> None:
    """The test above bites: the 2 mg tablet start, the oral solution taper step, the tablet
    step of another strength, and the several-orders keep line each occur."""
    lines = [
        line for path in fixture_paths() for line in _edit_lines(answer(apps, path.stem, "epic")[1])
    ]
    assert any(
        line.startswith("**Or new order, then remove the pended one:** diazepam 2 mg tablets: ")
        for line in lines
    )
    assert any(
        "step, then remove the pended one:** diazepam oral solution 1 mg/mL (not the 5 mg/mL"
        in line
        for line in lines
    )
    assert any(
        line.startswith(
            "**Or new order, tablet step, then remove the pended one:** diazepam 2 mg tablets: "
        )
        for line in lines
    )
    assert any(
        line.startswith("**New order instead, then remove all pended orders:** ") for line in lines
    )


def test_older_adult_start_on_a_5_mg_tablet_order(apps: dict[str, Flask]) -> None:
    """Reviewer finding 1 (rw-34, pended diazepam 5 mg tablets 3 times a day): before, "to 7
    days, no refills: 2 mg twice a day (14 tablets), or the dose as written (21 tablets)"."""
    _, cards = answer(apps, "rw-34-order-select-typical-72", "epic")
    lines = _edit_lines(cards)
    assert lines[:2] == [
        "**Or new order, then remove the pended one:** diazepam 2 mg tablets: 2 mg twice a "
        "day for 7 days (14 tablets), no refills.",
        "**Or edit the order:** the dose as written for 7 days (21 tablets), no refills.",
    ]


def test_several_orders_keep_line_says_which_order_and_the_product(
    apps: dict[str, Flask],
) -> None:
    """rw-20 (5 mg 3 times a day and 10 mg once a day pended): the older-adult start is
    another product, so it is a new order that replaces both pended orders (review round 6
    M-2: "keep diazepam 5 mg ..., change it to diazepam 2 mg tablets" asked for an edit Epic
    cannot make), and each Remove is a suggestion."""
    _, cards = answer(apps, "rw-20-two-diazepam-drafts-72", "epic")
    lines = _edit_lines(cards)
    assert (
        "**New order instead, then remove all pended orders:** diazepam 2 mg "
        "tablets: 2 mg twice a day for 7 days (14 tablets), no refills." in lines
    )
    assert not any("change it to" in line for line in lines)
    [card] = [c for c in cards if any(line in c["detail"] for line in lines)]
    removed = {
        a["resourceId"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"
    }
    assert len(removed) == 2


@pytest.mark.parametrize(
    ("name", "step"),
    [
        (
            "rw-25-long-term-falls-hip-fracture-78",
            "**New order, first taper step, then remove the pended one:** diazepam oral "
            "solution 1 mg/mL (not the 5 mg/mL concentrate): 4.5 mg = 4.5 mL 3 times a day "
            "for 14 days, 189 mL, no refills; give an oral syringe.",
        ),
        (
            "rw-02-long-term-anxiety-2mg-bid-74",
            "**New order, first taper step, then remove the pended one:** diazepam oral "
            "solution 1 mg/mL (not the 5 mg/mL concentrate): 1.8 mg = 1.8 mL twice a day "
            "for 14 days, 51 mL, no refills; give an oral syringe.",
        ),
    ],
)
def test_taper_step_in_another_product_says_so(
    apps: dict[str, Flask], name: str, step: str
) -> None:
    _, cards = answer(apps, name, "epic")
    assert step in _edit_lines(cards)


@pytest.mark.parametrize("profile", PROFILES)
def test_remove_names_the_product_without_rxnorm_capitals(
    apps: dict[str, Flask], profile: str
) -> None:
    """Over every fixture: a Remove label and a delete's description name the pended product
    as written ("diazepam 5 mg tablet"), never "diazepam 5 MG Oral Tablet"."""
    seen = 0
    for path in fixture_paths():
        for card in answer(apps, path.stem, profile)[1]:
            for suggestion in card.get("suggestions") or []:
                texts = [suggestion["label"]] + [
                    a.get("description") or ""
                    for a in suggestion["actions"]
                    if a["type"] == "delete"
                ]
                for text in texts:
                    if text.startswith("Remove the pended"):
                        seen += 1
                        assert not RXNORM_CAPS.search(text), (path.stem, text)
    assert seen > 100


def test_remove_label_of_a_5_mg_tablet(apps: dict[str, Flask]) -> None:
    _, cards = answer(apps, "rw-34-order-select-typical-72", "epic")
    labels = [s["label"] for c in cards for s in c.get("suggestions") or []]
    assert "Remove the pended diazepam order (diazepam 5 mg tablet)" in labels


def test_condition_titles_inside_a_sentence_are_lower_case(apps: dict[str, Flask]) -> None:
    """'contraindicated in Myasthenia gravis' -> 'contraindicated in myasthenia gravis';
    initialisms keep their capitals."""
    from cds_service.clinical.rules.common import in_sentence

    assert in_sentence("Myasthenia gravis") == "myasthenia gravis"
    assert in_sentence("COPD") == "COPD"
    assert in_sentence("AV block, arrhythmia or conduction disturbance").startswith("AV block")
    _, cards = answer(apps, "rw-41-myasthenia-back-spasm-45", "epic")
    details = " ".join(c["detail"] for c in cards)
    assert "contraindicated in myasthenia gravis" in details


@pytest.mark.parametrize("profile", PROFILES)
def test_no_capitalised_condition_title_after_words(apps: dict[str, Flask], profile: str) -> None:
    """Over every fixture: a contraindication or COPD caution never writes a condition title
    capitalised after other words ('contraindicated in Myasthenia gravis', 'COPD and
    Chronic lung disease')."""
    titles = [g["title"] for g in CONDITIONS.values() if not g["title"][:2].isupper()]
    after_words = re.compile(
        r"(?:\b(?:in|and|lists)|[;(]|caution for diazepam [a-z ]+:|Caution,) ("
        + "|".join(re.escape(t) for t in titles)
        + r")\b"
    )
    for path in fixture_paths():
        for card in answer(apps, path.stem, profile)[1]:
            if card["source"]["topic"]["code"] not in (
                "diazepam-contraindication",
                "duration-limit",
                "dose-limit",
                "taper-required",
            ):
                continue
            found = after_words.search(card["detail"])
            assert found is None, (path.stem, found.group(0))
