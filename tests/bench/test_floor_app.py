"""The protocol floor does the CDS Hooks JWT checks for real: a floor that accepted anything
would make the service's ratio to it meaningless."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.floor_app import ProtocolCheck, create_protocol_floor_app
from bench.tokens import ISSUER, create_issuer, mint

URL = "http://floor.test/cds-services/diazepam-order-sign"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory):
    return create_issuer(tmp_path_factory.mktemp("floor-auth"))


def test_a_token_is_accepted_once_for_the_url_it_names(issuer):
    check = ProtocolCheck(issuer.jwks_path, ISSUER)
    token = mint(issuer.key_path, URL)
    assert check(f"Bearer {token}", URL) is True
    assert check(f"Bearer {token}", URL) is False  # replayed jti
    assert check(f"Bearer {mint(issuer.key_path, URL)}", URL + "/other") is False  # aud
    assert check(None, URL) is False
    expired = mint(issuer.key_path, URL, now=int(time.time()) - 3600)
    assert check(f"Bearer {expired}", URL) is False


def test_another_issuers_key_or_name_is_refused(issuer, tmp_path: Path):
    other = create_issuer(tmp_path / "other")
    assert ProtocolCheck(issuer.jwks_path, ISSUER)(
        f"Bearer {mint(other.key_path, URL)}", URL
    ) is False  # same kid, another key: bad signature
    assert ProtocolCheck(issuer.jwks_path, "https://someone.else")(
        f"Bearer {mint(issuer.key_path, URL)}", URL
    ) is False


def test_protocol_floor_app_answers_the_fixed_card_only_with_a_good_token(issuer):
    client = create_protocol_floor_app(issuer.jwks_path, ISSUER).test_client()
    body = json.dumps({"hook": "order-sign"})
    headers = {"Content-Type": "application/json"}
    assert client.post("/cds-services/x", data=body, headers=headers).status_code == 401
    token = mint(issuer.key_path, "http://localhost/cds-services/x")
    answered = client.post(
        "/cds-services/x", data=body, headers={**headers, "Authorization": f"Bearer {token}"}
    )
    assert answered.status_code == 200
    assert answered.get_json()["cards"][0]["summary"] == "Floor: a fixed card"
