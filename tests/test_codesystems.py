"""The code systems the cards use (issue 19, F.2a "override reasons"): published as FHIR R4
CodeSystem JSON at GET /fhir/CodeSystem/{id} under the site's CDS_CANONICAL_BASE, complete
for every code a card can carry; no "acknowledged"; info cards offer no override reasons."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from flask import Flask

from cds_service.app import create_app
from cds_service.clinical.cards import TemplateError, load_templates
from cds_service.clinical.policy import PolicyError, load_policy
from cds_service.config import (
    DEVELOPMENT_CANONICAL_BASE,
    ConfigError,
    check_canonical_base,
    load_settings,
)
from tests.scenario_cards import fixture_paths, load

REPO = Path(__file__).resolve().parents[1]
BASE = "https://cds.hospital.example/fhir"
IDS = ("cds-topic", "override-reason")
POLICY_VERSION = json.loads((REPO / "cds_service/data/policy.json").read_text("utf-8"))["version"]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    """Both EHR profiles with a site's canonical base (building an app runs migrations)."""
    root = tmp_path_factory.mktemp("codesystem-apps")
    return {
        profile: create_app(
            {
                "auth": "disabled",
                "data_dir": str(root / profile),
                "ehr_profile": profile,
                "canonical_base": BASE + "/",  # a trailing slash is dropped
            }
        )
        for profile in ("standard", "epic")
    }


