"""Service settings, read once from ``CDS_*`` environment variables (and an optional file).

Every setting the service reads is declared in ``SETTINGS`` below, with its default and meaning,
so the operations documentation can be checked against the code (a test compares them).
Settings are a frozen dataclass: a worker reads them at start-up and never again, which keeps
the hot path free of environment look-ups and makes tests build apps with explicit overrides.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("cds_service.config")

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
# Canonical base of the code systems the service publishes (card topics, override reasons) when
# CDS_CANONICAL_BASE is unset: where `make run` serves them. Development only: production
# `diazepam-cds serve` refuses to start without a site's own base (see check_canonical_base).
DEVELOPMENT_CANONICAL_BASE = "http://localhost:8080/fhir"
TOPIC_CODE_SYSTEM = "cds-topic"
OVERRIDE_CODE_SYSTEM = "override-reason"


def code_system_url(base: str, code_system_id: str) -> str:
    """The canonical URL of a code system the service publishes (FHIR ``CodeSystem.url``)."""
    return f"{base.rstrip('/')}/CodeSystem/{code_system_id}"


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; start-up stops with this message."""


def _default_cards_dir() -> str:
    # A source checkout keeps card templates at the top level (`cards/`); an installed wheel
    # carries a copy inside the package.
    top = REPO_DIR / "cards"
    return str(top if top.is_dir() else PACKAGE_DIR / "data" / "cards")


@dataclass(frozen=True)
class Settings:
    """Typed settings. Field names are the env names without the ``CDS_`` prefix, lower-cased."""

    env: str = "production"
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    data_dir: str = "var"
    database_url: str = ""
    max_body_bytes: int = 1024 * 1024
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    # Authentication (JWT per CDS Hooks §7)
    auth: str = "required"
    discovery_auth: str = "open"
    trusted_issuers: str = ""
    dev_trust_sandbox: bool = False
    public_base_url: str = ""
    aud_from_request: bool = False
    forwarded_allow_ips: tuple[str, ...] = ()
    allow_insecure: bool = False
    jwt_leeway_s: int = 60
    jwks_cache_s: int = 300
    # FHIR data access
    deadline_ms: int = 2000
    fhir_allowlist: tuple[str, ...] = ()
    fhir_allow_loopback: bool = False
    # Clinical content
    policy_file: str = ""
    cards_dir: str = field(default_factory=_default_cards_dir)
    ehr_profile: str = ""
    canonical_base: str = ""
    # Store, feedback, metrics
    patient_hash_key: str = ""
    suppress_repeats: bool = False
    suppress_window_s: int = 3600
    store_comments: bool = False
    card_queue: int = 1000
    card_flush_ms: int = 50
    metrics_dir: str = ""
    metrics_token: str = field(default="", repr=False)
    # Committee pages (/admin): off unless set
    admin_token: str = field(default="", repr=False)

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'cds.sqlite3'}"

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **overrides)

    def resolved_canonical_base(self) -> str:
        """The base the code system URLs derive from: ``{base}/CodeSystem/{id}``."""
        return self.canonical_base or DEVELOPMENT_CANONICAL_BASE


def check_canonical_base(settings: Settings) -> None:
    """Production start-up (``diazepam-cds serve``) stops without a site's canonical base.

    Every card names its topic and override reasons by ``{base}/CodeSystem/{id}``; EHRs map
    these codings (an override reason sent by a service must be mapped by the health system)
    and the feedback store keeps them. A default would put a URL nobody owns into production
    and change identity the day the site sets its own, so production is asked once, up front.
    """
    if settings.is_development:
        return
    if settings.canonical_base:
        # review round 1 L4: the development default (http://localhost:8080) went to a
        # go-live review; a production base is a public https URL the site owns
        parts = urlsplit(settings.canonical_base)
        if parts.scheme != "https" or is_loopback_host(parts.hostname or ""):
            raise ConfigError(
                f"CDS_CANONICAL_BASE {settings.canonical_base!r} is not usable in production: "
                "it must be an https URL on a host your organisation owns, not loopback "
                "(EHRs map the override-reason and topic codings by this URL)"
            )
        return
    raise ConfigError(
        "CDS_CANONICAL_BASE is not set: card topics and override reasons need a canonical base "
        "your organisation owns, e.g. https://cds.hospital.example/fhir (the service publishes "
        "{base}/CodeSystem/cds-topic and {base}/CodeSystem/override-reason at GET "
        "/fhir/CodeSystem/{id}). Set it once and never change it; CDS_ENV=development uses "
        f"{DEVELOPMENT_CANONICAL_BASE}"
    )


