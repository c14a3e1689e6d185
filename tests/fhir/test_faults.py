"""Faults a real FHIR server will not produce on demand: hangs, resets, 500s, garbage, slow pages.

Served by a tiny loopback server of our own (``fault_server.py``). Whatever the FHIR server
does, the deadline ends the wait and the hook answers, never with a 500.

How that is proved without a wall-clock bound that CPU starvation could fail: every fault lasts
30 s (or forever), far beyond the deadline, so "the deadline bounded the answer" is checked as
an answer within ``BOUND_S`` (10 × the deadline, still 5× less than the fault); the cause is
then asserted from what the service itself recorded — the problem code of each key (timeout /
deadline) and, in its request log line, a duration that reached the deadline (a lower bound,
which starvation can only help). How close to the deadline the answer comes is a latency figure:
``make bench`` measures it (``bench/latency.py``).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.fhir.deadline import RENDER_RESERVE_MS
from tests.fhir.fault_server import Action, FaultServer, Seen, fault_server, json_action
from tests.fhir.records import card_data, hook_body, make_record, searchset

DEADLINE_MS = 600
FAULT_S = 30.0  # how long a hung or slow fault lasts: 50 deadlines
BOUND_S = 10 * DEADLINE_MS / 1000  # an answer within this was ended by the deadline, not the fault
LONG_DEADLINE_MS = 20_000  # for tests where the deadline must play no part
OPTIONAL = sorted(set(PREFETCH_TEMPLATES) - {"patient"})
TOKEN = "fault-test-token-91c2"
PATIENT_ID = "pt-fault"
RECORD = make_record(PATIENT_ID, conditions=2)


def resource_type(seen: Seen) -> str:
    return seen.path.split("?")[0].removeprefix("/fhir/").split("/")[0]


def healthy(seen: Seen) -> Action:
    """A well-behaved server holding RECORD."""
    kind = resource_type(seen)
    if kind == "Patient":
        return json_action(RECORD["patient"][0])
    key = {
        "MedicationRequest": "medications",
        "Condition": "conditions",
        "Observation": "observations",
        "AllergyIntolerance": "allergies",
    }.get(kind)
    if key is None:
        return json_action({"resourceType": "OperationOutcome"}, status=404)
    return json_action(searchset(RECORD[key]))


def except_for(kinds: set[str], action: Callable[[Seen], Action]) -> Callable[[Seen], Action]:
    """Misbehave (``action``) only for the given resource types; healthy otherwise."""

    def behave(seen: Seen) -> Action:
        return action(seen) if resource_type(seen) in kinds else healthy(seen)

    return behave


def call(echo_app, base_url: str, *, patient_prefetched: bool = True, **settings: Any):
    prefetch = {"patient": RECORD["patient"][0]} if patient_prefetched else None
    body = hook_body(PATIENT_ID, fhir_server=base_url, token=TOKEN, prefetch=prefetch)
    app = echo_app(deadline_ms=settings.pop("deadline_ms", DEADLINE_MS), **settings)
    client = app.test_client()
    started = time.monotonic()
    response = client.post("/cds-services/diazepam-order-sign", json=body)
    return response, time.monotonic() - started


def request_log(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The service's own log line for the (last) hook call."""
    lines = [r for r in caplog.records if r.getMessage() == "request" and hasattr(r, "status")]
    assert lines, "no request log line"
    return lines[-1]


