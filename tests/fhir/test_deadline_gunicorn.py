"""The deadline measured from outside: real gunicorn, real clinical engine, a hung FHIR server.

The in-process fault tests pin every fault down; this one checks the whole stack as an EHR
sees it (HTTP client → gunicorn gthread worker → engine → FHIR fetch), including concurrent
calls sharing one worker's fetch pool.

The hang outlasts the deadline many times over, so an answer within 10 × the deadline was ended
by the deadline; the server's own log then shows why (every fetched key timed out, each request
took at least the deadline's fetch budget). No bound near the deadline that a starved CPU could
miss: ``make bench`` reports how close to the deadline the answers come.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from cds_service.fhir.deadline import RENDER_RESERVE_MS
from tests.fhir.fault_server import Action, fault_server
from tests.fhir.records import hook_body, make_record
from tests.support.server import running_server

DEADLINE_MS = 800
BOUND_S = 10 * DEADLINE_MS / 1000  # the fault server's hang lasts 30 s
PATIENT_ID = "pt-gunicorn"
PATIENT = make_record(PATIENT_ID)["patient"][0]


@pytest.mark.slow
def test_hung_fhir_server_never_delays_the_answer_past_the_deadline(
    tmp_path: Path,
) -> None:
    env = {
        "CDS_AUTH": "disabled",
        "CDS_DEADLINE_MS": str(DEADLINE_MS),
        "CDS_FHIR_ALLOWLIST": "127.0.0.1",
        "CDS_FHIR_ALLOW_LOOPBACK": "true",
    }
    with (
        fault_server(lambda seen: Action(kind="hang")) as fhir,
        running_server(tmp_path, env, workers=1) as server,
    ):
        url = f"{server.base_url}/cds-services/diazepam-order-sign"

        def call(prefetch_patient: bool) -> tuple[int, float]:
            prefetch = {"patient": PATIENT} if prefetch_patient else None
            body = hook_body(PATIENT_ID, fhir_server=fhir.base_url, token="t", prefetch=prefetch)
            started = time.monotonic()
            response = requests.post(url, json=body, timeout=20)
            return response.status_code, time.monotonic() - started

        call(True)  # warm-up: first request builds the worker's validators and pools
        before = len(fhir.seen)
        with ThreadPoolExecutor(max_workers=4) as callers:
            results = list(callers.map(call, [True, True, False, False]))
        asked = len(fhir.seen) - before
        log = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    slowest = max(elapsed for _, elapsed in results)
    assert slowest < BOUND_S, f"{slowest * 1000:.0f} ms (the hang lasts 30 s)"
    assert [status for status, _ in results] == [200, 200, 412, 412]
    # every call did ask the server: 2 calls × 4 queries (patient prefetched), 2 calls × 5
    assert asked == 2 * 4 + 2 * 5
    # The cause, from the service's own log: each call (warm-up included) waited out its fetch
    # budget and every key it asked for timed out.
    hooks = [r for r in log if r.get("msg") == "request" and r.get("method") == "POST"]
    assert sorted(r["status"] for r in hooks) == [200, 200, 200, 412, 412]
    for line in hooks:
        assert line["duration_ms"] >= DEADLINE_MS - RENDER_RESERVE_MS - 5, line
        assert "fetch_ms" in line["timings_ms"], line
    data = [r["data_keys"] for r in log if "data_keys" in r]
    assert len(data) == 5
    for keys in data:
        fetched = {k: v for k, v in keys.items() if v != "prefetch"}
        assert len(fetched) in (4, 5) and set(fetched.values()) <= {"timeout", "deadline"}, keys
