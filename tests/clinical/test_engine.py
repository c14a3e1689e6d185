"""The engine through the HTTP API and on its own: spec-valid cards, profiles, scope, degrade
when data is missing, audit data, timings."""

from __future__ import annotations

import copy
import dataclasses
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.clinical.engine import Engine
from cds_service.compare import card_problems
from cds_service.config import load_settings
from cds_service.fhir.prefetch import read_prefetch
from cds_service.hook_request import build_hook_request

SIGN = "/cds-services/diazepam-order-sign"
SELECT = "/cds-services/diazepam-order-select"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def with_prefetch(body: dict[str, Any], birth: str = "1948-03-02", **over: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": birth},
        "medications": bundle(),
        "conditions": bundle(),
        "observations": bundle(),
        "allergies": bundle(),
    }
    body["prefetch"].update(over)
    return body


def assert_spec_valid(card: dict[str, Any]) -> None:
    """CDS Hooks 2.0 card rules (digest §5, as replay checks them: ``compare.card_problems``)
    plus what this service promises beyond the spec: real uuids, an https source, a detail
    with no "Sources:" line (its sources are the links, second review N5), links on every
    card, override reasons on every card but info ones (F.2a: an info card asks for none),
    deletes by reference and suggested resources that are medication orders."""
    assert not card_problems(card), card_problems(card)
    uuid.UUID(card["uuid"])
    assert card["source"]["url"].startswith("https://") and card["source"]["topic"]["code"]
    assert not re.search(r"(?m)^\**Sources?:", card["detail"])
    assert card["links"]
    if card["indicator"] == "info":
        assert "overrideReasons" not in card
    else:
        assert card["overrideReasons"]
    assert all(link["type"] == "absolute" for link in card["links"])
    for suggestion in card.get("suggestions", []):
        uuid.UUID(suggestion["uuid"])
        for action in suggestion["actions"]:
            if action["type"] == "delete":
                assert action["resourceId"].count("/") == 1
            else:
                assert action["resource"]["resourceType"] in (
                    "MedicationRequest",
                    "MedicationOrder",
                )


def by_topic(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["source"]["topic"]["code"]: c for c in cards}


@pytest.fixture
def standard(make_app):
    return make_app(ehr_profile="standard").test_client()


@pytest.fixture
def epic(make_app):
    return make_app(ehr_profile="epic").test_client()


