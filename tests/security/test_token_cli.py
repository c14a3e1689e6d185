"""``diazepam-cds token``: the minted token and the printed key set work with the service."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask

from cds_service.cli import main
from cds_service.security.tokens import TokenError, mint_token
from tests.security.helpers import ISS, SELECT_URL, KeyPair

SELECT_PATH = "/cds-services/diazepam-order-select"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["token", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_token_and_jwks_are_accepted_by_the_service(
    capsys: pytest.CaptureFixture[str],
    make_app: Callable[..., Flask],
    tmp_path: Path,
    key: KeyPair,
    sandbox_request: Callable[[str], dict[str, Any]],
) -> None:
    code, out, _ = run_cli(capsys, "--key", str(key.path), "--print-jwks")
    assert code == 0
    jwks = json.loads(out)
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # no private parts
    (tmp_path / "client-jwks.json").write_text(out, encoding="utf-8")
    issuers = tmp_path / "issuers.json"
    entry = {"iss": ISS, "jwks_file": "client-jwks.json", "tenants": ["t1"]}
    issuers.write_text(json.dumps({"issuers": [entry]}), encoding="utf-8")
    client = make_app(auth="required", trusted_issuers=str(issuers)).test_client()

    code, out, _ = run_cli(
        capsys, "--key", str(key.path), "--iss", ISS, "--aud", SELECT_URL, "--tenant", "t1"
    )
    assert code == 0
    token = out.strip()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header == {"alg": key.alg, "typ": "JWT", "kid": jwks["keys"][0]["kid"]}
    assert claims["exp"] - claims["iat"] == 300 and claims["tenant"] == "t1"
    body = sandbox_request("order-select-request_r4-no-medication-yet")
    ok = client.post(SELECT_PATH, json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_cli_errors_are_messages_not_tracebacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: KeyPair
) -> None:
    code, _, err = run_cli(
        capsys, "--key", str(tmp_path / "missing.pem"), "--iss", ISS, "--aud", SELECT_URL
    )
    assert code == 2 and "cannot read key" in err
    not_a_key = tmp_path / "x.pem"
    not_a_key.write_text("hello", encoding="utf-8")
    code, _, err = run_cli(capsys, "--key", str(not_a_key), "--iss", ISS, "--aud", SELECT_URL)
    assert code == 2 and "not an unencrypted PEM private key" in err
    code, _, err = run_cli(capsys, "--key", str(key.path), "--iss", ISS)
    assert code == 2 and "--aud" in err
    with pytest.raises(TokenError, match="asymmetric"):
        mint_token(key.path, ISS, SELECT_URL, alg="HS256")


def test_console_script_has_the_token_command(ec_key: KeyPair) -> None:
    exe = Path(sys.executable).with_name("diazepam-cds")
    result = subprocess.run(
        [str(exe), "token", "--key", str(ec_key.path), "--iss", ISS, "--aud", SELECT_URL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert jwt.get_unverified_header(result.stdout.strip())["kid"] == ec_key.kid
