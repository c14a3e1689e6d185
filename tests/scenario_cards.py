"""Scenario helpers for the fixture tests: load the shipped fixtures, and build a *reference
response* for a fixture — the smallest spec-valid set of cards that satisfies its expectation.

The reference response tests the comparer (it must accept it, and reject every mutation of it)
and lets the replay tool's own behaviour be tested against a stand-in service, independently of
the clinical engine. It is built from the fixture's `expected` block only, never from the
engine, so it cannot hide an engine bug.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.compare import DIAZEPAM, ingredient_of, topic_of
from cds_service.redate import redate

REPO = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO / "fixtures" / "scenarios"
SCHEMA_PATH = REPO / "fixtures" / "scenario.schema.json"
# Every topic code the fixture format knows (the schema is the single list).
TOPICS: tuple[str, ...] = tuple(
    json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))["$defs"]["topic"]["enum"]
)
TOPIC_SYSTEM = "http://localhost:8080/fhir/CodeSystem/cds-topic"
OVERRIDE_SYSTEM = "http://localhost:8080/fhir/CodeSystem/override-reason"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ALTERNATIVE_SCD = {
    "1292": ("430902", "baclofen 5 MG Oral Tablet"),
    "57258": ("313412", "tizanidine 2 MG Oral Tablet"),
    "21949": ("828320", "cyclobenzaprine hydrochloride 5 MG Oral Tablet"),
    "6845": ("197943", "methocarbamol 500 MG Oral Tablet"),
}


def fixture_paths() -> list[Path]:
    return sorted(FIXTURES_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def draft_resources(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    entries = fixture["request"]["context"]["draftOrders"].get("entry") or []
    return [e["resource"] for e in entries]


def diazepam_draft(fixture: dict[str, Any]) -> dict[str, Any]:
    for resource in draft_resources(fixture):
        if resource["resourceType"] == "MedicationRequest" and "diazepam" in resource["id"]:
            return resource
    raise LookupError(f"{fixture['name']}: no diazepam draft")


def _uuid() -> str:
    return str(uuid.uuid4())


def _alternative(ingredient: str, draft: dict[str, Any]) -> dict[str, Any]:
    code, display = ALTERNATIVE_SCD[ingredient]
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        },
        "subject": draft["subject"],
        "dispenseRequest": {
            "expectedSupplyDuration": {
                "value": 7,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        },
    }


def reference_cards(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    """Cards that satisfy the fixture's expectation under the standard EHR profile."""
    expected = fixture["expected"]
    cards: list[dict[str, Any]] = []
    for topic, spec in expected["topics"].items():
        if spec.get("optional"):
            continue
        indicator = spec.get("indicator", "info")
        if isinstance(indicator, list):
            indicator = indicator[0]
        card: dict[str, Any] = {
            "uuid": _uuid(),
            "summary": f"Reference card for {topic}",
            "indicator": indicator,
            "source": {
                "label": "diazepam-cds reference",
                "topic": {"system": TOPIC_SYSTEM, "code": topic},
            },
        }
        if indicator != "info":  # F.2a: info cards offer no override reasons
            card["overrideReasons"] = [
                {
                    "system": OVERRIDE_SYSTEM,
                    "code": "patient-preference",
                    "display": "Informed patient preference",
                }
            ]
        suggestions = _suggestions(
            topic, set(spec.get("action_types") or spec.get("action_types_include") or []), fixture
        )
        if suggestions:
            card["selectionBehavior"] = "at-most-one"
            card["suggestions"] = suggestions
        cards.append(card)
    recommended = expected.get("recommended_alternative")
    if (
        recommended
        and cards
        and not any(
            a["type"] == "create"
            for c in cards
            for s in c.get("suggestions", [])
            for a in s["actions"]
        )
    ):
        # e.g. a contraindication card that also offers the alternative (F.2 R1)
        draft = diazepam_draft(fixture)
        cards[0]["selectionBehavior"] = "at-most-one"
        cards[0].setdefault("suggestions", []).append(_replacement(recommended, draft, True))
    _add_cancel(cards, fixture)
    absent = set(expected.get("absent_topics") or []) | {topic_of(c) for c in cards}
    spare = [t for t in TOPICS if t not in absent]
    while len(cards) < (expected.get("min_cards") or 0) and spare:
        cards.append(_info_card(spare.pop(0)))
    return cards


def _info_card(topic: str) -> dict[str, Any]:
    """An actionless info card of a topic the fixture leaves open (for `min_cards`)."""
    return {
        "uuid": _uuid(),
        "summary": f"Reference card for {topic}",
        "indicator": "info",
        "source": {
            "label": "diazepam-cds reference",
            "topic": {"system": TOPIC_SYSTEM, "code": topic},
        },
    }


def _replacement(ingredient: str, draft: dict[str, Any], recommended: bool) -> dict[str, Any]:
    suggestion: dict[str, Any] = {
        "uuid": _uuid(),
        "label": f"Replace with {ALTERNATIVE_SCD[ingredient][1]}",
        "actions": [
            {
                "type": "delete",
                "description": "Remove the diazepam draft",
                "resourceId": f"MedicationRequest/{draft['id']}",
            },
            {
                "type": "create",
                "description": "Order the alternative",
                "resource": _alternative(ingredient, draft),
            },
        ],
    }
    if recommended:
        suggestion["isRecommended"] = True
    return suggestion


