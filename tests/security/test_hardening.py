"""Issue 17 items 2 (aud with user information), 5 (settings, file modes), 6 (metrics), 7
(500s from valid requests), 8 (CORS origins) and 10 (FHIR ids, key-fetch cooldown), in one
process. Real-gunicorn cases (headers, start-up refusals) are in test_hardening_gunicorn.py;
DNS rebinding and per-issuer FHIR servers in test_fhir_server_pinning.py."""

from __future__ import annotations

import json
import logging
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer

from cds_service.config import ConfigError, load_settings
from cds_service.fhir.queries import valid_fhir_id
from cds_service.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from cds_service.security.jwks import RemoteJwks
from tests.security.helpers import ISS, KeyPair
from tests.store.helpers import ScriptedAdvisor, hook_body, overridden

BASE = "http://localhost"
SELECT = "/cds-services/diazepam-order-select"
SIGN = "/cds-services/diazepam-order-sign"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"


@pytest.fixture
def auth_app(
    make_app: Callable[..., Flask], write_issuers: Callable[..., Path], ec_key: KeyPair
) -> Callable[..., Flask]:
    def _make(**settings: Any) -> Flask:
        issuers = write_issuers({"iss": ISS, "keys": [ec_key]})
        values = {
            "auth": "required",
            "trusted_issuers": str(issuers),
            "dev_trust_sandbox": False,
            "public_base_url": BASE,
            "patient_hash_key": "k",
        }
        values.update(settings)
        return make_app(**values)

    return _make


def bearer(key: KeyPair, path: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.token(aud=BASE + path, **kwargs)}"}


def auth_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "reason", "") for r in caplog.records if r.name == "cds_service.security"]


# -- item 2: an aud carrying user information -------------------------------------------
def test_aud_with_userinfo_is_refused(auth_app, ec_key: KeyPair, caplog) -> None:
    client = auth_app().test_client()
    aud = f"http://evil@localhost{SELECT}"
    answer = client.post(
        SELECT, json=hook_body(), headers={"Authorization": f"Bearer {ec_key.token(aud=aud)}"}
    )
    assert answer.status_code == 401
    assert "aud is not the URL called" in auth_reasons(caplog)
    ok = client.post(SELECT, json=hook_body(), headers=bearer(ec_key, SELECT))
    assert ok.status_code == 200  # the same call with the plain URL passes


def test_public_base_url_with_userinfo_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="user information"):
        load_settings(environ={"CDS_PUBLIC_BASE_URL": "https://evil@cds.example.org"})


# -- item 5: config file keys, file modes -------------------------------------------------
@pytest.mark.parametrize("key", ["cds_env", "Cds_Env", "CDS_ENVIRONMENT"])
def test_config_file_keys_must_be_exact_setting_names(tmp_path: Path, key: str) -> None:
    path = tmp_path / "cds.json"
    path.write_text(json.dumps({key: "development"}))
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={"CDS_CONFIG_FILE": str(path)})


def test_database_file_and_metrics_directory_are_private(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prepare_multiprocess_dir points this process's metrics at the directory (as the
    # gunicorn master does): undone at teardown so later apps keep their own registries
    monkeypatch.setenv(MULTIPROC_ENV, "")
    make_app()
    database = tmp_path / "data" / "cds.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    metrics = Path(prepare_multiprocess_dir(str(tmp_path / "metrics-here")))
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o700


# -- item 6: metrics cardinality and token -----------------------------------------------
def _feedback_series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("cds_feedback_total{"))


