"""The benchmark bodies are what the README claims: realistic, valid, and warm means no fetch."""

from __future__ import annotations

import json
from datetime import date

import pytest

from bench import payloads
from cds_service.fhir.prefetch import read_prefetch
from cds_service.hook_request import validate

ORDER_DAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def base() -> tuple[str, dict]:
    return payloads.pick_base(payloads.fixture_requests())


def _age(birth: str, on: date) -> int:
    born = date.fromisoformat(birth)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def test_large_request_has_the_sizes_the_issue_names_and_passes_the_service_schema(base):
    _, request = base
    body = payloads.large_request(request, today=ORDER_DAY)
    validate("order-sign", body)  # a 400 would benchmark the error path
    data = read_prefetch(body["prefetch"])
    assert data.missing == set()  # warm path: nothing left to fetch
    assert len(data.of("medications")) == 25
    assert all(r["status"] == "active" for r in data.of("medications"))
    assert len(data.of("conditions")) == 40
    assert len(data.of("observations")) == 10
    assert _age(data.patient["birthDate"], ORDER_DAY) == 78
    for key in ("medications", "conditions", "observations"):
        ids = [r["id"] for r in data.of(key)]
        assert len(ids) == len(set(ids)), key


def test_large_request_keeps_the_fixture_record_first_and_its_draft_orders(base):
    name, request = base
    body = payloads.large_request(request, today=ORDER_DAY)
    assert body["context"]["draftOrders"] == request["context"]["draftOrders"]
    own = payloads._prefetched(request, "observations")
    padded = payloads._prefetched(body, "observations")
    assert padded[: len(own)] == own
    if own:  # padding is older, so the fixture's latest kidney value stays the latest
        newest_own = max(r["effectiveDateTime"] for r in own)
        assert all(r["effectiveDateTime"] <= newest_own for r in padded[len(own) :])


def test_padding_skips_codes_the_fixture_already_has():
    request = json.loads(payloads.SANDBOX_SIGN.read_text())
    filler = json.loads(payloads.FILLER.read_text())
    code, display = filler["medications"][0]
    request["prefetch"] = {
        "medications": payloads.bundle([payloads._medication("p", 99, code, display, ORDER_DAY)])
    }
    body = payloads.large_request(request, today=ORDER_DAY)
    codes = [
        c["code"]
        for r in payloads._prefetched(body, "medications")
        for c in r["medicationCodeableConcept"]["coding"]
    ]
    assert codes.count(code) == 1
    assert len(codes) == 25


def test_pick_base_prefers_the_named_scenario_then_the_richest_diazepam_sign():
    draft = {"entry": [{"resource": {"medicationCodeableConcept": {"text": "Diazepam 5 MG"}}}]}
    poor = {"hook": "order-sign", "context": {"draftOrders": draft}, "prefetch": {}}
    rich = {
        "hook": "order-sign",
        "context": {"draftOrders": draft},
        "prefetch": {"conditions": payloads.bundle([{"resourceType": "Condition", "id": "c"}])},
    }
    other = {"hook": "order-sign", "context": {"draftOrders": {"entry": []}}, "prefetch": {}}
    assert payloads.pick_base([("a", poor), ("b", rich), ("c", other)], preferred="x")[0] == "b"
    assert payloads.pick_base([("a", poor), ("b", rich)], preferred="a")[0] == "a"
    assert payloads.pick_base([("c", other)])[0].startswith("sandbox:")


def test_small_request_is_the_sandbox_call_with_a_complete_minimal_prefetch():
    body = payloads.small_request(today=ORDER_DAY)
    sandbox = json.loads(payloads.SANDBOX_SIGN.read_text())
    validate("order-sign", body)
    assert body["context"] == sandbox["context"]
    data = read_prefetch(body["prefetch"])
    assert data.missing == set()
    assert _age(data.patient["birthDate"], ORDER_DAY) == 78


def test_cold_twin_drops_prefetch_and_points_at_the_fhir_server(base):
    body = payloads.large_request(base[1], today=ORDER_DAY)
    cold = payloads.without_prefetch(body, "http://127.0.0.1:9/fhir/", access_token="t")
    validate("order-sign", cold)
    assert "prefetch" not in cold and "prefetch" in body
    assert cold["fhirServer"] == "http://127.0.0.1:9/fhir"
    assert cold["fhirAuthorization"]["access_token"] == "t"
    resources = payloads.record_resources(body)
    assert len(resources) == 1 + 25 + 40 + 10 + len(payloads._prefetched(body, "allergies"))


@pytest.mark.parametrize(
    ("today", "age"), [(date(2026, 3, 1), 78), (date(2024, 3, 1), 78), (date(2026, 6, 30), 40)]
)
def test_birth_date_gives_the_age_for_the_next_months(today, age):
    birth = payloads.birth_date_for_age(age, today)
    assert _age(birth, today) == age
    assert _age(birth, date.fromordinal(today.toordinal() + 90)) == age
