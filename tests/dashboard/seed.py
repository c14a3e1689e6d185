"""Seed the real store through the real API: signed hook calls from two EHR clients (one
``standard``, one ``epic`` profile) over four weeks, with accepted and overridden feedback
and one repeat suppression. Only the store's clock is moved (``Store.clock``); every row is
written by the service's own code paths, so the counts on the pages are counts of what the
service did."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.redate import redate
from tests.security.helpers import ISS, OTHER_ISS, KeyPair

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "fixtures" / "scenarios"
BASE = "http://localhost"
SIGN = "/cds-services/diazepam-order-sign"
SELECT = "/cds-services/diazepam-order-select"
ADMIN_TOKEN = "committee-test-token-0123456789"
FIRST_MONDAY = datetime(2026, 11, 2, 10, 0)
WEEKS = 4


def scenario(name: str) -> dict[str, Any]:
    body = json.loads((SCENARIOS / f"{name}.json").read_text(encoding="utf-8"))["request"]
    return redate(body)


def build_app(tmp: Path, write_issuers: Callable[..., Path], a: KeyPair, b: KeyPair) -> Flask:
    issuers = write_issuers(
        {"iss": ISS, "keys": [a], "profile": "standard"},
        {"iss": OTHER_ISS, "keys": [b], "profile": "epic"},
    )
    return create_app(
        {
            "auth": "required",
            "trusted_issuers": str(issuers),
            "dev_trust_sandbox": False,
            "public_base_url": BASE,
            "patient_hash_key": "dashboard-test-key",
            "suppress_repeats": True,
            "admin_token": ADMIN_TOKEN,
            "data_dir": str(tmp / "data"),
        }
    )


@dataclass
class Seeded:
    """What the seeding did, counted by the test itself (the store is counted separately)."""

    weeks: list[str] = field(default_factory=list)
    sign_calls: dict[str, int] = field(default_factory=dict)  # week -> order-sign calls
    feedback_accepted: int = 0
    feedback_overridden: int = 0
    suppressed: int = 0


class Client:
    """One EHR: its key and issuer; each call gets a freshly signed token for its URL."""

    def __init__(self, http: FlaskClient, key: KeyPair, iss: str):
        self.http, self.key, self.iss = http, key, iss

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = self.key.token(aud=BASE + path, iss=self.iss)
        answer = self.http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        return answer.get_json()

    def hook(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        body = {**copy.deepcopy(body), "hookInstance": str(uuid.uuid4())}
        return self.post(path, body)["cards"]


def _accept(card: dict[str, Any], when: datetime) -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": when.isoformat() + "Z",
    }


def _override(card: dict[str, Any], when: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": when.isoformat() + "Z",
    }
    reasons = card.get("overrideReasons") or []
    if reasons:
        item["overrideReason"] = {"reason": reasons[0]}
    return item


def seed(app: Flask, a_key: KeyPair, b_key: KeyPair) -> Seeded:
    store = app.extensions["cds.store"]
    now = [FIRST_MONDAY]
    store.clock = lambda: now[0]
    http = app.test_client()
    a, b = Client(http, a_key, ISS), Client(http, b_key, OTHER_ISS)
    elderly = scenario("elderly-78-egfr45-no-baclofen")
    young = scenario("young-adult-back-spasm-30d")
    other = scenario("order-sign-no-diazepam")
    select = scenario("rw-34-order-select-typical-72")
    done = Seeded()
    for week in range(WEEKS):
        monday = FIRST_MONDAY + timedelta(weeks=week)
        done.weeks.append(monday.date().isoformat())
        sign = 0
        for i in range(week + 1):  # a rising trend at hospital A
            now[0] = monday + timedelta(hours=i)
            cards = a.hook(SIGN, elderly)
            sign += 1
            acting = [c for c in cards if c.get("suggestions")]
            items = [_accept(acting[0], now[0])]
            rest = [c for c in cards if c is not acting[0] and c.get("overrideReasons")]
            if week % 2 == 0 and rest:
                items.append(_override(rest[0], now[0]))
            a.post(f"{SIGN}/feedback", {"feedback": items})
            done.feedback_accepted += 1
            done.feedback_overridden += len(items) - 1
        now[0] = monday + timedelta(days=1)
        cards = b.hook(SIGN, young)  # hospital B, Epic profile: overrides everything it gets
        sign += 1
        b.post(f"{SIGN}/feedback", {"feedback": [_override(c, now[0]) for c in cards]})
        done.feedback_overridden += len(cards)
        for _ in range(2):  # orders that are not diazepam: calls, no cards
            assert a.hook(SIGN, other) == []
            sign += 1
        done.sign_calls[done.weeks[-1]] = sign
    # repeat suppression at work, in the last week: override at order-select, sign again
    now[0] = FIRST_MONDAY + timedelta(weeks=WEEKS - 1, days=2)
    selected = a.hook(SELECT, select)
    overridable = [c for c in selected if c.get("overrideReasons")]
    assert overridable, "the order-select scenario must give a card with override reasons"
    a.post(f"{SELECT}/feedback", {"feedback": [_override(c, now[0]) for c in overridable]})
    done.feedback_overridden += len(overridable)
    signed = {k: v for k, v in select.items() if k != "hook"}
    signed["hook"] = "order-sign"
    signed["context"] = {k: v for k, v in select["context"].items() if k != "selections"}
    now[0] += timedelta(minutes=5)
    a.hook(SIGN, signed)
    done.sign_calls[done.weeks[-1]] += 1
    # order-sign records wait in this worker's card queue (store/card_queue.py): write them
    # before anyone counts rows in the database
    if "cds.card_queue" in app.extensions:
        app.extensions["cds.card_queue"].flush()
    del store.clock  # back to the real clock
    return done
