"""Authentication through the Flask app with the real database replay store: the issue's
"Done when" matrix, each case run with a fresh EC P-384 key and a fresh RSA key.

Every rejection is checked three ways: 401 with ``WWW-Authenticate: Bearer``, a body that says
nothing about why, and the log line that does say why — so a case cannot pass by failing for
some other reason than the one it is about.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g

from cds_service.config import ConfigError
from tests.security.helpers import (
    DISCOVERY_URL,
    ISS,
    OTHER_ISS,
    SELECT_URL,
    KeyPair,
    b64,
    hs256_with_public_key,
    unsigned_token,
)

SELECT_PATH = "/cds-services/diazepam-order-select"
FEEDBACK_PATH = "/cds-services/diazepam-order-select/feedback"


@pytest.fixture
def auth_app(
    make_app: Callable[..., Flask], write_issuers: Callable[..., Path], key: KeyPair
) -> Flask:
    issuers = write_issuers({"iss": ISS, "keys": [key], "profile": "epic"})
    app = make_app(auth="required", trusted_issuers=str(issuers), dev_trust_sandbox=False)
    assert hasattr(app.extensions.get("cds.store"), "claim_jti"), "database store not registered"
    return app


def auth_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.reason  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "cds_service.security" and r.getMessage() == "authentication failed"
    ]


def assert_rejected(response: Any, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["diagnostics"] for i in body["issue"]] == ["Authentication required."]
    logged = auth_failures(caplog)
    assert len(logged) == 1 and reason in logged[0], logged


def post_select(client: Any, token: str | None, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(SELECT_PATH, json=body, headers=headers)


@pytest.fixture
def select_body(sandbox_request: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    # A real sandbox hook call that needs no patient data: its 200 depends on authentication
    # alone, not on the clinical engine or a FHIR server.
    return sandbox_request("order-select-request_r4-no-medication-yet")


def test_valid_token_is_accepted_and_identifies_the_client(
    auth_app: Flask, key: KeyPair, select_body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}
    auth_app.extensions.setdefault("cds.after_hook", []).append(
        lambda service, req, result: seen.update(
            iss=g.get("cds_client_iss"), profile=g.get("cds_client_profile")
        )
    )
    client = auth_app.test_client()
    token = key.token(SELECT_URL)
    response = post_select(client, token, select_body)
    assert response.status_code == 200, response.get_json()
    assert "cards" in response.get_json()
    assert seen == {"iss": ISS, "profile": "epic"}
    assert auth_failures(caplog) == []
    # Discovery and feedback are protected the same way, each with its own URL as aud.
    discovery = client.get(
        "/cds-services", headers={"Authorization": f"Bearer {key.token(DISCOVERY_URL)}"}
    )
    assert discovery.status_code == 200 and discovery.get_json()["services"]
    assert token not in caplog.text  # tokens are never logged


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda k, o: None, "missing Authorization"),
        (lambda k, o: "not-a-jwt", "malformed"),
        (lambda k, o: "eyJhbGciOi.eyJpc3Mi.c2ln", "malformed"),
        (
            lambda k, o: k.token(extra_claims={"exp": 1_700_000_000, "iat": 1_699_999_700}),
            "expired",
        ),
        (lambda k, o: k.token(extra_claims={"nbf": 4_000_000_000}), "not yet valid"),
        (lambda k, o: k.token(aud="http://localhost/cds-services/other-service"), "aud"),
        (lambda k, o: k.token(aud="https://other-cds.example.org" + SELECT_PATH), "aud"),
        (lambda k, o: k.token(iss=OTHER_ISS), "untrusted issuer"),
        (lambda k, o: k.token(kid="no-such-kid"), "unknown kid"),
        (lambda k, o: o.token(kid=k.kid), "bad signature"),
        (lambda k, o: unsigned_token(k.kid), "never accepted"),
        (lambda k, o: hs256_with_public_key(k), "never accepted"),
        (
            lambda k, o: k.token(headers={"jku": "https://attacker.example/jwks.json"}),
            "jku not on this issuer's list",
        ),
    ],
    ids=[
        "missing-header",
        "malformed",
        "malformed-base64",
        "expired",
        "not-yet-valid",
        "wrong-aud-path",
        "wrong-aud-host",
        "untrusted-iss",
        "unknown-kid",
        "bad-signature",
        "alg-none",
        "hs256-public-key-as-secret",
        "disallowed-jku",
    ],
)
def test_rejected_tokens(
    auth_app: Flask,
    key: KeyPair,
    other_key: KeyPair,
    select_body: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    make_token: Callable[[KeyPair, KeyPair], str | None],
    reason: str,
) -> None:
    token = make_token(key, other_key)
    response = post_select(auth_app.test_client(), token, select_body)
    assert_rejected(response, caplog, reason)
    if token:
        assert token not in caplog.text


def test_tampered_payload_is_rejected(
    auth_app: Flask, key: KeyPair, select_body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    header, _, signature = key.token().split(".")
    payload = b64({"iss": ISS, "aud": SELECT_URL, "exp": 4_000_000_000, "iat": 1, "jti": "x"})
    response = post_select(auth_app.test_client(), f"{header}.{payload}.{signature}", select_body)
    assert_rejected(response, caplog, "bad signature")


def test_deeply_nested_token_header_is_a_401_not_a_503(
    auth_app: Flask, select_body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A header of thousands of nested arrays overflows the JSON parser's recursion: that is a
    malformed token (401), not a store failure (503)."""
    header = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).rstrip(b"=").decode()
    response = post_select(auth_app.test_client(), f"{header}.e30.c2ln", select_body)
    assert_rejected(response, caplog, "malformed token")


