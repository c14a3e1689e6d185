"""``GET /metrics``: Prometheus text for requests, latency, cards issued and feedback.

Under gunicorn every worker is a process with its own memory, so a scrape answered by one
worker would show only its share. ``diazepam-cds serve`` therefore runs prometheus-client in
multiprocess mode: the master points ``PROMETHEUS_MULTIPROC_DIR`` at ``CDS_METRICS_DIR``
(wiped at master start) before forking, each worker writes its samples to files there, and
whichever worker answers the scrape sums them all. In a plain process (tests, `flask run`)
each app keeps its own registry.

Label values come from a bounded set: service ids, route rules, topic codes of our own cards,
status codes, and override reason codes the service published on its cards; any other reason
code a client sends is counted as ``other`` (each distinct label value is a new series kept
forever, so client-chosen values would let any caller grow the exposition without bound).

``CDS_METRICS_TOKEN`` puts ``/metrics`` behind ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from cds_service.config import Settings
from cds_service.discovery import ServiceDefinition
from cds_service.errors import error_response
from cds_service.hook_request import HookRequest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# `*_created` series double the output and multiprocess mode cannot export them anyway, so a
# single worker and several would disagree; leave them out everywhere.
disable_created_metrics()
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_SAFE_LABEL = re.compile(r"[^A-Za-z0-9._:/-]")
OTHER_REASON = "other"


def multiprocess_dir() -> str | None:
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


def _label(value: Any, default: str = "none") -> str:
    if value is None or value == "":
        return default
    return _SAFE_LABEL.sub("_", str(value))[:64]


class Metrics:
    def __init__(self, published_reasons: Iterable[tuple[str | None, str]] = ()) -> None:
        # (system, code) of every override reason our cards offer
        self.published_reasons = frozenset(published_reasons)
        self._published_codes = frozenset(code for _, code in self.published_reasons)
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess and values.ValueClass is values.MutexValue:
            # prometheus_client was imported before the variable was set (it picks its
            # value class at import); switch now, before any metric exists.
            values.ValueClass = values.MultiProcessValue()
        # Metrics are created on a private registry; in multiprocess mode exposition reads
        # the shared files instead, so samples from every worker are summed.
        self._registry = CollectorRegistry()
        labels = ("service", "route", "status")
        self.requests = Counter(
            "cds_http_requests", "HTTP requests answered", labels, registry=self._registry
        )
        self.latency = Histogram(
            "cds_http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self._registry,
        )
        self.cards = Counter(
            "cds_cards_issued",
            "Cards returned to the EHR",
            ("service", "topic", "indicator"),
            registry=self._registry,
        )
        self.unidentified = Counter(
            "cds_orders_unidentified",
            "Draft medication orders in scope whose drug could not be identified "
            "(no code or text, medicationReference resolved nowhere)",
            ("service", "reason"),
            registry=self._registry,
        )
        self.feedback_items = Counter(
            "cds_feedback",
            "Feedback items stored (duplicates not counted)",
            ("service", "topic", "outcome", "reason"),
            registry=self._registry,
        )

        self.withheld = Counter(
            "cds_cards_withheld",
            "Cards computed at order-sign but not sent: reason fire-once (shown at "
            "order-select, F.2a) or overridden (CDS_SUPPRESS_REPEATS)",
            ("service", "topic", "indicator", "reason"),
            registry=self._registry,
        )
        self.additions_without_removal = Counter(
            "cds_feedback_addition_without_removal",
            "Accepted 'Add X' suggestions (diazepam stays) whose feedback call accepted no "
            "removal of the same pended diazepam order: possible duplicate therapy",
            ("service", "profile"),
            registry=self._registry,
        )

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self._registry)

    def request_done(self, service: str | None, route: str, status: int, seconds: float) -> None:
        labels = (_label(service), route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def cards_issued(self, service: str, cards: list[dict[str, Any]]) -> None:
        for card in cards:
            topic = ((card.get("source") or {}).get("topic") or {}).get("code")
            self.cards.labels(_label(service), _label(topic), _label(card.get("indicator"))).inc()

    def cards_withheld(self, service: str, withheld: list[tuple[dict[str, Any], str, Any]]) -> None:
        for card, reason, _ in withheld:
            topic = ((card.get("source") or {}).get("topic") or {}).get("code")
            self.withheld.labels(
                _label(service), _label(topic), _label(card.get("indicator")), _label(reason)
            ).inc()

    def addition_without_removal(self, service: str, profile: str | None) -> None:
        self.additions_without_removal.labels(_label(service), _label(profile)).inc()

    def reason_label(self, code: str | None, system: str | None = None) -> str:
        """A published override reason's code; ``other`` for anything a client made up."""
        if code is None or code == "":
            return "none"
        # The code decides (EHRs do not always echo the system back): the label set is bounded
        # by the codes our card templates offer, whatever clients send.
        if code in self._published_codes:
            return _label(code)
        return OTHER_REASON

    def orders_unidentified(self, service: str, reasons: list[str]) -> None:
        for reason in reasons:
            self.unidentified.labels(_label(service), _label(reason)).inc()

    def feedback(
        self,
        service: str,
        topic: str | None,
        outcome: str,
        reason: str | None,
        reason_system: str | None = None,
    ) -> None:
        self.feedback_items.labels(
            _label(service),
            _label(topic, "unknown-card"),
            _label(outcome),
            self.reason_label(reason, reason_system),
        ).inc()


def published_reasons(app: Flask) -> set[tuple[str | None, str]]:
    """(system, code) of the override reasons on the advisor's card templates."""
    advisor = app.extensions.get("cds.advisor")
    templates = getattr(advisor, "templates", None) or {}
    policy = getattr(advisor, "policy", None)
    try:
        system = policy["override_system"] if policy is not None else None
    except (KeyError, TypeError):
        system = None
    found: set[tuple[str | None, str]] = set()
    for template in templates.values():
        for reason in (getattr(template, "data", {}) or {}).get("override_reasons") or []:
            if isinstance(reason, dict) and isinstance(reason.get("code"), str):
                found.add((system, reason["code"]))
    return found


def register_metrics(app: Flask, settings: Settings) -> None:
    metrics = Metrics(published_reasons(app))
    app.extensions["cds.metrics"] = metrics
    token = settings.metrics_token

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("cds_started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.request_done(g.get("cds_service_id"), route, response.status_code, elapsed)
        return response

    def _count_cards(service: ServiceDefinition, _req: HookRequest, result: dict[str, Any]) -> None:
        metrics.cards_issued(service.id, result.get("cards") or [])
        metrics.cards_withheld(service.id, g.get("cds_withheld") or [])

    app.extensions.setdefault("cds.after_hook", []).append(_count_cards)

    def metrics_view() -> Response:
        if token:
            sent = request.headers.get("Authorization", "")
            scheme, _, value = sent.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token.encode()
            ):
                return error_response(
                    401, "Authentication required.", {"WWW-Authenticate": "Bearer"}
                )
        return Response(metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])


# -- gunicorn master side (called by cds_service.server) -----------------------------------
def prepare_multiprocess_dir(path: str) -> str:
    """Point prometheus-client at ``path`` (created 0700) for this process and the workers it
    forks, after removing the previous run's sample files (only ``*.db``: a misconfigured directory
    shared with anything else loses nothing but metrics)."""
    directory = os.path.abspath(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # samples are the service's business only; a directory the operator owns and shares
    # deliberately stays as it is
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o700)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))
    os.environ[MULTIPROC_ENV] = directory
    return directory


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's live gauges must stop counting."""
    multiprocess.mark_process_dead(worker.pid)
