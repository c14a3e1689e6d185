"""Prefetch semantics (CDS Hooks 2.0 §3) and the fallback queries built from discovery."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from cds_service.discovery import KIDNEY_LOINC, PREFETCH_TEMPLATES
from cds_service.fhir.prefetch import read_prefetch
from cds_service.fhir.queries import build_query
from tests.fhir.records import full_prefetch, make_record, searchset

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "upstream timed out"}],
}


def test_full_prefetch_is_used_as_is() -> None:
    record = make_record("p1", conditions=2)
    data = read_prefetch(full_prefetch(record))
    assert data.missing == set()
    assert data.patient == record["patient"][0]
    assert [c["id"] for c in data.of("conditions")] == ["p1-c0", "p1-c1"]


def test_absent_keys_and_absent_prefetch_are_missing() -> None:
    assert read_prefetch(None).missing == set(PREFETCH_TEMPLATES)
    data = read_prefetch({"patient": make_record("p1")["patient"][0]})
    assert data.missing == set(PREFETCH_TEMPLATES) - {"patient"}
    assert data.problems["conditions"] == "prefetch-absent"


def test_null_means_known_empty_not_missing() -> None:
    prefetch = full_prefetch(make_record("p1"))
    prefetch["allergies"] = None
    data = read_prefetch(prefetch)
    assert "allergies" not in data.missing
    assert data.of("allergies") == []
    assert data.empty == {"allergies"}


def test_operation_outcome_whole_or_in_bundle_means_not_obtained() -> None:
    record = make_record("p1")
    prefetch = full_prefetch(record)
    prefetch["conditions"] = OUTCOME
    bundle = searchset(record["medications"])
    bundle["entry"].append({"resource": OUTCOME, "search": {"mode": "outcome"}})
    prefetch["medications"] = bundle
    data = read_prefetch(prefetch)
    assert data.problems == {
        "conditions": "prefetch-outcome",
        "medications": "prefetch-outcome",
    }
    # the part before the error is kept but the key stays missing (incomplete)
    assert len(data.of("medications")) == 1


def test_informational_outcome_in_bundle_is_not_a_failure() -> None:
    bundle = searchset(make_record("p1")["conditions"])
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "informational"}],
            },
            "search": {"mode": "outcome"},
        }
    )
    prefetch = full_prefetch(make_record("p1"))
    prefetch["conditions"] = bundle
    data = read_prefetch(prefetch)
    assert "conditions" not in data.missing
    assert [r["resourceType"] for r in data.of("conditions")] == ["Condition"]


def test_patient_value_without_a_patient_is_fetched() -> None:
    prefetch = full_prefetch(make_record("p1"))
    prefetch["patient"] = searchset([])
    data = read_prefetch(prefetch)
    assert data.patient is None
    assert data.problems["patient"] == "prefetch-invalid"


def test_next_link_is_recorded_for_following() -> None:
    prefetch = full_prefetch(make_record("p1"))
    prefetch["conditions"] = searchset([], next_url="https://ehr/fhir/Condition?page=2")
    data = read_prefetch(prefetch)
    assert data.next_pages == {"conditions": "https://ehr/fhir/Condition?page=2"}


@pytest.mark.parametrize("key", sorted(PREFETCH_TEMPLATES))
def test_queries_match_discovery_templates(key: str) -> None:
    query = build_query(key, "smart-1288992")
    template = PREFETCH_TEMPLATES[key].replace("{{context.patientId}}", "smart-1288992")
    t_path, _, t_query = template.partition("?")
    parts = urlsplit(query.relative_url)
    assert parts.path == t_path
    assert parse_qsl(parts.query) == parse_qsl(t_query)
    assert query.resource_type == t_path.split("/")[0]


def test_observation_query_carries_every_kidney_code_as_one_or_list() -> None:
    query = build_query("observations", "p1")
    params = dict(parse_qsl(urlsplit(query.relative_url).query))
    assert params["code"].split(",") == [f"http://loinc.org|{c}" for c in KIDNEY_LOINC]
    assert "|" not in query.relative_url  # encoded for the wire


@pytest.mark.parametrize(
    "patient_id", ["a&_include=*", "../Practitioner/x", "a b", "", "x" * 65, "é"]
)
def test_patient_ids_that_are_not_fhir_ids_never_reach_a_url(patient_id: str) -> None:
    with pytest.raises(ValueError):
        build_query("conditions", patient_id)
