"""The card queue's crash-loss window, on a real gunicorn worker killed with SIGKILL.

The README promises: a worker killed outright loses at most the cards it answered in the last
``CDS_CARD_FLUSH_MS`` (plus one batch write), never more than ``CDS_CARD_QUEUE`` cards; a
graceful stop loses none. Each test drives real hook calls, kills the server, then counts
the cards in the SQLite file against the cards the calls were answered with.
"""

from __future__ import annotations

import copy
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.robustness.hostile import base_request
from tests.support.server import start_server

pytestmark = pytest.mark.slow

SIGN = "/cds-services/diazepam-order-sign"


def _drive(
    base_url: str, seconds: float, min_cards: int = 1
) -> list[tuple[float, list[str]]]:
    """Serial order-sign calls for ``seconds`` and until ``min_cards`` cards were answered
    (a starved machine answers slowly; the count, not the clock, is what a test needs):
    (answer time, card uuids) per call."""
    answered: list[tuple[float, list[str]]] = []
    session = requests.Session()
    stop = time.monotonic() + seconds
    issued = 0
    while time.monotonic() < stop or issued < min_cards:
        body = copy.deepcopy(base_request("order-sign"))
        body["hookInstance"] = str(uuid.uuid4())
        response = session.post(base_url + SIGN, json=body, timeout=30)
        assert response.status_code == 200, response.text[:300]
        cards = [card["uuid"] for card in response.json()["cards"]]
        answered.append((time.monotonic(), cards))
        issued += len(cards)
    assert answered and all(cards for _, cards in answered)
    return answered


def _recorded(tmp_path: Path) -> set[str]:
    database = tmp_path / "data" / "cds.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT card_uuid FROM issued_cards")}


def _env(queue: int, flush_ms: int) -> dict[str, str]:
    return {
        "CDS_AUTH": "disabled",
        "CDS_LOG_LEVEL": "WARNING",
        "CDS_CARD_QUEUE": str(queue),
        "CDS_CARD_FLUSH_MS": str(flush_ms),
    }


def test_sigkill_loses_only_the_cards_of_the_last_flush_window(tmp_path: Path):
    flush_ms = 300
    # a bound the drive never half fills, so only the flush interval writes the batches
    # (a half-full queue is written at once: with 1000, a 10 s interval still passed)
    server = start_server(tmp_path, _env(1_000_000, flush_ms), workers=1)
    # a batch write on a busy 2-core machine: allow it a generous second
    window_s = flush_ms / 1000 + 1.0
    try:
        answered = _drive(server.base_url, window_s + 1.5)
        if answered[-1][0] - answered[0][0] <= window_s:  # starved: drive past the window
            answered += _drive(server.base_url, window_s)
        killed_at = time.monotonic()
        server.kill(signal.SIGKILL)  # master and worker, no chance to flush
    finally:
        server.kill()
    recorded = _recorded(tmp_path)
    issued = {u for _, cards in answered for u in cards}
    lost = issued - recorded
    old = {u for at, cards in answered if killed_at - at > window_s for u in cards}
    assert old, "no call was answered before the window: the test would prove nothing"
    assert old <= recorded, f"{len(old - recorded)} cards older than the window were lost"
    # the window is real: the last call's cards were still queued when the worker died
    # (unless the writer happened to flush in the few ms between answer and kill)
    print(f"issued {len(issued)}, recorded {len(recorded)}, lost {len(lost)}")


def test_sigkill_loses_at_most_the_queue_bound(tmp_path: Path):
    """A long flush interval: the bound is what limits the loss (a half-full queue is written
    at once, and a call that finds it full records its own cards before answering), so
    nothing beyond the bound is ever at risk."""
    bound = 12
    server = start_server(tmp_path, _env(bound, 10_000), workers=1)
    try:
        # enough calls to overflow the queue several times, however slow the machine
        answered = _drive(server.base_url, 1.5, min_cards=3 * bound + 1)
        server.kill(signal.SIGKILL)
    finally:
        server.kill()
    issued = {u for _, cards in answered for u in cards}
    lost = issued - _recorded(tmp_path)
    assert len(issued) > 3 * bound  # enough calls to overflow the queue several times
    assert len(lost) <= bound


