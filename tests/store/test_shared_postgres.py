"""Two service instances (two ``diazepam-cds serve`` processes, as on two hosts behind one
load balancer) sharing one PostgreSQL database: feedback sent to either lands in one report,
a card issued by one is known to the other, and a JWT used on one is refused by the other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.cli import main
from tests.security.helpers import ISS, write_key
from tests.store.helpers import overridden
from tests.support.server import start_server

REPO = Path(__file__).resolve().parents[2]
PUBLIC = "https://cds.example.org"  # both instances sit behind this one URL


@pytest.mark.slow
def test_two_instances_share_feedback_cards_and_replay_cache(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    key = write_key(tmp_path, "ec", ec.generate_private_key(ec.SECP384R1()))
    (tmp_path / "jwks.json").write_text(json.dumps(key.jwks), encoding="utf-8")
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks_file": "jwks.json"}]}))
    env = {
        "CDS_DATABASE_URL": pg_url,
        "CDS_AUTH": "required",
        "CDS_TRUSTED_ISSUERS": str(issuers),
        "CDS_DEV_TRUST_SANDBOX": "false",
        "CDS_PUBLIC_BASE_URL": PUBLIC,
        "CDS_PATIENT_HASH_KEY": "shared-secret",
    }
    scenario = json.loads(
        (REPO / "fixtures/scenarios/elderly-78-egfr45-no-baclofen.json").read_text("utf-8")
    )
    hook_path = f"/cds-services/{scenario['service']}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_server(tmp_path / "a", env, workers=1)
    try:
        b = start_server(tmp_path / "b", env, workers=1)
        try:

            def post(server: Any, path: str, body: dict[str, Any]) -> requests.Response:
                token = key.token(aud=PUBLIC + path)
                headers = {"Authorization": f"Bearer {token}"}
                return requests.post(server.base_url + path, json=body, headers=headers, timeout=10)

            cards = post(a, hook_path, scenario["request"]).json()["cards"]
            topics = [card["source"]["topic"]["code"] for card in cards]
            assert len(cards) >= 2
            via_a = post(a, hook_path + "/feedback", {"feedback": [overridden(cards[0]["uuid"])]})
            via_b = post(b, hook_path + "/feedback", {"feedback": [overridden(cards[1]["uuid"])]})
            assert via_a.json() == {"stored": 1, "duplicates": 0, "unknown_cards": 0}
            # B never issued cards[1], but the database it shares with A did
            assert via_b.json() == {"stored": 1, "duplicates": 0, "unknown_cards": 0}
            retry_on_b = post(
                b, hook_path + "/feedback", {"feedback": [overridden(cards[0]["uuid"])]}
            )
            assert retry_on_b.json()["duplicates"] == 1

            token = key.token(aud=PUBLIC + "/cds-services")
            headers = {"Authorization": f"Bearer {token}"}
            assert (
                requests.get(a.base_url + "/cds-services", headers=headers, timeout=10).status_code
                == 200
            )
            replay = requests.get(b.base_url + "/cds-services", headers=headers, timeout=10)
            assert replay.status_code == 401
            assert '"reason": "replayed jti"' in b.log_text()
        finally:
            b.kill()
    finally:
        a.kill()

    monkeypatch.setenv("CDS_DATABASE_URL", pg_url)
    assert main(["report", "--json"]) == 0
    report = {row["topic"]: row for row in json.loads(capsys.readouterr().out)}
    for topic in topics:
        assert report[topic]["issued"] == 1
    assert report[topics[0]]["overridden"] == 1
    assert report[topics[1]]["overridden"] == 1
    assert sum(row["overridden"] for row in report.values()) == 2
