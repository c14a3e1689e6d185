"""Drive a server at fixed concurrency and summarise throughput and latency.

wrk (C, epoll, one Lua state per thread) is the real load generator: it costs the 2-core box
far less CPU than any Python client, so what it measures is the server. Where wrk is missing
a small thread-based Python generator stands in, and every result says which one produced it
(its figures are not comparable with wrk's: the client eats CPU the server would use).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LUA = Path(__file__).resolve().parent / "wrk" / "post.lua"
MARK = "BENCH_JSON "


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "connections": self.connections,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
        }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_threads(connections: int) -> int:
    """wrk needs connections >= threads; two threads saturate loopback on two cores."""
    return max(1, min(2, connections))


def parse_wrk_output(stdout: str, connections: int) -> LoadResult:
    """The ``BENCH_JSON`` line printed by post.lua's ``done()``."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            break
    else:
        raise RuntimeError(f"wrk printed no {MARK.strip()} line:\n{stdout[-2000:]}")
    errors = data["errors"]
    lat = data["latency_us"]
    return LoadResult(
        tool="wrk",
        connections=connections,
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        non_2xx=int(errors["status"]),
        socket_errors=int(errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]),
        p50_ms=lat["p50"] / 1000,
        p95_ms=lat["p95"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
    )


def run_wrk(
    url: str, body: Path, tokens: Path | None, connections: int, duration_s: float
) -> LoadResult:
    threads = wrk_threads(connections)
    env = {
        **os.environ,
        "BENCH_BODY": str(body),
        "BENCH_TOKENS": str(tokens) if tokens else "",
        "BENCH_THREADS": str(threads),
    }
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    return parse_wrk_output(done.stdout, connections)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what wrk's histogram reports, near enough)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_python(
    url: str, body: Path, tokens: Path | None, connections: int, duration_s: float
) -> LoadResult:
    """Fallback generator: ``connections`` threads, one keep-alive connection each."""
    parts = urlsplit(url)
    payload = body.read_bytes()
    pool = tokens.read_text(encoding="ascii").split() if tokens else []
    lock = threading.Lock()
    state = {"next": 0, "non_2xx": 0, "errors": 0}
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    def next_token() -> str | None:
        if not pool:
            return None
        with lock:
            token = pool[state["next"] % len(pool)]
            state["next"] += 1
        return token

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine: list[float] = []
        while time.perf_counter() < stop_at:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            token = next_token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            try:
                conn.request("POST", parts.path, payload, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    state["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                continue
            mine.append((time.perf_counter() - started) * 1000)
            if not 200 <= response.status < 400:
                with lock:
                    state["non_2xx"] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        tool="python",
        connections=connections,
        requests=len(latencies),
        duration_s=elapsed,
        non_2xx=state["non_2xx"],
        socket_errors=state["errors"],
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
    )


def run_load(
    url: str, body: Path, tokens: Path | None, connections: int, duration_s: float
) -> LoadResult:
    runner = run_wrk if wrk_available() else run_python
    return runner(url, body, tokens, connections, duration_s)
