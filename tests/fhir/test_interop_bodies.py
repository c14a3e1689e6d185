"""Real request bodies from public integration material, each with only the drug changed to
diazepam (``tests/data/interop/``, source and changes recorded in every file; the CDS Hooks
sandbox's own requests in ``tests/data/sandbox/``), sent through the API to a service that may
fetch from the real test FHIR server.

The public bodies point at servers we cannot reach (``https://dikb.org/baseDstu3``,
``https://example/r4``), so ``fhirServer`` and the bearer token are replaced by the test FHIR
server's, which holds the body's patient; nothing else in a body is touched. Every body must
give 200, spec-valid cards, the diazepam order recognised, one age per answer, and suggestions
whose actions each address exactly one draft and whose resources parse as the client's FHIR
version (validated with the matching ``fhir.resources`` models).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections import Counter
from typing import Any

import pytest

from cds_service.compat import patient_id_of
from tests.conftest import DATA, load_json
from tests.fhir.fault_server import Action, fault_server
from tests.robustness.contract import card_problems
from tests.support.fhir_server import FhirServer
from tests.support.fhir_versions import validation_errors

INTEROP = DATA / "interop"
SANDBOX_BODIES = {
    "order-select-request_dstu2-default-server": "DSTU2",
    "order-sign-request_dstu2-default-server": "DSTU2",
    "order-select-request_r4-server": "R4",
    "order-sign-request_r4-server": "R4",
}
BIRTH = "1950-06-15"  # 76 at the time of writing: Beers, dose and duration cards fire
ORDER_TYPES = ("MedicationRequest", "MedicationOrder")
SANDBOX_PATIENT_76 = {"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH}


# The hook library's order-sign examples write the dose the other version's way (its "R4"
# draft has STU3's Dosage.doseQuantity, its "STU3" draft R4's doseAndRate); nothing else in
# them tells the versions apart, so the service answers in the shape the draft is written in.
WRITTEN_AS = {"hooks-library-order-sign-r4": "STU3", "hooks-library-order-sign-stu3": "R4"}


def _version_of_name(name: str) -> str:
    if name in WRITTEN_AS:
        return WRITTEN_AS[name]
    if name.startswith("pddi-cds"):  # https://dikb.org/baseDstu3: STU3 MedicationRequests
        return "STU3"
    for suffix, version in (("dstu2", "DSTU2"), ("stu3", "STU3"), ("r4", "R4")):
        if name.endswith(suffix):
            return version
    raise AssertionError(f"{name}: no FHIR version in the name")


def interop_cases() -> list[tuple[str, dict[str, Any], str]]:
    cases = []
    for path in sorted(INTEROP.glob("*.json")):
        doc = load_json(path)
        cases.append((path.stem, doc["request"], _version_of_name(path.stem)))
    for name, version in SANDBOX_BODIES.items():
        cases.append((f"sandbox-{name}", load_json(DATA / "sandbox" / f"{name}.json"), version))
    return cases


CASES = interop_cases()


def test_every_interop_body_names_its_source_and_changes_only_the_drug() -> None:
    files = sorted(INTEROP.glob("*.json"))
    assert len(files) + len(SANDBOX_BODIES) >= 18
    for path in files:
        doc = load_json(path)
        source = doc["source"]
        assert source["repository"] and source["path"], path.name
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), path.name
        assert any("iazepam" in change for change in doc["changes"]), path.name
        assert "iazepam" in json.dumps(doc["request"]), path.name


@pytest.fixture
def interop_app(make_app):
    return make_app(fhir_allowlist=("127.0.0.1",), fhir_allow_loopback=True)


def _patient_id(body: dict[str, Any]) -> str:
    context = body.get("context") or {}
    return patient_id_of(str(context.get("patientId") or body.get("patient")))


def _service(body: dict[str, Any]) -> str:
    return f"/cds-services/diazepam-{body['hook']}"


def pointed_at(body: dict[str, Any], server: FhirServer) -> dict[str, Any]:
    """The body with fhirServer and its token replaced by the test FHIR server's."""
    body = copy.deepcopy(body)
    body["fhirServer"] = server.base_url
    body["fhirAuthorization"] = {
        "access_token": server.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/*.read",
        "subject": "diazepam-cds",
    }
    return body


def _drafts(body: dict[str, Any]) -> list[dict[str, Any]]:
    entries = body["context"]["draftOrders"].get("entry") or []
    return [e["resource"] for e in entries if isinstance(e, dict) and "resource" in e]


def _actions(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for c in cards for s in c.get("suggestions") or [] for a in s.get("actions") or []]


def assert_actions_address_one_draft(cards: list[dict[str, Any]], body: dict[str, Any]) -> None:
    refs = Counter(
        f"{d['resourceType']}/{d['id']}" for d in _drafts(body) if isinstance(d.get("id"), str)
    )
    for action in _actions(cards):
        if action["type"] == "delete":
            assert refs.get(action.get("resourceId"), 0) == 1, action
        elif action["type"] == "update":
            resource = action["resource"]
            assert refs.get(f"{resource.get('resourceType')}/{resource.get('id')}", 0) == 1
        else:
            assert "id" not in action["resource"], action


def assert_resources_in_version(cards: list[dict[str, Any]], version: str) -> None:
    resources = [a["resource"] for a in _actions(cards) if "resource" in a]
    expected_type = "MedicationOrder" if version == "DSTU2" else "MedicationRequest"
    assert all(r["resourceType"] == expected_type for r in resources), [
        r["resourceType"] for r in resources
    ]
    errors = validation_errors(version, resources)
    assert errors == [None] * len(resources), [e for e in errors if e]


def ages(cards: list[dict[str, Any]]) -> set[str]:
    return {m for c in cards for m in re.findall(r"\bAge (\d+)", c["summary"] + c["detail"])}


def _subject_ids(body: dict[str, Any]) -> set[str]:
    return {
        ref.rsplit("/", 1)[-1]
        for d in _drafts(body)
        if isinstance(ref := (d.get("subject") or d.get("patient") or {}).get("reference"), str)
    }


# published bodies whose drafts name another patient than context.patientId (the CRD test
# kit's: patientId "example", drafts for Patient/1288992)
MISMATCHED = [c for c in CASES if _subject_ids(c[1]) - {_patient_id(c[1])}]


def self_consistent(body: dict[str, Any]) -> dict[str, Any]:
    """The body with context.patientId set to the one patient its drafts name (a copy)."""
    ids = _subject_ids(body)
    if not ids - {_patient_id(body)}:
        return body
    assert len(ids) == 1, ids
    body = copy.deepcopy(body)
    body["context"]["patientId"] = next(iter(ids))
    return body


def test_the_crd_kit_bodies_are_the_mismatched_ones() -> None:
    assert sorted(c[0] for c in MISMATCHED) == [
        "crd-test-kit-order-select-r4",
        "crd-test-kit-order-sign-r4",
    ]


@pytest.mark.parametrize(("name", "body", "version"), MISMATCHED, ids=[c[0] for c in MISMATCHED])
def test_as_published_a_draft_for_another_patient_gets_no_advice(
    fhir_server: FhirServer, interop_app, caplog, name: str, body: dict[str, Any], version: str
) -> None:
    """The draft names Patient/1288992 while the context's patient is "example": advice made
    from "example"'s record could be wrong for the draft's patient, so none is given, and the
    fault is logged with the draft's own id (issue 20 item 9)."""
    fhir_server.transaction(
        [{"resourceType": "Patient", "id": _patient_id(body), "birthDate": BIRTH}]
    )
    response = interop_app.test_client().post(_service(body), json=pointed_at(body, fhir_server))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.get_json()["cards"] == []
    logged = [r for r in caplog.records if hasattr(r, "other_patient_drafts")]
    assert logged and logged[0].other_patient_drafts == [
        "MedicationRequest/smart-MedicationRequest-103"
    ]


@pytest.mark.parametrize(("name", "body", "version"), CASES, ids=[c[0] for c in CASES])
def test_real_body_gets_cards_it_can_apply(
    fhir_server: FhirServer, interop_app, name: str, body: dict[str, Any], version: str
) -> None:
    body = self_consistent(body)
    fhir_server.transaction(
        [{"resourceType": "Patient", "id": _patient_id(body), "birthDate": BIRTH}]
    )
    sent = pointed_at(body, fhir_server)
    response = interop_app.test_client().post(_service(body), json=sent)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    cards = response.get_json()["cards"]
    assert cards, f"{name}: the diazepam order was not recognised"
    for card in cards:
        assert card_problems(card) == [], (name, card_problems(card))
    assert any("diazepam" in (c["summary"] + c["detail"]).lower() for c in cards)
    assert len(ages(cards)) <= 1, ages(cards)
    assert_actions_address_one_draft(cards, body)
    assert_resources_in_version(cards, version)
    assert _actions(cards), f"{name}: no suggestion at all"


# --- item by item ---------------------------------------------------------------------------


def _crd(name: str) -> dict[str, Any]:
    return load_json(INTEROP / f"{name}.json")["request"]


DIAZEPAM_MEDICATION = {
    "resourceType": "Medication",
    "id": "med-medref",
    "code": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197591"}],
        "text": "Diazepam 5 MG Oral Tablet",
    },
}


def _metric(client, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_medication_reference_is_read_from_the_fhir_server(fhir_server, interop_app, caplog):
    """Epic's medicationReference to a Medication nowhere in the request: without its display
    the order is recognised only if the service reads Medication/<id> from fhirServer."""
    body = _crd("crd-test-kit-order-sign-medication-reference-no-prefetch-r4")
    for draft in _drafts(body):
        draft["medicationReference"].pop("display")
    fhir_server.transaction(
        [
            {"resourceType": "Patient", "id": "forprefetch", "birthDate": BIRTH},
            dict(DIAZEPAM_MEDICATION),
        ]
    )
    client = interop_app.test_client()
    response = client.post(_service(body), json=pointed_at(body, fhir_server))
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert cards and any("diazepam" in c["detail"].lower() for c in cards)
    assert _metric(client, "cds_orders_unidentified_total") == 0


def test_unresolvable_medication_is_logged_and_counted_never_silent(
    fhir_server, interop_app, caplog
):
    body = _crd("crd-test-kit-order-sign-medication-reference-no-prefetch-r4")
    for draft in _drafts(body):
        draft["medicationReference"] = {"reference": "Medication/not-on-the-server"}
    fhir_server.transaction([{"resourceType": "Patient", "id": "forprefetch", "birthDate": BIRTH}])
    client = interop_app.test_client()
    with caplog.at_level("WARNING", logger="cds_service.orders"):
        response = client.post(_service(body), json=pointed_at(body, fhir_server))
    assert response.status_code == 200
    assert response.get_json()["cards"] == []
    assert _metric(client, "cds_orders_unidentified_total", reason="reference-unresolved") == 2
    records = [r for r in caplog.records if r.getMessage().startswith("draft orders whose")]
    assert records and records[0].unidentified == [
        "MedicationRequest/forprefetch-pra (reference-unresolved)",
        "MedicationRequest/forprefetch-rol (reference-unresolved)",
    ]
    assert 'forprefetch"' not in json.dumps(records[0].unidentified)  # no patient id


def test_medication_in_another_prefetch_key_and_wrong_typed_medications_key(
    fhir_server, interop_app
):
    """The CRD kit's 'medications' holds a Bundle of Medication: it resolves the drafts'
    reference, but it is not the active-medication list, so that list is fetched (and the
    opioid found there raises the opioid card)."""
    body = _crd("crd-test-kit-order-sign-complete-prefetch-r4")
    fhir_server.transaction(
        [
            {"resourceType": "Patient", "id": "forprefetch", "birthDate": BIRTH},
            {
                "resourceType": "MedicationRequest",
                "id": "forprefetch-oxycodone",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/forprefetch"},
                "medicationCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                            "code": "1049621",
                            "display": "oxycodone hydrochloride 5 MG Oral Tablet",
                        }
                    ]
                },
            },
        ]
    )
    response = interop_app.test_client().post(_service(body), json=pointed_at(body, fhir_server))
    assert response.status_code == 200
    topics = {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}
    assert "opioid-benzodiazepine" in topics


def test_wrong_typed_medications_that_cannot_be_fetched_is_said_on_the_cards(interop_app):
    body = _crd("crd-test-kit-order-sign-complete-prefetch-r4")
    body.pop("fhirServer")
    body.pop("fhirAuthorization")
    response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert cards
    assert any("active medications unknown" in c["detail"] for c in cards)


def test_one_age_per_answer_whatever_the_drafts_dates(interop_app, sandbox_request):
    """Two drafts dated 2016 and 2017 for a patient born mid-1951: 65 and 66 at the drafts'
    dates, but one age (at the time of the call) on every card."""
    body = sandbox_request("order-sign-request_r4-server")
    first = _drafts(body)[0]
    second = copy.deepcopy(first)
    first["authoredOn"], second["authoredOn"] = "2016-06-10", "2017-06-10"
    second["id"] = "request-456"
    body["context"]["draftOrders"]["entry"].append({"resource": second})
    body.pop("fhirServer")
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": "1951-01-01"}
    }
    cards = interop_app.test_client().post(_service(body), json=body).get_json()["cards"]
    found = ages(cards)
    assert len(found) == 1, found
    assert found != {"65"} and found != {"66"}


def test_patient_id_with_type_prefix(fhir_server, interop_app, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body["context"]["patientId"] = "Patient/smart-1288992"
    body.pop("fhirServer")
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH}
    }
    response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 200, response.get_json()
    # and when it must be fetched, the query uses the bare id
    fhir_server.transaction(
        [{"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH}]
    )
    fetched = pointed_at(sandbox_request("order-sign-request_r4-server"), fhir_server)
    fetched["context"]["patientId"] = f"{fhir_server.base_url}/Patient/smart-1288992"
    response = interop_app.test_client().post(_service(fetched), json=fetched)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"]


def test_prefetch_keys_not_asked_for_and_the_1_0_wrapper(interop_app, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body.pop("fhirServer")  # nothing can be fetched: the patient must come from the wrapper
    body["prefetch"] = {
        "patient": {
            "response": {"status": "200 OK"},
            "resource": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH},
        },
        "item1": "not a resource",
        "vendorSpecific": [1, 2, 3],
        "labs": None,
    }
    response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"]
    # a wrapper that reports a failure is "not prefetched": no server, so 412
    body["prefetch"]["patient"] = {"response": {"status": "404 Not Found"}}
    response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 412


def test_asked_for_prefetch_key_of_the_wrong_json_type_is_still_a_400(interop_app, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body["prefetch"] = {"patient": "Patient/smart-1288992"}
    response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 400
    assert "prefetch.patient" in response.get_json()["issue"][0]["diagnostics"]


def test_empty_access_token(fhir_server, interop_app, sandbox_request):
    fhir_server.transaction(
        [{"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH}]
    )
    body = pointed_at(sandbox_request("order-sign-request_r4-server"), fhir_server)
    body["fhirAuthorization"]["access_token"] = ""
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH},
        "medications": None,
        "conditions": None,
        "observations": None,
        "allergies": None,
    }
    client = interop_app.test_client()
    assert client.post(_service(body), json=body).status_code == 200
    # the same token with the patient to fetch: the server refuses a call without a token
    del body["prefetch"]
    response = client.post(_service(body), json=body)
    assert response.status_code == 412
    assert "401" in response.get_json()["issue"][0]["diagnostics"]


def test_cds_hooks_1_0_top_level_user_and_patient_are_mapped(interop_app, caplog):
    body = load_json(INTEROP / "pddi-cds-warfarin-nsaids-order-select-stu3.json")["request"]
    assert "userId" not in body["context"] and body["user"]
    body.pop("fhirServer")
    body["prefetch"] = {"patient": {"resourceType": "Patient", "id": "f101", "birthDate": BIRTH}}
    with caplog.at_level("INFO", logger="cds_service.request"):
        response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 200, response.get_json()
    mapped = [r for r in caplog.records if r.getMessage() == "request mapped onto CDS Hooks 2.0"]
    assert mapped and "context.userId<-user" in mapped[0].mapped
    (line,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert line.mapped == mapped[0].mapped and line.fhir_version == "STU3"


def test_a_body_wrong_under_every_version_is_still_400(interop_app, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    del body["context"]["patientId"]  # and no top-level patient either
    response = interop_app.test_client().post(_service(body), json=body)
    assert response.status_code == 400
    assert "patientId" in response.get_json()["issue"][0]["diagnostics"]


def test_id_less_drafts_get_create_only_suggestions_and_text(interop_app):
    body = load_json(INTEROP / "pddi-cds-multi-update-order-sign-two-id-less-drafts.json")[
        "request"
    ]
    body.pop("fhirServer")
    body["prefetch"] = {"patient": {"resourceType": "Patient", "id": "f001", "birthDate": BIRTH}}
    cards = interop_app.test_client().post(_service(body), json=body).get_json()["cards"]
    assert cards
    actions = _actions(cards)
    assert actions and {a["type"] for a in actions} == {"create"}
    assert all("id" not in a["resource"] for a in actions)
    with_suggestions = [c for c in cards if c.get("suggestions")]
    assert all(
        "remove or edit the original diazepam draft" in c["detail"] for c in with_suggestions
    )


def test_r5_drafts_are_read_and_answered_in_r5(interop_app, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    draft = _drafts(body)[0]
    draft["medication"] = {"concept": draft.pop("medicationCodeableConcept")}
    body.pop("fhirServer")
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH}
    }
    response = interop_app.test_client().post(_service(body), json=body)
    cards = response.get_json()["cards"]
    assert cards
    resources = [a["resource"] for a in _actions(cards) if "resource" in a]
    assert resources and all("concept" in r["medication"] for r in resources)
    assert not any("medicationCodeableConcept" in r for r in resources)
    assert_resources_in_version(cards, "R5")


def _numeric_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, bool):
        return []
    if isinstance(node, int | float):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _numeric_paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _numeric_paths(v, (*path, i))]
    return []


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "literal", ["1e999", "-1e999", "9" * 5000, "1" + "0" * 400, "1e308", "-1e308", "5e-324"]
)
def test_numbers_beyond_range_in_any_field_are_400_or_unknown_never_500(
    interop_app, sandbox_request, literal
):
    body = sandbox_request("order-sign-request_r4-server")
    body.pop("fhirServer")
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "birthDate": BIRTH},
        "observations": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
                        "effectiveDateTime": "2026-11-01",
                        "valueQuantity": {"value": 45, "unit": "mL/min/{1.73_m2}"},
                    }
                }
            ],
        },
    }
    client = interop_app.test_client()
    marker = 123456789.25
    for path in _numeric_paths(body):
        text = json.dumps(_set(body, path, marker)).replace(str(marker), literal)
        response = client.post(
            _service(body), data=text, headers={"Content-Type": "application/json"}
        )
        assert response.status_code in (200, 400), (path, response.status_code)
        if response.status_code == 400:
            diagnostics = response.get_json()["issue"][0]["diagnostics"]
            assert ".".join(str(p) for p in path) in diagnostics, (path, diagnostics)
        else:
            for card in response.get_json()["cards"]:
                assert card_problems(card) == [], (path, card_problems(card))


def test_sandbox_without_medication_yet_counts_no_unidentified_diazepam(interop_app):
    body = load_json(DATA / "sandbox" / "order-select-request_r4-no-medication-yet.json")
    client = interop_app.test_client()
    response = client.post(_service(body), json=body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    assert _metric(client, "cds_orders_unidentified_total", reason="no-medication") == 1


def test_medication_read_follows_the_rules_of_every_fetch(fhir_server, make_app):
    """Token, fhirServer guard and deadline apply to the Medication read as to any fetch."""
    body = _crd("crd-test-kit-order-sign-medication-reference-no-prefetch-r4")
    for draft in _drafts(body):
        draft["medicationReference"].pop("display")
    fhir_server.transaction(
        [{"resourceType": "Patient", "id": "forprefetch", "birthDate": BIRTH}, DIAZEPAM_MEDICATION]
    )
    sent = pointed_at(body, fhir_server)
    # not allowed to call a loopback server: no read at all, the drafts stay unidentified
    refused = make_app().test_client()
    assert refused.post(_service(body), json=sent).get_json() == {"cards": []}
    assert _metric(refused, "cds_orders_unidentified_total", reason="reference-unresolved") == 2
    # allowed, but with a token the server refuses
    app = make_app(fhir_allowlist=("127.0.0.1",), fhir_allow_loopback=True)
    wrong = copy.deepcopy(sent)
    wrong["fhirAuthorization"]["access_token"] = "not-the-token"
    assert app.test_client().post(_service(body), json=wrong).get_json() == {"cards": []}
    # with the right token it is read, and the order recognised
    assert app.test_client().post(_service(body), json=sent).get_json()["cards"]


def test_a_hung_medication_read_ends_at_the_deadline(make_app):
    body = _crd("crd-test-kit-order-sign-medication-reference-no-prefetch-r4")
    for draft in _drafts(body):
        draft["medicationReference"].pop("display")
    deadline_ms = 400
    app = make_app(
        fhir_allowlist=("127.0.0.1",), fhir_allow_loopback=True, deadline_ms=deadline_ms
    )
    with fault_server(lambda seen: Action(kind="hang")) as server:  # hangs 30 s
        sent = copy.deepcopy(body)
        sent["fhirServer"] = server.base_url
        started = time.perf_counter()
        response = app.test_client().post(_service(body), json=sent)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    # the deadline, not the 30 s hang, ended the read: an answer within 10 deadlines (as in
    # tests/fhir/test_faults.py; "under 1 s" failed once at 1.27 s on a loaded 2-core
    # machine, issue 20 item 4); how close to the deadline is a latency figure for the bench
    assert elapsed < 10 * deadline_ms / 1000, elapsed
    assert any("/Medication/med-medref" in seen.path for seen in server.seen)


def test_medication_reference_shapes():
    from cds_service.fhir.medication import missing_medications
    from cds_service.hook_request import build_hook_request

    body = _crd("crd-test-kit-order-sign-medication-reference-no-prefetch-r4")
    pra, rol = _drafts(body)
    pra["medicationReference"]["reference"] = "https://example/r4/Medication/abs-1/_history/2"
    rol["medicationReference"]["reference"] = "https://elsewhere.example/fhir/Medication/abs-2"
    assert missing_medications(build_hook_request(body)) == ["Medication/abs-1"]
    rol["medicationReference"]["reference"] = "#contained-med"
    rol["contained"] = [{"resourceType": "Medication", "id": "contained-med"}]
    pra["medicationReference"]["reference"] = "Medication/in-the-bundle"
    body["context"]["draftOrders"]["entry"].append(
        {"resource": {"resourceType": "Medication", "id": "in-the-bundle"}}
    )
    assert missing_medications(build_hook_request(body)) == []
