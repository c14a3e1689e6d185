"""Many simultaneous hook and feedback calls against a real multi-worker server on SQLite:
every call answered 200 (no "database is locked" reaching a client), every card issued
recorded, every feedback item stored exactly once — counted in the database afterwards."""

from __future__ import annotations

import copy
import json
import random
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.robustness.contract import answer_problems
from tests.robustness.hostile import base_request
from tests.support.server import running_server

pytestmark = pytest.mark.slow

CALLS = 300  # hook calls; each is followed by a feedback call (and a retry of it)
CLIENTS = 32  # concurrent connections
WORKERS = 3
SIGN = "/cds-services/diazepam-order-sign"
_local = threading.local()


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def _hook_then_feedback(base: str, i: int) -> dict[str, Any]:
    body = copy.deepcopy(base_request("order-sign"))
    body["hookInstance"] = str(uuid.uuid4())
    body["context"]["userId"] = f"Practitioner/load-{i % 7}"
    hook = _session().post(base + SIGN, json=body, timeout=30)
    out: dict[str, Any] = {
        "hook": (hook.status_code, hook.headers.get("Content-Type"), hook.content)
    }
    if hook.status_code != 200:
        return out
    cards = hook.json()["cards"]
    out["cards"] = [c["uuid"] for c in cards]
    items = []
    for card in cards:
        item: dict[str, Any] = {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": f"2026-03-02T10:{i % 60:02d}:00Z",
        }
        if card.get("suggestions") and i % 2:
            item = dict(
                item,
                outcome="accepted",
                acceptedSuggestions=[{"id": card["suggestions"][0]["uuid"]}],
            )
        items.append(item)
    # One item per call names a card nobody issued: stored too, flagged unknown.
    items.append(
        {
            "card": f"unknown-{i}",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-03-02T11:00:00Z",
        }
    )
    out["items"] = len(items)
    answers = []
    for _attempt in range(2):  # the client retries: the second copy must be a no-op
        fb = _session().post(base + SIGN + "/feedback", json={"feedback": items}, timeout=30)
        answers.append((fb.status_code, fb.headers.get("Content-Type"), fb.content))
    out["feedback"] = answers
    return out


def test_simultaneous_hooks_and_feedback_lose_nothing(tmp_path: Path):
    env = {"CDS_AUTH": "disabled", "CDS_PATIENT_HASH_KEY": "load-test"}
    with running_server(tmp_path, env, workers=WORKERS) as server:
        order = list(range(CALLS))
        random.Random(7).shuffle(order)
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda i: _hook_then_feedback(server.base_url, i), order))
        log = server.log_text()

    failures = [r["hook"][:2] for r in results if r["hook"][0] != 200]
    for r in results:
        failures += [a[:2] for a in r.get("feedback", []) if a[0] != 200]
    assert not failures, failures[:5]
    for r in results:
        assert not answer_problems(*r["hook"]), answer_problems(*r["hook"])
    everything = b"".join(r["hook"][2] + b"".join(a[2] for a in r["feedback"]) for r in results)
    assert b"locked" not in everything.lower()
    assert "database is locked" not in log
    assert "Traceback" not in log

    sent = sum(r["items"] for r in results)
    first = [json.loads(r["feedback"][0][2]) for r in results]
    retry = [json.loads(r["feedback"][1][2]) for r in results]
    assert sum(a["stored"] for a in first) == sent
    assert sum(a["stored"] for a in retry) == 0
    assert sum(a["duplicates"] for a in retry) == sent

    issued = {u for r in results for u in r["cards"]}
    assert len(issued) >= CALLS  # the base request earns at least one card per call
    database = tmp_path / "data" / "cds.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT COUNT(*), COUNT(DISTINCT item_hash) FROM feedback").fetchone()
        known = db.execute("SELECT COUNT(*) FROM feedback WHERE card_known").fetchone()[0]
        recorded = {row[0] for row in db.execute("SELECT card_uuid FROM issued_cards")}
    assert rows == (sent, sent)
    assert known == sent - CALLS  # every item but the deliberately unknown ones
    assert issued <= recorded
