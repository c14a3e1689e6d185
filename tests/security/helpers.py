"""Key pairs, forged tokens and an in-memory replay store for the security tests."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from cds_service.security.tokens import mint_token, public_jwks
from tests.support.keys import write_private_key

ISS = "https://ehr.example.org"
OTHER_ISS = "https://other-ehr.example.org"
BASE = "http://localhost"
DISCOVERY_URL = f"{BASE}/cds-services"
SELECT_URL = f"{BASE}/cds-services/diazepam-order-select"


@dataclass(frozen=True)
class KeyPair:
    """A private key on disk and its public JWK Set (kid = RFC 7638 thumbprint)."""

    name: str
    path: Path
    alg: str
    kid: str
    jwks: dict[str, Any]

    @property
    def public_pem(self) -> bytes:
        private = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        return private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def jwk(self) -> dict[str, Any]:
        return dict(self.jwks["keys"][0])

    def token(self, aud: str = SELECT_URL, iss: str = ISS, **kwargs: Any) -> str:
        return mint_token(self.path, iss, aud, **kwargs)


def write_key(directory: Path, name: str, private: Any) -> KeyPair:
    path = write_private_key(directory / f"{name}.pem", private)
    jwks = public_jwks(path)
    jwk = jwks["keys"][0]
    return KeyPair(name, path, jwk["alg"], jwk["kid"], jwks)


def jwks_of(*keys: KeyPair) -> dict[str, Any]:
    return {"keys": [k.jwk for k in keys]}


class MemoryReplayStore:
    """A real (in-process) implementation of the ``claim_jti`` protocol for unit tests; the
    app and end-to-end tests use the database store."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], dt.datetime] = {}
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str, dt.datetime]] = []

    def claim_jti(self, issuer: str, jti: str, expires_at: dt.datetime) -> bool:
        with self._lock:
            self.calls.append((issuer, jti, expires_at))
            now = dt.datetime.now(dt.UTC)
            self._seen = {k: v for k, v in self._seen.items() if v > now}
            if (issuer, jti) in self._seen:
                return False
            self._seen[(issuer, jti)] = expires_at
            return True


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(aud: str = SELECT_URL, iss: str = ISS, **extra: Any) -> dict[str, Any]:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    return {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": f"jti-{now}", **extra}


def unsigned_token(kid: str, aud: str = SELECT_URL) -> str:
    """``alg: none`` — what an attacker sends hoping the verifier skips the signature."""
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(claims(aud))}."


def hs256_with_public_key(key: KeyPair, aud: str = SELECT_URL) -> str:
    """Algorithm confusion: HMAC-signed with the issuer's *public* key as the shared secret."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{b64(claims(aud))}"
    signature = hmac.new(key.public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"
