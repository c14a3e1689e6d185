"""Trusted issuers: who may call the service, with which keys, algorithms and tenants.

Read once at start-up from the JSON file named by ``CDS_TRUSTED_ISSUERS`` and validated against
``data/trusted-issuers.schema.json``; every mistake (unknown field, unreadable key file, plain
http key URL) stops start-up, because a silently ignored issuer entry shows up later as
clinicians getting no advice at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from cds_service.config import PACKAGE_DIR, ConfigError, Settings
from cds_service.fhir.guard import ServerPattern
from cds_service.security.jwks import JwksError, RemoteJwks, StaticJwks, check_key_url

log = logging.getLogger("cds_service.security.issuers")

DATA_DIR = PACKAGE_DIR / "data"
SCHEMA_PATH = DATA_DIR / "trusted-issuers.schema.json"
SANDBOX_JWKS_PATH = DATA_DIR / "sandbox-jwks.json"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"

DEFAULT_ALGORITHMS = ("ES384", "RS384")  # CDS Hooks 2.0 §JWT Signing Algorithm
DEFAULT_MAX_LIFETIME_S = 3600
DEFAULT_REFRESH_COOLDOWN_S = 10


@dataclass
class Issuer:
    """One trusted client. ``key_sources`` are searched in order: pinned file, then URL."""

    iss: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    profile: str | None = None
    tenants: frozenset[str] | None = None
    max_token_lifetime_s: int = DEFAULT_MAX_LIFETIME_S
    key_sources: list[StaticJwks | RemoteJwks] = field(default_factory=list)
    jku: dict[str, RemoteJwks] = field(default_factory=dict)
    # where this client's fhirServer may point (its access token goes nowhere else)
    fhir_servers: tuple[ServerPattern, ...] = ()

    def find_key(self, kid: str, jku: str | None = None) -> dict[str, Any] | None:
        """The JWK for ``kid``; ``jku`` must already be checked against ``self.jku``."""
        sources: list[StaticJwks | RemoteJwks] = list(self.key_sources)
        if jku is not None and all(s is not self.jku[jku] for s in sources):
            sources.append(self.jku[jku])
        for source in sources:
            jwk = source.find(kid)
            if jwk is not None:
                return jwk
        return None


@cache
def _schema_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_issuers_document(document: Any, *, source: str) -> None:
    errors = sorted(_schema_validator().iter_errors(document), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: invalid trusted-issuers file at {where}: {first.message}")


def build_issuer(entry: Mapping[str, Any], *, base_dir: Path, cache_s: int) -> Issuer:
    """One validated schema entry → ``Issuer`` with its key sources ready."""
    iss = entry["iss"]
    cooldown = entry.get("refresh_cooldown_s", DEFAULT_REFRESH_COOLDOWN_S)
    issuer = Issuer(
        iss=iss,
        algorithms=tuple(entry.get("algorithms", DEFAULT_ALGORITHMS)),
        profile=entry.get("profile"),
        tenants=frozenset(entry["tenants"]) if "tenants" in entry else None,
        max_token_lifetime_s=entry.get("max_token_lifetime_s", DEFAULT_MAX_LIFETIME_S),
    )
    try:
        issuer.fhir_servers = tuple(ServerPattern.parse(p) for p in entry.get("fhir_servers", []))
    except ValueError as exc:
        raise ConfigError(f"trusted issuer {iss!r}: {exc}") from exc
    if not issuer.fhir_servers:
        log.warning(
            "trusted issuer has no fhir_servers: its fhirServer is never contacted (prefetch "
            "only)",
            extra={"iss": iss},
        )
    try:
        if "jwks_file" in entry:
            path = Path(entry["jwks_file"])
            issuer.key_sources.append(StaticJwks(path if path.is_absolute() else base_dir / path))
        remotes: dict[str, RemoteJwks] = {}
        for url in [entry["jwks_url"]] if "jwks_url" in entry else []:
            remotes[url] = RemoteJwks(url, cache_s=cache_s, cooldown_s=cooldown)
            issuer.key_sources.append(remotes[url])
        for url in entry.get("jku", []):
            check_key_url(url)
            # A jku equal to jwks_url shares its cache; others get their own bounded cache.
            issuer.jku[url] = remotes.get(url) or RemoteJwks(
                url, cache_s=cache_s, cooldown_s=cooldown
            )
    except JwksError as exc:
        raise ConfigError(f"trusted issuer {iss!r}: {exc}") from exc
    return issuer


def sandbox_issuer(cache_s: int) -> Issuer:
    """The public CDS Hooks sandbox, with its JWK Set pinned in the package (its private key
    is published in the sandbox repository, so this is for development only)."""
    return build_issuer(
        {
            "iss": SANDBOX_ISS,
            "jwks_file": str(SANDBOX_JWKS_PATH),
            "jku": [SANDBOX_JKU],
            "algorithms": ["ES384"],
            "profile": "standard",
            # the sandbox's FHIR servers are public https ones, and the user may pick any
            "fhir_servers": ["https://*"],
        },
        base_dir=DATA_DIR,
        cache_s=cache_s,
    )


def load_issuers_file(path: str | Path, *, cache_s: int) -> dict[str, Issuer]:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CDS_TRUSTED_ISSUERS {str(path)!r} unreadable: {exc}") from exc
    validate_issuers_document(document, source=str(path))
    issuers: dict[str, Issuer] = {}
    for entry in document["issuers"]:
        if entry["iss"] in issuers:
            raise ConfigError(f"{path}: issuer {entry['iss']!r} listed twice")
        issuers[entry["iss"]] = build_issuer(entry, base_dir=path.resolve().parent, cache_s=cache_s)
    return issuers


def load_trusted_issuers(settings: Settings) -> dict[str, Issuer]:
    """All issuers this worker trusts: the configured file, plus the sandbox when enabled."""
    issuers: dict[str, Issuer] = {}
    if settings.trusted_issuers:
        issuers = load_issuers_file(settings.trusted_issuers, cache_s=settings.jwks_cache_s)
    if settings.dev_trust_sandbox:
        if SANDBOX_ISS in issuers:
            log.info("sandbox issuer configured in CDS_TRUSTED_ISSUERS; that entry is used")
        else:
            issuers[SANDBOX_ISS] = sandbox_issuer(settings.jwks_cache_s)
        log.warning(
            "trusting the public CDS Hooks sandbox issuer (its private key is public): "
            "development only, never in production",
            extra={"iss": SANDBOX_ISS},
        )
    return issuers
