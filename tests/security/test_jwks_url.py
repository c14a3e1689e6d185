"""JWK Sets fetched over real HTTP (pytest-httpserver): caching, one refresh on an unknown
kid (key rotation), failure handling, and ``jku`` followed only when listed for the issuer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.security.jwks import MAX_JWKS_BYTES, JwksError, RemoteJwks, fetch_jwks_document
from tests.security.helpers import ISS, KeyPair, jwks_of

SELECT_PATH = "/cds-services/diazepam-order-select"


class KeyServer:
    """Serves whatever JWK Set ``current`` holds, so a test can rotate keys mid-way."""

    def __init__(self, httpserver: HTTPServer, path: str = "/jwks.json"):
        self.httpserver = httpserver
        self.path = path
        self.current: dict[str, Any] = {"keys": []}
        self.status = 200
        httpserver.expect_request(path).respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        return Response(json.dumps(self.current), self.status, content_type="application/json")

    @property
    def url(self) -> str:
        return self.httpserver.url_for(self.path)

    def hits(self, path: str | None = None) -> int:
        return sum(1 for req, _ in self.httpserver.log if req.path == (path or self.path))


def write_issuers_file(tmp_path: Path, entry: dict[str, Any]) -> Path:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [entry]}), encoding="utf-8")
    return path


def call(client: Any, token: str, body: dict[str, Any]) -> int:
    response = client.post(SELECT_PATH, json=body, headers={"Authorization": f"Bearer {token}"})
    return int(response.status_code)


@pytest.fixture
def body(sandbox_request: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return sandbox_request("order-select-request_r4-no-medication-yet")


def url_app(make_app: Callable[..., Flask], tmp_path: Path, entry: dict[str, Any]) -> Flask:
    issuers = write_issuers_file(tmp_path, {"iss": ISS, **entry})
    return make_app(auth="required", trusted_issuers=str(issuers), jwks_cache_s=300)


def test_jwks_url_is_fetched_once_then_cached(
    httpserver: HTTPServer, make_app: Callable[..., Flask], tmp_path: Path, key: KeyPair, body: Any
) -> None:
    server = KeyServer(httpserver)
    server.current = jwks_of(key)
    client = url_app(make_app, tmp_path, {"jwks_url": server.url}).test_client()
    assert server.hits() == 0  # start-up does not depend on the issuer being reachable
    assert [call(client, key.token(), body) for _ in range(3)] == [200, 200, 200]
    assert server.hits() == 1


def test_rotated_key_is_picked_up_by_one_refresh_and_forged_kids_do_not_cause_fetches(
    httpserver: HTTPServer,
    make_app: Callable[..., Flask],
    tmp_path: Path,
    key: KeyPair,
    other_key: KeyPair,
    body: Any,
) -> None:
    server = KeyServer(httpserver)
    server.current = jwks_of(key)
    app = url_app(make_app, tmp_path, {"jwks_url": server.url, "refresh_cooldown_s": 10})
    source = app.extensions["cds.verifier"].issuers[ISS].key_sources[0]
    now = [1000.0]
    source.clock = lambda: now[0]
    client = app.test_client()
    assert call(client, key.token(), body) == 200
    server.current = jwks_of(other_key)  # the issuer rotates to a new key
    now[0] += 5
    assert call(client, other_key.token(), body) == 401  # within the cooldown: no fetch
    assert server.hits() == 1
    now[0] += 6
    assert call(client, other_key.token(), body) == 200  # one refresh on the unknown kid
    assert server.hits() == 2
    # Within the cooldown again, unknown kids are rejected without another fetch.
    assert [call(client, key.token(kid=f"forged-{i}"), body) for i in range(5)] == [401] * 5
    assert server.hits() == 2
    # The retired key is gone from the cache after the refresh.
    assert call(client, key.token(), body) == 401


def test_unreachable_or_broken_key_server_fails_closed(
    httpserver: HTTPServer, make_app: Callable[..., Flask], tmp_path: Path, key: KeyPair, body: Any
) -> None:
    server = KeyServer(httpserver)
    server.status = 500
    client = url_app(
        make_app, tmp_path, {"jwks_url": server.url, "refresh_cooldown_s": 1}
    ).test_client()
    assert call(client, key.token(), body) == 401
    server.status = 200
    server.current = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": key.kid}]}
    time.sleep(1.05)  # the least cooldown between two fetches is 1 s
    assert call(client, key.token(), body) == 401  # a symmetric key is never usable
    server.current = jwks_of(key)
    time.sleep(1.05)
    assert call(client, key.token(), body) == 200  # recovers once the server does


def test_jku_is_followed_only_when_listed(
    httpserver: HTTPServer,
    make_app: Callable[..., Flask],
    tmp_path: Path,
    write_issuers: Callable[..., Path],
    key: KeyPair,
    other_key: KeyPair,
    body: Any,
) -> None:
    listed = KeyServer(httpserver, "/listed/jwks.json")
    listed.current = jwks_of(other_key)
    unlisted = KeyServer(httpserver, "/unlisted/jwks.json")
    unlisted.current = jwks_of(other_key)
    issuers = write_issuers({"iss": ISS, "keys": [key], "jku": [listed.url]})
    client = make_app(auth="required", trusted_issuers=str(issuers)).test_client()
    # A key in the pinned file needs no fetch even when the header names the listed jku.
    assert call(client, key.token(headers={"jku": listed.url}), body) == 200
    assert listed.hits() == 0
    # A new key published at the listed jku is fetched from there.
    assert call(client, other_key.token(headers={"jku": listed.url}), body) == 200
    assert listed.hits() == 1
    # Without a jku header, or with an unlisted one, that key is not trusted — and the
    # unlisted URL is never contacted (no SSRF, no key substitution).
    assert call(client, other_key.token(), body) == 401
    assert call(client, other_key.token(headers={"jku": unlisted.url}), body) == 401
    assert unlisted.hits() == 0


def test_redirects_are_not_followed(httpserver: HTTPServer, key: KeyPair) -> None:
    target = KeyServer(httpserver, "/elsewhere.json")
    target.current = jwks_of(key)
    httpserver.expect_request("/jwks.json").respond_with_response(
        Response(status=302, headers={"Location": target.url})
    )
    source = RemoteJwks(httpserver.url_for("/jwks.json"), cache_s=300)
    assert source.find(key.kid) is None
    assert target.hits() == 0


def test_oversized_or_non_json_sets_are_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big.json").respond_with_data("x" * (MAX_JWKS_BYTES + 10))
    with pytest.raises(JwksError, match="larger than"):
        fetch_jwks_document(httpserver.url_for("/big.json"))
    httpserver.expect_request("/html").respond_with_data("<html>", content_type="text/html")
    with pytest.raises(JwksError, match="not JSON"):
        fetch_jwks_document(httpserver.url_for("/html"))


def test_cache_lifetime_is_bounded(key: KeyPair, other_key: KeyPair) -> None:
    """With a fake clock: the set is re-fetched once its lifetime is over, and keys removed
    by the issuer stop being trusted then, even if nobody asks for an unknown kid."""
    now = [1000.0]
    documents = [jwks_of(key, other_key), jwks_of(other_key)]
    fetched: list[str] = []

    def fetcher(url: str) -> Any:
        fetched.append(url)
        return documents[min(len(fetched), len(documents)) - 1]

    source = RemoteJwks(
        "https://keys.example.org/jwks.json",
        cache_s=300,
        cooldown_s=10,
        fetcher=fetcher,
        clock=lambda: now[0],
    )
    assert source.find(key.kid) is not None
    now[0] += 299
    assert source.find(key.kid) is not None and len(fetched) == 1
    now[0] += 2
    assert source.find(key.kid) is None  # expired → re-fetched → key withdrawn
    assert source.find(other_key.kid) is not None
    assert len(fetched) == 2


def test_plain_http_key_urls_are_refused_except_loopback() -> None:
    with pytest.raises(JwksError, match="https"):
        RemoteJwks("http://keys.example.org/jwks.json", cache_s=300)
    RemoteJwks("http://127.0.0.1:9/jwks.json", cache_s=300)  # tests, side-car key servers
