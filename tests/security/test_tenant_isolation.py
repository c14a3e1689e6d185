"""Issue 17 items 1 and 9: what the store keeps, and that one client cannot touch another's.

Two trusted issuers (A with an EC key, B with an RSA key; A also has two tenants) call one
app with the real database store and repeat suppression on. The clinical engine is the
``ScriptedAdvisor`` of the store tests (same cards for the same order at select and sign), so
what is tested is the service shell: card recording, feedback linking, suppression, reports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from cds_service.report import topic_report
from tests.security.helpers import ISS, OTHER_ISS, KeyPair
from tests.store.helpers import NO_FIRE_ONCE, ScriptedAdvisor, hook_body, overridden, policy_file

BASE = "http://localhost"
SELECT = "/cds-services/diazepam-order-select"
SIGN = "/cds-services/diazepam-order-sign"
KEY = "tenant-test-hash-key"
TOPICS = [("duration-limit", "warning"), ("beers-age", "info")]


@pytest.fixture
def two_clients(
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    ec_key: KeyPair,
    rsa_key: KeyPair,
    tmp_path: Path,
) -> Callable[..., tuple[Flask, ScriptedAdvisor]]:
    def _make(fire_once: bool = False, **settings: Any) -> tuple[Flask, ScriptedAdvisor]:
        # suppression after an override is what most tests here check; fire once (which
        # withholds the scripted advisor's identical order-sign cards whatever the feedback)
        # is on only where a test asks for it
        if not fire_once:
            settings["policy_file"] = policy_file(tmp_path / "policy", NO_FIRE_ONCE)
        issuers = write_issuers(
            {"iss": ISS, "keys": [ec_key], "tenants": ["t1", "t2"]},
            {"iss": OTHER_ISS, "keys": [rsa_key]},
        )
        app = make_app(
            auth="required",
            trusted_issuers=str(issuers),
            dev_trust_sandbox=False,
            public_base_url=BASE,
            patient_hash_key=KEY,
            suppress_repeats=True,
            **settings,
        )
        advisor = ScriptedAdvisor(list(TOPICS))
        app.extensions["cds.advisor"] = advisor
        return app, advisor

    return _make


class Caller:
    """One client: its key, issuer and tenant; every call gets a fresh token for its URL."""

    def __init__(self, client: FlaskClient, key: KeyPair, iss: str, tenant: str | None = None):
        self.client, self.key, self.iss, self.tenant = client, key, iss, tenant

    def post(self, path: str, body: dict[str, Any]) -> Any:
        extra = {"tenant": self.tenant} if self.tenant else None
        token = self.key.token(aud=BASE + path, iss=self.iss, extra_claims=extra)
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

    def select(self) -> list[dict[str, Any]]:
        answer = self.post(SELECT, hook_body("order-select"))
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()["cards"]

    def sign_topics(self) -> set[str]:
        answer = self.post(SIGN, hook_body("order-sign"))
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return {card["source"]["topic"]["code"] for card in answer.get_json()["cards"]}

    def override(self, cards: list[dict[str, Any]]) -> dict[str, Any]:
        items = [overridden(card["uuid"]) for card in cards]
        answer = self.post(f"{SELECT}/feedback", {"feedback": items})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()


def rows(app: Flask, table: str) -> list[dict[str, Any]]:
    # this process's queued cards first (store/card_queue.py: what every reader in the
    # worker that issued them sees)
    if "cds.card_queue" in app.extensions:
        app.extensions["cds.card_queue"].flush()
    with app.extensions["cds.store"].engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(f"SELECT * FROM {table}"))]


def test_another_issuer_cannot_silence_this_issuers_cards(
    two_clients, ec_key: KeyPair, rsa_key: KeyPair
) -> None:
    """The audit's attack: B sends order-select for the same patient, user and order ids and
    overrides everything; A's order-sign must still get its cards."""
    app, _ = two_clients()
    client = app.test_client()
    a = Caller(client, ec_key, ISS, "t1")
    b = Caller(client, rsa_key, OTHER_ISS)
    assert b.override(b.select()) == {"stored": 2, "duplicates": 0, "unknown_cards": 0}
    assert a.sign_topics() == {"duration-limit", "beers-age"}
    # B's own overrides do suppress B's repeat (the feature still works within a client)
    assert b.sign_topics() == set()
    # and A's own override suppresses A's
    a.override([c for c in a.select() if c["source"]["topic"]["code"] == "beers-age"])
    assert a.sign_topics() == {"duration-limit"}


def test_another_tenant_of_the_same_issuer_cannot_silence_it(two_clients, ec_key) -> None:
    app, _ = two_clients()
    client = app.test_client()
    t1, t2 = Caller(client, ec_key, ISS, "t1"), Caller(client, ec_key, ISS, "t2")
    t2.override(t2.select())
    assert t1.sign_topics() == {"duration-limit", "beers-age"}


