"""Body parsing: the fast parser (orjson) must give what the standard library gives, and
everything it refuses must still get the standard library's precise 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.errors import ApiError
from cds_service.hook_request import build_hook_request, parse_json_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fast_parse_equals_the_standard_library(value):
    data = json.dumps(value).encode()
    assert parse_json_body(data) == json.loads(data)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"dose": NaN}', "NaN is not a JSON number"),
        (b'{"dose": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"days": 1e400}', "out of range"),
        (b'{"a": 1,}', "line 1 column"),
        (b"\xff\xfe{}", "not UTF-8 (byte 0)"),
        (b"[" * 5000 + b"]" * 5000, "nesting too deep"),
    ],
)
def test_refused_bodies_get_the_precise_message(body, says):
    with pytest.raises(ApiError) as raised:
        parse_json_body(body)
    assert raised.value.status == 400
    assert says in str(raised.value)


def test_what_only_the_standard_library_accepts_is_still_accepted():
    # a lone surrogate escape: orjson refuses it, JSON's grammar allows it
    assert parse_json_body(b'{"text": "\\ud800"}') == {"text": "\ud800"}


# -- schema validation: the compiled fast check may only ever say "valid" when jsonschema does


def _jsonschema_valid(name, body):
    from cds_service.hook_request import validator

    return not any(True for _ in validator(name).iter_errors(body))


def _fast_valid(name, body):
    import fastjsonschema

    from cds_service.hook_request import fast_check

    try:
        fast_check(name)(body)
    except (fastjsonschema.JsonSchemaException, RecursionError):
        return False
    return True


_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats(allow_nan=False, allow_infinity=False, width=16)
    | st.sampled_from(["", "x", "order-sign", "order-select", "Bearer", "bearer", "Bundle",
                       "https://ehr.example/fhir", "ftp://x", "MedicationRequest/1", "a" * 300])
    | st.lists(st.integers(0, 2), max_size=2)
    | st.dictionaries(st.sampled_from(["resourceType", "x"]), st.just("Bundle"), max_size=1)
)  # fmt: skip


def _maybe(strategy):
    return st.one_of(st.just(None), strategy)  # None here means "leave the member out"


@st.composite
def near_valid_bodies(draw, hook):
    def member(valid):
        return draw(st.one_of(st.just(valid), _leaf))

    entry = {"resource": {"resourceType": member("MedicationRequest"), "id": "1"}}
    context = {
        "userId": member("Practitioner/1"),
        "patientId": member("p1"),
        "encounterId": draw(_maybe(_leaf)),
        "draftOrders": member({"resourceType": member("Bundle"), "entry": member([entry])}),
        "selections": member(["MedicationRequest/1"]),
    }
    auth = {
        "access_token": member("t"),
        "token_type": member("Bearer"),
        "expires_in": member(300),
        "scope": member("patient/*.read"),
        "subject": member("cds"),
    }
    body = {
        "hook": member(hook),
        "hookInstance": member("h-1"),
        "fhirServer": draw(_maybe(_leaf)),
        "fhirAuthorization": draw(_maybe(st.just(auth))),
        "context": member({k: v for k, v in context.items() if v is not None}),
    }
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("hook", ["order-sign", "order-select"])
@given(data=st.data())
def test_fast_check_never_accepts_what_jsonschema_refuses(hook, data):
    body = data.draw(near_valid_bodies(hook))
    if _fast_valid(hook, body):
        assert _jsonschema_valid(hook, body), body


def test_fast_check_is_used_for_every_schema_and_accepts_valid_bodies(sandbox_request):
    from cds_service.hook_request import SCHEMA_FILES, fast_check

    assert all(fast_check(name) is not None for name in SCHEMA_FILES)
    assert _fast_valid("order-sign", sandbox_request("order-sign-request_r4-server"))


def test_fhir_authorization_without_fhir_server_is_refused_by_both(sandbox_request):
    from cds_service.hook_request import validate

    request = sandbox_request("order-sign-request_r4-server")
    body = {k: v for k, v in request.items() if k != "fhirServer"}
    body["fhirAuthorization"] = {
        "access_token": "t", "token_type": "Bearer", "expires_in": 1, "scope": "s", "subject": "x",
    }  # fmt: skip
    assert not _fast_valid("order-sign", body)
    with pytest.raises(ApiError, match="fhirServer"):
        validate("order-sign", body)


@st.composite
def near_valid_feedback(draw):
    def member(valid):
        return draw(st.one_of(st.just(valid), _leaf))

    item = {
        "card": member("c-1"),
        "outcome": member(draw(st.sampled_from(["accepted", "overridden"]))),
        "acceptedSuggestions": draw(_maybe(st.just([{"id": member("s-1")}]))),
        "overrideReason": draw(
            _maybe(st.just({"reason": {"code": member("x"), "system": member("urn:x")}}))
        ),
        "outcomeTimestamp": member(
            draw(st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00.5+01:00"]))
        ),
    }
    return {"feedback": [{k: v for k, v in item.items() if v is not None}]}


@given(near_valid_feedback())
def test_fast_feedback_check_never_accepts_what_jsonschema_refuses(body):
    if _fast_valid("feedback", body):
        assert _jsonschema_valid("feedback", body), body


def test_app_start_up_compiles_the_fast_checks(make_app):
    from cds_service.hook_request import SCHEMA_FILES, fast_check

    fast_check.cache_clear()
    make_app()
    assert fast_check.cache_info().currsize == len(SCHEMA_FILES)


# --- drafts for another patient (issue 20 item 9) ---------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ({"reference": "Patient/p1"}, "p1"),
        ({"reference": "https://ehr.example/fhir/Patient/p1"}, "p1"),
        ({"reference": "Patient/p1/_history/3"}, "p1"),
        ({"reference": "#pat"}, None),
        ({"reference": "urn:uuid:0b7e8c2e-2a4c-4c3e-9a55-0e4d4b0e2f11"}, None),
        ({"reference": "Group/g1"}, None),
        ({"identifier": {"value": "MRN1"}}, None),
        ({"display": "someone"}, None),
        (None, None),
    ],
)
def test_subject_patient_id(subject: Any, expected: str | None) -> None:
    from cds_service.hook_request import subject_patient_id

    draft: dict[str, Any] = {"resourceType": "MedicationRequest"}
    if subject is not None:
        draft["subject"] = subject
    assert subject_patient_id(draft) == expected
    # DSTU2 MedicationOrder names the patient in ``patient``
    if subject is not None:
        assert subject_patient_id({"resourceType": "MedicationOrder", "patient": subject}) == (
            expected
        )


def _two_patient_body(hook: str) -> dict[str, Any]:
    drafts = [
        {"resourceType": "MedicationRequest", "id": "mine", "subject": {"reference": "Patient/p1"}},
        {
            "resourceType": "MedicationRequest",
            "id": "theirs",
            "subject": {"reference": "Patient/p2"},
        },
        {"resourceType": "MedicationRequest", "id": "unsaid"},
    ]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": "h",
        "context": {
            "patientId": "Patient/p1",
            "userId": "Practitioner/u",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": d} for d in drafts],
            },
        },
    }
    if hook == "order-select":
        body["context"]["selections"] = ["MedicationRequest/mine", "MedicationRequest/theirs"]
    return body


@pytest.mark.parametrize("hook", ["order-sign", "order-select"])
def test_drafts_naming_another_patient_are_out_of_scope_and_named(hook: str) -> None:
    from cds_service.hook_request import drafts_for_other_patients, drafts_in_scope

    request = build_hook_request(_two_patient_body(hook))
    in_scope = [d["id"] for d in drafts_in_scope(request)]
    assert in_scope == (["mine", "unsaid"] if hook == "order-sign" else ["mine"])
    assert drafts_for_other_patients(request) == ["MedicationRequest/theirs"]
