"""What the review-round tests read from an answer: the cards of a shipped fixture in one
EHR profile, their topics, suggestions and text. Shared by tests/clinical/test_review_round6
to 9, which each pin one independent pharmacist review's findings."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.scenario_cards import fixture_answer

PROFILES = ("standard", "epic")


def cards_of(apps: dict[str, Flask], name: str, profile: str) -> list[dict[str, Any]]:
    """The cards the service answered to the shipped fixture ``name`` in ``profile``."""
    return fixture_answer(apps, name, profile)[1]


def topic(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


def suggestions(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for c in cards for s in c.get("suggestions") or []]


def text(cards: list[dict[str, Any]]) -> str:
    """Every summary and detail, one string."""
    return " ".join(c["summary"] + " " + c.get("detail", "") for c in cards)


def drafts_by_ref(fixture: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fixture's pended orders by the reference a delete action names."""
    return {
        f"MedicationRequest/{e['resource']['id']}": e["resource"]
        for e in fixture["request"]["context"]["draftOrders"].get("entry") or []
    }
