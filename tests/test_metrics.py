"""``/metrics``: exact counts after a scripted sequence, in one process and under gunicorn
with several workers (prometheus multiprocess mode)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from tests.store.helpers import ScriptedAdvisor, accepted, hook_body, overridden
from tests.support.server import start_server

REPO = Path(__file__).resolve().parents[1]
SELECT = "/cds-services/diazepam-order-select"
HOOK_ROUTE = "/cds-services/<service_id>"
FEEDBACK_ROUTE = "/cds-services/<service_id>/feedback"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in metrics.items() if n == name and wanted <= lab)


def test_counts_after_a_scripted_sequence(make_app: Callable[..., Flask]) -> None:
    app = make_app(patient_hash_key="k")
    advisor = ScriptedAdvisor([("duration-limit", "warning"), ("beers-age", "info")])
    app.extensions["cds.advisor"] = advisor
    client = app.test_client()
    for _ in range(3):
        assert client.post(SELECT, json=hook_body()).status_code == 200
    assert client.post(SELECT, json={"hook": "order-select"}).status_code == 400
    assert client.get("/cds-services").status_code == 200
    card = advisor.issued[0]
    items = [accepted(card), overridden(advisor.issued[1]["uuid"], "patient-preference")]
    items.append(overridden("unknown-card-uuid", None))
    assert client.post(f"{SELECT}/feedback", json={"feedback": items}).status_code == 200
    # a retry of the same items is not counted twice
    assert client.post(f"{SELECT}/feedback", json={"feedback": items}).status_code == 200
    assert client.post(f"{SELECT}/feedback", json={"feedback": []}).status_code == 400

    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    m = samples(scrape.get_data(as_text=True))
    svc = "diazepam-order-select"
    assert value(m, "cds_http_requests_total", service=svc, route=HOOK_ROUTE, status="200") == 3
    assert value(m, "cds_http_requests_total", service=svc, route=HOOK_ROUTE, status="400") == 1
    assert value(m, "cds_http_requests_total", route="/cds-services", status="200") == 1
    assert value(m, "cds_http_requests_total", route=FEEDBACK_ROUTE, status="200") == 2
    assert value(m, "cds_http_requests_total", route=FEEDBACK_ROUTE, status="400") == 1
    hist = "cds_http_request_duration_seconds_count"
    assert value(m, hist, service=svc, route=HOOK_ROUTE, status="200") == 3
    assert (
        value(
            m, "cds_http_request_duration_seconds_bucket", route=HOOK_ROUTE, status="200", le="+Inf"
        )
        == 3
    )
    assert value(m, "cds_cards_issued_total", topic="duration-limit", indicator="warning") == 3
    assert value(m, "cds_cards_issued_total", topic="beers-age", indicator="info") == 3
    assert value(m, "cds_feedback_total", topic="duration-limit", outcome="accepted") == 1
    assert (
        value(
            m,
            "cds_feedback_total",
            topic="beers-age",
            outcome="overridden",
            reason="patient-preference",
        )
        == 1
    )
    assert (
        value(m, "cds_feedback_total", topic="unknown-card", outcome="overridden", reason="none")
        == 1
    )
    assert value(m, "cds_feedback_total") == 3


def test_label_values_from_clients_are_bounded(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    reason = "x" * 500 + '"}\n evil{'
    item = overridden("c", None)
    item["overrideReason"] = {"reason": {"code": reason, "system": "urn:x"}}
    client.post(f"{SELECT}/feedback", json={"feedback": [item]})
    client.get("/no/such/" + "y" * 300)
    text = client.get("/metrics").get_data(as_text=True)
    m = samples(text)  # still parseable
    reasons = [dict(lab)["reason"] for (n, lab) in m if n == "cds_feedback_total"]
    assert reasons == ["other"]  # not a code the service published
    assert value(m, "cds_http_requests_total", route="unmatched", status="404") == 1
    assert "yyyy" not in text


def _scenario(name: str) -> dict[str, Any]:
    return json.loads((REPO / "fixtures" / "scenarios" / f"{name}.json").read_text("utf-8"))


def _writer_pids(metrics_dir: Path) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[-1]) for p in metrics_dir.glob("*.db")}


@pytest.mark.slow
def test_metrics_sum_all_gunicorn_workers(tmp_path: Path) -> None:
    """Real engine, real gunicorn, 2 workers. Half the hook calls go to the first workers,
    which are then SIGKILLed; gunicorn forks new ones that serve the rest and every scrape.
    The totals must include the dead workers' share (multiprocess mode sums every process's
    files)."""
    scenario = _scenario("elderly-78-egfr45-no-baclofen")
    expected_topics = scenario["expected"]["topics"]
    url_hook = f"/cds-services/{scenario['service']}"
    env = {"CDS_AUTH": "disabled", "CDS_PATIENT_HASH_KEY": "k"}
    metrics_dir = tmp_path / "data" / "metrics"
    server = start_server(tmp_path, env, workers=2)
    try:
        base = server.base_url

        def call(_: int) -> dict[str, Any]:
            answer = requests.post(base + url_hook, json=scenario["request"], timeout=10)
            assert answer.status_code == 200
            return answer.json()

        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(call, range(6)))
        first_workers = _writer_pids(metrics_dir)
        assert first_workers
        for pid in first_workers:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers += list(pool.map(call, range(6)))
        hooks = len(answers)
        cards = [card for answer in answers for card in answer["cards"]]
        assert len(cards) == hooks * len(expected_topics)
        by_topic = {c["source"]["topic"]["code"]: c for c in cards}
        # the first topic that asks for a reason (info cards offer none, F.2a)
        first_topic = next(t for t in sorted(by_topic) if by_topic[t].get("overrideReasons"))
        card = by_topic[first_topic]
        reason = card["overrideReasons"][0]["code"]
        items = [overridden(card["uuid"], reason), overridden("not-issued-here", None)]
        feedback = requests.post(f"{base}{url_hook}/feedback", json={"feedback": items}, timeout=10)
        assert feedback.json() == {"stored": 2, "duplicates": 0, "unknown_cards": 1}

        scrapes = [samples(requests.get(f"{base}/metrics", timeout=5).text) for _ in range(6)]
        assert _writer_pids(metrics_dir) - first_workers, "no new worker served the second half"
        for m in scrapes:
            assert value(m, "cds_http_requests_total", route=HOOK_ROUTE, status="200") == hooks
            assert value(m, "cds_http_request_duration_seconds_count", route=HOOK_ROUTE) == hooks
            for topic, spec in expected_topics.items():
                issued = value(
                    m, "cds_cards_issued_total", topic=topic, indicator=spec["indicator"]
                )
                assert issued == hooks, topic
            assert (
                value(
                    m, "cds_feedback_total", topic=first_topic, outcome="overridden", reason=reason
                )
                == 1
            )
            assert value(m, "cds_feedback_total", topic="unknown-card") == 1
    finally:
        server.kill()


def test_master_start_wipes_previous_samples_only(tmp_path: Path, monkeypatch) -> None:
    """A restarted master must not add the last run's counts to the new run's (gunicorn
    reuses no pids, but old files would still be summed); other files are left alone."""
    from cds_service.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    monkeypatch.setenv(MULTIPROC_ENV, "restored-after-the-test")
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old")
    (directory / "histogram_123.db").write_bytes(b"old")
    (directory / "keep.txt").write_text("not ours")
    assert prepare_multiprocess_dir(str(directory)) == str(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]
    assert os.environ[MULTIPROC_ENV] == str(directory)
