"""Application factory: ``create_app(config)`` assembled from small ``register_*`` steps.

Each step owns one concern and reads only the typed settings, so a worker builds everything
it needs (validators, value sets, templates, keys) once, at start-up, and a bad configuration
stops start-up with a clear message instead of failing the first clinician's request.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Mapping
from typing import Any

from flask import Flask, g
from flask_cors import CORS

from cds_service.api import bp, log_request
from cds_service.config import ConfigError, Settings, load_settings
from cds_service.errors import register_error_handlers
from cds_service.feedback import register_feedback
from cds_service.hook_request import SCHEMA_FILES, fast_check, validator
from cds_service.logs import configure_logging
from cds_service.metrics import register_metrics
from cds_service.security import register_security
from cds_service.store import register_store

log = logging.getLogger("cds_service.app")


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    settings = config if isinstance(config, Settings) else load_settings(overrides=config)
    app = Flask(__name__)
    app.config["CDS_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    register_logging(app, settings)
    register_error_handlers(app)
    register_cors(app, settings)
    register_security(app, settings)
    register_schemas(app)
    register_advisor(app, settings)
    register_store(app, settings)
    register_feedback(app, settings)
    register_metrics(app, settings)
    register_blueprints(app)
    return app


def register_logging(app: Flask, settings: Settings) -> None:
    configure_logging(settings.log_level)

    @app.before_request
    def _start_clock() -> None:
        g.cds_started = time.perf_counter()

    app.after_request(log_request)


def origin_pattern(origin: str) -> re.Pattern[str]:
    """One ``CDS_ALLOWED_ORIGINS`` entry as an exact-match pattern: ``scheme://host[:port]``
    compared whole (never as a prefix), where a ``*`` label stands for exactly one DNS label:
    ``https://*.hospital.example`` allows ``https://x.hospital.example`` and nothing else
    (not ``https://xhospital.example.evil.com``, not ``https://a.b.hospital.example``)."""
    text = origin.strip().rstrip("/").lower()
    scheme, sep, host = text.partition("://")
    if scheme not in ("http", "https") or not sep or not host or "/" in host:
        raise ConfigError(
            f"CDS_ALLOWED_ORIGINS entry {origin!r} must be an origin: scheme://host[:port]"
        )
    hostname, colon, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if colon and not port.isdigit():
        raise ConfigError(f"CDS_ALLOWED_ORIGINS entry {origin!r} has a bad port")
    labels = hostname.split(".")
    if any(label != "*" and "*" in label for label in labels) or any(not x for x in labels):
        raise ConfigError(
            f"CDS_ALLOWED_ORIGINS entry {origin!r}: '*' may only stand for a whole DNS label"
        )
    host_re = r"\.".join("[a-z0-9](?:[a-z0-9-]*[a-z0-9])?" if x == "*" else re.escape(x)
                         for x in labels)
    port_re = re.escape(colon + port)
    return re.compile(rf"{re.escape(scheme)}://{host_re}{port_re}\Z", re.IGNORECASE)


def register_cors(app: Flask, settings: Settings) -> None:
    """Browsers (the CDS Hooks sandbox) preflight every call; answer without auth."""
    if not settings.allowed_origins:
        return
    origins: Any = (
        "*"
        if "*" in settings.allowed_origins
        else [origin_pattern(origin) for origin in settings.allowed_origins]
    )
    CORS(
        app,
        # every route but the committee pages (/admin: browsers of people, same origin only)
        resources={r"/(?!admin(?:/|$)).*": {}},
        origins=origins,
        allow_headers=["Authorization", "Content-Type", "Accept"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=600,
    )


def register_schemas(app: Flask) -> None:
    for name in SCHEMA_FILES:
        validator(name)  # compile once per worker; a broken schema stops start-up
        fast_check(name)  # and its compiled fast path, so no hook call pays for code generation


def register_advisor(app: Flask, settings: Settings) -> None:
    """The clinical engine: value sets, policy and card templates loaded and validated once."""
    from cds_service.clinical.engine import Engine

    if not settings.is_development and not settings.canonical_base:
        # `diazepam-cds serve` refuses this in production (check_canonical_base); an app built
        # another way (tests, an embedding WSGI server) runs but says so once per worker.
        log.warning(
            "CDS_CANONICAL_BASE is not set: card topics and override reasons are named under "
            "%s, a development URL; set your organisation's own base before go-live",
            settings.resolved_canonical_base(),
        )

    app.extensions["cds.advisor"] = Engine.from_settings(settings)


def register_blueprints(app: Flask) -> None:
    from cds_service.admin import register_admin
    from cds_service.codesystems import register_code_systems

    app.register_blueprint(bp)
    register_code_systems(app)  # GET /fhir/CodeSystem/{id}
    register_admin(app, app.config["CDS_SETTINGS"])  # /admin/*, only with CDS_ADMIN_TOKEN


def _silence_known_warnings() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="flask_cors")


_silence_known_warnings()
