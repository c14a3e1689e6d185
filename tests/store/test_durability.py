"""What was acknowledged is never lost: a burst of concurrent feedback posts to a real
``diazepam-cds serve`` (embedded SQLite, two workers), the whole server SIGKILLed mid-burst,
restarted on the same data directory: every item that got a 200 is in the database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from cds_service.store import Store
from cds_service.store.tables import feedback
from tests.store.helpers import overridden
from tests.support.server import start_server

CLIENTS = 8
ITEMS_PER_CALL = 3
KILL_AFTER_ACKS = 40
URL = "/cds-services/diazepam-order-select/feedback"


@pytest.mark.slow
def test_acknowledged_feedback_survives_sigkill(tmp_path: Path) -> None:
    env = {"CDS_AUTH": "disabled", "CDS_PATIENT_HASH_KEY": "k"}
    server = start_server(tmp_path, env, workers=2)
    acknowledged: list[str] = []
    cut_off = 0  # calls in flight when the server died
    sent_calls = 0
    killed_at = float("inf")
    lock = threading.Lock()
    stop = threading.Event()
    # An assert in a client thread would only end that thread; what the threads see is
    # collected here and asserted in the test's own thread.
    wrong_answers: list[str] = []
    crashed: list[BaseException] = []

    def client(n: int) -> None:
        try:
            calls(n)
        except BaseException as exc:
            with lock:
                crashed.append(exc)

    def calls(n: int) -> None:
        nonlocal cut_off, sent_calls
        session = requests.Session()
        call = 0
        while not stop.is_set():
            uuids = [f"burst-{n}-{call}-{i}" for i in range(ITEMS_PER_CALL)]
            body = {"feedback": [overridden(u, "other") for u in uuids]}
            call += 1
            started = time.monotonic()
            try:
                answer = session.post(server.base_url + URL, json=body, timeout=10)
            except requests.RequestException:
                with lock:
                    cut_off += started < killed_at
                continue
            with lock:
                sent_calls += 1
                if answer.status_code != 200:
                    continue  # not acknowledged: nothing promised
                stored = answer.json().get("stored")
                if stored == ITEMS_PER_CALL:
                    acknowledged.extend(uuids)
                else:
                    wrong_answers.append(f"{uuids[0]}: stored {stored!r} of {ITEMS_PER_CALL}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < KILL_AFTER_ACKS * ITEMS_PER_CALL and time.monotonic() < deadline:
            time.sleep(0.005)
        burst_s = time.monotonic() - began
        killed_at = time.monotonic()
        server.kill()  # SIGKILL to master and workers, requests in flight
        killed_at_acks = len(acknowledged) // ITEMS_PER_CALL
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    assert not [t.name for t in threads if t.is_alive()], "client threads still running"
    assert not crashed, crashed
    assert not wrong_answers, wrong_answers[:10]
    assert killed_at_acks >= KILL_AFTER_ACKS

    restarted = start_server(tmp_path, env, workers=2)
    try:
        health = requests.get(restarted.base_url + "/health", timeout=5).json()
        assert health["checks"]["database"] == "ok"
    finally:
        restarted.kill()
    store = Store(f"sqlite:///{tmp_path / 'data' / 'cds.sqlite3'}")
    with store.engine.connect() as connection:
        found = set(connection.execute(sa.select(feedback.c.card_uuid)).scalars())
    store.dispose()
    missing = set(acknowledged) - found
    print(
        f"durability: {sent_calls} calls answered ({len(acknowledged)} items acknowledged), "
        f"in {burst_s:.2f} s by {CLIENTS} clients; {cut_off} calls cut off by the kill; "
        f"{len(found)} items in the database, "
        f"{len(missing)} acknowledged items missing"
    )
    assert not missing
    assert len(found) % ITEMS_PER_CALL == 0  # one transaction per call: never a partial call
