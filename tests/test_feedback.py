"""Issued cards, feedback and repeat suppression through the HTTP API, on embedded SQLite.

The clinical engine is stood in for by ``ScriptedAdvisor`` (cards shaped per the engine
contract, with ``_audit``); everything after it (api.py, card filters, after_hook, store)
is the real code on a real database file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.store.helpers import (
    DATA,
    NO_FIRE_ONCE,
    ScriptedAdvisor,
    accepted,
    hook_body,
    overridden,
    policy_file,
)

SELECT = "/cds-services/diazepam-order-select"
SIGN = "/cds-services/diazepam-order-sign"
KEY = "test-hash-key"


@pytest.fixture
def advised(
    make_app: Callable[..., Flask], tmp_path: Path
) -> Callable[..., tuple[Flask, ScriptedAdvisor]]:
    def _make(
        topics=(("duration-limit", "warning"), ("beers-age", "info")),
        fire_once: bool = True,
        **settings: Any,
    ):
        if not fire_once:
            settings["policy_file"] = policy_file(tmp_path / "policy", NO_FIRE_ONCE)
        app = make_app(patient_hash_key=KEY, **settings)
        advisor = ScriptedAdvisor(list(topics))
        app.extensions["cds.advisor"] = advisor
        return app, advisor

    return _make


def rows(app: Flask, table: str) -> list[dict[str, Any]]:
    store = app.extensions["cds.store"]
    # this process's queued cards first (store/card_queue.py: what every reader in the
    # worker that issued them sees)
    if "cds.card_queue" in app.extensions:
        app.extensions["cds.card_queue"].flush()
    with store.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(f"SELECT * FROM {table}"))]


def post_feedback(client: FlaskClient, items: list[dict[str, Any]], url: str = SELECT) -> Any:
    return client.post(f"{url}/feedback", json={"feedback": items})


# -- issued cards ------------------------------------------------------------------------
def test_every_card_sent_is_recorded_with_hashed_ids(advised, tmp_path: Path) -> None:
    app, advisor = advised()
    client = app.test_client()
    body = hook_body("order-select", patient="pat-secret-42", user="Practitioner/doc-9")
    answer = client.post(SELECT, json=body)
    assert answer.status_code == 200
    sent = answer.get_json()["cards"]
    assert all("_audit" not in card for card in sent)
    stored = {row["card_uuid"]: row for row in rows(app, "issued_cards")}
    assert set(stored) == {card["uuid"] for card in sent}
    for card in advisor.issued:
        row = stored[card["uuid"]]
        assert row["service_id"] == "diazepam-order-select"
        assert row["hook_instance"] == body["hookInstance"]
        assert row["topic_code"] == card["source"]["topic"]["code"]
        assert row["indicator"] == card["indicator"]
        assert json.loads(row["suggestion_uuids"]) == [card["suggestions"][0]["uuid"]]
        audit = json.loads(row["audit"])
        order_hash = hmac.new(KEY.encode(), b"order\x00MedicationRequest/rx-1", hashlib.sha256)
        assert audit == {
            "order_id": order_hash.hexdigest(),
            "rule": card["source"]["topic"]["code"],
            "age": 78,
            "egfr": 45,
            "codes": ["197591"],
        }  # the engine's stray "name" key was dropped
        assert row["order_id"] == order_hash.hexdigest()  # keyed hash, never the raw id
        expected = hmac.new(KEY.encode(), b"patient\x00pat-secret-42", hashlib.sha256)
        assert row["patient_hash"] == expected.hexdigest()
    # no raw patient id or name anywhere in the database file
    raw = (tmp_path / "data" / "cds.sqlite3").read_bytes()
    wal = tmp_path / "data" / "cds.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"pat-secret-42" not in raw
    assert b"Jane Doe" not in raw
    assert b"rx-1" not in raw


def test_no_cards_nothing_recorded(advised) -> None:
    app, _ = advised(topics=())
    assert app.test_client().post(SELECT, json=hook_body()).get_json() == {"cards": []}
    assert rows(app, "issued_cards") == []


def test_generated_hash_key_is_shared_by_apps_on_one_database(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_app(), make_app()  # same data dir, no CDS_PATIENT_HASH_KEY
    assert "CDS_PATIENT_HASH_KEY is not set" in caplog.text
    hashes = []
    for app in (first, second):
        advisor = ScriptedAdvisor([("beers-age", "info")])
        app.extensions["cds.advisor"] = advisor
        app.test_client().post(SELECT, json=hook_body(patient="pat-1"))
    hashes = {row["patient_hash"] for row in rows(first, "issued_cards")}
    assert len(rows(first, "issued_cards")) == 2
    assert len(hashes) == 1
    assert hashes != {hashlib.sha256(b"pat-1").hexdigest()}


# -- feedback ----------------------------------------------------------------------------
def test_feedback_items_stored_and_linked_to_cards(advised) -> None:
    app, advisor = advised()
    client = app.test_client()
    client.post(SELECT, json=hook_body())
    first, second = advisor.issued
    answer = post_feedback(client, [accepted(first), overridden(second["uuid"])])
    assert answer.status_code == 200
    assert answer.get_json() == {"stored": 2, "duplicates": 0, "unknown_cards": 0}
    stored = {row["card_uuid"]: row for row in rows(app, "feedback")}
    ok = stored[first["uuid"]]
    assert (ok["outcome"], ok["topic_code"], ok["card_known"]) == ("accepted", "duration-limit", 1)
    assert json.loads(ok["accepted_suggestions"]) == [first["suggestions"][0]["uuid"]]
    no = stored[second["uuid"]]
    assert (no["outcome"], no["topic_code"], no["override_code"]) == (
        "overridden",
        "beers-age",
        "patient-preference",
    )
    assert no["outcome_at"].startswith("2026-01-15 10:01:00")


def test_repeated_identical_items_are_stored_once(advised) -> None:
    app, advisor = advised()
    client = app.test_client()
    client.post(SELECT, json=hook_body())
    items = [accepted(advisor.issued[0]), overridden(advisor.issued[1]["uuid"])]
    assert post_feedback(client, items).get_json()["stored"] == 2
    again = post_feedback(client, items)
    assert again.status_code == 200
    assert again.get_json() == {"stored": 0, "duplicates": 2, "unknown_cards": 0}
    twice_in_one_call = post_feedback(
        client, [items[0], items[0], overridden("x", when="2026-01-16T00:00:00Z")]
    )
    assert twice_in_one_call.get_json() == {"stored": 1, "duplicates": 2, "unknown_cards": 1}
    assert len(rows(app, "feedback")) == 3
    # a different item for the same card (later change of mind) is not a duplicate
    later = overridden(advisor.issued[0]["uuid"], when="2026-01-15T11:00:00Z")
    assert post_feedback(client, [later]).get_json()["stored"] == 1


def test_unknown_card_uuids_are_stored_and_flagged(advised) -> None:
    app, advisor = advised()
    client = app.test_client()
    client.post(SELECT, json=hook_body())
    answer = post_feedback(client, [overridden("never-issued"), accepted(advisor.issued[0])])
    assert answer.get_json() == {"stored": 2, "duplicates": 0, "unknown_cards": 1}
    flags = {
        row["card_uuid"]: (row["card_known"], row["topic_code"]) for row in rows(app, "feedback")
    }
    assert flags == {"never-issued": (0, None), advisor.issued[0]["uuid"]: (1, "duration-limit")}
    # a card issued by the other service is unknown to this one
    other = post_feedback(client, [overridden(advisor.issued[1]["uuid"])], url=SIGN)
    assert other.get_json()["unknown_cards"] == 1


def test_sandbox_feedback_bodies_are_accepted(advised) -> None:
    app, advisor = advised()
    client = app.test_client()
    client.post(SELECT, json=hook_body())
    card = advisor.issued[0]
    for name in ("sandbox-feedback-accepted", "sandbox-feedback-overridden"):
        text = (DATA / "sandbox" / f"{name}.json").read_text(encoding="utf-8")
        text = text.replace("<card.uuid>", card["uuid"])
        text = text.replace("<suggestion.uuid>", card["suggestions"][0]["uuid"])
        text = text.replace("<reason code>", "not-tolerated").replace("<reason system>", "urn:x")
        answer = client.post(f"{SELECT}/feedback", data=text, content_type="application/json")
        assert answer.get_json() == {"stored": 1, "duplicates": 0, "unknown_cards": 0}
    assert sorted(r["outcome"] for r in rows(app, "feedback")) == ["accepted", "overridden"]


GOOD = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-01-15T10:00:00Z"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "JSON"),
        ([GOOD], "JSON object"),
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [{**GOOD, "outcome": "ignored"}]}, "outcome"),
        ({"feedback": [{k: v for k, v in GOOD.items() if k != "card"}]}, "card"),
        ({"feedback": [{**GOOD, "outcome": "accepted"}]}, "acceptedSuggestions"),
        ({"feedback": [{**GOOD, "outcomeTimestamp": "yesterday"}]}, "outcomeTimestamp"),
        ({"feedback": [{**GOOD, "outcomeTimestamp": "2026-02-30T10:00:00Z"}]}, "outcomeTimestamp"),
        (
            {
                "feedback": [
                    GOOD,
                    {**GOOD, "card": "c-2", "outcomeTimestamp": "2026-13-01T00:00:00Z"},
                ]
            },
            "feedback[1].outcomeTimestamp",
        ),
        ({"feedback": [{**GOOD, "overrideReason": {"reason": {"code": "x"}}}]}, "system"),
    ],
)
def test_malformed_bodies_get_400_with_a_clear_message_and_store_nothing(
    advised, body: Any, message: str
) -> None:
    app, _ = advised()
    client = app.test_client()
    if isinstance(body, bytes):
        answer = client.post(f"{SELECT}/feedback", data=body, content_type="application/json")
    else:
        answer = client.post(f"{SELECT}/feedback", json=body)
    assert answer.status_code == 400
    outcome = answer.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert message in outcome["issue"][0]["diagnostics"]
    assert rows(app, "feedback") == []


def test_feedback_to_unknown_service_is_404(advised) -> None:
    app, _ = advised()
    answer = app.test_client().post("/cds-services/nope/feedback", json={"feedback": [GOOD]})
    assert answer.status_code == 404
    assert rows(app, "feedback") == []


def test_database_failure_is_503_not_a_silent_200(advised) -> None:
    app, _ = advised()
    with app.extensions["cds.store"].engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE feedback"))
    answer = post_feedback(app.test_client(), [GOOD])
    assert answer.status_code == 503
    assert "nothing was saved" in answer.get_json()["issue"][0]["diagnostics"]
    assert answer.headers["Retry-After"] == "5"


def test_card_recording_failure_still_answers(advised, caplog: pytest.LogCaptureFixture) -> None:
    app, _ = advised()
    with app.extensions["cds.store"].engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE issued_cards"))
    answer = app.test_client().post(SELECT, json=hook_body())
    assert answer.status_code == 200
    assert len(answer.get_json()["cards"]) == 2
    assert "issued cards not recorded" in caplog.text


def test_health_reports_the_database(advised, tmp_path: Path) -> None:
    app, _ = advised()
    client = app.test_client()
    assert client.get("/health").get_json()["checks"]["database"] == "ok"
    # a real fault: the database file is replaced by a directory (file modes mean nothing
    # to root, so this is the portable way to make it unopenable)
    app.extensions["cds.store"].engine.dispose()
    db = tmp_path / "data" / "cds.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.mkdir()
    answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"] == "failing"


# -- repeat suppression -------------------------------------------------------------------
# These test suppression after an override, with fire once (F.2a) off: the scripted advisor
# gives the same cards at order-select and order-sign, which fire once would withhold whatever
# the feedback (tests/test_fire_once.py tests it, and the two together).
def _select_then_override(client: FlaskClient, advisor: ScriptedAdvisor, topic: str, **who: Any):
    client.post(SELECT, json=hook_body("order-select", **who))
    card = next(c for c in advisor.issued if c["source"]["topic"]["code"] == topic)
    assert post_feedback(client, [overridden(card["uuid"])]).get_json()["stored"] == 1


def _sign_topics(client: FlaskClient, **who: Any) -> set[str]:
    cards = client.post(SIGN, json=hook_body("order-sign", **who)).get_json()["cards"]
    return {card["source"]["topic"]["code"] for card in cards}


def test_overridden_topic_not_raised_again_at_sign(advised) -> None:
    app, advisor = advised(fire_once=False, suppress_repeats=True)
    client = app.test_client()
    _select_then_override(client, advisor, "beers-age")
    assert _sign_topics(client) == {"duration-limit"}
    assert "beers-age" in {r["topic_code"] for r in rows(app, "issued_cards")}
    # only the cards actually sent at sign are recorded
    sign_rows = [r for r in rows(app, "issued_cards") if r["service_id"] == "diazepam-order-sign"]
    assert [r["topic_code"] for r in sign_rows] == ["duration-limit"]


def test_suppression_is_off_by_default(advised) -> None:
    app, advisor = advised(fire_once=False)
    client = app.test_client()
    _select_then_override(client, advisor, "beers-age")
    assert _sign_topics(client) == {"duration-limit", "beers-age"}


def test_accepted_card_is_not_suppressed(advised) -> None:
    app, advisor = advised(fire_once=False, suppress_repeats=True)
    client = app.test_client()
    client.post(SELECT, json=hook_body())
    post_feedback(client, [accepted(advisor.issued[1])])
    assert _sign_topics(client) == {"duration-limit", "beers-age"}


@pytest.mark.parametrize(
    "sign_who",
    [{"user": "Practitioner/other"}, {"order_id": "rx-2"}, {"patient": "pat-other"}],
    ids=["other-user", "other-draft-order", "other-patient"],
)
def test_suppression_needs_same_user_order_and_patient(advised, sign_who) -> None:
    app, advisor = advised(fire_once=False, suppress_repeats=True)
    advisor_order = {"order_id": "rx-2"}
    client = app.test_client()
    _select_then_override(client, advisor, "beers-age")
    if sign_who == advisor_order:
        advisor.order_id = "MedicationRequest/rx-2"
    assert _sign_topics(client, **sign_who) == {"duration-limit", "beers-age"}


@pytest.mark.parametrize(("age_s", "suppressed"), [(3590, True), (3610, False)])
def test_suppression_window(advised, age_s: int, suppressed: bool) -> None:
    app, advisor = advised(fire_once=False, suppress_repeats=True, suppress_window_s=3600)
    client = app.test_client()
    _select_then_override(client, advisor, "beers-age")
    then = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=age_s)
    with app.extensions["cds.store"].engine.begin() as connection:
        connection.execute(sa.text("UPDATE feedback SET received_at = :t"), {"t": then})
    expected = {"duration-limit"} if suppressed else {"duration-limit", "beers-age"}
    assert _sign_topics(client) == expected


def test_suppression_with_the_real_engine(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """The engine's cards carry the draft order id in ``_audit`` the same way at select and
    at sign, so an override at select silences that topic at sign (and only that one)."""
    app = make_app(
        patient_hash_key=KEY,
        suppress_repeats=True,
        policy_file=policy_file(tmp_path / "policy", NO_FIRE_ONCE),
    )
    client = app.test_client()
    scenario = json.loads(
        (
            Path(__file__).resolve().parents[1] / "fixtures/scenarios/"
            "rw-34-order-select-typical-72.json"  # two cards at select: Beers and the decision
        ).read_text("utf-8")
    )
    select = scenario["request"]
    sign = json.loads(json.dumps(select))
    sign["hook"], sign["hookInstance"] = "order-sign", "sign-1"
    del sign["context"]["selections"]
    before = {
        c["source"]["topic"]["code"] for c in client.post(SIGN, json=sign).get_json()["cards"]
    }
    cards = client.post(SELECT, json=select).get_json()["cards"]
    assert len(cards) >= 2 and before == {c["source"]["topic"]["code"] for c in cards}
    target = cards[0]
    # an info card offers no override reasons (F.2a): its override comes without one
    offered = target.get("overrideReasons") or []
    reason = offered[0]["code"] if offered else None
    assert post_feedback(client, [overridden(target["uuid"], reason)]).get_json()["stored"] == 1
    sign["hookInstance"] = "sign-2"
    after = {c["source"]["topic"]["code"] for c in client.post(SIGN, json=sign).get_json()["cards"]}
    assert after == before - {target["source"]["topic"]["code"]}


def test_info_card_overridden_without_a_reason_is_stored(make_app: Callable[..., Flask]) -> None:
    """F.2a: info cards offer no override reasons, so the EHR reports their dismissal with
    none; that feedback is stored like any other (and an info card can still be overridden
    with a free-text comment only)."""
    app = make_app(patient_hash_key=KEY)
    client = app.test_client()
    scenarios = sorted((Path(__file__).resolve().parents[1] / "fixtures/scenarios").glob("*.json"))
    info = None
    for path in scenarios:
        fixture = json.loads(path.read_text("utf-8"))
        url = f"/cds-services/{fixture['service']}"
        cards = client.post(url, json=fixture["request"]).get_json()["cards"]
        info = next((c for c in cards if c["indicator"] == "info"), None)
        if info is not None:
            break
    assert info is not None, "no fixture gives an info card"
    assert "overrideReasons" not in info
    commented = {
        "card": info["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-01-15T10:02:00Z",
        "overrideReason": {"userComment": "discussed with pharmacy"},
    }
    answer = post_feedback(client, [overridden(info["uuid"], reason=None), commented], url=url)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["stored"] == 2 and answer.get_json()["unknown_cards"] == 0
    stored = [r for r in rows(app, "feedback") if r["card_uuid"] == info["uuid"]]
    # both stored; the free-text comment is dropped (CDS_STORE_COMMENTS off by default: PHI)
    assert sorted((r["outcome"], r["override_code"], r["user_comment"] or "") for r in stored) == [
        ("overridden", None, ""),
        ("overridden", None, ""),
    ]
