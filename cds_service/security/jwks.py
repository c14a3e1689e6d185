"""JWK Sets of trusted issuers: a pinned local file, or a URL fetched and cached.

We keep the raw JWK dicts (not ``PyJWKSet``) because PyJWT binds a key to one algorithm when it
is parsed, guessing RS256 for an RSA key without ``alg``; the algorithm must instead come from
the issuer's allow-list and the token header, checked before the key is built (see verify.py).
We fetch with ``requests`` rather than ``PyJWKClient`` to bound the response size, refuse
redirects (a redirect would let a listed URL hand us keys from an unlisted one), and share one
refresh between the threads of a worker.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

log = logging.getLogger("cds_service.security.jwks")

# Key types usable for signatures we accept; symmetric ("oct") keys are never trusted.
ASYMMETRIC_KTY = frozenset({"EC", "RSA"})
MAX_JWKS_BYTES = 256 * 1024
MIN_COOLDOWN_S = 1.0
FETCH_TIMEOUT_S = (2.0, 3.0)  # connect, read: a key fetch sits on a clinician's request path


class JwksError(ValueError):
    """A JWK Set document is unusable (not JSON, no usable keys)."""


def parse_jwks(document: Any, *, source: str) -> dict[str, dict[str, Any]]:
    """``kid -> JWK`` for the signature keys of a JWK Set; keys without ``kid`` are unusable
    here because CDS Hooks requires ``kid`` in every token header."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksError(f"{source}: not a JWK Set (an object with a 'keys' array)")
    keys: dict[str, dict[str, Any]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if jwk.get("kty") not in ASYMMETRIC_KTY:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        if kid in keys:
            raise JwksError(f"{source}: duplicate kid {kid!r}")
        keys[kid] = dict(jwk)
    if not keys:
        raise JwksError(f"{source}: no usable signature key (EC/RSA with a kid)")
    return keys


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_url(url: str) -> None:
    """Key URLs must be https: keys fetched over plain http can be swapped in transit.
    Loopback http is allowed for tests and side-car key servers."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback_url(url):
        return
    raise JwksError(f"key URL {url!r} must be https (plain http only on loopback)")


class StaticJwks:
    """Keys pinned in a file, read once at start-up."""

    def __init__(self, path: Path):
        self.source = str(path)
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JwksError(f"JWK Set file {str(path)!r} unreadable: {exc}") from exc
        self.keys = parse_jwks(document, source=str(path))

    def find(self, kid: str) -> dict[str, Any] | None:
        return self.keys.get(kid)


Fetcher = Callable[[str], Any]


def fetch_jwks_document(url: str) -> Any:
    with requests.get(
        url,
        timeout=FETCH_TIMEOUT_S,
        allow_redirects=False,
        stream=True,
        headers={"Accept": "application/json, application/jwk-set+json"},
    ) as response:
        if response.status_code != 200:
            raise JwksError(f"GET {url} answered {response.status_code}")
        body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"GET {url}: JWK Set larger than {MAX_JWKS_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise JwksError(f"GET {url}: not JSON") from exc


class RemoteJwks:
    """A JWK Set at a URL, cached for ``cache_s`` seconds and re-fetched at most once per
    ``cooldown_s`` when a token names an unknown ``kid`` (key rotation), so that a stream of
    forged kids cannot turn into a stream of outbound requests."""

    def __init__(
        self,
        url: str,
        *,
        cache_s: float,
        cooldown_s: float = 10.0,
        fetcher: Fetcher = fetch_jwks_document,
        clock: Callable[[], float] = time.monotonic,
    ):
        check_key_url(url)
        self.source = url
        self.url = url
        self.cache_s = cache_s
        # A cooldown longer than the cache lifetime would keep expired keys in use; one shorter
        # than a second would let a stream of forged kids become a stream of key fetches.
        self.cooldown_s = max(MIN_COOLDOWN_S, min(cooldown_s, cache_s))
        self._fetcher = fetcher
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self.fetch_count = 0

    def find(self, kid: str) -> dict[str, Any] | None:
        fetched = False
        if self._fetched_at is None or self.clock() - self._fetched_at >= self.cache_s:
            fetched = self._refresh(reason="first use" if self._fetched_at is None else "expired")
        jwk = self._keys.get(kid)
        if jwk is None and not fetched and self._refresh(reason="unknown kid"):
            jwk = self._keys.get(kid)
        return jwk

    def _refresh(self, *, reason: str) -> bool:
        """Fetch unless another attempt happened within the cooldown; True if it fetched."""
        with self._lock:
            # Checked under the lock: threads that queued behind a fetch reuse its result.
            now = self.clock()
            if self._attempted_at is not None and now - self._attempted_at < self.cooldown_s:
                return False
            self._attempted_at = now
            self.fetch_count += 1
            try:
                keys = parse_jwks(self._fetcher(self.url), source=self.url)
            except (JwksError, requests.RequestException) as exc:
                # Fail closed: expired keys are dropped rather than trusted past their lifetime.
                log.warning(
                    "JWK Set fetch failed",
                    extra={"url": self.url, "reason": reason, "error": str(exc)[:200]},
                )
                if self._fetched_at is None or now - self._fetched_at >= self.cache_s:
                    self._keys = {}
                return True
            self._keys = keys
            self._fetched_at = self.clock()
            log.info(
                "JWK Set fetched", extra={"url": self.url, "reason": reason, "keys": len(keys)}
            )
            return True
