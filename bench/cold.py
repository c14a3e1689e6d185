"""Cold path: the hook call without prefetch, so the service fetches the record itself.

What the service adds is judged against the FHIR server's own time for the same work: the
same queries (built by the service's own ``build_query`` from the discovery templates), issued
in parallel from pooled keep-alive sessions, with ``next`` pages followed, as the service's
client does. "Added latency" is the service's percentile minus the FHIR server's.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench.loadgen import percentile
from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.fhir.queries import build_query


def next_url(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


class DirectFetcher:
    """The service's parallel fetch, without the service: one session per thread."""

    def __init__(self, base_url: str, token: str, patient_id: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        self.urls = [
            f"{self.base_url}/{build_query(key, patient_id).relative_url}"
            for key in PREFETCH_TEMPLATES
        ]
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=len(self.urls))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _fetch(self, url: str) -> int:
        """Entries fetched for one query, all pages."""
        entries = 0
        current: str | None = url
        while current:
            response = self._session().get(current, headers=self.headers, timeout=10)
            response.raise_for_status()
            body = response.json()
            entries += len(body.get("entry") or []) if body.get("resourceType") == "Bundle" else 1
            current = next_url(body) if body.get("resourceType") == "Bundle" else None
        return entries

    def once(self) -> tuple[float, int]:
        """Wall time (ms) of all queries in parallel, and the resources they returned."""
        started = time.perf_counter()
        counts = list(self.pool.map(self._fetch, self.urls))
        return (time.perf_counter() - started) * 1000, sum(counts)

    def measure(self, iterations: int, warmup: int = 20) -> dict[str, Any]:
        for _ in range(warmup):
            self.once()
        times = []
        resources = 0
        for _ in range(iterations):
            elapsed, resources = self.once()
            times.append(elapsed)
        times.sort()
        return {
            "iterations": iterations,
            "queries": len(self.urls),
            "resources": resources,
            "p50_ms": round(percentile(times, 50), 3),
            "p95_ms": round(percentile(times, 95), 3),
            "p99_ms": round(percentile(times, 99), 3),
        }

    def close(self) -> None:
        self.pool.shutdown()


def added_latency(service: dict[str, Any], fhir: dict[str, Any]) -> dict[str, float]:
    return {
        f"{p}_ms": round(service[f"{p}_ms"] - fhir[f"{p}_ms"], 3) for p in ("p50", "p95", "p99")
    }


def timing_summary(log_text: str, path_suffix: str = "") -> dict[str, Any]:
    """Per-stage timings (``timings_ms`` of the service's request log lines), as p50/p99.

    The service logs one JSON line per request with its own stage timings; summarising them
    shows where a request's time goes under load, and whether a cold call really fetched.
    """
    stages: dict[str, list[float]] = {}
    requests_seen = 0
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") != "request" or not str(record.get("path", "")).endswith(path_suffix):
            continue
        requests_seen += 1
        for stage, value in (record.get("timings_ms") or {}).items():
            if isinstance(value, int | float):
                stages.setdefault(stage, []).append(float(value))
        if isinstance(record.get("duration_ms"), int | float):
            stages.setdefault("total", []).append(float(record["duration_ms"]))
    out: dict[str, Any] = {"requests": requests_seen}
    for stage, values in sorted(stages.items()):
        values.sort()
        out[stage] = {
            "n": len(values),
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
        }
    return out
