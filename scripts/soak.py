#!/usr/bin/env python3
"""Soak test: measure capacity, then hold half of it for a long time and report
errors and memory growth per gunicorn worker.

    .venv/bin/python scripts/soak.py                      # 10 minutes on a fresh local server
    .venv/bin/python scripts/soak.py --duration 60        # a quick check that it works
    .venv/bin/python scripts/soak.py --url http://host:8080 --pid <gunicorn master pid>

Without ``--url`` it starts ``diazepam-cds serve`` (auth disabled, SQLite in a temporary
directory) through ``tests/support/server.py``. Traffic is what an EHR sends: hook calls built
from the fixture scenarios (each with a fresh hookInstance), feedback on a fifth of the cards
returned (and a retry of it), and an occasional discovery. Phase 1 runs closed-loop with
``--clients`` connections for ``--probe`` seconds to measure capacity (requests/s); phase 2
sends at ``--load`` (default 0.5) of that rate, open-loop, for ``--duration`` seconds.
Worker memory is the resident set size read from /proc (Linux) at the start and the end of
phase 2. Exit status 1 when any request failed or a worker grew more than ``--max-growth``
MiB (or was replaced).

The test suite runs a 20-second soak (``tests/test_soak.py``, marked slow) so the script is
known to work; the long run is for a person to start and read.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "fixtures" / "scenarios"


def load_requests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(SCENARIOS.glob("*.json")):
        scenario = json.loads(path.read_text(encoding="utf-8"))
        out.append((scenario["service"], scenario["request"]))
    if not out:
        sys.exit(f"no scenarios in {SCENARIOS}")
    return out


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, seconds: float, outcome: str, ok: bool) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.statuses[f"{kind} {outcome}"] += 1
            if not ok:
                self.errors[f"{kind} {outcome}"] += 1

    @property
    def count(self) -> int:
        return sum(self.statuses.values())


class Traffic:
    """One EHR-like interaction per call: a hook call, sometimes feedback, sometimes discovery."""

    def __init__(self, base: str, tally: Tally, seed: int = 1):
        self.base = base.rstrip("/")
        self.tally = tally
        self.requests = load_requests()
        self.random = random.Random(seed)
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def _send(self, kind: str, method: str, url: str, **kwargs: Any) -> requests.Response | None:
        started = time.perf_counter()
        try:
            response = self.session().request(method, url, timeout=30, **kwargs)
        except requests.RequestException as exc:
            self.tally.add(kind, time.perf_counter() - started, type(exc).__name__, False)
            return None
        ok = response.status_code == 200 and response.headers.get("Content-Type", "").startswith(
            "application/json"
        )
        self.tally.add(kind, time.perf_counter() - started, str(response.status_code), ok)
        return response

    def one(self, i: int) -> None:
        if i % 50 == 0:
            self._send("discovery", "GET", f"{self.base}/cds-services")
            return
        service, template = self.requests[i % len(self.requests)]
        body = copy.deepcopy(template)
        body["hookInstance"] = str(uuid.uuid4())
        url = f"{self.base}/cds-services/{service}"
        response = self._send("hook", "POST", url, json=body)
        if response is None or response.status_code != 200 or i % 5:
            return
        cards = response.json().get("cards") or []
        items = [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            for card in cards
        ]
        if items:
            for _ in range(2):  # the retry must be a harmless duplicate
                self._send("feedback", "POST", f"{url}/feedback", json={"feedback": items})


# -- worker memory (Linux /proc) -------------------------------------------------------------
def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker_memory(master: int | None) -> dict[int, float]:
    if master is None:
        return {}
    return {pid: mib for pid in children(master) if (mib := rss_mib(pid)) is not None}


# -- phases ----------------------------------------------------------------------------------
def closed_loop(traffic: Traffic, clients: int, seconds: float) -> float:
    """Requests per second with ``clients`` connections sending back to back."""
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < stop:
            with lock:
                i = next(counter)
            traffic.one(i)

    before = traffic.tally.count
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    return (traffic.tally.count - before) / (time.monotonic() - started)


def open_loop(traffic: Traffic, rate: float, seconds: float, clients: int) -> float:
    """Start interactions at a fixed rate (requests/s, counting feedback) regardless of how
    fast answers come back; returns the achieved rate."""
    per_interaction = 1.0 + 2 / 5 * 0.8  # a hook, plus feedback+retry on ~1/5 of them
    interval = per_interaction / rate
    before = traffic.tally.count
    started = time.monotonic()
    next_at = started
    # interaction 0 is a discovery (then every 50th): a short soak on a busy machine sends
    # fewer than 50 and must still exercise every kind of traffic (a ten-run check found one
    # 20 s soak under load with no discovery at all)
    i = 0
    with ThreadPoolExecutor(clients * 4) as pool:
        while (now := time.monotonic()) < started + seconds:
            if now < next_at:
                time.sleep(min(next_at - now, 0.05))
                continue
            pool.submit(traffic.one, i)
            i += 1
            next_at += interval
    return (traffic.tally.count - before) / (time.monotonic() - started)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="service base URL (default: start a local server)")
    parser.add_argument("--pid", type=int, help="gunicorn master pid, for worker memory")
    parser.add_argument("--duration", type=float, default=600, help="soak seconds (600)")
    parser.add_argument("--probe", type=float, default=20, help="capacity probe seconds (20)")
    parser.add_argument("--load", type=float, default=0.5, help="fraction of capacity (0.5)")
    parser.add_argument("--clients", type=int, default=16, help="probe connections (16)")
    parser.add_argument("--workers", type=int, default=2, help="workers of a local server")
    parser.add_argument("--max-growth", type=float, default=50, help="MiB per worker (50)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    server = None
    if args.url is None:
        sys.path.insert(0, str(REPO))
        from tests.support.server import start_server

        tmp = Path(tempfile.mkdtemp(prefix="cds-soak-"))
        env = {"CDS_AUTH": "disabled", "CDS_LOG_LEVEL": "WARNING"}
        server = start_server(tmp, env, workers=args.workers)
        args.url, args.pid = server.base_url, server.process.pid
        print(f"started diazepam-cds serve at {args.url} (data in {tmp})", flush=True)
    try:
        probe = Traffic(args.url, Tally(), seed=1)
        for i in range(40):  # warm every worker's caches before measuring
            probe.one(i + 1)
        capacity = closed_loop(probe, args.clients, args.probe)
        rate = max(capacity * args.load, 1.0)
        print(
            f"capacity {capacity:.1f} req/s with {args.clients} clients; soaking at "
            f"{rate:.1f} req/s for {args.duration:.0f} s",
            flush=True,
        )

        before = worker_memory(args.pid)
        soak = Traffic(args.url, Tally(), seed=2)
        achieved = open_loop(soak, rate, args.duration, args.clients)
        after = worker_memory(args.pid)
    finally:
        if server is not None:
            server.kill(15)
            shutil.rmtree(tmp, ignore_errors=True)

    tally = soak.tally
    workers = []
    for pid in sorted(set(before) | set(after)):
        start, end = before.get(pid), after.get(pid)
        workers.append(
            {
                "pid": pid,
                "rss_start_mib": round(start, 1) if start else None,
                "rss_end_mib": round(end, 1) if end else None,
                "growth_mib": round(end - start, 1) if start and end else None,
                "note": "" if start and end else ("replaced" if start else "new worker"),
            }
        )
    report = {
        "url": args.url,
        "capacity_rps": round(capacity, 1),
        "target_rps": round(rate, 1),
        "achieved_rps": round(achieved, 1),
        "duration_s": args.duration,
        "requests": tally.count,
        "errors": sum(tally.errors.values()),
        "errors_by_kind": dict(tally.errors),
        "statuses": dict(tally.statuses),
        "latency_ms": {
            "p50": round(statistics.median(tally.latencies) * 1000, 1) if tally.latencies else 0,
            "p95": round(percentile(tally.latencies, 0.95) * 1000, 1),
            "p99": round(percentile(tally.latencies, 0.99) * 1000, 1),
            "max": round(max(tally.latencies, default=0) * 1000, 1),
        },
        "workers": workers,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    grew = [w for w in workers if w["growth_mib"] is None or w["growth_mib"] > args.max_growth]
    return 1 if report["errors"] or grew or not workers and args.pid else 0


if __name__ == "__main__":
    sys.exit(main())