def test_client_chosen_override_codes_do_not_grow_the_metrics(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(patient_hash_key="k")
    advisor = ScriptedAdvisor([("beers-age", "info")])
    app.extensions["cds.advisor"] = advisor
    client = app.test_client()
    client.post(SELECT, json=hook_body())
    card = advisor.issued[0]["uuid"]
    for call in range(5):
        items = []
        for n in range(200):
            item = overridden(card, f"made-up-{n}", when=f"2026-01-15T10:{call:02d}:00Z")
            items.append(item)
        assert client.post(f"{SELECT}/feedback", json={"feedback": items}).status_code == 200
    published = overridden(card, "patient-preference", when="2026-01-16T10:00:00Z")
    client.post(f"{SELECT}/feedback", json={"feedback": [published]})
    text = client.get("/metrics").get_data(as_text=True)
    assert _feedback_series(text) == 2, text  # reason="other" and reason="patient-preference"
    assert 'reason="other",service="diazepam-order-select",topic="beers-age"} 1000.0' in text
    assert "made-up" not in text


def test_metrics_token_guards_the_scrape(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics_token="s3cret-scrape").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert ok.status_code == 200 and b"cds_http_requests_total" in ok.data
    assert make_app().test_client().get("/metrics").status_code == 200  # unset: open


# -- item 7: valid, authenticated requests that answered 500/503 ----------------------------
def test_lone_surrogate_in_user_id_is_not_a_server_error(auth_app, ec_key: KeyPair) -> None:
    app = auth_app()
    app.extensions["cds.advisor"] = ScriptedAdvisor([("beers-age", "info")])
    body = json.dumps(hook_body(user="Practitioner/PLACEHOLDER")).replace(
        "PLACEHOLDER", "doc\\ud800x"
    )
    answer = app.test_client().post(
        SELECT, data=body, content_type="application/json", headers=bearer(ec_key, SELECT)
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert len(answer.get_json()["cards"]) == 1


@pytest.mark.parametrize("store_comments", [False, True])
def test_lone_surrogate_in_a_feedback_comment_is_stored(
    auth_app, ec_key: KeyPair, store_comments: bool
) -> None:
    app = auth_app(store_comments=store_comments)
    advisor = ScriptedAdvisor([("beers-age", "info")])
    app.extensions["cds.advisor"] = advisor
    client = app.test_client()
    client.post(SELECT, json=hook_body(), headers=bearer(ec_key, SELECT))
    item = overridden(advisor.issued[0]["uuid"])
    item["overrideReason"]["userComment"] = "PLACEHOLDER"
    body = json.dumps({"feedback": [item]}).replace("PLACEHOLDER", "bad \\udc80 text")
    path = f"{SELECT}/feedback"
    answer = client.post(
        path, data=body, content_type="application/json", headers=bearer(ec_key, path)
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == {"stored": 1, "duplicates": 0, "unknown_cards": 0}


def test_draft_nested_900_deep_gets_cards(auth_app, ec_key: KeyPair) -> None:
    """The real engine copies the draft into update suggestions (copy_json)."""
    scenario = json.loads((FIXTURES / "young-adult-back-spasm-30d.json").read_text())
    body = scenario["request"]
    nested: Any = {"valueString": "x"}
    for _ in range(900):
        nested = {"n": nested}
    body["context"]["draftOrders"]["entry"][0]["resource"]["_note"] = nested
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # only to serialise the test's own request body
    try:
        data = json.dumps(body)
    finally:
        sys.setrecursionlimit(limit)
    app = auth_app()
    answer = app.test_client().post(
        SIGN, data=data, content_type="application/json", headers=bearer(ec_key, SIGN)
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    assert answer.get_json()["cards"]


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_signed_token_with_a_string_time_claim_is_401(
    auth_app, ec_key: KeyPair, caplog: pytest.LogCaptureFixture, claim: str
) -> None:
    import time

    now = int(time.time())
    values = {"exp": str(now + 300), "iat": str(now), "nbf": str(now - 10)}
    headers = bearer(ec_key, SELECT, extra_claims={claim: values[claim]})
    answer = auth_app().test_client().post(SELECT, json=hook_body(), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert any(claim in reason for reason in auth_reasons(caplog))


# -- item 8: CORS origins match exactly, '*' is one DNS label --------------------------------
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://x.hospital.example", True),
        ("https://ehr-1.hospital.example", True),
        ("https://xhospital.example.evil.com", False),
        ("https://x.hospital.example.evil.com", False),
        ("https://a.b.hospital.example", False),
        ("http://x.hospital.example", False),
        ("https://x.hospital.example:8443", False),
        ("https://app.clinic.example", True),
        ("https://app.clinic.example.evil", False),
    ],
)
def test_cors_origin_patterns_match_whole_origins(
    make_app: Callable[..., Flask], origin: str, allowed: bool
) -> None:
    app = make_app(allowed_origins=("https://*.hospital.example", "https://app.clinic.example"))
    answer = app.test_client().options(
        SELECT,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert (answer.headers.get("Access-Control-Allow-Origin") == origin) is allowed


@pytest.mark.parametrize("bad", ["https://x*.hospital.example", "hospital.example", "https://a/b"])
def test_malformed_cors_origins_stop_start_up(make_app: Callable[..., Flask], bad: str) -> None:
    with pytest.raises(ConfigError, match="CDS_ALLOWED_ORIGINS"):
        make_app(allowed_origins=(bad,))


# -- item 10: dot ids, key-fetch cooldown --------------------------------------------------
@pytest.mark.parametrize("patient_id", [".", ".."])
def test_dot_patient_ids_are_never_fetched(
    httpserver: HTTPServer, make_app: Callable[..., Flask], patient_id: str
) -> None:
    httpserver.expect_request("/").respond_with_json({"resourceType": "Patient", "id": "x"})
    httpserver.expect_request("/fhir/").respond_with_json({"resourceType": "Patient", "id": "x"})
    app = make_app(
        fhir_allowlist=("localhost", "127.0.0.1"), fhir_allow_loopback=True, deadline_ms=1000
    )
    body = hook_body("order-sign", patient=patient_id)
    body["prefetch"] = {}
    body["fhirServer"] = httpserver.url_for("/fhir")
    body["fhirAuthorization"] = {
        "access_token": "ehr-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds",
    }
    app.extensions["cds.advisor"] = ScriptedAdvisor([("beers-age", "info")])
    answer = app.test_client().post(SIGN, json=body)
    assert answer.status_code in (400, 412), answer.get_data(as_text=True)
    assert httpserver.log == []  # nothing sent anywhere, least of all the token
    assert not valid_fhir_id(patient_id)


def test_refresh_cooldown_is_at_least_one_second(
    write_issuers: Callable[..., Path], make_app: Callable[..., Flask]
) -> None:
    source = RemoteJwks("https://keys.example.org/jwks.json", cache_s=300, cooldown_s=0)
    assert source.cooldown_s == 1
    issuers = write_issuers(
        {"iss": ISS, "jwks_url": "https://keys.example.org/jwks.json", "refresh_cooldown_s": 0}
    )
    with pytest.raises(ConfigError, match="refresh_cooldown_s"):
        make_app(auth="required", trusted_issuers=str(issuers))


def test_insecure_settings_on_loopback_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    from cds_service.config import check_startup

    caplog.set_level(logging.WARNING)
    check_startup(load_settings(environ={"CDS_ENV": "development", "CDS_HOST": "127.0.0.1"}))
    assert "CDS_ALLOW_INSECURE=false" in caplog.text
