"""The CDS Hooks sandbox: its pinned key set, the development profile that trusts it, and a
token in exactly the sandbox's format (header and claim set taken from a recorded sandbox
JWT in tests/data/sandbox/)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask

from cds_service.config import load_settings
from cds_service.security import issuers as issuers_module
from cds_service.security.issuers import SANDBOX_ISS, SANDBOX_JKU, load_trusted_issuers
from tests.conftest import DATA, load_json
from tests.security.helpers import ISS, KeyPair

SANDBOX_HEADER = load_json(DATA / "sandbox" / "sandbox-jwt-header.json")
SANDBOX_PAYLOAD = load_json(DATA / "sandbox" / "sandbox-jwt-payload.json")
SANDBOX_KID = SANDBOX_HEADER["kid"]
SELECT_PATH = "/cds-services/diazepam-order-select"


def sandbox_format_token(key: KeyPair, aud: str) -> str:
    """Sign with ``key`` a token whose header and claims are the sandbox's, field for field."""
    now = int(time.time())
    claims = {
        "iss": SANDBOX_ISS,
        "aud": aud,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    assert set(claims) == set(SANDBOX_PAYLOAD)  # no sub, no tenant, no nbf — as recorded
    private = serialization.load_pem_private_key(key.path.read_bytes(), password=None)
    token = jwt.encode(claims, private, algorithm="ES384", headers=SANDBOX_HEADER)  # type: ignore[arg-type]
    assert jwt.get_unverified_header(token) == SANDBOX_HEADER
    return token


def call(client: Any, token: str, body: dict[str, Any]) -> int:
    response = client.post(SELECT_PATH, json=body, headers={"Authorization": f"Bearer {token}"})
    return int(response.status_code)


@pytest.fixture
def body(sandbox_request: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return sandbox_request("order-select-request_r4-no-medication-yet")


@pytest.fixture
def local_sandbox_key(ec_key: KeyPair, tmp_path: Path) -> tuple[KeyPair, Path]:
    """A fresh P-384 key published under the sandbox's kid, as the sandbox would."""
    jwk = {**ec_key.jwk, "kid": SANDBOX_KID}
    path = tmp_path / "local-sandbox-jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    return ec_key, path


def test_pinned_jwks_is_the_sandbox_key_and_development_trusts_it() -> None:
    pinned = json.loads(issuers_module.SANDBOX_JWKS_PATH.read_text(encoding="utf-8"))
    assert pinned == load_json(DATA / "sandbox" / "sandbox-public-jwks.json")
    issuers = load_trusted_issuers(load_settings({}, {"env": "development"}))
    sandbox = issuers[SANDBOX_ISS]
    assert sandbox.find_key(SANDBOX_KID) == pinned["keys"][0]
    assert sandbox.algorithms == ("ES384",)
    assert list(sandbox.jku) == [SANDBOX_JKU]
    assert sandbox.jku[SANDBOX_JKU].fetch_count == 0  # pinned: no network needed


def test_production_does_not_trust_the_sandbox_by_default(
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    local_sandbox_key: tuple[KeyPair, Path],
    rsa_key: KeyPair,
    body: dict[str, Any],
) -> None:
    assert load_settings({}, {"env": "production"}).dev_trust_sandbox is False
    key, _ = local_sandbox_key
    issuers = write_issuers({"iss": ISS, "keys": [rsa_key]})
    app = make_app(env="production", auth="required", trusted_issuers=str(issuers))
    assert SANDBOX_ISS not in app.extensions["cds.verifier"].issuers
    token = sandbox_format_token(key, "http://localhost" + SELECT_PATH)
    assert call(app.test_client(), token, body) == 401


def test_sandbox_format_token_passes_in_the_development_profile(
    make_app: Callable[..., Flask],
    local_sandbox_key: tuple[KeyPair, Path],
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
) -> None:
    """The built-in sandbox issuer, with its pinned key swapped for a local one (the real
    private key is not in this repository), accepts a sandbox-format token."""
    key, jwks_path = local_sandbox_key
    monkeypatch.setattr(issuers_module, "SANDBOX_JWKS_PATH", jwks_path)
    app = make_app(env="development", auth="required", trusted_issuers="")
    client = app.test_client()
    assert call(client, sandbox_format_token(key, "http://localhost" + SELECT_PATH), body) == 200
    discovery = sandbox_format_token(key, "http://localhost/cds-services")
    assert (
        client.get("/cds-services", headers={"Authorization": f"Bearer {discovery}"}).status_code
        == 200
    )


def test_sandbox_format_token_passes_for_a_configured_issuer(
    make_app: Callable[..., Flask],
    tmp_path: Path,
    local_sandbox_key: tuple[KeyPair, Path],
    body: dict[str, Any],
) -> None:
    """The same token format through an issuers-file entry (production profile)."""
    key, jwks_path = local_sandbox_key
    issuers = tmp_path / "issuers.json"
    entry = {"iss": SANDBOX_ISS, "jwks_file": str(jwks_path), "jku": [SANDBOX_JKU]}
    issuers.write_text(json.dumps({"issuers": [entry]}), encoding="utf-8")
    client = make_app(env="production", auth="required", trusted_issuers=str(issuers)).test_client()
    assert call(client, sandbox_format_token(key, "http://localhost" + SELECT_PATH), body) == 200


def test_development_profile_uses_the_real_pinned_key(
    make_app: Callable[..., Flask], local_sandbox_key: tuple[KeyPair, Path], body: dict[str, Any]
) -> None:
    """Without the swap, our local key is not the sandbox's: its signature fails against the
    pinned public key — which shows the pinned key is the one in use."""
    key, _ = local_sandbox_key
    app = make_app(env="development", auth="required")
    token = sandbox_format_token(key, "http://localhost" + SELECT_PATH)
    assert call(app.test_client(), token, body) == 401
    assert app.extensions["cds.verifier"].issuers[SANDBOX_ISS].jku[SANDBOX_JKU].fetch_count == 0


def test_example_issuers_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "trusted-issuers.example.json"
    loaded = issuers_module.load_issuers_file(example, cache_s=300)
    assert {i.profile for i in loaded.values()} == {"standard", "epic", None}
    assert any(i.tenants for i in loaded.values())
    # The example's pinned file holds public keys only.
    pinned = json.loads((example.parent / "keys" / "hospital-a-jwks.json").read_text())
    assert all("d" not in k for k in pinned["keys"])