def _served(app: Flask, code_system_id: str) -> dict[str, Any]:
    response = app.test_client().get(f"/fhir/CodeSystem/{code_system_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/fhir+json"
    return response.get_json(force=True)


@pytest.mark.parametrize("code_system_id", IDS)
def test_code_system_is_valid_fhir_r4_and_complete(apps, code_system_id: str) -> None:
    body = _served(apps["standard"], code_system_id)
    resource = CodeSystem.model_validate(body)  # FHIR R4B model: types, cardinality, enums
    assert resource.id == code_system_id
    assert resource.url == f"{BASE}/CodeSystem/{code_system_id}"
    assert resource.version == POLICY_VERSION
    assert (resource.status, resource.content, resource.caseSensitive) == (
        "active",
        "complete",
        True,
    )
    codes = [c.code for c in resource.concept]
    assert len(codes) == len(set(codes)) == resource.count > 0
    assert all(c.display for c in resource.concept)


def test_topic_code_system_lists_every_template(apps) -> None:
    templates = load_templates(REPO / "cards")
    served = {c["code"]: c["display"] for c in _served(apps["standard"], "cds-topic")["concept"]}
    assert served == {t: tpl.data["topic"]["display"] for t, tpl in templates.items()}


def test_override_reasons_are_one_display_per_code_and_name_their_topics(apps) -> None:
    templates = load_templates(REPO / "cards")
    body = _served(apps["epic"], "override-reason")
    concepts = {c["code"]: c for c in body["concept"]}
    for topic, template in templates.items():
        for reason in template.data["override_reasons"]:
            concept = concepts[reason["code"]]
            assert concept["display"] == reason["display"]
            assert {"code": "topic", "valueCode": topic} in concept["property"]


def test_unknown_code_system_is_404_operation_outcome(apps) -> None:
    response = apps["standard"].test_client().get("/fhir/CodeSystem/allergy-reason")
    assert response.status_code == 404
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "cds-topic, override-reason" in body["issue"][0]["diagnostics"]


def test_code_systems_need_no_jwt_but_discovery_does(tmp_path: Path) -> None:
    """Even where discovery is closed (CDS_DISCOVERY_AUTH=required), the code systems answer."""
    app = create_app(
        {
            "data_dir": str(tmp_path),
            "dev_trust_sandbox": True,
            "canonical_base": BASE,
            "discovery_auth": "required",
        }
    )
    client = app.test_client()
    assert client.get("/fhir/CodeSystem/override-reason").status_code == 200
    assert client.get("/fhir/CodeSystem/nope").status_code == 404
    assert client.get("/cds-services").status_code == 401
    assert client.post("/fhir/CodeSystem/cds-topic").status_code in (401, 405)


def test_cors_applies_to_the_code_systems(tmp_path: Path) -> None:
    app = create_app(
        {"auth": "disabled", "data_dir": str(tmp_path), "allowed_origins": ("https://ui.example",)}
    )
    response = app.test_client().get(
        "/fhir/CodeSystem/cds-topic", headers={"Origin": "https://ui.example"}
    )
    assert response.headers.get("Access-Control-Allow-Origin") == "https://ui.example"


# --- every code on every card of every fixture ---------------------------------------------


def _fixture_cards(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    client = app.test_client()
    out = []
    for path in fixture_paths():
        fixture = load(path)
        response = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"])
        assert response.status_code == 200, (path.stem, response.get_data(as_text=True)[:300])
        out += [(path.stem, card) for card in response.get_json()["cards"]]
    return out


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_every_code_any_fixture_card_carries_is_published(apps, profile: str) -> None:
    app = apps[profile]
    topics = _served(app, "cds-topic")
    reasons = _served(app, "override-reason")
    topic_display = {c["code"]: c["display"] for c in topics["concept"]}
    reason_display = {c["code"]: c["display"] for c in reasons["concept"]}
    cards = _fixture_cards(app)
    assert len(cards) > 50
    seen_reasons: set[str] = set()
    for name, card in cards:
        topic = card["source"]["topic"]
        assert topic["system"] == topics["url"], name
        assert topic_display.get(topic["code"]) == topic["display"], (name, topic)
        for reason in card.get("overrideReasons") or []:
            assert reason["system"] == reasons["url"], name
            assert reason_display.get(reason["code"]) == reason["display"], (name, reason)
            seen_reasons.add(reason["code"])
    assert "intolerance-not-allergy" in reason_display


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_info_cards_offer_no_reasons_and_others_do(apps, profile: str) -> None:
    cards = _fixture_cards(apps[profile])
    info = [(n, c) for n, c in cards if c["indicator"] == "info"]
    other = [(n, c) for n, c in cards if c["indicator"] != "info"]
    assert info and other
    assert [n for n, c in info if "overrideReasons" in c] == []
    assert [n for n, c in other if not c.get("overrideReasons")] == []


def test_no_acknowledged_reason_anywhere(apps) -> None:
    for path in sorted((REPO / "cards").glob("*.json")):
        text = path.read_text("utf-8").lower()
        assert '"acknowledged"' not in text, path.name
    codes = {c["code"] for c in _served(apps["standard"], "override-reason")["concept"]}
    assert not codes & {"acknowledged", "ack", "seen", "noted"}


def test_allergy_card_offers_intolerance_not_allergy(apps) -> None:
    template = load_templates(REPO / "cards")["diazepam-contraindication"]
    assert {"code": "intolerance-not-allergy", "display": "Intolerance, not a true allergy"} in (
        template.data["override_reasons"]
    )


@pytest.mark.parametrize("profile", ["standard", "epic"])
def test_duration_card_reasons_fit_its_card(apps, profile: str) -> None:
    """Second review N10 (case 02, 35, acute back spasm stated, 30 days): the duration card
    that holds the decision offers reasons for *that* card: a longer course reviewed, a
    specialist, and, since it offers replacements, alternatives that failed; not "chronic
    indication, not acute spasm" for a stated acute spasm, and not "supply covers a planned
    taper" (round 3: a long-term user gets the taper card, never this one). Each code is
    published."""
    fixture = load(next(p for p in fixture_paths() if p.stem == "young-adult-back-spasm-30d"))
    client = apps[profile].test_client()
    cards = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"])
    (card,) = [
        c for c in cards.get_json()["cards"] if c["source"]["topic"]["code"] == "duration-limit"
    ]
    codes = [r["code"] for r in card["overrideReasons"]]
    assert codes == [
        "longer-course-reviewed",
        "specialist-directed",
        "failed-alternatives",
    ]
    published = {c["code"] for c in _served(apps[profile], "override-reason")["concept"]}
    assert set(codes) <= published


def test_a_reason_for_a_replacement_is_left_off_a_card_without_one(apps) -> None:
    """N10: 'alternatives tried and failed' only where the card offers an alternative (a
    duration card whose order is contraindicated keeps no choice)."""
    client = apps["standard"].test_client()
    checked = {True: 0, False: 0}  # duration cards with and without a replacement
    for path in fixture_paths():
        fixture = load(path)
        answer = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"])
        for card in answer.get_json()["cards"]:
            if card["source"]["topic"]["code"] != "duration-limit":
                continue
            replaces = any(  # remove the pended order(s) and create an alternative
                {a["type"] for a in s["actions"]} == {"delete", "create"}
                for s in card.get("suggestions") or []
            )
            codes = {r["code"] for r in card.get("overrideReasons") or []}
            checked[replaces] += 1
            if not replaces:
                assert "failed-alternatives" not in codes, path.stem
    assert checked[False] and checked[True], checked  # both kinds of card occur


# --- templates that would break the published code system stop start-up ------------------


def _cards_copy(tmp_path: Path, edit: Callable[[dict[str, Any]], None], topic: str) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(REPO / "cards", target)
    path = target / f"{topic}.json"
    data = json.loads(path.read_text("utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return target


def test_a_code_with_two_displays_stops_start_up(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["override_reasons"][0]["display"] = "Patient prefers it"

    cards = _cards_copy(tmp_path, edit, "muscle-relaxant-alternative")  # failed-alternatives
    with pytest.raises(TemplateError, match="two displays"):
        load_templates(cards)


def test_acknowledged_is_refused_as_a_reason(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["override_reasons"].append({"code": "acknowledged", "display": "Acknowledged"})

    with pytest.raises(TemplateError, match="override_reasons"):
        load_templates(_cards_copy(tmp_path, edit, "no-suitable-alternative"))


# --- the canonical base setting ----------------------------------------------------------


def test_canonical_base_setting_is_read_checked_and_normalised() -> None:
    assert load_settings(environ={}).canonical_base == ""
    assert load_settings(environ={}).resolved_canonical_base() == DEVELOPMENT_CANONICAL_BASE
    settings = load_settings(environ={"CDS_CANONICAL_BASE": " https://cds.h.example/fhir/ "})
    assert settings.canonical_base == "https://cds.h.example/fhir"
    for bad in ("cds.h.example/fhir", "ftp://cds.h.example", "https://h.example/f?x=1", "https://"):
        with pytest.raises(ConfigError, match="CDS_CANONICAL_BASE"):
            load_settings(environ={"CDS_CANONICAL_BASE": bad})


def test_production_serve_refuses_without_a_canonical_base() -> None:
    with pytest.raises(ConfigError, match="CDS_CANONICAL_BASE is not set"):
        check_canonical_base(load_settings(environ={}))
    check_canonical_base(load_settings(environ={"CDS_ENV": "development"}))  # make run
    check_canonical_base(load_settings(environ={"CDS_CANONICAL_BASE": BASE}))


@pytest.mark.parametrize(
    "base",
    [
        "http://localhost:8080/fhir",
        "https://127.0.0.1/fhir",
        "https://[::1]/fhir",
        "http://cds.hospital.example/fhir",
    ],
)
def test_production_refuses_a_loopback_or_plain_http_canonical_base(base: str) -> None:
    """Review round 1 L4: the dev default base reached a go-live review."""
    with pytest.raises(ConfigError, match="not usable in production"):
        check_canonical_base(load_settings(environ={"CDS_CANONICAL_BASE": base}))
    # development (make run) keeps its local default
    check_canonical_base(
        load_settings(environ={"CDS_CANONICAL_BASE": base, "CDS_ENV": "development"})
    )


def test_an_app_built_without_it_warns_in_production(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="cds_service.app"):
        create_app({"auth": "disabled", "data_dir": str(tmp_path / "a")})
    assert "CDS_CANONICAL_BASE is not set" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cds_service.app"):
        create_app({"auth": "disabled", "data_dir": str(tmp_path / "b"), "env": "development"})
    assert "CDS_CANONICAL_BASE" not in caplog.text


def test_cards_name_both_systems_under_the_base(apps) -> None:
    fixture = load(next(p for p in fixture_paths() if p.stem == "young-adult-back-spasm-30d"))
    client = apps["standard"].test_client()
    cards = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"]).get_json()
    asking = [c for c in cards["cards"] if c.get("overrideReasons")]
    assert asking
    for card in cards["cards"]:
        assert card["source"]["topic"]["system"] == f"{BASE}/CodeSystem/cds-topic"
    for card in asking:
        assert {r["system"] for r in card["overrideReasons"]} == {
            f"{BASE}/CodeSystem/override-reason"
        }


def test_policy_can_no_longer_set_the_systems(tmp_path: Path) -> None:
    site = tmp_path / "site-policy.json"
    site.write_text(json.dumps({"topic_system": "https://x.example/topics"}), encoding="utf-8")
    with pytest.raises(PolicyError, match="CDS_CANONICAL_BASE"):
        load_policy(site)
    policy = load_policy(canonical_base=BASE)
    assert policy.topic_system == f"{BASE}/CodeSystem/cds-topic"
    assert policy.override_system == f"{BASE}/CodeSystem/override-reason"
    assert "topic_system" not in policy.data and "override_system" not in policy.data
