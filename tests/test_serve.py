"""End to end: the real ``diazepam-cds serve`` (gunicorn) process, spoken to over HTTP."""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import DATA, with_patient_prefetch
from tests.support.server import running_server

pytestmark = pytest.mark.slow


def test_serve_speaks_cds_hooks_over_http(tmp_path):
    env = {"CDS_AUTH": "disabled", "CDS_ENV": "development"}
    body = with_patient_prefetch(
        json.loads((DATA / "sandbox" / "order-sign-request_r4-server.json").read_text())
    )
    with running_server(tmp_path, env, workers=2) as server:
        base = server.base_url
        discovery = requests.get(f"{base}/cds-services", timeout=5)
        assert discovery.status_code == 200
        assert {s["id"] for s in discovery.json()["services"]} == {
            "diazepam-order-select",
            "diazepam-order-sign",
        }

        url = f"{base}/cds-services/diazepam-order-sign"
        preflight = requests.options(
            url,
            headers={
                "Origin": "https://sandbox.cds-hooks.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=5,
        )
        assert preflight.status_code in (200, 204)
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()

        hook = requests.post(
            url, json=body, headers={"Origin": "https://sandbox.cds-hooks.org"}, timeout=10
        )
        assert hook.status_code == 200
        assert hook.headers["Content-Type"].startswith("application/json")
        assert hook.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
        cards = hook.json()["cards"]
        assert cards and all(card["uuid"] and len(card["summary"]) < 140 for card in cards)

        bad = requests.post(url, data="{", headers={"Content-Type": "application/json"}, timeout=5)
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"

        feedback = requests.post(
            f"{url}/feedback",
            json={
                "feedback": [
                    {
                        "card": cards[0]["uuid"],
                        "outcome": "overridden",
                        "outcomeTimestamp": "2026-01-15T10:00:00.000Z",
                    }
                ]
            },
            timeout=5,
        )
        assert feedback.status_code == 200
        assert feedback.headers["Content-Type"].startswith("application/json")
        assert feedback.json()["stored"] == 1 and feedback.json()["unknown_cards"] == 0

    log = server.log_text()
    assert "gunicorn" in log.lower() or "Booting worker" in log
    # one structured line per request, without bodies
    assert '"msg": "request"' in log
    assert "smart-1288992" not in log
