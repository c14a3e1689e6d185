"""End to end: the real ``diazepam-cds serve`` (gunicorn) process, spoken to over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from cds_service.app import create_app
from cds_service.compare import observe, response_problems, topic_of
from tests.conftest import DATA, with_patient_prefetch
from tests.support.server import running_server

pytestmark = pytest.mark.slow


def _shape(cards: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Topic, indicator and suggested action types of each card: the advice, not its wording."""
    return sorted(
        (
            topic_of(card),
            card["indicator"],
            tuple(sorted(a["type"] for s in card.get("suggestions", []) for a in s["actions"])),
        )
        for card in cards
    )


def test_serve_speaks_cds_hooks_over_http(tmp_path):
    env = {"CDS_AUTH": "disabled", "CDS_ENV": "development"}
    body = with_patient_prefetch(
        json.loads((DATA / "sandbox" / "order-sign-request_r4-server.json").read_text())
    )
    in_process = create_app(
        {"auth": "disabled", "env": "development", "data_dir": str(tmp_path / "in-process")}
    ).test_client()
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
        assert not response_problems(hook.json())  # CDS Hooks card rules, summary < 140
        # The advice itself, not just "some cards": the 30-day order gets the duration card
        # capping it to 7 days, and gunicorn's answer is the one the app gives in-process.
        observed = observe(cards)
        assert observed.topics["duration-limit"][0]["indicator"] == "warning"
        assert observed.capped_days == {7.0}
        assert _shape(cards) == _shape(
            in_process.post(url.removeprefix(base), json=body).json["cards"]
        )

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
