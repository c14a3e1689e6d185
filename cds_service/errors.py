"""JSON error bodies (FHIR OperationOutcome) for every failure, so no client ever sees HTML.

CDS Hooks 2.0 defines no error body; the 3.0 ballot recommends an OperationOutcome on any
non-2xx, which is what troubleshooting tools and EHR logs can read.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("cds_service.errors")

# OperationOutcome issue codes per HTTP status (http://hl7.org/fhir/issue-type)
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "not-found",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class ApiError(Exception):
    """An expected failure with a status and a message safe to show the client."""

    def __init__(self, status: int, diagnostics: str, *, headers: dict[str, str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.headers = headers or {}


def operation_outcome(status: int, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": _ISSUE_CODE.get(status, "processing"),
                "diagnostics": diagnostics,
            }
        ],
    }


# Every 503 here is a passing condition (the database busy or briefly unavailable): tell the
# client when to retry, whichever part of the service answered.
RETRY_AFTER_S = "5"


def error_response(
    status: int, diagnostics: str, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(operation_outcome(status, diagnostics))
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_S
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


_HTTP_MESSAGES = {
    404: "No such resource. Discovery is at GET /cds-services.",
    405: "Method not allowed on this URL.",
    413: "Request body too large.",
    415: "Unsupported media type: send Content-Type: application/json.",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.diagnostics, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = _HTTP_MESSAGES.get(status) or exc.description or exc.name
        if status == 413:
            limit = app.config["CDS_SETTINGS"].max_body_bytes
            message = f"Request body too large: the limit is {limit} bytes."
        response = error_response(status, message)
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The client gets a generic text; the log gets the exception type and the stack frames
        # but not the message: validation errors (pydantic, fhir.resources) quote the input,
        # which may be PHI.
        stack = "".join(traceback.format_tb(exc.__traceback__))
        log.error("unhandled error: %s", type(exc).__name__, extra={"stack": stack[-8000:]})
        return error_response(500, "Internal error; the service logged the details.")