# name -> (default as documented, meaning). Kept beside the dataclass so docs and code agree.
SETTINGS: dict[str, str] = {
    "CDS_CONFIG_FILE": "Optional JSON file of settings (keys as the env names); env wins.",
    "CDS_ENV": "`production` (default) or `development` (CORS `*`, sandbox issuer trusted).",
    "CDS_HOST": "Interface gunicorn binds (default `0.0.0.0`).",
    "CDS_PORT": "Port gunicorn binds (default `8080`).",
    "CDS_WORKERS": "gunicorn worker processes (default `2`).",
    "CDS_THREADS": "Threads per gunicorn worker (gthread; default 4).",
    "CDS_DATA_DIR": "Directory for the embedded SQLite database and metrics files (default `var`).",
    "CDS_DATABASE_URL": "SQLAlchemy URL; default SQLite file under CDS_DATA_DIR. PostgreSQL: "
    "`postgresql+psycopg://user@host/db`.",
    "CDS_MAX_BODY_BYTES": "Largest accepted request body in bytes (default 1048576); larger → 413.",
    "CDS_ALLOWED_ORIGINS": "Comma-separated CORS origins; default none in production, `*` in "
    "development.",
    "CDS_LOG_LEVEL": "Log level (default `INFO`). Logs are JSON lines without PHI.",
    "CDS_AUTH": "`required` (default) or `disabled` (local experiments only; warns loudly).",
    "CDS_DISCOVERY_AUTH": "`open` (default: `GET /cds-services` answers without a token; a token "
    "that is sent is still verified) or `required`.",
    "CDS_TRUSTED_ISSUERS": "Path to the trusted-issuers JSON file (see README).",
    "CDS_DEV_TRUST_SANDBOX": "Trust the public CDS Hooks sandbox issuer (default: on only in "
    "development). Never in production: its private key is public.",
    "CDS_PUBLIC_BASE_URL": "External base URL (scheme://host[:port][/prefix]) the EHR calls; the "
    "expected JWT `aud` is this plus the path. Required in production.",
    "CDS_AUD_FROM_REQUEST": "Take the expected `aud` from the request's own URL (Host header) "
    "when CDS_PUBLIC_BASE_URL is unset (default off; single-host set-ups only: the caller "
    "chooses the Host header).",
    "CDS_FORWARDED_ALLOW_IPS": "Comma-separated proxy addresses whose X-Forwarded-* headers "
    "gunicorn trusts (default none).",
    "CDS_ALLOW_INSECURE": "Start with development settings, the sandbox issuer or "
    "CDS_AUTH=disabled on a non-loopback address (default off).",
    "CDS_JWT_LEEWAY_S": "Clock skew tolerated on exp/iat/nbf, seconds (default 60).",
    "CDS_JWKS_CACHE_S": "Lifetime of a fetched JWK Set in seconds (default 300).",
    "CDS_DEADLINE_MS": "Per-request deadline in milliseconds (default 2000): FHIR fetches stop "
    "in time for the hook to answer within it, with what is known.",
    "CDS_FHIR_ALLOWLIST": "Comma-separated host patterns (fnmatch) allowed for `fhirServer` over "
    "plain http; https hosts always allowed unless a `!pattern` excludes them.",
    "CDS_FHIR_ALLOW_LOOPBACK": "Allow `fhirServer` on loopback addresses (default off).",
    "CDS_POLICY_FILE": "JSON file overriding thresholds of the shipped clinical policy.",
    "CDS_CARDS_DIR": "Directory of card templates (default: the top-level `cards/`).",
    "CDS_EHR_PROFILE": "Default EHR profile `standard` or `epic` (default from the policy file).",
    "CDS_PATIENT_HASH_KEY": "Secret key for the keyed hash of patient, user and order ids in the "
    "store. Required in production.",
    "CDS_CANONICAL_BASE": "Canonical base URL of the code systems the service publishes: card "
    "topics are `{base}/CodeSystem/cds-topic`, override reasons "
    "`{base}/CodeSystem/override-reason` (served at `GET /fhir/CodeSystem/{id}`). Required by "
    "`serve` in production, as an https URL on a non-loopback host; development "
    f"default `{DEVELOPMENT_CANONICAL_BASE}`.",
    "CDS_SUPPRESS_REPEATS": "Suppress a topic at order-sign that the same user overrode at "
    "order-select for the same draft (default off).",
    "CDS_SUPPRESS_WINDOW_S": "Window for repeat suppression and fire once (order-select to "
    "order-sign), and for pairing an Epic removal with its addition in the report, seconds "
    "(default 3600).",
    "CDS_STORE_COMMENTS": "Keep clinicians' free-text override comments in the store (default "
    "off: they can contain PHI).",
    "CDS_CARD_QUEUE": "Issued cards a worker may hold before writing them in a batch, off the "
    "request path (default 1000; 0 records every call's cards before it answers). order-select "
    "cards are always written before the answer. A crash loses at most the cards of the last "
    "`CDS_CARD_FLUSH_MS`, never more than this many; a graceful stop writes them all.",
    "CDS_CARD_FLUSH_MS": "How long the card writer lets a batch gather, milliseconds "
    "(default 50): the crash-loss window of queued cards.",
    "CDS_METRICS_DIR": "Prometheus multiprocess directory (default `<CDS_DATA_DIR>/metrics`).",
    "CDS_METRICS_TOKEN": "Bearer token required on `GET /metrics` (default none: open).",
    "CDS_ADMIN_TOKEN": "Token for the committee pages `/admin/dashboard` and `/admin/cards` "
    "(Bearer header or the login form's session cookie); default none: `/admin` does not "
    "exist (404).",
}

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _coerce(name: str, raw: Any, kind: type | str) -> Any:
    text = raw if not isinstance(raw, str) else raw.strip()
    if kind in (bool, "bool"):
        if isinstance(text, bool):
            return text
        low = str(text).lower()
        if low in _BOOL_TRUE:
            return True
        if low in _BOOL_FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if kind in (int, "int"):
        try:
            return int(text)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if kind in ("tuple[str, ...]",):
        if isinstance(text, list | tuple):
            return tuple(str(x).strip() for x in text if str(x).strip())
        return tuple(part.strip() for part in str(text).split(",") if part.strip())
    return str(text)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from a config file, then the environment, then explicit overrides (tests)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = environ.get("CDS_CONFIG_FILE")
    if config_file:
        try:
            data = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"CDS_CONFIG_FILE {config_file!r} unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"CDS_CONFIG_FILE {config_file!r} must hold a JSON object")
        known = {"CDS_" + f.name.upper() for f in fields(Settings)}
        for key in data:
            # Exact names only: a key in another letter case (``cds_env``) or a misspelt one
            # would otherwise be applied, or ignored, without anyone reading it as a setting.
            if key not in known:
                raise ConfigError(
                    f"CDS_CONFIG_FILE {config_file!r}: unknown setting {key!r} (keys are the "
                    "CDS_* variable names, upper case)"
                )
        values.update(data)
    values.update({k: v for k, v in environ.items() if k.startswith("CDS_")})
    kwargs: dict[str, Any] = {}
    for f in fields(Settings):
        env_name = "CDS_" + f.name.upper()
        if env_name in values:
            kwargs[f.name] = _coerce(env_name, values[env_name], f.type)
    for key, value in (overrides or {}).items():
        if key not in {f.name for f in fields(Settings)}:
            raise ConfigError(f"unknown setting {key!r}")
        kwargs[key] = value
    settings = Settings(**kwargs)
    return _apply_profile_defaults(settings, explicit=set(kwargs))