def test_feedback_naming_another_issuers_card_is_unknown_and_not_linked(
    two_clients, ec_key: KeyPair, rsa_key: KeyPair
) -> None:
    app, _ = two_clients()
    client = app.test_client()
    a = Caller(client, ec_key, ISS, "t1")
    b = Caller(client, rsa_key, OTHER_ISS)
    a_cards = a.select()
    assert b.override(a_cards) == {"stored": 2, "duplicates": 0, "unknown_cards": 2}
    stored = rows(app, "feedback")
    assert {r["card_uuid"] for r in stored} == {c["uuid"] for c in a_cards}
    assert all(not r["card_known"] and r["topic_code"] is None for r in stored)
    assert {r["client_iss"] for r in stored} == {OTHER_ISS}
    # A's own feedback for the same cards is linked (and is not a "duplicate" of B's)
    assert a.override(a_cards) == {"stored": 2, "duplicates": 0, "unknown_cards": 0}
    # reports: A's topics carry only A's outcomes; B's stray items are unknown cards
    engine = app.extensions["cds.store"].engine
    by_topic = {row.topic: row for row in topic_report(engine)}
    assert by_topic["beers-age"].overridden == 1
    assert by_topic["(unknown card)"].overridden == 2
    only_a = {row.topic: row for row in topic_report(engine, iss=ISS, tenant="t1")}
    assert "(unknown card)" not in only_a and only_a["beers-age"].issued == 1
    assert topic_report(engine, iss="https://nobody.example") == []


def test_issued_cards_and_feedback_record_issuer_and_tenant(two_clients, ec_key) -> None:
    app, _ = two_clients()
    a = Caller(app.test_client(), ec_key, ISS, "t2")
    a.override(a.select())
    assert {(r["client_iss"], r["client_tenant"]) for r in rows(app, "issued_cards")} == {
        (ISS, "t2")
    }
    assert {(r["client_iss"], r["client_tenant"]) for r in rows(app, "feedback")} == {
        (ISS, "t2")
    }


# -- item 9: what the store keeps --------------------------------------------------------
def _database_bytes(app: Flask) -> bytes:
    path = Path(app.extensions["cds.store"].engine.url.database)
    raw = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return raw + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("store_comments", [False, True])
def test_store_holds_no_raw_order_id_and_comments_only_when_asked(
    make_app: Callable[..., Flask], store_comments: bool
) -> None:
    app = make_app(patient_hash_key=KEY, store_comments=store_comments)
    advisor = ScriptedAdvisor(list(TOPICS), order_id="MedicationRequest/ord-5551234")
    app.extensions["cds.advisor"] = advisor
    client = app.test_client()
    assert client.post(SELECT, json=hook_body(order_id="ord-5551234")).status_code == 200
    item = overridden(advisor.issued[0]["uuid"])
    item["overrideReason"]["userComment"] = "Mrs Zelda Quux asked for it, MRN 99-1234"
    assert client.post(f"{SELECT}/feedback", json={"feedback": [item]}).status_code == 200
    expected = hmac.new(KEY.encode(), b"order\x00MedicationRequest/ord-5551234", hashlib.sha256)
    cards = rows(app, "issued_cards")
    assert {r["order_id"] for r in cards} == {expected.hexdigest()}
    assert all(json.loads(r["audit"])["order_id"] == expected.hexdigest() for r in cards)
    raw = _database_bytes(app)
    assert b"ord-5551234" not in raw
    assert (b"Zelda Quux" in raw) is store_comments
    comments = {r["user_comment"] for r in rows(app, "feedback")}
    assert comments == ({item["overrideReason"]["userComment"]} if store_comments else {None})


def test_fire_once_stays_within_the_client(two_clients, ec_key: KeyPair, rsa_key: KeyPair) -> None:
    """F.2a fire once with issue 17's scoping: what order-select showed one client (issuer and
    tenant) is not repeated at that client's order-sign, and never withheld from another's."""
    app, _ = two_clients(fire_once=True)
    client = app.test_client()
    a1 = Caller(client, ec_key, ISS, "t1")
    a2 = Caller(client, ec_key, ISS, "t2")
    b = Caller(client, rsa_key, OTHER_ISS)
    assert len(a1.select()) == 2
    # same patient, user and draft ids, another tenant or issuer: every card is shown
    assert a2.sign_topics() == {"duration-limit", "beers-age"}
    assert b.sign_topics() == {"duration-limit", "beers-age"}
    # the client that saw them at order-select: not repeated (neither card is critical)
    assert a1.sign_topics() == set()
    withheld = rows(app, "withheld_cards")
    assert {(r["client_iss"], r["client_tenant"], r["reason"]) for r in withheld} == {
        (ISS, "t1", "fire-once")
    }
    shown_to_a1 = {r["card_uuid"] for r in rows(app, "issued_cards")
                   if r["client_tenant"] == "t1"}
    assert {r["repeat_of"] for r in withheld} == shown_to_a1
