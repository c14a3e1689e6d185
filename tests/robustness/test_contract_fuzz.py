"""Contract fuzzing: schemathesis drives every operation in ``openapi.yaml`` against the app.

Positive examples (bodies the spec allows) and negative ones (bodies it forbids) go through the
WSGI app; every answer must be a non-5xx status the spec declares for that operation, with the
declared content type, headers and body schema. Negative bodies must be rejected (4xx); positive
bodies sent to the service whose hook they name must be accepted. The example budget is fixed
and derandomized so CI time and findings are reproducible; the service id is pinned per test so
negative cases mutate the body, not only the path (an unknown id is a trivial 404).

Bodies generated from the schema alone almost never name a patient the service can read and a
diazepam draft, so they would stop at "no order in scope" or a 412 and the engine would hardly
be fuzzed. A ``flatmap_body`` hook grafts, onto three in four positive hook bodies, a
prefetched Patient and a diazepam draft (selected, for order-select) — everything else stays as
generated — and each hook test counts the examples that reached ``Engine.advise`` and requires
a minimum. Hypothesis health checks are on, except ``too_slow`` (generation time is the
machine's, not a property of the tests), and ``filter_too_much`` for the two operations whose
schemas hypothesis-jsonschema can only sample by rejection.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import DataGenerationMethod, GenerationConfig
from schemathesis.exceptions import CheckFailed

from cds_service.app import create_app
from cds_service.discovery import SERVICES
from tests.robustness.contract import CHECKS, SPEC

# Generation-bound tests (hypothesis-jsonschema: ~1 s per feedback example on a busy core;
# 125 s measured at load 14 on 2 cores): pytest-timeout's global 120 s is a hang guard sized
# for ordinary tests, so these get 600 s, still a hang guard, no longer a speed test.
pytestmark = pytest.mark.timeout(600)

MAX_EXAMPLES = 50  # per operation, per service id, per generation method
# Of the positive examples per service, about half name the other service's hook (a 400 by
# design) and three in four of the rest are grafted: expect ~18; require 10.
MIN_REACHED_ENGINE = MAX_EXAMPLES // 5


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Where hypothesis-jsonschema can only draw by rejection (the hook body's oneOf under the guarded
# and admin apps), it filters most draws by design; the tests that use these settings accept that
# and no other does.
FILTERING_SETTINGS = settings(
    FUZZ_SETTINGS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
GRAFT_ID = "fuzz-diazepam-draft"
BIRTH_DATES = ["1948-03-02", "1990-07-14", "2010-01-01"]  # older adult, adult, child


def _grafted(body: dict[str, Any], birth_date: str) -> dict[str, Any]:
    """The generated body with a readable patient and a diazepam draft in scope added; the
    fhirServer goes, so the generated prefetch values are read but nothing is fetched."""
    body = copy.deepcopy(body)
    context = body["context"]
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    prefetch = body.get("prefetch") if isinstance(body.get("prefetch"), dict) else {}
    prefetch["patient"] = {"resourceType": "Patient", "birthDate": birth_date}
    body["prefetch"] = prefetch
    # one draft id per hook: generated bodies often share user and patient ids ("0"), and
    # order-sign does not repeat the non-critical cards order-select showed for the same draft
    # (fire once, F.2a); each service's own answer is what is checked here
    draft_id = f"{GRAFT_ID}-{body.get('hook')}"
    draft = {
        "resourceType": "MedicationRequest",
        "id": draft_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{context['patientId']}"},
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "197591"}]},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg"}}],
            }
        ],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "unit": "d", "code": "d"}},
    }
    entries = list(context["draftOrders"].get("entry") or [])[:499]
    context["draftOrders"]["entry"] = [*entries, {"resource": draft}]
    if body.get("hook") == "order-select":
        context["selections"] = [
            *list(context.get("selections") or [])[:499],
            f"MedicationRequest/{draft_id}",
        ]
    return body


def flatmap_body(context: Any, body: Any) -> Any:
    """Schemathesis hook: graft a patient and a diazepam draft onto about half of the positive
    hook-call bodies (three in four; hypothesis chooses which, and the patient's age)."""
    is_hook_call = context.operation is not None and context.operation.path == "/cds-services/{id}"
    if not is_hook_call or not isinstance(body, dict) or not isinstance(body.get("context"), dict):
        return st.just(body)
    graft = st.sampled_from([True, True, True, False])  # three in four
    return st.tuples(graft, st.sampled_from(BIRTH_DATES)).map(
        lambda choice: _grafted(body, choice[1]) if choice[0] else body
    )


class CountingAdvisor:
    """The app's advisor, counting the calls that reached the clinical engine."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.advised = 0

    def orders_in_scope(self, request: Any) -> Any:
        return self.inner.orders_in_scope(request)

    def advise(self, *args: Any, **kwargs: Any) -> Any:
        self.advised += 1
        return self.inner.advise(*args, **kwargs)


# (operation, generation method, status) -> count, printed at module teardown (run with -s).
SEEN: Counter[tuple[str, str, int]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Any:
    yield
    for key, count in sorted(SEEN.items()):
        print(f"fuzzed {count:4d} x {key}")
    print(f"fuzzed {sum(SEEN.values())} requests in total")


ADVISORS: dict[str, CountingAdvisor] = {}


def generation_spec() -> dict[str, Any]:
    """openapi.yaml with the feedback item's if/then ("accepted needs acceptedSuggestions")
    restated as the anyOf it means. hypothesis-jsonschema draws an if/then by drawing and
    rejecting, and a list of items almost never passes: the valid-feedback test spent 33 of its
    37 s rejecting. Each branch of the anyOf is drawn directly. The service keeps enforcing the
    if/then, whose errors name the missing field."""
    raw = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    item = raw["components"]["schemas"]["FeedbackRequest"]["properties"]["feedback"]["items"]
    condition, then = item.pop("if", None), item.pop("then", None)
    # a change to that rule in the spec must show here, not quietly fuzz something else
    assert condition == {"properties": {"outcome": {"const": "accepted"}}, "required": ["outcome"]}
    assert then == {"required": ["acceptedSuggestions"]}
    item["anyOf"] = [
        {"properties": {"outcome": {"const": "accepted"}}, "required": ["acceptedSuggestions"]},
        {"properties": {"outcome": {"const": "overridden"}}},
    ]
    return raw


def _schema(tmp_path_factory: pytest.TempPathFactory, method: DataGenerationMethod) -> Any:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    app = create_app({"auth": "disabled", "data_dir": str(data_dir)})
    counting = CountingAdvisor(app.extensions["cds.advisor"])
    app.extensions["cds.advisor"] = ADVISORS[method.value] = counting
    schema = schemathesis.from_dict(
        generation_spec(),
        app=app,
        location=SPEC.as_uri(),
        data_generation_methods=[method],
        # Authentication is off here (security has its own tests): a "negative" case made only
        # of a bad Authorization header would be accepted, correctly.
        generation_config=GenerationConfig(with_security_parameters=False),
    )
    if method == DataGenerationMethod.positive:
        schema.hook(flatmap_body)
    return schema


@pytest.fixture
def reaches_the_engine() -> Iterator[None]:
    """Around one positive hook test: enough of its examples got to ``Engine.advise``."""
    before = ADVISORS["positive"].advised if "positive" in ADVISORS else 0
    yield
    reached = ADVISORS["positive"].advised - before
    print(f"reached the engine: {reached}")
    assert reached >= MIN_REACHED_ENGINE, (
        f"only {reached} of {MAX_EXAMPLES} generated hook calls reached the engine"
    )


@pytest.fixture(scope="module")
def positive_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _schema(tmp_path_factory, DataGenerationMethod.positive)


@pytest.fixture(scope="module")
def negative_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _schema(tmp_path_factory, DataGenerationMethod.negative)


@pytest.fixture(scope="module")
def guarded_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Authentication on (trusting only the public sandbox issuer): every generated bearer
    token is a forgery."""
    data_dir = tmp_path_factory.mktemp("guarded") / "data"
    app = create_app({"data_dir": str(data_dir), "dev_trust_sandbox": True})
    return schemathesis.from_path(
        str(SPEC), app=app, data_generation_methods=[DataGenerationMethod.positive]
    )


positive = schemathesis.from_pytest_fixture("positive_schema")
guarded = schemathesis.from_pytest_fixture("guarded_schema")
negative = schemathesis.from_pytest_fixture("negative_schema")

SELECT = "diazepam-order-select"
SIGN = "diazepam-order-sign"


def _exercise(case: Any, service_id: str | None) -> None:
    response = case.call_and_validate(checks=CHECKS)
    method = str(case.data_generation_method.value)
    SEEN[(case.operation.verbose_name, method, response.status_code)] += 1
    body = case.body if isinstance(case.body, dict) else {}
    if method != "positive" or service_id is None:
        return
    if case.operation.path == "/cds-services/{id}":
        if body.get("hook") == SERVICES[service_id].hook:
            # A schema-valid body for this service's hook must be answered with cards (or a
            # 412 when patient data is unobtainable) — never refused as malformed; with the
            # grafted patient and diazepam draft, with advice.
            assert response.status_code in (200, 412), (response.status_code, response.text)
            if _is_grafted(body):
                assert response.status_code == 200, response.text
                assert response.get_json()["cards"], "a 30-day diazepam order got no card"
        else:
            assert response.status_code == 400, response.text
            assert "handles hook" in response.get_json()["issue"][0]["diagnostics"]
    elif case.operation.path.endswith("/feedback"):
        assert response.status_code == 200, response.text


def _is_grafted(body: dict[str, Any]) -> bool:
    entries = body.get("context", {}).get("draftOrders", {}).get("entry") or []
    return any(
        str((e.get("resource") or {}).get("id") or "").startswith(GRAFT_ID) for e in entries[-1:]
    )


@positive.include(method="GET").parametrize()
@FUZZ_SETTINGS
def test_reads_honour_the_contract(case):
    _exercise(case, None)


@positive.include(operation_id="callService").parametrize()
@positive.override(path_parameters={"id": SELECT})
@FUZZ_SETTINGS
def test_valid_calls_to_order_select_are_answered(case, reaches_the_engine):
    _exercise(case, SELECT)


@positive.include(operation_id="callService").parametrize()
@positive.override(path_parameters={"id": SIGN})
@FUZZ_SETTINGS
def test_valid_calls_to_order_sign_are_answered(case, reaches_the_engine):
    _exercise(case, SIGN)


@negative.include(operation_id="callService").parametrize()
@negative.override(path_parameters={"id": SELECT})
@FUZZ_SETTINGS
def test_invalid_calls_to_order_select_are_rejected(case):
    _exercise(case, SELECT)


@negative.include(operation_id="callService").parametrize()
@negative.override(path_parameters={"id": SIGN})
@FUZZ_SETTINGS
def test_invalid_calls_to_order_sign_are_rejected(case):
    _exercise(case, SIGN)


# Feedback has one body schema for both ids, so each direction is fuzzed under one id, the
# positive one with half the budget. Items are drawn from generation_spec()'s anyOf, not by
# rejection (37 s -> 14 s for the two tests), so the filter-too-much health check applies again.
@positive.include(operation_id="feedback").parametrize()
@positive.override(path_parameters={"id": SIGN})
@settings(FUZZ_SETTINGS, max_examples=MAX_EXAMPLES // 2)
def test_valid_feedback_is_stored(case):
    _exercise(case, SIGN)


@negative.include(operation_id="feedback").parametrize()
@negative.override(path_parameters={"id": SELECT})
@FUZZ_SETTINGS
def test_invalid_feedback_is_rejected(case):
    _exercise(case, SELECT)


def _expect_401_unless_open(case: Any, response: Any) -> None:
    SEEN[(case.operation.verbose_name, "forged-token", response.status_code)] += 1
    sent_token = any(k.lower() == "authorization" for k in (case.headers or {}))
    # discovery is open to callers that send no token (CDS_DISCOVERY_AUTH=open, the default)
    open_discovery = case.operation.path == "/cds-services" and not sent_token
    if case.operation.path in ("/health", "/metrics") or open_discovery:
        assert response.status_code == 200
    elif case.operation.path.startswith("/admin"):
        # the committee pages do not exist without CDS_ADMIN_TOKEN, whatever is sent
        assert response.status_code == 404, response.text
    elif case.operation.path == "/fhir/CodeSystem/{id}":
        # published terminology, no patient data: open (a fuzzed id is simply not found)
        assert response.status_code in (200, 404), response.text
    else:
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


# Feedback bodies are the costly ones to generate and play no part in a 401: that operation
# gets fixed bodies with generated tokens below.
@guarded.exclude(operation_id="feedback").parametrize()
@settings(FILTERING_SETTINGS, max_examples=MAX_EXAMPLES // 5)
def test_forged_tokens_get_the_declared_401(case):
    _expect_401_unless_open(case, case.call_and_validate(checks=CHECKS))


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer x", "Basic dTpw", "Bearer a.b.c", "Bearer " + "A" * 8000],
)
def test_forged_tokens_on_feedback_get_the_declared_401(guarded_schema, authorization):
    operation = guarded_schema["/cds-services/{id}/feedback"]["POST"]
    case = operation.make_case(
        path_parameters={"id": SIGN},
        headers={"Authorization": authorization} if authorization else {},
        body={
            "feedback": [
                {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-01-15T10:00:00Z"}
            ]
        },
        media_type="application/json",
    )
    _expect_401_unless_open(case, case.call_and_validate(checks=CHECKS))


ADMIN_TOKEN = "fuzz-admin-token-0123456789"
ADMIN_PAGES = "^admin(Index|Dashboard|Export)$"


@pytest.fixture(scope="module")
def admin_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The committee pages switched on (CDS_ADMIN_TOKEN): generated credentials are forgeries."""
    data_dir = tmp_path_factory.mktemp("admin") / "data"
    app = create_app({"auth": "disabled", "data_dir": str(data_dir), "admin_token": ADMIN_TOKEN})
    return schemathesis.from_path(
        str(SPEC), app=app, data_generation_methods=[DataGenerationMethod.positive]
    )


admin = schemathesis.from_pytest_fixture("admin_schema")


@admin.include(path_regex="^/admin").parametrize()
@settings(FILTERING_SETTINGS, max_examples=MAX_EXAMPLES // 5)
def test_admin_refuses_forged_credentials(case):
    """Generated bearer tokens, cookies and form tokens never open a page: 401 with no detail
    (the login form itself answers; logout always just clears the cookie)."""
    response = case.call_and_validate(checks=CHECKS)
    SEEN[(case.operation.verbose_name, "forged-admin", response.status_code)] += 1
    if case.operation.verbose_name in ("GET /admin/login", "POST /admin/logout"):
        assert response.status_code in (200, 303)
    elif case.operation.verbose_name == "POST /admin/login":
        assert response.status_code == 401 and "Not accepted." in response.text
    else:
        assert response.status_code == 401, response.text
        assert "Authentication required." in response.text


@admin.include(operation_id_regex=ADMIN_PAGES).parametrize()
@admin.override(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
@settings(FILTERING_SETTINGS, max_examples=MAX_EXAMPLES // 5)
def test_admin_pages_honour_the_contract(case):
    """With the right token, every generated date range and export name is answered as the
    spec says (a page, a table, a 400 naming the parameter or a 404 for an unknown figure)."""
    response = case.call_and_validate(checks=CHECKS)
    SEEN[(case.operation.verbose_name, "admin", response.status_code)] += 1
    assert response.status_code in (200, 302, 400, 404), response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_harness_catches_a_server_error(tmp_path):
    """Guard against a harness that passes everything: an app whose engine crashes must fail
    the same checks the fuzz tests run."""

    class Crashing:
        def orders_in_scope(self, request):
            raise RuntimeError("boom")

    app = create_app({"auth": "disabled", "data_dir": str(tmp_path / "data")})
    app.extensions["cds.advisor"] = Crashing()
    schema = schemathesis.from_path(str(SPEC), app=app)
    operation = schema["/cds-services/{id}"]["POST"]
    body = {
        "hook": "order-sign",
        "hookInstance": "x",
        "context": {"userId": "u", "patientId": "p", "draftOrders": {"resourceType": "Bundle"}},
    }
    case = operation.make_case(
        path_parameters={"id": SIGN}, body=body, media_type="application/json"
    )
    with pytest.raises(CheckFailed, match="Server error"):
        case.call_and_validate(checks=CHECKS)
