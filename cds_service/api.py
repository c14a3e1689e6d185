"""HTTP routes: discovery, the two hook services, feedback, health. Thin by design."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from cds_service import __version__
from cds_service.compat import normalize_body
from cds_service.discovery import SERVICES, ServiceDefinition, discovery_document
from cds_service.errors import ApiError
from cds_service.hook_request import build_hook_request, parse_json_body, validate
from cds_service.pipeline import run_hook

log = logging.getLogger("cds_service.request")
bp = Blueprint("cds", __name__)


def _service(service_id: str) -> ServiceDefinition:
    service = SERVICES.get(service_id)
    if service is None:
        known = ", ".join(sorted(SERVICES))
        raise ApiError(404, f"Unknown CDS service '{service_id[:100]}'. Known services: {known}.")
    g.cds_service_id = service.id
    return service


def _json_body() -> Any:
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        shown = mimetype or "none"
        raise ApiError(
            415, f"Unsupported media type '{shown}': send Content-Type: application/json."
        )
    data = request.get_data(cache=True)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is None and limit and len(data) >= limit:
        # A chunked body has no Content-Length to refuse up front, and werkzeug stops reading
        # at the limit without an error: the truncated JSON would be reported as malformed.
        raise RequestEntityTooLarge()
    return parse_json_body(data)


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify(discovery_document())


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    service = _service(service_id)
    started = time.perf_counter()
    body, mapped = normalize_body(_json_body())
    if mapped:
        # which pre-2.0 or out-of-spec forms were accepted (field names only, no values)
        g.cds_mapped = mapped
        log.info("request mapped onto CDS Hooks 2.0", extra={"mapped": mapped})
    if (
        isinstance(body, dict)
        and isinstance(body.get("hook"), str)
        and body["hook"] != service.hook
    ):
        raise ApiError(
            400,
            f"Service '{service.id}' handles hook '{service.hook}', but the request says "
            f"'{body['hook'][:64]}'.",
        )
    validate(service.hook, body)
    hook_request = build_hook_request(body)
    g.cds_hook_instance = hook_request.hook_instance
    settings = current_app.config["CDS_SETTINGS"]
    timings: dict[str, float] = g.setdefault("cds_timings", {})
    timings["parse_ms"] = (time.perf_counter() - started) * 1000  # JSON, schema, typed view
    advisor = current_app.extensions["cds.advisor"]
    profile = (
        g.get("cds_client_profile")
        or settings.ehr_profile
        or getattr(advisor, "default_profile", "standard")
    )
    g.cds_profile = profile  # recorded with each card (fire once, the Epic switch report)
    result = run_hook(
        hook_request, advisor=advisor, settings=settings, profile=profile, timings=timings
    )
    g.cds_fhir_version = result.pop("_fhir_version", None)
    unidentified = result.pop("_unidentified", None) or []
    metrics = current_app.extensions.get("cds.metrics")
    if unidentified and metrics is not None:
        metrics.orders_unidentified(service.id, [u.reason for u in unidentified])
    started = time.perf_counter()
    # card filters (repeat suppression, fire once) may withhold cards: a shorter list, maybe
    # empty, which is still a valid answer ({"cards": []})
    for card_filter in current_app.extensions.get("cds.card_filters", []):
        result["cards"] = card_filter(service, hook_request, result["cards"])
    g.cds_cards = result["cards"]
    for hook in current_app.extensions.get("cds.after_hook", []):
        hook(service, hook_request, result)
    # filters and after-hooks (repeat suppression, fire once, card recording) touch the database
    timings["store_ms"] = (time.perf_counter() - started) * 1000
    return json_response({"cards": [public_card(card) for card in result["cards"]]})


def json_response(body: dict[str, Any]) -> Response:
    """Serialise an answer with orjson (cards carry whole FHIR resources: several times
    faster than the standard library); anything it refuses, such as an integer past 64 bits
    copied from a draft order, goes through Flask's own encoder instead."""
    try:
        data = orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):
        try:
            return jsonify(body)
        except RecursionError:  # a draft nested past the encoder's limit, echoed in a card
            raise ApiError(400, "Request body nests too deeply.") from None
    return current_app.response_class(data, mimetype="application/json")


def public_card(card: dict[str, Any]) -> dict[str, Any]:
    """Cards may carry private keys (``_audit``: rule inputs for the store); clients never
    see them."""
    return {k: v for k, v in card.items() if not k.startswith("_")}


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = _service(service_id)
    body = _json_body()
    validate("feedback", body)
    handler = current_app.extensions.get("cds.feedback_handler")
    result: dict[str, Any] = handler(service, body) if handler else {}
    return jsonify(result)


@bp.get("/health")
def health() -> Response:
    checks: dict[str, str] = {}
    for name, check in current_app.extensions.get("cds.health_checks", {}).items():
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # a failing dependency is reported, not raised
            log.warning("health check failed", extra={"check": name, "error": type(exc).__name__})
            checks[name] = "failing"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "degraded", "version": __version__}
    if checks:
        body["checks"] = checks
    response = jsonify(body)
    response.status_code = 200 if ok else 503
    return response


def log_request(response: Response) -> Response:
    """One structured line per request: route, status, timings; never bodies or patient data."""
    started = g.get("cds_started")
    fields: dict[str, Any] = {
        "method": request.method,
        "path": request.path[:200],
        "status": response.status_code,
    }
    if started is not None:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    for key in (
        "cds_service_id",
        "cds_hook_instance",
        "cds_client_iss",
        "cds_client_tenant",
        "cds_profile",
        "cds_suppressed",
        "cds_suppressed_by",
        "cds_mapped",
        "cds_fhir_version",
    ):
        if g.get(key):
            fields[key.removeprefix("cds_")] = g.get(key)
    if g.get("cds_timings"):
        fields["timings_ms"] = {k: round(v, 2) for k, v in g.cds_timings.items()}
    if g.get("cds_cards") is not None:
        fields["cards"] = len(g.cds_cards)
    log.info("request", extra=fields)
    return response
