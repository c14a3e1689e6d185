"""Older and out-of-spec request shapes mapped onto CDS Hooks 2.0 (cds_service/compat.py), and
numbers past any float's range (hook_request.parse_json_body)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.compat import normalize_body, patient_id_of
from cds_service.errors import ApiError
from cds_service.fhir.prefetch import read_prefetch
from cds_service.hook_request import build_hook_request, parse_json_body, validate
from cds_service.redate import redate


def test_a_2_0_body_passes_through_unchanged(sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    assert normalize_body(body) == (body, [])


def test_top_level_user_and_patient_fill_only_missing_context_fields():
    body = {"hook": "order-sign", "user": "Practitioner/u", "patient": "p1", "context": {}}
    out, notes = normalize_body(body)
    assert out["context"] == {"userId": "Practitioner/u", "patientId": "p1"}
    assert notes == ["context.userId<-user", "context.patientId<-patient"]
    body = {"userId": "Practitioner/top", "context": {"userId": "Practitioner/ctx"}}
    assert normalize_body(body)[0]["context"]["userId"] == "Practitioner/ctx"
    assert body["context"] == {"userId": "Practitioner/ctx"}  # the input is not changed


@pytest.mark.parametrize(
    ("auth", "note"),
    [(None, "fhirAuthorization-null"), ({"access_token": "  "}, "fhirAuthorization-empty-token")],
)
def test_no_token_means_no_fhir_authorization(auth, note):
    out, notes = normalize_body({"fhirServer": "https://x", "fhirAuthorization": auth})
    assert "fhirAuthorization" not in out and notes == [note]
    # without fhirServer the block is left for the schema's 400 ("fhirServer is required")
    body = {"fhirAuthorization": auth}
    assert normalize_body(body) == (body, [])


def test_prefetch_wrapper_and_unknown_keys():
    patient = {"resourceType": "Patient", "id": "p"}
    out, notes = normalize_body(
        {
            "prefetch": {
                "patient": {"response": {"status": "200 OK"}, "resource": patient},
                "medications": {"response": {"status": "500"}, "resource": {"resourceType": "X"}},
                "item6": "whatever",
            }
        }
    )
    assert out["prefetch"] == {"patient": patient, "item6": "whatever"}
    assert notes == [
        "prefetch.patient-unwrapped",
        "prefetch.medications-wrapper-without-resource",
        "prefetch-ignored-keys:1",
    ]


def test_a_wrapper_without_a_resource_counts_as_not_prefetched(sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body["prefetch"] = {"patient": {"resource": {"no": "resourceType"}}}
    normalized, notes = normalize_body(body)
    assert notes == [] and normalized["prefetch"] == body["prefetch"]
    validate("order-sign", normalized)
    assert read_prefetch(normalized["prefetch"]).problems["patient"] == "prefetch-invalid"


def test_unknown_prefetch_keys_are_not_validated(sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body["prefetch"] = {"item1": "text", "item2": [1], "item3": {"no": "resourceType"}}
    validate("order-sign", body)  # no 400
    body["prefetch"]["allergies"] = "text"
    with pytest.raises(ApiError, match="prefetch.allergies"):
        validate("order-sign", body)


@pytest.mark.parametrize(
    ("given", "bare"),
    [
        ("123", "123"),
        ("Patient/123", "123"),
        ("https://ehr.example/fhir/Patient/a.b-1", "a.b-1"),
        ("Patient/", "Patient/"),
        ("MyPatient/1", "MyPatient/1"),
        ("Patient/1/_history/2", "Patient/1/_history/2"),
    ],
)
def test_patient_id_forms(given, bare):
    assert patient_id_of(given) == bare


def test_hook_request_uses_the_bare_patient_id(sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body["context"]["patientId"] = "Patient/smart-1288992"
    assert build_hook_request(body).patient_id == "smart-1288992"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"a": {"b": [1, 1e999]}}', "a.b.1"),
        (b'{"x": -1e999}', "x"),
        (b'{"dose": ' + b"9" * 5000 + b"}", "dose"),
    ],
)
def test_numbers_past_any_float_are_a_400_naming_the_field(raw, field):
    with pytest.raises(ApiError) as caught:
        parse_json_body(raw)
    assert caught.value.status == 400
    assert f"'{field}'" in caught.value.diagnostics and "out of range" in caught.value.diagnostics


def test_big_integers_that_python_reads_stay_numbers():
    assert parse_json_body(b'{"a": ' + b"9" * 400 + b"}")["a"] == int("9" * 400)


def test_redate_moves_every_date_by_the_same_days():
    request = {
        "context": {
            "draftOrders": {"entry": [{"resource": {"authoredOn": "2026-03-02T10:00:00Z"}}]}
        },
        "prefetch": {
            "patient": {"birthDate": "1947-06-15"},
            "obs": {
                "entry": [{"resource": {"effectiveDateTime": "2026-02-10", "id": "2026-01-01"}}]
            },
        },
    }
    out = redate(request, date(2027, 3, 2))
    assert out["context"]["draftOrders"]["entry"][0]["resource"]["authoredOn"] == (
        "2027-03-02T10:00:00Z"
    )
    assert out["prefetch"]["patient"]["birthDate"] == "1948-06-14"  # 365 days
    assert out["prefetch"]["obs"]["entry"][0]["resource"] == {
        "effectiveDateTime": "2027-02-10",
        "id": "2026-01-01",  # not a date element
    }
    assert request["prefetch"]["patient"]["birthDate"] == "1947-06-15"  # a copy
