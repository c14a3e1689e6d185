"""Real gunicorn, two workers, one SQLite database: a token replayed concurrently is accepted
exactly once, whichever worker sees it first (the jti store is the database, not a worker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests

from tests.security.helpers import ISS, KeyPair
from tests.support.server import running_server

PARALLEL = 16


def fire(url: str, token: str) -> list[int]:
    """The same token, PARALLEL times at once, each on its own connection."""

    def one(_: int) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return int(requests.get(url, headers=headers, timeout=15).status_code)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, range(PARALLEL)))


def replay_rejections(log_text: str, jti: str) -> set[int]:
    """Worker pids that logged a replay rejection for this jti."""
    pids = set()
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("reason") == "replayed jti" and record.get("jti") == jti:
            pids.add(record["worker"])
    return pids


@pytest.mark.slow
def test_replayed_token_is_accepted_once_across_two_workers(
    tmp_path: Path, write_issuers: Callable[..., Path], ec_key: KeyPair, rsa_key: KeyPair
) -> None:
    issuers = write_issuers({"iss": ISS, "keys": [ec_key, rsa_key]})
    env = {
        "CDS_ENV": "production",
        "CDS_AUTH": "required",
        "CDS_TRUSTED_ISSUERS": str(issuers),
        "CDS_DEV_TRUST_SANDBOX": "false",
        "CDS_PATIENT_HASH_KEY": "test-only-key",
        "CDS_DISCOVERY_AUTH": "required",  # discovery is the cheapest call that spends a jti
    }
    with running_server(tmp_path, env, workers=2) as server:
        url = f"{server.base_url}/cds-services"
        missing = requests.get(url, timeout=10)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        both_workers_saw_a_replay = False
        tokens = []
        for round_no in range(6):
            key = ec_key if round_no % 2 == 0 else rsa_key
            token = key.token(aud=url)
            tokens.append(token)
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            statuses = fire(url, token)
            assert sorted(statuses) == [200] + [401] * (PARALLEL - 1), statuses
            if len(replay_rejections(server.log_text(), jti)) == 2:
                both_workers_saw_a_replay = True
                if round_no >= 1:
                    break
        assert both_workers_saw_a_replay, "requests never reached both workers"
        log = server.log_text()
    assert not any(token in log for token in tokens)  # tokens are never logged
