"""Client authentication: every request but health, metrics and CORS preflights carries a JWT
from a trusted issuer (CDS Hooks 2.0 §Trusting CDS Clients), checked before any route runs.

``register_security(app, settings)`` loads the trusted issuers once per worker and installs a
``before_request`` hook. The replay (``jti``) store is the shared database store at
``app.extensions["cds.store"]`` (method ``claim_jti``), looked up per request so that the store
may be registered before or after this step.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask, Request, Response, current_app, g, request

from cds_service.config import ConfigError, Settings
from cds_service.errors import error_response
from cds_service.fhir.guard import CLIENT_SERVERS_KEY
from cds_service.security.issuers import load_trusted_issuers
from cds_service.security.verify import AuthError, Caller, ReplayStore, Verifier

__all__ = ["register_security", "expected_audience", "Caller", "ReplayStore", "Verifier"]

log = logging.getLogger("cds_service.security")

OPEN_PATHS = frozenset({"/health", "/metrics"})
# Published terminology (card topics, override reasons): no patient data, and the canonical URL
# a card names should resolve for whoever maps its codes (an EHR analyst, a terminology server).
OPEN_PREFIXES = ("/fhir/CodeSystem/",)
CHALLENGE = {"WWW-Authenticate": "Bearer"}
STORE_EXTENSION = "cds.store"
DISABLED_WARNING_INTERVAL_S = 1.0  # CDS_AUTH=disabled: one warning a second per worker at most


def is_open(req: Request) -> bool:
    """Health and metrics are for the load balancer and Prometheus, the published code systems
    for anyone mapping card codes; a CORS preflight never carries credentials (browsers strip
    them), and Flask answers OPTIONS without a view. ``/admin`` is for people, not EHRs: it
    has its own credential (``cds_service.admin``) and does not exist without one."""
    return (
        req.method == "OPTIONS"
        or req.path in OPEN_PATHS
        or req.path == "/admin"
        or req.path.startswith("/admin/")
        or (req.method in ("GET", "HEAD") and req.path.startswith(OPEN_PREFIXES))
    )


DISCOVERY_PATHS = frozenset({"/cds-services", "/cds-services/"})


def is_open_discovery(req: Request, settings: Settings) -> bool:
    """Discovery lists services and prefetch templates, no patient data, and CDS Hooks leaves
    its protection to the service: with ``CDS_DISCOVERY_AUTH=open`` (the default) a GET
    without a token is answered, so EHRs that fetch it unauthenticated (or a newcomer's
    ``curl``) can register the services. A token that is sent is still verified."""
    return (
        settings.discovery_auth == "open"
        and req.method in ("GET", "HEAD")
        and req.path in DISCOVERY_PATHS
        and not req.headers.get("Authorization")
    )


def expected_audience(req: Request, public_base_url: str) -> str:
    """The URL the client called. Behind a proxy the request's own URL is the internal one,
    and its Host header is the caller's to choose, so production requires
    CDS_PUBLIC_BASE_URL (``config.check_startup``); the request's URL is used only in
    development or with CDS_AUD_FROM_REQUEST=true."""
    if public_base_url:
        return public_base_url.rstrip("/") + req.path
    return req.base_url


def register_security(app: Flask, settings: Settings) -> None:
    if settings.auth == "disabled":
        _register_disabled(app)
        return
    issuers = load_trusted_issuers(settings)
    if not issuers:
        raise ConfigError(
            "CDS_AUTH=required but no client is trusted: set CDS_TRUSTED_ISSUERS to a "
            "trusted-issuers file (see examples/trusted-issuers.example.json), or use "
            "CDS_ENV=development (trusts the public sandbox), or CDS_AUTH=disabled for local "
            "experiments"
        )
    if not settings.public_base_url and not settings.is_development:
        log.warning(
            "CDS_PUBLIC_BASE_URL is not set: the expected JWT aud is taken from the request's "
            "own URL and Host header, which the caller chooses (CDS_AUD_FROM_REQUEST=%s)",
            str(settings.aud_from_request).lower(),
        )
    verifier = Verifier(issuers, leeway_s=settings.jwt_leeway_s)
    app.extensions["cds.verifier"] = verifier
    log.info("client authentication required", extra={"issuers": sorted(issuers)})

    @app.before_request
    def _authenticate() -> Response | None:
        if is_open(request) or is_open_discovery(request, settings):
            return None
        store = current_app.extensions.get(STORE_EXTENSION)
        if store is None or not hasattr(store, "claim_jti"):
            log.error("no replay store (app.extensions['cds.store']) registered; refusing")
            return error_response(503, "Service unavailable.")
        started = time.perf_counter()
        try:
            caller = verifier.verify(
                request.headers.get("Authorization"),
                expected_audience(request, settings.public_base_url),
                store,
            )
        except AuthError as exc:
            log.warning(
                "authentication failed",
                extra={
                    "reason": exc.reason,
                    "path": request.path[:200],
                    "worker": os.getpid(),  # replay rejections are per worker: shows who saw it
                    **exc.context,
                },
            )
            return error_response(401, "Authentication required.", CHALLENGE)
        except Exception as exc:  # the replay store (database) failing: fail closed
            log.error("authentication could not complete: %s", type(exc).__name__)
            return error_response(503, "Service unavailable.")
        g.cds_client_iss = caller.iss
        g.cds_client_profile = caller.profile
        g.cds_client_tenant = caller.tenant
        setattr(g, CLIENT_SERVERS_KEY, caller.fhir_servers)
        g.setdefault("cds_timings", {})["auth"] = (time.perf_counter() - started) * 1000
        return None


def _register_disabled(app: Flask) -> None:
    log.warning(
        "CDS_AUTH=disabled: any caller can get advice and send feedback; local experiments only"
    )

    # Loud, but not a second log line per call (a tenth of a small call's CPU): at most one
    # warning a second per worker, counting the calls it stands for.
    state = {"next": 0.0, "unverified": 0}
    lock = threading.Lock()

    @app.before_request
    def _warn() -> None:
        if is_open(request):
            return
        now = time.monotonic()
        with lock:
            state["unverified"] += 1
            if now < state["next"]:
                return
            state["next"] = now + DISABLED_WARNING_INTERVAL_S
            count, state["unverified"] = state["unverified"], 0
        log.warning(
            "authentication disabled: request not verified",
            extra={"path": request.path[:200], "unverified_requests": count},
        )