def data_log(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """Per prefetch key, how the service says it got it (``prefetch``/``fetched``) or why not."""
    lines = [r for r in caplog.records if hasattr(r, "data_keys")]
    assert lines, "no patient-data log line"
    return dict(lines[-1].data_keys)


def call_ended_by_deadline(echo_app, server: FaultServer, caplog, **kwargs: Any):
    """``call`` against a server whose faults outlast the deadline many times over; asserts the
    deadline, not the fault, ended the wait (see the module docstring). Returns the response,
    the service's per-key data codes and the requests the FHIR server saw."""
    before = len(server.seen)
    with caplog.at_level(logging.INFO):
        response, elapsed = call(echo_app, server.base_url, **kwargs)
    assert elapsed < BOUND_S, f"answered after {elapsed * 1000:.0f} ms (fault lasts {FAULT_S} s)"
    line = request_log(caplog)
    # It waited for the deadline (budget minus the render reserve), not less: the timeout codes
    # below come from the deadline passing, not from giving up early.
    assert line.duration_ms >= DEADLINE_MS - RENDER_RESERVE_MS - 5, line.duration_ms
    assert "fetch_ms" in line.timings_ms, line.timings_ms
    return response, data_log(caplog), server.seen[before:]


HANG = Action(kind="hang")  # holds the connection for FAULT_S
SLOW = Action(kind="respond", delay_s=FAULT_S, body=b"{}")


@pytest.mark.parametrize("action", [HANG, SLOW], ids=["hang", "slow"])
def test_hung_or_slow_server_degrades_at_the_deadline(echo_app, action: Action, caplog) -> None:
    with fault_server(lambda seen: action) as server:
        response, logged, requests_seen = call_ended_by_deadline(echo_app, server, caplog)
    assert response.status_code == 200
    seen = card_data(response.get_json())
    assert seen["missing"] == OPTIONAL
    assert set(seen["problems"].values()) <= {"timeout", "deadline"}
    assert {k: v for k, v in logged.items() if k != "patient"} == seen["problems"]
    assert logged["patient"] == "prefetch"
    # and it did try: every optional query was sent
    assert len(requests_seen) == len(OPTIONAL)


@pytest.mark.parametrize("action", [HANG, SLOW], ids=["hang", "slow"])
def test_hung_server_and_no_patient_is_a_412_at_the_deadline(echo_app, action, caplog) -> None:
    with fault_server(lambda seen: action) as server:
        response, logged, requests_seen = call_ended_by_deadline(
            echo_app, server, caplog, patient_prefetched=False
        )
    assert response.status_code == 412
    assert logged["patient"] in ("timeout", "deadline")
    assert len(requests_seen) == 1 + len(OPTIONAL)  # it did ask, once per key
    assert (
        "did not answer within the deadline (600 ms)"
        in response.get_json()["issue"][0]["diagnostics"]
    )


def test_trickling_body_is_cut_off_at_the_deadline(echo_app, caplog) -> None:
    trickle = Action(kind="trickle", body=b'{"resourceType":"Bundle"' + b" " * 400 + b"}")
    trickle.delay_s = FAULT_S / 400  # 400+ bytes, each well within any read timeout: ≈ 30 s
    with fault_server(except_for({"Condition"}, lambda seen: trickle)) as server:
        response, logged, _ = call_ended_by_deadline(echo_app, server, caplog)
    assert response.status_code == 200
    assert logged["conditions"] in ("timeout", "deadline")
    seen = card_data(response.get_json())
    assert seen["missing"] == ["conditions"]
    assert seen["problems"]["conditions"] in ("timeout", "deadline")
    assert seen["counts"]["medications"] == 1


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        (Action(kind="reset"), "connection-failed"),
        (Action(status=500, body=b"<html>oops</html>"), "http-500"),
        (Action(body=b"{not json", headers={"Content-Type": "application/fhir+json"}), None),
        (json_action(["a", "list"]), "not-a-resource"),
        (json_action({"resourceType": "Patient", "id": "x"}), "not-a-bundle"),
    ],
    ids=["reset", "500", "garbage-json", "json-not-a-resource", "wrong-resource"],
)
def test_broken_answers_degrade_fast_and_never_500(echo_app, action, problem) -> None:
    # Failures are reported at once, not waited out (nor retried): with a 20 s deadline, an
    # answer within half of it, after one request per key, was not waiting for the deadline.
    with fault_server(except_for({"Condition", "Observation"}, lambda seen: action)) as server:
        response, elapsed = call(echo_app, server.base_url, deadline_ms=LONG_DEADLINE_MS)
    assert response.status_code == 200
    assert elapsed < LONG_DEADLINE_MS / 1000 / 2, f"{elapsed:.1f} s"
    assert sorted(resource_type(s) for s in server.seen) == [
        "AllergyIntolerance",
        "Condition",
        "MedicationRequest",
        "Observation",
    ]
    seen = card_data(response.get_json())
    assert seen["missing"] == ["conditions", "observations"]
    expected = problem or "invalid-json"
    assert seen["problems"] == {"conditions": expected, "observations": expected}
    assert seen["counts"]["allergies"] == 1 and seen["counts"]["medications"] == 1


def test_gzip_encoded_answers_are_decoded(echo_app) -> None:
    def behave(seen: Seen) -> Action:
        action = healthy(seen)
        action.body = gzip.compress(action.body)
        action.headers["Content-Encoding"] = "gzip"
        return action

    with fault_server(behave) as server:
        response, _ = call(echo_app, server.base_url, patient_prefetched=False)
    assert response.status_code == 200
    seen = card_data(response.get_json())
    assert seen["missing"] == []
    assert seen["counts"]["conditions"] == 2 and seen["patient"] == PATIENT_ID


def test_garbage_patient_read_is_412_not_500(echo_app) -> None:
    garbage = Action(body=b"\xff\xfe garbage", headers={"Content-Type": "application/fhir+json"})
    with fault_server(except_for({"Patient"}, lambda seen: garbage)) as server:
        response, _ = call(echo_app, server.base_url, patient_prefetched=False)
    assert response.status_code == 412
    assert "invalid JSON" in response.get_json()["issue"][0]["diagnostics"]


