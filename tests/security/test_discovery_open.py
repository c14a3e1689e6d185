"""Discovery answers a newcomer without a token (CDS_DISCOVERY_AUTH=open, the default): it lists
no patient data and CDS Hooks leaves its protection to the service. A token that is sent is
still verified; hooks and feedback stay protected; CDS_DISCOVERY_AUTH=required closes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from cds_service.config import ConfigError, load_settings
from tests.security.helpers import DISCOVERY_URL, ISS, KeyPair

HOOK = "/cds-services/diazepam-order-select"


@pytest.fixture
def issuers(write_issuers: Callable[..., Path], key: KeyPair) -> Path:
    return write_issuers({"iss": ISS, "keys": [key]})


def _app(make_app: Callable[..., Flask], issuers: Path, **more: str) -> Flask:
    return make_app(auth="required", trusted_issuers=str(issuers), dev_trust_sandbox=False, **more)


def test_discovery_is_open_by_default_and_hooks_are_not(make_app, issuers, sandbox_request):
    client = _app(make_app, issuers).test_client()
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert {s["id"] for s in response.get_json()["services"]} == {
        "diazepam-order-select",
        "diazepam-order-sign",
    }
    body = sandbox_request("order-select-request_r4-no-medication-yet")
    assert client.post(HOOK, json=body).status_code == 401
    assert client.post(HOOK + "/feedback", json={"feedback": []}).status_code == 401


def test_a_token_sent_to_open_discovery_is_still_verified(make_app, issuers, key, other_key):
    client = _app(make_app, issuers).test_client()
    good = {"Authorization": f"Bearer {key.token(DISCOVERY_URL)}"}
    assert client.get("/cds-services", headers=good).status_code == 200
    forged = {"Authorization": f"Bearer {other_key.token(DISCOVERY_URL, kid=key.kid)}"}
    assert client.get("/cds-services", headers=forged).status_code == 401
    assert client.get("/cds-services", headers={"Authorization": "Bearer junk"}).status_code == 401


def test_discovery_auth_required_closes_it(make_app, issuers, key):
    client = _app(make_app, issuers, discovery_auth="required").test_client()
    assert client.get("/cds-services").status_code == 401
    headers = {"Authorization": f"Bearer {key.token(DISCOVERY_URL)}"}
    assert client.get("/cds-services", headers=headers).status_code == 200


def test_discovery_auth_setting_is_checked() -> None:
    assert load_settings(environ={}).discovery_auth == "open"
    assert load_settings(environ={"CDS_DISCOVERY_AUTH": "required"}).discovery_auth == "required"
    with pytest.raises(ConfigError, match="CDS_DISCOVERY_AUTH"):
        load_settings(environ={"CDS_DISCOVERY_AUTH": "sometimes"})
