"""Latency figures that used to be test assertions, measured here where a slow machine makes a
number worse instead of making a test fail.

- ``engine``: the clinical engine alone (``Engine.advise``) on the sandbox order-sign request,
  everything prefetched — the hot path between parsing and rendering (was
  ``tests/clinical/test_engine.py::test_hot_path_is_fast``, median under 25 ms).
- ``deadline``: the in-process app against the loopback fault server of the FHIR tests
  (``tests/fhir/fault_server.py``): how long after the deadline the hook answers when the FHIR
  server hangs (patient prefetched, and not: the 412), how long four 250 ms queries take
  together, and how fast a broken answer is reported (was the deadline + 100 ms, 2.5 × 250 ms
  and under-the-deadline bounds of ``tests/fhir/test_faults.py`` and
  ``test_deadline_gunicorn.py``; the tests now prove the behaviour without a clock bound).
"""

from __future__ import annotations

import copy
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import percentile

DEADLINE_MS = 600
SIGN = "/cds-services/diazepam-order-sign"


def _summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(percentile(ordered, 95), 2),
        "max_ms": round(ordered[-1], 2),
    }


def engine_hot_path(runs: int = 200) -> dict[str, Any]:
    from cds_service.clinical.engine import Engine
    from cds_service.config import load_settings
    from cds_service.fhir.prefetch import read_prefetch
    from cds_service.hook_request import build_hook_request
    from tests.conftest import DATA, load_json
    from tests.fhir.records import DIAZEPAM_SIGN

    body = copy.deepcopy(load_json(DATA / "sandbox" / f"{DIAZEPAM_SIGN}.json"))
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": "1948-03-02"},
        **{key: dict(empty) for key in ("medications", "conditions", "observations", "allergies")},
    }
    engine = Engine.from_settings(load_settings(environ={}, overrides={"auth": "disabled"}))
    request = build_hook_request(body)
    data = read_prefetch(body["prefetch"])
    times = []
    for i in range(runs + 20):
        started = time.perf_counter()
        cards = engine.advise(request, engine.orders_in_scope(request), data, "standard", {})
        if i >= 20:  # warm-up
            times.append((time.perf_counter() - started) * 1000)
    return {"request": DIAZEPAM_SIGN, "cards": len(cards), **_summary(times)}


def deadline_figures(attempts: int = 10) -> dict[str, Any]:
    from cds_service.app import create_app
    from cds_service.discovery import PREFETCH_TEMPLATES
    from tests.fhir.fault_server import Action, fault_server, json_action
    from tests.fhir.records import hook_body, make_record, searchset

    patient_id = "pt-bench-deadline"
    record = make_record(patient_id)
    optional = sorted(set(PREFETCH_TEMPLATES) - {"patient"})
    logging.getLogger().setLevel(logging.ERROR)  # the warnings per call are expected here

    def healthy(seen: Any) -> Action:
        kind = seen.path.split("?")[0].removeprefix("/fhir/").split("/")[0]
        key = {
            "MedicationRequest": "medications",
            "Condition": "conditions",
            "Observation": "observations",
            "AllergyIntolerance": "allergies",
        }.get(kind)
        if kind == "Patient":
            return json_action(record["patient"][0])
        return json_action(searchset(record[key])) if key else Action(status=404)

    work = Path(tempfile.mkdtemp(prefix="bench-deadline-"))

    def app(deadline_ms: int) -> Any:
        return create_app(
            {
                "auth": "disabled",
                "data_dir": str(work / "data"),
                "deadline_ms": deadline_ms,
                "fhir_allowlist": ("127.0.0.1",),
                "fhir_allow_loopback": True,
                "log_level": "ERROR",
            }
        ).test_client()

    def timed(client: Any, base: str, prefetched: bool) -> tuple[int, float]:
        prefetch = {"patient": record["patient"][0]} if prefetched else None
        body = hook_body(patient_id, fhir_server=base, token="t", prefetch=prefetch)
        started = time.perf_counter()
        status = client.post(SIGN, json=body).status_code
        return status, (time.perf_counter() - started) * 1000

    out: dict[str, Any] = {"deadline_ms": DEADLINE_MS}
    client = app(DEADLINE_MS)
    with fault_server(lambda seen: Action(kind="hang")) as server:
        for prefetched, name in ((True, "hung_fhir_200"), (False, "hung_fhir_412")):
            runs = [timed(client, server.base_url, prefetched) for _ in range(attempts)]
            out[name] = {"statuses": sorted({s for s, _ in runs}), **_summary([t for _, t in runs])}
    delay_s = 0.25

    def slow(seen: Any) -> Action:
        action = healthy(seen)
        action.delay_s = delay_s
        return action

    client = app(2000)
    with fault_server(slow) as server:
        runs = [timed(client, server.base_url, True) for _ in range(attempts)]
    out["four_queries_of_250_ms"] = {
        "queries": len(optional),
        "sequential_would_take_ms": len(optional) * delay_s * 1000,
        **_summary([t for _, t in runs]),
    }
    with fault_server(lambda seen: Action(status=500, body=b"oops")) as server:
        runs = [timed(client, server.base_url, True) for _ in range(attempts)]
    out["broken_fhir_500"] = _summary([t for _, t in runs])
    shutil.rmtree(work, ignore_errors=True)
    return out


def measure() -> dict[str, Any]:
    return {"engine": engine_hot_path(), "deadline": deadline_figures()}


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