def test_graceful_stop_writes_every_queued_card(tmp_path: Path):
    server = start_server(tmp_path, _env(1000, 10_000), workers=1)
    try:
        answered = _drive(server.base_url, 1.0)
        server.kill(signal.SIGTERM)  # gunicorn's graceful stop: the worker exits normally
    finally:
        server.kill()
    issued = {u for _, cards in answered for u in cards}
    assert issued <= _recorded(tmp_path)


def test_order_select_cards_are_recorded_before_the_answer(tmp_path: Path):
    """Never queued: an order-sign milliseconds later, on any worker, must find them."""
    server = start_server(tmp_path, _env(1000, 10_000), workers=1)
    try:
        body = copy.deepcopy(base_request("order-select"))
        response = requests.post(
            server.base_url + "/cds-services/diazepam-order-select", json=body, timeout=30
        )
        assert response.status_code == 200
        cards = {card["uuid"] for card in response.json()["cards"]}
        assert cards and cards <= _recorded(tmp_path)  # read while the server still runs
    finally:
        server.kill()


def _counted(tmp_path: Path) -> dict[str, tuple[int, int, int]]:
    """Per service: (calls, cards) from hook_call_counts and issued from card_counts."""
    database = tmp_path / "data" / "cds.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        calls = dict(
            ((service, (n, cards)) for service, n, cards in db.execute(
                "SELECT service_id, sum(calls), sum(cards) FROM hook_call_counts "
                "GROUP BY service_id"
            ))
        )
        issued = dict(
            db.execute("SELECT service_id, sum(issued) FROM card_counts GROUP BY service_id")
        )
    return {
        service: (*calls.get(service, (0, 0)), issued.get(service, 0))
        for service in set(calls) | set(issued)
    }


def test_dashboard_counters_go_with_the_batch_and_survive_a_graceful_stop(tmp_path: Path):
    """Issue 15: the hook-call counters of every call (order-select's too, whose cards are
    written before the answer) wait in the worker's queue, summed, and are written with the
    batch; a graceful stop writes them, and they count exactly the calls answered."""
    # the longest batch window the settings allow (10 s): eight local calls take well under
    # a second, so the "nothing written yet" checks below run unconditionally
    server = start_server(tmp_path, _env(1000, 10_000), workers=1)
    answered: dict[str, list[int]] = {"diazepam-order-select": [], "diazepam-order-sign": []}
    try:
        session = requests.Session()
        # order-sign first: after an order-select of the same draft fire once withholds them
        for hook in ["order-sign"] * 6 + ["order-select"] * 2:
            body = copy.deepcopy(base_request(hook))
            body["hookInstance"] = str(uuid.uuid4())
            response = session.post(f"{server.base_url}/cds-services/diazepam-{hook}", json=body,
                                    timeout=30)
            assert response.status_code == 200, response.text[:300]
            answered[f"diazepam-{hook}"].append(len(response.json()["cards"]))
        # nothing counted per call: the counters wait in the queue with the cards
        assert all(calls == 0 for calls, _, _ in _counted(tmp_path).values())
        # while order-select's cards are already there (write-through)
        assert _counted(tmp_path)["diazepam-order-select"][2] == sum(
            answered["diazepam-order-select"]
        )
        server.kill(signal.SIGTERM)  # gunicorn's graceful stop: the worker exits normally
    finally:
        server.kill()
    assert sum(answered["diazepam-order-sign"]) > 0
    assert _counted(tmp_path) == {
        service: (len(cards), sum(cards), sum(cards)) for service, cards in answered.items()
    }