def _apply_profile_defaults(settings: Settings, explicit: set[str]) -> Settings:
    if settings.env not in ("production", "development"):
        raise ConfigError(f"CDS_ENV must be production or development, got {settings.env!r}")
    if settings.auth not in ("required", "disabled"):
        raise ConfigError(f"CDS_AUTH must be required or disabled, got {settings.auth!r}")
    if settings.discovery_auth not in ("open", "required"):
        raise ConfigError(
            f"CDS_DISCOVERY_AUTH must be open or required, got {settings.discovery_auth!r}"
        )
    if settings.max_body_bytes <= 0:
        raise ConfigError("CDS_MAX_BODY_BYTES must be positive")
    if settings.deadline_ms <= 0:
        raise ConfigError("CDS_DEADLINE_MS must be positive")
    if not 1 <= settings.threads <= 64:
        raise ConfigError("CDS_THREADS must be between 1 and 64")
    if settings.card_queue < 0:
        raise ConfigError("CDS_CARD_QUEUE must be 0 (no queue) or positive")
    if not 0 <= settings.card_flush_ms <= 10_000:
        raise ConfigError("CDS_CARD_FLUSH_MS must be between 0 and 10000")
    if settings.public_base_url:
        check_public_base_url(settings.public_base_url)
    for address in settings.forwarded_allow_ips:
        if address != "*":
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(
                    f"CDS_FORWARDED_ALLOW_IPS: {address!r} is not an IP address"
                ) from None
    changes: dict[str, Any] = {}
    if settings.canonical_base:
        changes["canonical_base"] = _canonical_base(settings.canonical_base)
    if settings.is_development:
        if "allowed_origins" not in explicit:
            changes["allowed_origins"] = ("*",)
        if "dev_trust_sandbox" not in explicit:
            changes["dev_trust_sandbox"] = True
    if not settings.metrics_dir:
        changes["metrics_dir"] = str(Path(settings.data_dir) / "metrics")
    return replace(settings, **changes) if changes else settings


