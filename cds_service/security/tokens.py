"""Mint CDS client JWTs from a local private key — for integration teams, tests and replay.

A token is shaped exactly like the CDS Hooks sandbox's (header alg/typ/kid, claims iss, aud,
exp = iat + 5 min, iat, jti), so a service that accepts these accepts real clients. The default
``kid`` is the RFC 7638 thumbprint of the public key, which ``public_jwks`` also uses: mint with
a key, publish ``public_jwks`` of the same key, and the two agree without coordination.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

DEFAULT_LIFETIME_S = 300  # what the sandbox uses

_EC_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# RFC 7638 §3.2: the required members per key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class TokenError(ValueError):
    """The key cannot be used to mint a CDS client token."""


def load_private_key(key_path: str | Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        data = Path(key_path).read_bytes()
    except OSError as exc:
        raise TokenError(f"cannot read key {str(key_path)!r}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise TokenError(f"{str(key_path)!r} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TokenError("only EC (P-256/384/521) and RSA keys can sign CDS Hooks tokens")
    return key


def default_algorithm(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    try:
        return _EC_ALG[key.curve.name]
    except KeyError:
        raise TokenError(f"unsupported EC curve {key.curve.name}") from None


def public_jwk(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(public, as_dict=True))
    return dict(ECAlgorithm.to_jwk(public, as_dict=True))


def thumbprint(jwk: dict[str, Any]) -> str:
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwks(
    key_path: str | Path, kid: str | None = None, alg: str | None = None
) -> dict[str, Any]:
    """The JWK Set an issuer publishes (or sends out of band) for this private key."""
    key = load_private_key(key_path)
    jwk = public_jwk(key)
    jwk.update(use="sig", alg=alg or default_algorithm(key), kid=kid or thumbprint(jwk))
    return {"keys": [jwk]}


def mint_token(
    key_path: str | Path,
    iss: str,
    aud: str,
    kid: str | None = None,
    alg: str | None = None,
    extra_claims: dict[str, Any] | None = None,
    *,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    headers: dict[str, Any] | None = None,
) -> str:
    """A signed token for one call to ``aud`` (the exact URL). ``extra_claims`` are added and
    may override the defaults (e.g. ``tenant``, or an old ``exp`` for a negative test);
    ``headers`` likewise (e.g. ``jku``)."""
    key = load_private_key(key_path)
    alg = alg or default_algorithm(key)
    if not alg.startswith(("ES", "RS", "PS")):
        raise TokenError(f"algorithm {alg} is not an asymmetric JWS algorithm")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "exp": now + lifetime_s,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    claims.update(extra_claims or {})
    header: dict[str, Any] = {"typ": "JWT", "kid": kid or thumbprint(public_jwk(key))}
    header.update(headers or {})
    try:
        return jwt.encode(claims, key, algorithm=alg, headers=header)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise TokenError(f"cannot sign with {alg}: {exc}") from exc