def _suggestions(topic: str, types: set[str], fixture: dict[str, Any]) -> list[dict[str, Any]]:
    expected = fixture["expected"]
    draft = diazepam_draft(fixture)
    ref = f"MedicationRequest/{draft['id']}"
    delete = {"type": "delete", "description": "Remove the diazepam draft", "resourceId": ref}
    out: list[dict[str, Any]] = []
    if "update" in types:
        updated = copy.deepcopy(draft)
        days = max(expected.get("capped_days") or 7, expected.get("min_supply_days") or 0)
        updated.setdefault("dispenseRequest", {})["expectedSupplyDuration"] = {
            "value": days,
            "unit": "days",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        }
        out.append(
            {
                "uuid": _uuid(),
                "label": f"Limit to {days} days",
                "actions": [
                    {"type": "update", "description": "Cap the supply", "resource": updated}
                ],
            }
        )
    if "create" in types:
        recommended = expected.get("recommended_alternative")
        for ingredient in ALTERNATIVE_SCD:
            if ingredient in (expected.get("excluded_alternatives") or []):
                continue
            if recommended and ingredient != recommended and topic != "muscle-relaxant-alternative":
                continue
            actions = [delete] if "delete" in types else []
            actions = [
                *actions,
                {
                    "type": "create",
                    "description": "Order the alternative",
                    "resource": _alternative(ingredient, draft),
                },
            ]
            suggestion: dict[str, Any] = {
                "uuid": _uuid(),
                "label": f"Replace with {ALTERNATIVE_SCD[ingredient][1]}",
                "actions": actions,
            }
            if ingredient == recommended:
                suggestion["isRecommended"] = True
            out.append(suggestion)
    elif "delete" in types:
        out.append({"uuid": _uuid(), "label": "Remove the diazepam order", "actions": [delete]})
    return out


# where the reference response puts the drug-free cancel when no expected topic names a
# delete: the decision cards first (F.2a: one card per order acts on it)
_CANCEL_HOSTS = (
    "diazepam-contraindication",
    "muscle-relaxant-alternative",
    "no-suitable-alternative",
    "duration-limit",
    "dose-limit",
    "indication-missing",
)


def _add_cancel(cards: list[dict[str, Any]], fixture: dict[str, Any]) -> None:
    """The drug-free choice the fixture's ``cancel_choice`` asks for (review round 2 N2/N3):
    one suggestion removing every pended diazepam order, recommended or not, on a card whose
    expectation allows a delete (or a card of its own when none does)."""
    expected = fixture["expected"]
    cancel = expected.get("cancel_choice")
    if cancel not in ("recommended", "offered"):
        return
    refs = [
        f"{r['resourceType']}/{r['id']}"
        for r in draft_resources(fixture)
        if r["resourceType"] == "MedicationRequest" and ingredient_of(r) == DIAZEPAM
    ] or [f"MedicationRequest/{diazepam_draft(fixture)['id']}"]  # medication in the bundle
    removal: dict[str, Any] = {
        "uuid": _uuid(),
        "label": "Cancel diazepam: non-drug care first",
        "actions": [
            {"type": "delete", "description": "Remove the diazepam order", "resourceId": ref}
            for ref in refs
        ],
    }
    topics = expected["topics"]

    def allows(topic: str) -> bool:
        exact = (topics.get(topic) or {}).get("action_types")
        return exact is None or "delete" in exact

    present = {topic_of(c): c for c in cards}
    order = sorted(
        (t for t in present if allows(t)),
        key=lambda t: (
            "delete" not in ((topics.get(t) or {}).get("action_types") or []),
            _CANCEL_HOSTS.index(t) if t in _CANCEL_HOSTS else len(_CANCEL_HOSTS),
        ),
    )
    if order:
        host = present[order[0]]
    else:
        absent = set(expected.get("absent_topics") or []) | set(present)
        spare = next(t for t in (*_CANCEL_HOSTS, *TOPICS) if t not in absent)
        host = _info_card(spare)
        cards.append(host)
    if cancel == "recommended":
        removal["isRecommended"] = True
        for suggestion in host.get("suggestions") or []:
            suggestion.pop("isRecommended", None)
    host["selectionBehavior"] = "at-most-one"
    host.setdefault("suggestions", []).append(removal)


def profile_apps(
    tmp_path_factory: pytest.TempPathFactory, name: str, **settings: Any
) -> dict[str, Flask]:
    """One app per EHR profile (auth off, data under tmp, plus ``settings``) for a module's
    fixture calls: building an app runs the store migrations, so each module builds two."""
    base = tmp_path_factory.mktemp(name)
    return {
        profile: create_app(
            {
                "auth": "disabled",
                "data_dir": str(base / profile),
                "ehr_profile": profile,
                **settings,
            }
        )
        for profile in ("standard", "epic")
    }


def fixture_answer(
    apps: dict[str, Flask], name: str, profile: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A shipped fixture by name, sent (redated to today) to the app of ``profile``: the
    fixture and the cards the service answered."""
    fixture = load(FIXTURES_DIR / f"{name}.json")
    client = apps[profile].test_client()
    response = client.post(f"/cds-services/{fixture['service']}", json=redate(fixture["request"]))
    assert response.status_code == 200
    return fixture, list(response.get_json()["cards"])
