"""Issue 17 items 2 and 5 against the real ``diazepam-cds serve`` (gunicorn): what start-up
refuses, and which headers decide the expected JWT ``aud``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.security.helpers import ISS, KeyPair
from tests.support.server import REPO, free_port, launch, running_server

pytestmark = pytest.mark.slow

EXE = str(Path(sys.executable).with_name("diazepam-cds"))
HASH_KEY = "test-only-patient-hash-key"


def serve_refusal(tmp_path: Path, env: dict[str, str], host: str = "127.0.0.1") -> str:
    """Run ``serve`` expecting it to refuse: exit status 2 before binding; its output."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    full.update({"CDS_DATA_DIR": str(tmp_path / "data"), **env})
    port = str(free_port())
    done = subprocess.run(
        [EXE, "serve", "--host", host, "--port", port, "--workers", "1"],
        env=full,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "configuration error" in done.stderr
    assert not (tmp_path / "data" / "cds.sqlite3").exists()  # refused before opening anything
    return done.stderr


@pytest.fixture
def issuers_file(write_issuers: Callable[..., Path], ec_key: KeyPair) -> Path:
    return write_issuers({"iss": ISS, "keys": [ec_key]})


# -- item 2 -----------------------------------------------------------------------------
def test_production_refuses_to_start_without_public_base_url(
    tmp_path: Path, issuers_file: Path
) -> None:
    env = {"CDS_TRUSTED_ISSUERS": str(issuers_file), "CDS_PATIENT_HASH_KEY": HASH_KEY}
    assert "CDS_PUBLIC_BASE_URL is required" in serve_refusal(tmp_path, env)


def test_aud_comes_from_configuration_not_from_host_or_forwarded_headers(
    tmp_path: Path, issuers_file: Path, ec_key: KeyPair
) -> None:
    env = {
        "CDS_TRUSTED_ISSUERS": str(issuers_file),
        "CDS_PUBLIC_BASE_URL": "https://cds.hospital.example/advice",
    }
    with running_server(tmp_path, env, workers=1) as server:
        url = f"{server.base_url}/cds-services"
        # a token minted for another vendor's service at the same path, sent with its host
        other = ec_key.token(aud="https://other-vendor.example/cds-services")
        spoofed = {
            "Authorization": f"Bearer {other}",
            "Host": "other-vendor.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "other-vendor.example",
        }
        assert requests.get(url, headers=spoofed, timeout=10).status_code == 401
        ours = ec_key.token(aud="https://cds.hospital.example/advice/cds-services")
        answer = requests.get(url, headers={"Authorization": f"Bearer {ours}"}, timeout=10)
        assert answer.status_code == 200


@pytest.mark.parametrize(("trusted", "status"), [(None, 401), ("127.0.0.1", 200)])
def test_forwarded_proto_is_trusted_only_from_configured_proxies(
    tmp_path: Path, issuers_file: Path, ec_key: KeyPair, trusted: str | None, status: int
) -> None:
    """With CDS_AUD_FROM_REQUEST=true the request's URL is the audience; gunicorn's default
    trusts X-Forwarded-Proto from 127.0.0.1 (any local process), the service from nobody
    unless CDS_FORWARDED_ALLOW_IPS names the proxy."""
    env = {
        "CDS_TRUSTED_ISSUERS": str(issuers_file),
        "CDS_PUBLIC_BASE_URL": "",
        "CDS_AUD_FROM_REQUEST": "true",
    }
    if trusted:
        env["CDS_FORWARDED_ALLOW_IPS"] = trusted
    with running_server(tmp_path, env, workers=1) as server:
        url = f"{server.base_url}/cds-services"
        token = ec_key.token(aud=url.replace("http://", "https://"))
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
        assert requests.get(url, headers=headers, timeout=10).status_code == status
        assert "CDS_AUD_FROM_REQUEST=true" in server.log_text()  # the risk is stated


# -- item 5 -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "unsafe",
    [
        {"CDS_ENV": "development"},
        {"CDS_DEV_TRUST_SANDBOX": "true", "CDS_AUTH": "required"},
        {"CDS_AUTH": "disabled"},
    ],
    ids=["development", "sandbox-issuer", "auth-disabled"],
)
def test_unsafe_settings_refuse_a_non_loopback_bind(
    tmp_path: Path, issuers_file: Path, unsafe: dict[str, str]
) -> None:
    env = {
        "CDS_TRUSTED_ISSUERS": str(issuers_file),
        "CDS_PUBLIC_BASE_URL": "https://cds.hospital.example",
        "CDS_PATIENT_HASH_KEY": HASH_KEY,
        **unsafe,
    }
    assert "refusing to listen on 0.0.0.0" in serve_refusal(tmp_path, env, host="0.0.0.0")


def test_unsafe_settings_in_a_config_file_refuse_too(tmp_path: Path) -> None:
    config = tmp_path / "cds.json"
    config.write_text('{"CDS_ENV": "development"}')
    stderr = serve_refusal(tmp_path, {"CDS_CONFIG_FILE": str(config)}, host="0.0.0.0")
    assert "refusing to listen" in stderr
    config.write_text('{"cds_env": "development"}')  # another letter case is no way round
    assert "unknown setting 'cds_env'" in serve_refusal(tmp_path, {"CDS_CONFIG_FILE": str(config)})


def test_allow_insecure_starts_and_says_so_loudly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_ENV": "development",
        "CDS_ALLOW_INSECURE": "true",
    }
    command = [EXE, "serve", "--host", "0.0.0.0", "--port", str(port), "--workers", "1"]
    server = launch(command, port, tmp_path, env, name="insecure")
    try:
        log = server.log_text()
        assert "CDS_ALLOW_INSECURE=true" in log and "NOT SAFE FOR PATIENT CARE" in log
    finally:
        server.kill()


def test_production_refuses_to_start_without_patient_hash_key(
    tmp_path: Path, issuers_file: Path
) -> None:
    env = {
        "CDS_TRUSTED_ISSUERS": str(issuers_file),
        "CDS_PUBLIC_BASE_URL": "https://cds.hospital.example",
    }
    assert "CDS_PATIENT_HASH_KEY is required" in serve_refusal(tmp_path, env)


def test_make_run_binds_loopback() -> None:
    dry = subprocess.run(
        ["make", "-n", "run", "VENV=.venv-never-created"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    serve = [line for line in dry.stdout.splitlines() if " serve " in line]
    assert serve and all("--host 127.0.0.1" in line for line in serve), dry.stdout
