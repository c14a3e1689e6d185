"""Profile the service's hot path in-process: the production app (auth on, store on) answering
the large request, many times, under pyinstrument.

One request takes a few milliseconds, shorter than a useful sampling run, so we profile a batch
of identical calls (each with its own token) and report the mean per call; the tree shows where
a single call's time goes. Output: a text tree and an HTML page beside the benchmark results.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from bench.tokens import BenchIssuer, mint

BASE_URL = "http://bench.local"


def _quiet_logs() -> None:
    """Keep formatting the JSON log lines (that cost is real) but write them nowhere."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_cds_json", False) and isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)


def build_app(issuer: BenchIssuer, data_dir: Path) -> Any:
    from cds_service.app import create_app
    from cds_service.config import load_settings

    settings = load_settings(
        overrides={
            "auth": "required",
            "trusted_issuers": str(issuer.trusted_issuers_path),
            "public_base_url": BASE_URL,
            "data_dir": str(data_dir),
            "log_level": "INFO",
        }
    )
    app = create_app(settings)
    _quiet_logs()
    return app


def profile_requests(
    issuer: BenchIssuer,
    body: dict[str, Any],
    out_dir: Path,
    data_dir: Path,
    *,
    name: str = "large",
    calls: int = 300,
    service: str = "diazepam-order-sign",
) -> dict[str, Any]:
    from pyinstrument import Profiler

    app = build_app(issuer, data_dir)
    client = app.test_client()
    path = f"/cds-services/{service}"
    payload = json.dumps(body).encode()
    tokens = [mint(issuer.key_path, BASE_URL + path) for _ in range(calls + 20)]

    def call(token: str) -> int:
        response = client.post(
            path,
            data=payload,
            base_url=BASE_URL,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        return response.status_code

    for token in tokens[:20]:  # warm caches and lazy imports outside the profile
        status = call(token)
        if status != 200:
            raise RuntimeError(f"profile warm-up call answered {status}")
    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    profiler.start()
    for token in tokens[20:]:
        call(token)
    profiler.stop()
    elapsed_ms = (time.perf_counter() - started) * 1000
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / f"profile-{name}.txt"
    html_path = out_dir / f"profile-{name}.html"
    header = (
        f"# pyinstrument, {calls} calls of the {name} request in-process (Flask test client, "
        f"auth on, SQLite store); mean {elapsed_ms / calls:.3f} ms per call incl. profiler "
        "overhead\n"
    )
    text_path.write_text(
        header + profiler.output_text(unicode=True, color=False, show_all=False),
        encoding="utf-8",
    )
    html_path.write_text(profiler.output_html(), encoding="utf-8")
    return {
        "calls": calls,
        "mean_ms_per_call_profiled": round(elapsed_ms / calls, 3),
        "text": text_path.name,
        "html": html_path.name,
    }
