"""The compose stack's FHIR loader (deploy/fhir_seed.py): bundle building on the shipped
fixtures, its waiting and failure handling, and a real load into a real FHIR server."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Request, Response

from tests.deploy.deploy_files import REPO
from tests.support import fhir_server
from tests.support.gate import require_fhir_server

SCRIPT = REPO / "deploy" / "fhir_seed.py"
FIXTURES = REPO / "fixtures"


def _load_module() -> Any:
    spec = importlib.util.spec_from_file_location("fhir_seed", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fhir_seed"] = module
    spec.loader.exec_module(module)
    return module


seed = _load_module()


def fixture_paths() -> list[Path]:
    return sorted(FIXTURES.rglob("*.json")) if FIXTURES.is_dir() else []


needs_fixtures = pytest.mark.skipif(
    not any(
        seed.hook_request_of(json.loads(p.read_text(encoding="utf-8"))) for p in fixture_paths()
    ),
    reason="no fixtures with a prefetch-carrying request yet in fixtures/",
)


def _write(tmp: Path, name: str, prefetch: dict[str, Any], patient_id: str = "p1") -> Path:
    body = {
        "name": name,
        "request": {
            "hook": "order-sign",
            "hookInstance": "00000000-0000-4000-8000-000000000000",
            "context": {"patientId": patient_id, "userId": "Practitioner/u", "draftOrders": {}},
            "prefetch": prefetch,
        },
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def _searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
COND = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}


# --- bundle building on the shipped fixtures ---------------------------------------------


@needs_fixtures
def test_fixtures_agree_on_every_shared_resource() -> None:
    collected = seed.collect(fixture_paths())
    # One FHIR server holds one version of each resource: two scenarios giving the same id
    # different content would make the no-prefetch path read the wrong chart.
    assert collected.conflicts == []
    assert collected.resources


@needs_fixtures
def test_every_fixture_patient_and_prefetched_resource_is_in_the_bundle() -> None:
    bundle = seed.transaction_bundle(seed.collect(fixture_paths()).resources, "http://h/fhir")
    by_url = {e["request"]["url"]: e for e in bundle["entry"]}
    assert len(by_url) == len(bundle["entry"]), "one entry per resource"
    for path in fixture_paths():
        request = seed.hook_request_of(json.loads(path.read_text(encoding="utf-8")))
        if request is None:
            continue
        patient_id = request["context"]["patientId"]
        prefetched_patient = request["prefetch"].get("patient")
        if isinstance(prefetched_patient, dict):
            assert f"Patient/{patient_id}" in by_url, path.name
        for key, value in request["prefetch"].items():
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                for entry in value.get("entry", []):
                    r = entry["resource"]
                    ref = f"{r['resourceType']}/{r['id']}"
                    assert by_url[ref]["resource"] == r, f"{path.name} {key} {ref}"
    for entry in bundle["entry"]:
        resource, req = entry["resource"], entry["request"]
        assert req == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        assert entry["fullUrl"] == f"http://h/fhir/{req['url']}"
        assert resource["resourceType"] not in ("OperationOutcome", "Bundle")


@needs_fixtures
def test_fixture_bundle_is_valid_fhir_r4() -> None:
    from fhir.resources.R4B.bundle import Bundle

    bundle = seed.transaction_bundle(seed.collect(fixture_paths()).resources, "http://h/fhir")
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "transaction"
    assert len(parsed.entry) == len(bundle["entry"])


@needs_fixtures
def test_dry_run_prints_the_bundle_it_would_send(capsys: pytest.CaptureFixture[str]) -> None:
    assert seed.main(["--dry-run", "--base", "http://hapi:8080/fhir", str(FIXTURES)]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = seed.transaction_bundle(
        seed.collect(fixture_paths()).resources, "http://hapi:8080/fhir"
    )
    assert printed == expected


# --- bundle building rules on small inputs -----------------------------------------------


def test_prefetch_shapes_are_flattened_and_non_chart_answers_dropped(tmp_path: Path) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    nested = _searchset(COND, _searchset({"resourceType": "Observation", "id": "o1"}))
    path = _write(
        tmp_path,
        "s",
        {"patient": PATIENT, "conditions": nested, "medications": None, "allergies": outcome},
    )
    collected = seed.collect([path])
    assert sorted(collected.resources) == ["Condition/c1", "Observation/o1", "Patient/p1"]


def test_identical_duplicates_merge_and_differences_are_conflicts(tmp_path: Path) -> None:
    a = _write(tmp_path, "a", {"patient": PATIENT})
    b = _write(tmp_path, "b", {"patient": dict(PATIENT)})
    c = _write(tmp_path, "c", {"patient": {**PATIENT, "birthDate": "1990-01-01"}})
    assert seed.collect([a, b]).conflicts == []
    collected = seed.collect([a, c])
    assert collected.conflicts == ["Patient/p1: a.json differs from c.json"]
    assert collected.resources["Patient/p1"] == PATIENT  # the first fixture wins
    assert seed.main(["--dry-run", str(a), str(c)]) == 1
    assert seed.main(["--dry-run", "--allow-conflicts", str(a), str(c)]) == 0


def test_resources_without_id_are_reported_not_posted(tmp_path: Path) -> None:
    no_id = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}}
    path = _write(tmp_path, "s", {"patient": PATIENT, "conditions": _searchset(no_id)})
    collected = seed.collect([path])
    assert list(collected.resources) == ["Patient/p1"]
    assert collected.skipped == ["s.json: conditions: Condition has no id"]


def test_referenced_kinds_come_first(tmp_path: Path) -> None:
    med = {"resourceType": "MedicationRequest", "id": "m1", "subject": {"reference": "Patient/p1"}}
    path = _write(
        tmp_path,
        "s",
        {"medications": _searchset(med), "conditions": _searchset(COND), "patient": PATIENT},
    )
    urls = [
        e["request"]["url"]
        for e in seed.transaction_bundle(seed.collect([path]).resources)["entry"]
    ]
    assert urls[0] == "Patient/p1"
    assert "fullUrl" not in seed.transaction_bundle(seed.collect([path]).resources)["entry"][0]


def test_unusable_inputs_fail_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    assert seed.main(["--dry-run", str(tmp_path)]) == 1
    assert "broken.json: not readable JSON" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert seed.main(["--dry-run", str(empty)]) == 1
    assert "no fixture files" in capsys.readouterr().err


# --- talking to a server -----------------------------------------------------------------


def _transaction_response(bundle: dict[str, Any], status: str = "201 Created") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"response": {"status": status}} for _ in bundle["entry"]],
    }


def test_loader_waits_for_a_starting_server_then_posts(tmp_path: Path, httpserver) -> None:
    # HAPI takes a minute to start and has no health check: the loader must poll /metadata.
    path = _write(tmp_path, "s", {"patient": PATIENT, "conditions": _searchset(COND)})
    calls = {"metadata": 0}
    posted: list[dict[str, Any]] = []

    def metadata(request: Request) -> Response:
        calls["metadata"] += 1
        return Response("starting", status=503 if calls["metadata"] < 3 else 200)

    def transaction(request: Request) -> Response:
        posted.append(json.loads(request.get_data()))
        assert request.headers["Content-Type"] == "application/fhir+json"
        assert request.headers["Authorization"] == "Bearer seed-token"
        return Response(json.dumps(_transaction_response(posted[-1])), status=200)

    httpserver.expect_request("/fhir/metadata").respond_with_handler(metadata)
    httpserver.expect_request("/fhir", method="POST").respond_with_handler(transaction)
    base = httpserver.url_for("/fhir")
    env = {**os.environ, "FHIR_SEED_TOKEN": "seed-token"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--base", base, "--wait", "20", "--poll", "0.05", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert calls["metadata"] == 3
    assert len(posted) == 1
    assert posted[0] == seed.transaction_bundle(seed.collect([path]).resources, base)
    assert json.loads(result.stdout) == {"loaded": 2, "fixtures": 1, "base": base}
    assert "seed-token" not in result.stdout + result.stderr


def test_loader_gives_up_when_the_server_never_comes(tmp_path: Path, httpserver) -> None:
    path = _write(tmp_path, "s", {"patient": PATIENT})
    httpserver.expect_request("/fhir/metadata").respond_with_data("down", status=503)
    base = httpserver.url_for("/fhir")
    code = seed.main(["--base", base, "--wait", "0.3", "--poll", "0.05", str(path)])
    assert code == 1


def test_a_refused_entry_fails_the_load(tmp_path: Path, httpserver, capsys) -> None:
    path = _write(tmp_path, "s", {"patient": PATIENT, "conditions": _searchset(COND)})
    bundle = seed.transaction_bundle(seed.collect([path]).resources)
    answer = _transaction_response(bundle)
    answer["entry"][1]["response"]["status"] = "400 Bad Request"
    httpserver.expect_request("/fhir", method="POST").respond_with_json(answer)
    assert seed.main(["--base", httpserver.url_for("/fhir"), str(path)]) == 1
    assert "400 Bad Request" in capsys.readouterr().err
    httpserver.clear()
    httpserver.expect_request("/fhir", method="POST").respond_with_data("nope", status=422)
    assert seed.main(["--base", httpserver.url_for("/fhir"), str(path)]) == 1
    assert "HTTP 422" in capsys.readouterr().err


@pytest.mark.slow
@needs_fixtures
def test_fixtures_load_into_a_real_fhir_server(tmp_path: Path) -> None:
    require_fhir_server()  # skips, or fails in CI (tests/support/gate.py)
    server = fhir_server.start_fhir_server(tmp_path / "fhir")
    try:
        env = {**os.environ, "FHIR_SEED_TOKEN": server.token}
        args = [sys.executable, str(SCRIPT), "--base", server.base_url, "--wait", "10"]
        for _ in range(2):  # PUT makes a second run a no-op, not a duplicate load
            result = subprocess.run(
                [*args, str(FIXTURES)], env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, result.stderr + server.log_text()[-3000:]
        resources = seed.collect(fixture_paths()).resources
        assert json.loads(result.stdout)["loaded"] == len(resources)
        for ref, resource in resources.items():
            response = server.get(ref)
            assert response.status_code == 200, ref
            stored = response.json()
            assert {k: v for k, v in stored.items() if k != "meta"} == {
                k: v for k, v in resource.items() if k != "meta"
            }, ref
        # Searches the service would run on the no-prefetch path find the loaded chart.
        patients = [r for r in resources if r.startswith("Patient/")]
        conditions = {r for r in resources if r.startswith("Condition/")}
        found: set[str] = set()
        for ref in patients:
            bundle = server.get(f"Condition?patient={ref.split('/')[1]}&_count=200").json()
            found |= {f"Condition/{e['resource']['id']}" for e in bundle.get("entry", [])}
        assert found == conditions
    finally:
        server.stop()
