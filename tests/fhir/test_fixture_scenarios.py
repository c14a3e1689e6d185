"""No prefetch at all, against a real FHIR server, gives the same cards as full prefetch.

For every clinical fixture (``fixtures/scenarios/*.json``): its prefetched resources are loaded
into the real FHIR server, the same request is sent once as written (fully prefetched) and once
with ``prefetch`` removed and ``fhirServer`` pointing at the server, and the two answers are
compared as a clinician would read them: topics with their indicators, the recommended
alternative, the alternatives offered and the duration cap. Wording and uuids do not matter.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.compare import observe
from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.fhir.queries import build_query
from tests.conftest import load_json
from tests.support.fhir_server import FhirServer

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"
PATHS = sorted(SCENARIOS.glob("*.json")) if SCENARIOS.is_dir() else []


def prefetched_resources(prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for key in PREFETCH_TEMPLATES:
        value = prefetch.get(key)
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry") or [] if "resource" in e]
        else:
            resources.append(value)
    return [r for r in resources if r.get("resourceType") != "OperationOutcome"]


def semantic(body: dict[str, Any]) -> dict[str, Any]:
    seen = observe(body.get("cards") or [])
    return {
        "topics": {topic: sorted(seen.indicators(topic)) for topic in sorted(seen.topics)},
        "recommended": sorted(seen.recommended),
        "created": sorted(seen.created),
        "capped_days": sorted(seen.capped_days),
    }


def server_view(server: FhirServer, patient_id: str) -> dict[str, list[str]]:
    """What the server returns per prefetch query: to tell fixture/server gaps from engine ones."""
    view = {}
    for key in PREFETCH_TEMPLATES:
        query = build_query(key, patient_id)
        body = server.get(query.relative_url).json()
        found = [e["resource"] for e in body.get("entry", [])] if query.is_read is False else [body]
        view[key] = sorted(f"{r['resourceType']}/{r.get('id')}" for r in found)
    return view


@pytest.fixture(scope="module")
def scenario_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """One app for every fixture (building one costs more than a fixture's two calls). The
    fixtures name different patients and drafts, so no answer depends on an earlier one."""
    data_dir = tmp_path_factory.mktemp("scenarios") / "data"
    return create_app(
        {
            "auth": "disabled",
            "data_dir": str(data_dir),
            "fhir_allowlist": ("127.0.0.1",),
            "fhir_allow_loopback": True,
            "deadline_ms": 5000,
        }
    )


def test_fixture_scenarios_exist() -> None:
    if not PATHS:
        pytest.skip(f"no clinical fixtures in {SCENARIOS} yet")
    assert all(p.suffix == ".json" for p in PATHS)


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_no_prefetch_gives_the_same_cards_as_full_prefetch(
    path: Path, fhir_server: FhirServer, scenario_app: Flask
) -> None:
    fixture = load_json(path)
    request = fixture["request"]
    prefetch = request.get("prefetch") or {}
    resources = prefetched_resources(prefetch)
    if resources:
        fhir_server.transaction(resources)
    client = scenario_app.test_client()
    url = f"/cds-services/{fixture['service']}"

    prefetched = client.post(url, json=request)
    fetched_request = copy.deepcopy(request)
    fetched_request.pop("prefetch", None)
    fetched_request["fhirServer"] = fhir_server.base_url
    fetched_request["fhirAuthorization"] = {
        "access_token": fhir_server.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/*.read",
        "subject": "diazepam-cds",
    }
    fetched = client.post(url, json=fetched_request)

    assert prefetched.status_code == fetched.status_code, fetched.get_data(as_text=True)[:500]
    if prefetched.status_code != 200:
        return
    want, got = semantic(prefetched.get_json()), semantic(fetched.get_json())
    if want != got:
        patient_id = request["context"]["patientId"]
        prefetch_view = {
            key: sorted(
                f"{r['resourceType']}/{r.get('id')}" for r in prefetched_resources({key: value})
            )
            for key, value in prefetch.items()
        }
        pytest.fail(
            f"{fixture['name']}: cards differ without prefetch\n"
            f"  prefetched: {want}\n  fetched:    {got}\n"
            f"  prefetch held: {prefetch_view}\n"
            f"  server returns: {server_view(fhir_server, patient_id)}"
        )
    # the comparison means something only where the engine has something to say
    required = [t for t, spec in fixture["expected"]["topics"].items() if not spec.get("optional")]
    if required:
        assert want["topics"], f"{fixture['name']}: no cards even with full prefetch"
