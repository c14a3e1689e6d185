"""Benchmark tokens are accepted by the service's real verifier, single-use, and handed out by
the wrk script without ever sending one twice (a reuse would measure the 401 path)."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.loadgen import run_wrk
from bench.payloads import small_request
from bench.tokens import create_issuer, mint, mint_pool

SIGN_PATH = "/cds-services/diazepam-order-sign"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory):
    return create_issuer(tmp_path_factory.mktemp("bench-auth"))


def test_service_accepts_a_bench_token_once_then_refuses_the_replay(make_app, issuer):
    app = make_app(auth="required", trusted_issuers=str(issuer.trusted_issuers_path))
    client = app.test_client()
    token = mint(issuer.key_path, "http://localhost" + SIGN_PATH)
    headers = {"Authorization": f"Bearer {token}"}
    first = client.post(SIGN_PATH, json=small_request(), headers=headers)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert "cards" in first.get_json()
    replay = client.post(SIGN_PATH, json=small_request(), headers=headers)
    assert replay.status_code == 401


def test_pool_tokens_are_distinct(issuer, tmp_path: Path):
    pool = mint_pool(issuer.key_path, "http://x/y", 500, tmp_path / "p.tokens", processes=2)
    tokens = pool.read_text().split()
    assert len(tokens) == 500 and len(set(tokens)) == 500


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        with self.lock:
            self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")
def test_wrk_script_sends_every_token_at_most_once_across_threads(tmp_path: Path):
    tokens = [f"tok-{i}" for i in range(200_000)]
    (tmp_path / "pool").write_text("\n".join(tokens) + "\n")
    (tmp_path / "body.json").write_text('{"hook":"order-sign"}')
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{SIGN_PATH}"
        result = run_wrk(url, tmp_path / "body.json", tmp_path / "pool", 4, 1)
    finally:
        server.shutdown()
    seen = list(_Recorder.seen)
    assert result.requests > 10 and result.non_2xx == 0
    assert all(h.startswith("Bearer tok-") for h in seen)
    assert len(seen) == len(set(seen)), "a token was sent twice"


def test_python_fallback_generator_also_spends_each_token_once(tmp_path: Path):
    from bench.loadgen import run_python

    tokens = [f"tok-{i}" for i in range(50_000)]
    (tmp_path / "pool").write_text("\n".join(tokens) + "\n")
    (tmp_path / "body.json").write_text('{"hook":"order-sign"}')
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{SIGN_PATH}"
        result = run_python(url, tmp_path / "body.json", tmp_path / "pool", 3, 0.5)
    finally:
        server.shutdown()
    seen = list(_Recorder.seen)
    assert result.tool == "python" and result.requests == len(seen) > 10
    assert result.non_2xx == 0 and result.p50_ms <= result.p99_ms <= result.max_ms
    assert len(seen) == len(set(seen))