def test_requests_carry_the_token_and_fhir_json_and_skip_null_keys(echo_app) -> None:
    with fault_server(healthy) as server:
        prefetch = {"patient": RECORD["patient"][0], "allergies": None}
        body = hook_body(PATIENT_ID, fhir_server=server.base_url, token=TOKEN, prefetch=prefetch)
        response = echo_app().test_client().post("/cds-services/diazepam-order-sign", json=body)
    assert response.status_code == 200
    kinds = sorted(resource_type(s) for s in server.seen)
    assert kinds == ["Condition", "MedicationRequest", "Observation"]  # no AllergyIntolerance
    for seen in server.seen:
        assert seen.headers["authorization"] == f"Bearer {TOKEN}"
        assert seen.headers["accept"] == "application/fhir+json"
        assert f"patient={PATIENT_ID}" in seen.path
        assert "cookie" not in seen.headers


def test_queries_run_in_parallel(echo_app) -> None:
    """The server answers no query until all four are in flight at once: sent one after the
    other, the first would wait at the barrier for 10 s and break it. No clock involved."""
    all_in_flight = threading.Barrier(len(OPTIONAL), timeout=10)

    def behave(seen: Seen) -> Action:
        try:
            all_in_flight.wait()
        except threading.BrokenBarrierError:
            return Action(status=500, body=b"not all queries in flight together")
        return healthy(seen)

    with fault_server(behave) as server:
        response, _ = call(echo_app, server.base_url, deadline_ms=LONG_DEADLINE_MS)
    assert response.status_code == 200
    assert not all_in_flight.broken
    assert card_data(response.get_json())["missing"] == []
    assert len(server.seen) == 4


def test_one_retry_on_429_when_time_allows(echo_app) -> None:
    calls: dict[str, int] = {}

    def behave(seen: Seen) -> Action:
        kind = resource_type(seen)
        calls[kind] = calls.get(kind, 0) + 1
        if kind == "Condition" and calls[kind] == 1:
            return Action(status=429, headers={"Retry-After": "0"})
        if kind == "Observation":
            return Action(status=503)  # always unavailable
        if kind == "AllergyIntolerance":
            return Action(status=429, headers={"Retry-After": "30"})  # longer than the deadline
        return healthy(seen)

    with fault_server(behave) as server:
        response, _ = call(echo_app, server.base_url)
    seen = card_data(response.get_json())
    assert seen["counts"]["conditions"] == 2  # second attempt worked
    assert seen["problems"] == {"observations": "http-503", "allergies": "http-429"}
    assert calls == {
        "Condition": 2,
        "Observation": 2,
        "AllergyIntolerance": 1,
        "MedicationRequest": 1,
    }
    assert len(server.seen) == 6


def test_redirects_are_not_followed(echo_app) -> None:
    with fault_server(healthy) as elsewhere:
        moved = Action(status=302, headers={"Location": f"{elsewhere.base_url}/Condition"})
        with fault_server(except_for({"Condition"}, lambda seen: moved)) as server:
            response, _ = call(echo_app, server.base_url)
    assert card_data(response.get_json())["problems"] == {"conditions": "http-302"}
    assert elsewhere.seen == []  # the token never went there


def test_next_pages_are_followed_only_on_the_same_server(echo_app) -> None:
    def behave(seen: Seen) -> Action:
        # `server` / `elsewhere` are bound by the `with` blocks before any request arrives
        if resource_type(seen) == "Condition":
            if "page=2" in seen.path:
                return json_action(searchset(RECORD["conditions"][1:]))
            return json_action(
                searchset(RECORD["conditions"][:1], f"{server.base_url}/Condition?page=2")
            )
        if resource_type(seen) == "Observation":
            return json_action(
                searchset(RECORD["observations"], f"{elsewhere.base_url}/Observation?page=2")
            )
        return healthy(seen)

    with fault_server(healthy) as elsewhere, fault_server(behave) as server:
        response, _ = call(echo_app, server.base_url)
    seen = card_data(response.get_json())
    assert seen["counts"]["conditions"] == 2  # both pages
    assert seen["missing"] == ["observations"]
    assert seen["problems"]["observations"] == "incomplete-next-link-other-server"
    assert seen["counts"]["observations"] == 1  # the first page is still there
    assert elsewhere.seen == []


def test_slow_second_page_keeps_the_first_and_answers_at_the_deadline(echo_app, caplog) -> None:
    def behave(seen: Seen) -> Action:
        if resource_type(seen) == "Condition":
            if "page=2" in seen.path:
                return HANG
            return json_action(
                searchset(RECORD["conditions"][:1], f"{server.base_url}/Condition?page=2")
            )
        return healthy(seen)

    with fault_server(behave) as server:
        response, logged, requests_seen = call_ended_by_deadline(echo_app, server, caplog)
    seen = card_data(response.get_json())
    assert logged["conditions"] == "incomplete-timeout"
    assert seen["counts"]["conditions"] == 1
    assert seen["problems"] == {"conditions": "incomplete-timeout"}
    assert [resource_type(s) for s in requests_seen].count("Condition") == 2