def test_replayed_jti_is_rejected_in_the_database(
    auth_app: Flask, key: KeyPair, select_body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = auth_app.test_client()
    token = key.token()
    assert post_select(client, token, select_body).status_code == 200
    assert_rejected(post_select(client, token, select_body), caplog, "replayed jti")
    # A second app on the same database (another worker or host) sees the jti as used too.
    caplog.clear()
    store = auth_app.extensions["cds.store"]
    same_jti = key.token(extra_claims={"jti": "shared-jti-1"})
    assert post_select(client, same_jti, select_body).status_code == 200
    assert store.claim_jti(ISS, "shared-jti-1", dt.datetime.now(dt.UTC)) is False


def test_same_jti_from_two_issuers_is_not_a_replay(
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    ec_key: KeyPair,
    rsa_key: KeyPair,
    select_body: dict[str, Any],
) -> None:
    issuers = write_issuers({"iss": ISS, "keys": [ec_key]}, {"iss": OTHER_ISS, "keys": [rsa_key]})
    client = make_app(auth="required", trusted_issuers=str(issuers)).test_client()
    first = ec_key.token(extra_claims={"jti": "same"})
    second = rsa_key.token(iss=OTHER_ISS, extra_claims={"jti": "same"})
    assert post_select(client, first, select_body).status_code == 200
    assert post_select(client, second, select_body).status_code == 200
    # ...but the other issuer's key cannot sign for the first issuer.
    assert post_select(client, rsa_key.token(iss=ISS), select_body).status_code == 401


def test_tenant_allowlist(
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    key: KeyPair,
    select_body: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuers = write_issuers({"iss": ISS, "keys": [key], "tenants": ["north", "south"]})
    client = make_app(auth="required", trusted_issuers=str(issuers)).test_client()
    ok = key.token(extra_claims={"tenant": "north"})
    assert post_select(client, ok, select_body).status_code == 200
    assert_rejected(
        post_select(client, key.token(extra_claims={"tenant": "west"}), select_body),
        caplog,
        "tenant not allowed",
    )
    caplog.clear()
    assert_rejected(post_select(client, key.token(), select_body), caplog, "tenant not allowed")


def test_trailing_slash_and_list_audiences_are_tolerated(
    auth_app: Flask, key: KeyPair, select_body: dict[str, Any]
) -> None:
    client = auth_app.test_client()
    assert post_select(client, key.token(aud=SELECT_URL + "/"), select_body).status_code == 200
    listed = key.token(aud=["https://elsewhere.example.org/x", SELECT_URL])  # type: ignore[arg-type]
    assert post_select(client, listed, select_body).status_code == 200
    feedback = {"feedback": []}
    resp = client.post(
        FEEDBACK_PATH,
        json=feedback,
        headers={"Authorization": f"Bearer {key.token(aud=SELECT_URL)}"},
    )
    assert resp.status_code == 401  # a token for the service is not one for its feedback URL


def test_public_base_url_decides_the_audience(
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    key: KeyPair,
    select_body: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    public = "https://cds.hospital.example.org/advice"
    issuers = write_issuers({"iss": ISS, "keys": [key]})
    client = make_app(
        auth="required", trusted_issuers=str(issuers), public_base_url=public + "/"
    ).test_client()
    assert post_select(client, key.token(aud=public + SELECT_PATH), select_body).status_code == 200
    # The internal URL (what a proxy forwards to) is not the audience any more.
    assert_rejected(post_select(client, key.token(aud=SELECT_URL), select_body), caplog, "aud")


def test_leeway_tolerates_small_clock_skew_only(
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    key: KeyPair,
    select_body: dict[str, Any],
) -> None:
    now = int(time.time())
    issuers = write_issuers({"iss": ISS, "keys": [key]})
    client = make_app(auth="required", trusted_issuers=str(issuers), jwt_leeway_s=30).test_client()
    skewed = key.token(extra_claims={"exp": now - 10, "iat": now - 310, "nbf": now + 10})
    assert post_select(client, skewed, select_body).status_code == 200
    too_old = key.token(extra_claims={"exp": now - 60, "iat": now - 360})
    assert post_select(client, too_old, select_body).status_code == 401
    future_iat = key.token(extra_claims={"iat": now + 120, "exp": now + 400})
    assert post_select(client, future_iat, select_body).status_code == 401


def test_health_and_cors_preflight_need_no_token(
    make_app: Callable[..., Flask], write_issuers: Callable[..., Path], key: KeyPair
) -> None:
    issuers = write_issuers({"iss": ISS, "keys": [key]})
    client = make_app(
        auth="required",
        trusted_issuers=str(issuers),
        allowed_origins=("https://sandbox.cds-hooks.org",),
    ).test_client()
    assert client.get("/health").status_code == 200
    preflight = client.options(
        SELECT_PATH,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    # ...while the real call still needs one, and its 401 carries CORS headers for the browser.
    rejected = client.post(
        SELECT_PATH, json={}, headers={"Origin": "https://sandbox.cds-hooks.org"}
    )
    assert rejected.status_code == 401
    assert rejected.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"


def test_unknown_path_without_token_reveals_nothing(auth_app: Flask) -> None:
    assert auth_app.test_client().get("/no-such-page").status_code == 401
    # /admin is not an unknown path but a feature switched off (issue 16): without
    # CDS_ADMIN_TOKEN it does not exist for anyone, JWT or not
    assert auth_app.test_client().get("/admin").status_code == 404


def test_auth_required_without_any_issuer_stops_start_up(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="no client is trusted"):
        make_app(auth="required", trusted_issuers="", dev_trust_sandbox=False)


def test_invalid_issuers_file_stops_start_up(
    make_app: Callable[..., Flask], tmp_path: Path, write_issuers: Callable[..., Path], key: KeyPair
) -> None:
    bad_alg = write_issuers({"iss": ISS, "keys": [key], "algorithms": ["HS256"]})
    with pytest.raises(ConfigError, match="algorithms/0"):
        make_app(auth="required", trusted_issuers=str(bad_alg))
    no_keys = write_issuers({"iss": ISS})
    with pytest.raises(ConfigError, match="invalid trusted-issuers file"):
        make_app(auth="required", trusted_issuers=str(no_keys))
    plain_http = write_issuers({"iss": ISS, "jwks_url": "http://keys.example.org/jwks.json"})
    with pytest.raises(ConfigError, match="must be https"):
        make_app(auth="required", trusted_issuers=str(plain_http))
    missing_file = write_issuers({"iss": ISS, "jwks_file": "nowhere.json"})
    with pytest.raises(ConfigError, match="nowhere.json"):
        make_app(auth="required", trusted_issuers=str(missing_file))
    twice = write_issuers({"iss": ISS, "keys": [key]}, {"iss": ISS, "keys": [key]})
    with pytest.raises(ConfigError, match="listed twice"):
        make_app(auth="required", trusted_issuers=str(twice))
    with pytest.raises(ConfigError, match="unreadable"):
        make_app(auth="required", trusted_issuers=str(tmp_path / "absent.json"))


def test_disabled_mode_warns_at_start_up_and_while_calls_come_in(
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loud without a second log line per call: the first call warns, later ones within the
    interval are counted into the next warning."""
    caplog.set_level(logging.WARNING)
    app = make_app(auth="disabled")
    assert any("CDS_AUTH=disabled" in r.getMessage() for r in caplog.records)
    caplog.clear()
    client = app.test_client()

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "authentication disabled" in r.getMessage()]

    assert client.get("/cds-services").status_code == 200
    assert client.get("/cds-services").status_code == 200
    assert [r.unverified_requests for r in warnings()] == [1]  # type: ignore[attr-defined]
    assert client.get("/health").status_code == 200  # open paths are not "unverified"
    monkeypatch.setattr("cds_service.security.DISABLED_WARNING_INTERVAL_S", 0.0)
    assert client.get("/cds-services").status_code == 200  # the interval set before still runs
    deadline = time.monotonic() + 5
    while len(warnings()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        client.get("/cds-services")
    assert len(warnings()) == 2
    assert warnings()[1].unverified_requests >= 2  # type: ignore[attr-defined]


def test_replay_store_failure_fails_closed(
    auth_app: Flask, key: KeyPair, select_body: dict[str, Any]
) -> None:
    class BrokenStore:
        def claim_jti(self, issuer: str, jti: str, expires_at: Any) -> bool:
            raise ConnectionError("database down")

    auth_app.extensions["cds.store"] = BrokenStore()
    response = post_select(auth_app.test_client(), key.token(), select_body)
    assert response.status_code == 503
    assert "database" not in json.dumps(response.get_json())