@pytest.mark.parametrize(
    "name",
    [
        "order-sign-request_r4-server",
        "order-sign-request_dstu2-default-server",
        "order-select-request_r4-server",
        "order-select-request_dstu2-default-server",
    ],
)
def test_sandbox_requests_give_sensible_cards(standard, sandbox_request, name):
    body = with_prefetch(sandbox_request(name))
    response = standard.post(SELECT if "select" in name else SIGN, json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    for card in cards:
        assert_spec_valid(card)
        assert "_audit" not in card
    topics = by_topic(cards)
    # born 1948-03-02 (77 at the drafts' date, 2026-01-15), 5 mg once daily for 30 days, no
    # indication; the age is counted to the time of the call, not to the draft's date
    today = datetime.now(UTC).date()
    age = today.year - 1948 - ((today.month, today.day) < (3, 2))
    assert topics["duration-limit"]["indicator"] == "warning"  # F.0-6: never critical
    assert "30 days" in topics["duration-limit"]["summary"]
    assert topics["beers-benzodiazepine"]["indicator"] == "warning"
    assert f"Age {age}" in topics["beers-benzodiazepine"]["summary"]
    alt = topics["muscle-relaxant-alternative"]
    assert "renal function unknown: baclofen not ranked first" in alt["detail"]
    assert "indication-missing" in topics
    # F.2a: one decision card for the order (the duration card: both are warnings, and the
    # policy's decision_owner puts duration first) carries every choice; the others explain
    decision = [c for c in cards if c.get("suggestions")]
    assert [c["source"]["topic"]["code"] for c in decision] == ["duration-limit"]
    choices = topics["duration-limit"]["suggestions"]
    replaces = [s for s in choices if [a["type"] for a in s["actions"]] == ["delete", "create"]]
    # R12: with no indication at all, nothing is recommended and each label says what for
    assert not any(s.get("isRecommended") for s in replaces)
    assert all(s["label"].startswith("If for muscle spasm:") for s in replaces)
    created = [a["resource"] for a in replaces[0]["actions"] if a["type"] == "create"][0]
    assert created["medicationCodeableConcept"]["coding"][0]["code"] == "313412"  # tizanidine
    assert "choices for this order" in alt["detail"]


def test_standard_profile_shapes(standard, sandbox_request):
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    topics = by_topic(standard.post(SIGN, json=body).get_json()["cards"])
    decision = topics["duration-limit"]
    assert decision["selectionBehavior"] == "at-most-one"
    kinds = [[a["type"] for a in s["actions"]] for s in decision["suggestions"]]
    # lead decision N3: an older adult with no indication is offered the drug-free cancel
    # first, recommended; then F.2a's order: replace with X | keep, shorter | lower dose
    assert kinds[0] == ["delete"] and decision["suggestions"][0].get("isRecommended")
    assert decision["suggestions"][0]["label"].startswith("If for muscle spasm: cancel diazepam")
    assert kinds[1] == ["delete", "create"] and ["update"] in kinds
    assert not any(s.get("isRecommended") for s in decision["suggestions"][1:])
    assert kinds.index(["update"]) > max(i for i, k in enumerate(kinds) if k[0] == "delete")
    for suggestion in decision["suggestions"]:
        if suggestion["actions"][0]["type"] == "delete":
            assert suggestion["actions"][0]["resourceId"] == "MedicationRequest/request-123"
    updates = [
        s["actions"][0] for s in decision["suggestions"] if s["actions"][0]["type"] == "update"
    ]
    # review round 1 M5: the change to the older-adult start comes before the keep, and the
    # keep says the dose it keeps
    change, keep = updates[0]["resource"], updates[1]["resource"]
    assert change["dispenseRequest"]["quantity"]["value"] == 14  # 2 mg twice a day, 7 days
    resource = keep
    assert resource["id"] == "request-123"
    assert resource["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    assert resource["dispenseRequest"]["quantity"]["value"] == 7  # 1 tablet a day
    labels = [s["label"] for s in decision["suggestions"]]
    assert any(label.startswith("Change to diazepam 2 mg twice a day") for label in labels)
    assert any("(above usual start from age 65)" in label for label in labels)
    assert "suggestions" not in topics["muscle-relaxant-alternative"]


def test_epic_profile_shapes(epic, sandbox_request):
    """F.2a, Epic: one action per suggestion, never a re-created diazepam, one Remove listed
    first, alternatives labelled as additions and never recommended, edits stated in text."""
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    cards = epic.post(SIGN, json=body).get_json()["cards"]
    for card in cards:
        assert_spec_valid(card)
        for suggestion in card.get("suggestions", []):
            assert len(suggestion["actions"]) == 1
            action = suggestion["actions"][0]
            assert action["type"] != "update"
            if action["type"] == "create":
                coding = action["resource"]["medicationCodeableConcept"]["coding"][0]
                assert coding["code"] not in ("197589", "197590", "197591")  # no diazepam
                assert not suggestion.get("isRecommended")
        if "suggestions" in card:
            assert card["selectionBehavior"] == "any"
    topics = by_topic(cards)
    decision = topics["duration-limit"]
    labels = [s["label"] for s in decision["suggestions"]]
    assert labels[0].startswith("Remove the pended diazepam order")
    assert sum(label.startswith("Remove") for label in labels) == 1
    # alternatives are additions, never a switch: "add", never "replace" (R12: no indication
    # here, so each is conditional); the 80-character label has no room for "; diazepam
    # stays" beside the R12 prefix, so the detail says how to switch (next line); with a
    # stated reason the label says it (tests/clinical/test_orders_ready.py)
    assert all(label.startswith("If for muscle spasm: add ") for label in labels[1:])
    assert not any("replace" in label.lower() for label in labels)
    assert decision["detail"].startswith("**To switch: select both Remove diazepam")
    # F.2a: the edits as text, each with its dose and amount; the 2 mg start is another
    # product than the pended one, so it is a line of its own naming it (review round 3)
    change = "**Or new order, then remove the pended one:** diazepam 2 mg tablets: 2 mg twice a day"
    assert change + " for 7 days (14 tablets), no refills." in decision["detail"]
    keep = "**Or edit the order:** the dose as written for 7 days (7 tablets), no refills."
    assert keep in decision["detail"]


def test_non_diazepam_and_unselected_orders_get_nothing(standard, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")  # fhirServer unreachable: must not
    entry = body["context"]["draftOrders"]["entry"][0]["resource"]  # even try to fetch
    entry["medicationCodeableConcept"] = {"coding": [{"system": RX, "code": "430902"}]}
    response = standard.post(SIGN, json=body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    body = sandbox_request("order-select-request_r4-server")
    body["context"]["selections"] = ["MedicationRequest/other"]
    assert standard.post(SELECT, json=body).get_json() == {"cards": []}


def test_missing_data_is_said_on_the_cards(standard, sandbox_request):
    failed = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    body = with_prefetch(
        sandbox_request("order-sign-request_r4-server"), medications=failed, conditions=failed
    )
    # Refused (loopback is not allowed here), so the fallback cannot get them either. The
    # patient is prefetched, so a 412 is never the right answer: optional data degrades.
    body["fhirServer"] = "http://127.0.0.1:9/fhir"
    assert body["prefetch"]["patient"]["id"] == body["context"]["patientId"]
    response = standard.post(SIGN, json=body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert cards
    text = " ".join(c["detail"] for c in cards)
    assert "active medications unknown" in text
    assert "conditions unknown" in text


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_settings(load_settings(environ={}, overrides={"auth": "disabled"}))


def test_engine_cards_carry_audit_with_order_and_rule(engine, sandbox_request):
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    # the call's reference time, pinned to the drafts' date: the age is counted to it
    request = dataclasses.replace(
        build_hook_request(body), received_at=datetime(2026, 1, 15, 12, tzinfo=UTC)
    )
    orders = engine.orders_in_scope(request)
    timings: dict[str, float] = {}
    cards = engine.advise(request, orders, read_prefetch(body["prefetch"]), "standard", timings)
    assert {"rules_ms", "render_ms"} <= set(timings)
    for card in cards:
        audit = card["_audit"]
        assert audit["order_id"] == "MedicationRequest/request-123"
        assert audit["rule"] == card["source"]["topic"]["code"]
        assert audit["age"] == 77
        for value in audit.values():  # codes and numbers only: no names, no birth dates
            assert "1948" not in str(value)
    duration = next(c for c in cards if c["_audit"]["rule"] == "duration-limit")
    assert duration["_audit"]["days_supply"] == 30
    # most urgent first
    order = ["critical", "warning", "info"]
    assert [order.index(c["indicator"]) for c in cards] == sorted(
        order.index(c["indicator"]) for c in cards
    )


def test_max_cards_merges_lesser_cards_but_never_drops_a_safety_topic(sandbox_request, tmp_path):
    """R22 / F.0-5: with a budget of one card, the Beers card (a safety topic) stays, one
    more card is not kept, and what did not fit is merged as 'Also noted' lines."""
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    request = build_hook_request(body)
    full = Engine.from_settings(load_settings(environ={})).advise(
        request,
        Engine.from_settings(load_settings(environ={})).orders_in_scope(request),
        read_prefetch(body["prefetch"]),
        "standard",
        {},
    )
    policy = tmp_path / "policy.json"
    policy.write_text('{"max_cards": 1}')
    engine = Engine.from_settings(load_settings(environ={}, overrides={"policy_file": str(policy)}))
    cards = engine.advise(
        request, engine.orders_in_scope(request), read_prefetch(body["prefetch"]), "standard", {}
    )
    assert len(full) > 1
    assert [c["source"]["topic"]["code"] for c in cards] == ["beers-benzodiazepine"]
    merged = cards[0]["_audit"]["merged"]
    assert set(merged) == {c["source"]["topic"]["code"] for c in full} - {"beers-benzodiazepine"}
    assert "Also noted" in cards[0]["detail"]


# -- review: cards for one order compose; one patient-level problem gives one card -------------


def _advise(engine: Engine, body: dict[str, Any], profile: str = "standard") -> list[dict]:
    request = build_hook_request(body)
    data = read_prefetch(body["prefetch"])
    return engine.advise(request, engine.orders_in_scope(request), data, profile, {})


def _update_targets(cards: list[dict[str, Any]]) -> list[str]:
    """Topics of the cards whose suggestions update the diazepam draft."""
    return [
        c["source"]["topic"]["code"]
        for c in cards
        for s in c.get("suggestions", [])
        if any(a["type"] == "update" for a in s["actions"])
    ]


def test_updates_of_one_order_live_on_one_card(engine, sandbox_request):
    """Accepting two 'update' suggestions of one draft keeps only the last (each carries the
    whole resource): a dose rewrite then a duration rewrite would silently restore the dose,
    and adding a reason would restore 30 days. So one card holds every rewrite, as choices."""
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]["timing"] = {
        "repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}
    }
    cards = _advise(engine, body)
    topics = by_topic(cards)
    assert {"duration-limit", "indication-missing"} <= set(topics)  # 77 y, 5 mg TID
    # the dose card's only action moved to the duration card: it is folded in (F.2a, R22)
    assert "dose-limit" not in topics
    assert topics["duration-limit"]["_audit"]["folded"] == ["dose-limit"], [
        (c["source"]["topic"]["code"], c["_audit"]) for c in cards
    ]
    assert set(_update_targets(cards)) == {"duration-limit"}
    duration = topics["duration-limit"]
    assert duration["selectionBehavior"] == "at-most-one"
    rewrites = [
        s["actions"][0]["resource"]
        for s in duration["suggestions"]
        if s["actions"][0]["type"] == "update"
    ]
    days = {r["dispenseRequest"]["expectedSupplyDuration"]["value"] for r in rewrites}
    assert days == {7}  # every choice keeps the cap
    original = body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]
    doses = [r["dosageInstruction"][0]["doseAndRate"] for r in rewrites]
    assert original["doseAndRate"] in doses  # limit the days only, dose as written
    assert [{"doseQuantity": {"value": 2, "unit": "mg", "system": UCUM, "code": "mg"}}] in doses
    # review round 1 M5: the keep says its dose is above the older-adult start
    labels = [s["label"] for s in duration["suggestions"]]
    assert any("(above usual start from age 65)" in label for label in labels), labels
    assert "indication" in topics["indication-missing"]["detail"].lower()


def test_dose_card_keeps_its_update_when_alone(engine, sandbox_request):
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    resource = body["context"]["draftOrders"]["entry"][0]["resource"]
    resource["dosageInstruction"][0]["timing"] = {
        "repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}
    }
    resource["dispenseRequest"] = {"expectedSupplyDuration": {"value": 5, "code": "d", "unit": "d"}}
    resource["reasonCode"] = [
        {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M62.830"}]}
    ]
    cards = _advise(engine, body)
    # 77 y, 5 days: no duration card; the dose rewrite is a choice on the one decision card,
    # the most urgent card acting on the order (the alternatives warning, F.2a)
    assert _update_targets(cards) == ["muscle-relaxant-alternative"]
    [decision] = [c for c in cards if c.get("suggestions")]
    [update] = [s for s in decision["suggestions"] if s["actions"][0]["type"] == "update"]
    dose = update["actions"][0]["resource"]["dosageInstruction"][0]["doseAndRate"][0]
    assert dose["doseQuantity"]["value"] == 2


def test_two_diazepam_drafts_do_not_repeat_patient_cards(engine, sandbox_request):
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    first = body["context"]["draftOrders"]["entry"][0]["resource"]
    second = copy.deepcopy(first)
    second["id"] = "request-456"
    body["context"]["draftOrders"]["entry"].append({"resource": second})
    cards = _advise(engine, body)
    beers = [c for c in cards if c["source"]["topic"]["code"] == "beers-benzodiazepine"]
    assert len(beers) == 1
    assert beers[0]["_audit"]["order_ids"] == [
        "MedicationRequest/request-123",
        "MedicationRequest/request-456",
    ]
    # review round 1 H1: one decision for the set. One card acts on the pended orders, its
    # summary states both and the total; every choice leaves one diazepam order or none;
    # each order's keep is capped; no "diazepam with diazepam" CNS card
    deciding = [
        c
        for c in cards
        if c.get("suggestions")
        and any(
            a.get("resourceId", "").startswith("MedicationRequest/request-")
            or (a.get("resource") or {}).get("id", "").startswith("request-")
            for s in c["suggestions"]
            for a in s["actions"]
        )
    ]
    assert len(deciding) == 1
    assert deciding[0]["summary"].startswith("Two diazepam orders")
    ids = {"MedicationRequest/request-123", "MedicationRequest/request-456"}
    for suggestion in deciding[0]["suggestions"]:
        left = set(ids)
        for action in suggestion["actions"]:
            if action["type"] == "delete":
                left.discard(action["resourceId"])
        assert len(left) <= 1, suggestion["label"]
        for action in suggestion["actions"]:
            if action["type"] == "update":
                days = action["resource"]["dispenseRequest"]["expectedSupplyDuration"]["value"]
                assert days == 7
    kept = {
        a["resource"]["id"]
        for s in deciding[0]["suggestions"]
        for a in s["actions"]
        if a["type"] == "update"
    }
    assert kept == {"request-123", "request-456"}  # either order may be the one kept
    assert not [c for c in cards if c["source"]["topic"]["code"] == "cns-depressant-combination"]


def test_created_orders_name_the_ordering_user_as_requester(engine, sandbox_request):
    """F.2a: orders ready to sign carry ``requester`` = context.userId."""
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    body["context"]["userId"] = "Practitioner/example"
    creates = [
        a["resource"]
        for c in _advise(engine, body)
        for s in c.get("suggestions", [])
        for a in s["actions"]
        if a["type"] == "create"
    ]
    assert creates and all(r["requester"] == {"reference": "Practitioner/example"} for r in creates)


def test_unknown_medications_say_opioid_check_not_done_even_for_rescue(engine, sandbox_request):
    """A seizure rescue order gets only safety cards; with the medication list unavailable the
    opioid check could not run, and silence would read as 'no opioid'."""
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    resource = body["context"]["draftOrders"]["entry"][0]["resource"]
    resource["medicationCodeableConcept"] = {"coding": [{"system": RX, "code": "801961"}]}
    resource.pop("dosageInstruction", None)
    resource.pop("dispenseRequest", None)
    body["prefetch"].pop("medications")
    cards = _advise(engine, body)
    [card] = cards
    assert card["source"]["topic"]["code"] == "opioid-benzodiazepine"
    assert card["indicator"] == "info"
    assert "not checked" in card["summary"]
    body = with_prefetch(sandbox_request("order-sign-request_r4-server"))
    resource = body["context"]["draftOrders"]["entry"][0]["resource"]
    resource["medicationCodeableConcept"] = {"coding": [{"system": RX, "code": "801961"}]}
    assert _advise(engine, body) == []  # medication list known and empty: quiet


def test_audit_records_draft_validity_and_route_source(client, sandbox_request):
    """The fhir.resources check of the draft is stored with each card (never shown)."""
    from cds_service.feedback import audit_of
    from tests.conftest import with_patient_prefetch

    app = client.application
    seen: list[dict[str, Any]] = []
    app.extensions.setdefault("cds.after_hook", []).append(
        lambda service, request, result: seen.extend(audit_of(c) for c in result["cards"])
    )
    body = with_patient_prefetch(sandbox_request("order-sign-request_r4-server"))
    assert client.post("/cds-services/diazepam-order-sign", json=body).status_code == 200
    # the sandbox sends category as an object and no intent-compatible list: not valid R4
    assert seen and all(a["draft_valid_r4"] is False for a in seen)
    assert all(a["route_source"] == "product" for a in seen)
    fixed = copy.deepcopy(body)
    draft = fixed["context"]["draftOrders"]["entry"][0]["resource"]
    draft["category"] = [draft["category"]]
    seen.clear()
    assert client.post("/cds-services/diazepam-order-sign", json=fixed).status_code == 200
    assert seen and all(a["draft_valid_r4"] is True for a in seen)
