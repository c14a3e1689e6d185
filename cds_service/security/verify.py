"""Verify one CDS client JWT (CDS Hooks 2.0 §Trusting CDS Clients) — no Flask in here.

Order matters: nothing from the token is trusted until the signature is checked, so the
unverified header and payload are used only to pick the issuer and key, and every choice they
drive (algorithm, key URL) is checked against that issuer's configuration first. The ``jti`` is
claimed last so that a token rejected for another reason does not burn its nonce.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
import orjson
from jwt import PyJWK

from cds_service.security.issuers import Issuer

# Asymmetric algorithms only: `none` and HMAC (HS*) are never accepted whatever the config says.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
MAX_TOKEN_CHARS = 16 * 1024
MAX_JTI_CHARS = 255


class ReplayStore(Protocol):
    """Remembers each (issuer, jti) until the token expires; shared by all workers and hosts."""

    def claim_jti(self, issuer: str, jti: str, expires_at: dt.datetime) -> bool:
        """True the first time this jti is seen for this issuer, False on a replay."""
        ...


class AuthError(Exception):
    """Verification failed. ``reason`` is for the log only; the client learns nothing."""

    def __init__(self, reason: str, **context: str | None):
        super().__init__(reason)
        self.reason = reason
        self.context = {k: _loggable(v) for k, v in context.items() if v is not None}


@dataclass(frozen=True)
class Caller:
    """The authenticated client of the current request."""

    iss: str
    profile: str | None
    tenant: str | None
    jti: str
    kid: str
    fhir_servers: tuple[Any, ...] = ()


def _loggable(value: Any) -> str:
    # Token fields are attacker-controlled: log a bounded, printable rendering only.
    text = value if isinstance(value, str) else repr(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text[:200])


def normalize_url(url: str) -> str:
    """Scheme and host are case-insensitive, default ports are implicit and a trailing slash
    is tolerated deliberately (CDS Hooks best practice); everything else must match exactly."""
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # `http://evil@host/...` names host: a claim spelt that way was minted for someone
        # who wrote user information into an audience, never for this service.
        raise ValueError("URL carries user information")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}{query}"


def audience_matches(aud_claim: Any, expected_url: str) -> bool:
    claims = [aud_claim] if isinstance(aud_claim, str) else aud_claim
    if not isinstance(claims, list) or not claims:
        return False
    if not all(isinstance(claim, str) for claim in claims):
        return False
    try:
        expected = normalize_url(expected_url)
    except ValueError:
        return False
    for claim in claims:
        try:
            if normalize_url(claim) == expected:
                return True
        except ValueError:  # e.g. a port that is not a number
            continue
    return False


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Authorization is not a Bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("token too long")
    if token.count(".") != 2:
        raise AuthError("malformed token (not a compact JWS)")
    return token


class Verifier:
    """Checks tokens against the trusted issuers; one per worker, safe across threads."""

    def __init__(self, issuers: Mapping[str, Issuer], *, leeway_s: float):
        self.issuers = dict(issuers)
        self.leeway_s = leeway_s
        self._pyjwks: dict[tuple[str, str, str, str], PyJWK] = {}

    def verify(self, authorization: str | None, expected_aud: str, replay: ReplayStore) -> Caller:
        token = bearer_token(authorization)
        header, unverified = _unverified_parts(token)
        alg, kid = header["alg"], header["kid"]
        iss = unverified.get("iss")
        context = {"iss": iss, "kid": kid}
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("untrusted issuer", **context)
        assert isinstance(iss, str)
        if alg not in issuer.algorithms or alg not in ASYMMETRIC_ALGORITHMS:
            raise AuthError(f"algorithm {_loggable(alg)} not allowed for this issuer", **context)
        jku = header.get("jku")
        if jku is not None and (not isinstance(jku, str) or jku not in issuer.jku):
            raise AuthError("jku not on this issuer's list", jku=_loggable(jku), **context)
        jwk = issuer.find_key(kid, jku)
        if jwk is None:
            raise AuthError("unknown kid for this issuer", **context)
        key = self._pyjwk(iss, kid, alg, jwk, context)
        claims = self._decode(token, key, alg, iss, context)
        context["jti"] = claims.get("jti") if isinstance(claims.get("jti"), str) else None
        if not audience_matches(claims["aud"], expected_aud):
            raise AuthError("aud is not the URL called", aud=_loggable(claims["aud"]), **context)
        self._check_claims(claims, issuer, context)
        jti = claims["jti"]
        expires_at = dt.datetime.fromtimestamp(claims["exp"] + self.leeway_s, tz=dt.UTC)
        if not replay.claim_jti(iss, jti, expires_at):
            raise AuthError("replayed jti", **context)
        tenant = claims.get("tenant") if isinstance(claims.get("tenant"), str) else None
        return Caller(
            iss=iss,
            profile=issuer.profile,
            tenant=tenant,
            jti=jti,
            kid=kid,
            fhir_servers=issuer.fhir_servers,
        )

    def _pyjwk(
        self, iss: str, kid: str, alg: str, jwk: dict[str, Any], context: dict[str, Any]
    ) -> PyJWK:
        # A key that names its algorithm may only be used with that one (RFC 7517 §4.4).
        if "alg" in jwk and jwk["alg"] != alg:
            raise AuthError(f"key is for {_loggable(jwk['alg'])}, token says {alg}", **context)
        cache_key = (iss, kid, alg, repr(sorted(jwk.items())))
        key = self._pyjwks.get(cache_key)
        if key is None:
            try:
                key = PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise AuthError(f"key unusable with {alg}: {exc}", **context) from None
            if len(self._pyjwks) > 512:  # keys rotate; keep the cache bounded
                self._pyjwks.clear()
            self._pyjwks[cache_key] = key
        return key

    def _decode(
        self, token: str, key: PyJWK, alg: str, iss: str, context: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                issuer=iss,
                leeway=self.leeway_s,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_aud": False,  # checked by audience_matches with URL normalisation
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", **context) from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid (nbf or iat in the future)", **context) from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature", **context) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing claim {exc.claim}", **context) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}: {exc}", **context) from None
        except (OverflowError, ValueError, TypeError) as exc:  # e.g. "exp": Infinity
            raise AuthError(f"invalid token: {type(exc).__name__}", **context) from None
        return claims

    def _check_claims(
        self, claims: dict[str, Any], issuer: Issuer, context: dict[str, Any]
    ) -> None:
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise AuthError("jti must be a non-empty string", **context)
        for name in ("exp", "iat", "nbf"):
            # RFC 7519 NumericDate: PyJWT accepts "4000000000" (a string) by calling int();
            # the arithmetic below would then fail as a server error instead of a 401.
            value = claims.get(name, 0)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise AuthError(f"{name} must be a number", **context)
        if claims["exp"] - claims["iat"] > issuer.max_token_lifetime_s:
            raise AuthError("token lifetime longer than this issuer allows", **context)
        if issuer.tenants is not None:
            tenant = claims.get("tenant")
            if not isinstance(tenant, str) or tenant not in issuer.tenants:
                raise AuthError("tenant not allowed", tenant=_loggable(tenant), **context)


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload before any check — used only to choose the issuer and key.

    Decoded here (base64url and JSON, nothing else) rather than by a second PyJWT pass: the
    token is decoded and checked strictly by ``jwt.decode`` once the key is chosen, and this
    pass cost as much again in PyJWT's per-character validation (0.05 ms per call)."""
    try:
        header_b64, payload_b64, _signature = token.split(".")
        header = _json(_b64url(header_b64))
        payload = _json(_b64url(payload_b64))
    # RecursionError: a header of thousands of nested arrays is a malformed token (401), not
    # a store failure (the caller's catch-all answers 503)
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise AuthError(f"malformed token: {type(exc).__name__}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AuthError("malformed token: header or payload is not an object")
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not isinstance(alg, str) or not alg:
        raise AuthError("malformed token: no alg")
    if alg.lower() == "none" or alg.upper().startswith("HS"):
        raise AuthError(f"algorithm {_loggable(alg)} is never accepted", kid=_loggable(kid))
    if not isinstance(kid, str) or not kid:
        raise AuthError("malformed token: no kid")
    # CDS Hooks fixes typ to JWT; we tolerate its absence (RFC 7519 makes it optional) but not
    # another type, which would mean a token minted for a different purpose.
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise AuthError("typ is not JWT", kid=_loggable(kid))
    return header, payload


def _b64url(segment: str) -> bytes:
    if not segment or len(segment) % 4 == 1:
        raise ValueError("bad base64url length")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json(data: bytes) -> Any:
    """orjson, or the standard library (what PyJWT uses) for what orjson refuses, such as an
    integer past 64 bits: the choice of parser never changes which tokens are accepted."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