def check_public_base_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"CDS_PUBLIC_BASE_URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"CDS_PUBLIC_BASE_URL {url!r} must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"CDS_PUBLIC_BASE_URL {url!r} must not carry user information")
    if parts.query or parts.fragment:
        raise ConfigError(f"CDS_PUBLIC_BASE_URL {url!r} must not have a query or fragment")


def is_loopback_host(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    text = host.strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def unsafe_settings(settings: Settings) -> list[str]:
    """Settings that make the service callable by anyone who can reach it."""
    found = []
    if settings.is_development:
        found.append("CDS_ENV=development")
    if settings.dev_trust_sandbox:
        found.append("CDS_DEV_TRUST_SANDBOX=true (the sandbox's private key is public)")
    if settings.auth == "disabled":
        found.append("CDS_AUTH=disabled")
    return found


def check_startup(settings: Settings) -> None:
    """What ``diazepam-cds serve`` refuses before it binds a socket (the app factory never
    binds, so this is the serving process's check):

    * development settings, the sandbox issuer or disabled authentication on an address
      other than loopback, unless ``CDS_ALLOW_INSECURE=true`` (logged loudly);
    * in production, no ``CDS_PUBLIC_BASE_URL`` (the expected ``aud`` would come from the
      caller's Host header) unless ``CDS_AUD_FROM_REQUEST=true``, and no
      ``CDS_PATIENT_HASH_KEY`` (a key generated into the database is readable by whoever
      reads the hashes).
    """
    unsafe = unsafe_settings(settings)
    if unsafe:
        where = f"{settings.host}:{settings.port}"
        if not is_loopback_host(settings.host):
            if not settings.allow_insecure:
                raise ConfigError(
                    f"refusing to listen on {where} with {', '.join(unsafe)}: anyone who can "
                    "reach that address could use it. Bind 127.0.0.1 (CDS_HOST or --host), "
                    "or set CDS_ALLOW_INSECURE=true to accept the risk"
                )
            log.error(
                "CDS_ALLOW_INSECURE=true: listening on %s with %s; NOT SAFE FOR PATIENT CARE",
                where,
                ", ".join(unsafe),
                extra={"allow_insecure": True, "unsafe": unsafe},
            )
        else:
            log.warning(
                "insecure settings on loopback %s: %s (CDS_ALLOW_INSECURE=%s)",
                where,
                ", ".join(unsafe),
                str(settings.allow_insecure).lower(),
            )
    if settings.is_development:
        return
    if not settings.public_base_url and settings.auth == "required":
        if not settings.aud_from_request:
            raise ConfigError(
                "CDS_PUBLIC_BASE_URL is required in production: the expected JWT aud must come "
                "from configuration, not from the Host header a caller chooses. Set it to the "
                "URL the EHR calls (what precedes /cds-services), or CDS_AUD_FROM_REQUEST=true "
                "for a single-host set-up that accepts that risk"
            )
        log.warning(
            "CDS_AUD_FROM_REQUEST=true: the expected JWT aud is built from the request's Host "
            "header, so a token minted for another service at the same path is accepted when "
            "the caller sends that service's host; set CDS_PUBLIC_BASE_URL instead"
        )
    if not settings.patient_hash_key:
        raise ConfigError(
            "CDS_PATIENT_HASH_KEY is required in production (a long random secret "
            "kept outside the database; never change it once data exists)"
        )


def _canonical_base(raw: str) -> str:
    """An absolute http(s) URL without query, fragment or trailing slash."""
    from urllib.parse import urlsplit

    base = raw.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"CDS_CANONICAL_BASE must be an absolute http(s) URL without query or fragment, "
            f"e.g. https://cds.hospital.example/fhir; got {raw!r}"
        )
    if any(c.isspace() for c in base):
        raise ConfigError(f"CDS_CANONICAL_BASE must not contain spaces; got {raw!r}")
    return base
