"""What the service said and what clinicians did: issued cards, feedback, repeat suppression.

* ``record_issued_cards`` (an ``after_hook``) stores every card sent: uuid, service, hook
  instance, topic, indicator, suggestion uuids, the rule inputs from ``_audit`` (codes and
  numbers) and keyed hashes of the patient and user, never the ids themselves.
* ``FeedbackHandler`` stores a feedback call in one transaction before the 200 goes out, so
  an acknowledged item is never lost; a repeated identical item is a no-op and an unknown
  card uuid is stored and flagged rather than refused (the card may predate the database).
* ``RepeatSuppressor`` (a card filter, off by default as PDDI-CDS recommends): a topic the
  same user overrode at order-select for the same draft order is not raised again at
  order-sign within the window; alert fatigue teaches clinicians to click through.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g

from cds_service.config import Settings
from cds_service.discovery import ServiceDefinition
from cds_service.errors import ApiError
from cds_service.hook_request import HookRequest
from cds_service.store import Store
from cds_service.store.hashing import IdHasher, id_hasher
from cds_service.store.tables import as_naive_utc, utcnow

log = logging.getLogger("cds_service.feedback")

ORDER_SELECT_SERVICE = "diazepam-order-select"
# Audit keys that could only ever carry identifying data; dropped whatever the engine sends.
_FORBIDDEN_AUDIT_KEYS = {
    "name",
    "birthdate",
    "birth_date",
    "dob",
    "patient",
    "patient_id",
    "mrn",
    "address",
    "phone",
    "telecom",
    "email",
    "ssn",
}
_MAX_AUDIT_STRING = 256


def topic_code(card: dict[str, Any]) -> str | None:
    topic = (card.get("source") or {}).get("topic") or {}
    code = topic.get("code") if isinstance(topic, dict) else None
    return str(code)[:128] if code else None


def audit_of(card: dict[str, Any]) -> dict[str, Any]:
    """The card's rule inputs, restricted to codes, numbers and lists of them."""
    raw = card.get("_audit")
    return _clean_audit(raw) if isinstance(raw, dict) else {}


def _clean_audit(value: Any, depth: int = 0) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return value[:_MAX_AUDIT_STRING]
    if depth >= 3:
        return None
    if isinstance(value, list | tuple):
        return [_clean_audit(v, depth + 1) for v in value[:100]]
    if isinstance(value, dict):
        return {
            str(k)[:64]: _clean_audit(v, depth + 1)
            for k, v in list(value.items())[:100]
            if str(k).lower() not in _FORBIDDEN_AUDIT_KEYS
        }
    return None


def card_rows(
    service: ServiceDefinition, request: HookRequest, cards: list[dict[str, Any]], hasher: IdHasher
) -> list[dict[str, Any]]:
    now = utcnow()
    patient_hash, user_hash = hasher.patient(request.patient_id), hasher.user(request.user_id)
    rows = []
    for card in cards:
        uuid = card.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            continue  # no uuid, no feedback can ever name it
        audit = audit_of(card)
        order_id = audit.get("order_id")
        rows.append(
            {
                "card_uuid": uuid[:128],
                "service_id": service.id,
                "hook_instance": request.hook_instance[:128],
                "topic_code": topic_code(card),
                "indicator": str(card.get("indicator") or "")[:16] or None,
                "suggestion_uuids": [
                    s["uuid"]
                    for s in card.get("suggestions") or []
                    if isinstance(s, dict) and isinstance(s.get("uuid"), str)
                ],
                "audit": audit,
                "order_id": order_id[:256] if isinstance(order_id, str) else None,
                "patient_hash": patient_hash,
                "user_hash": user_hash,
                "issued_at": now,
            }
        )
    return rows


class CardRecorder:
    """``after_hook``: persist the cards of an answer. A database failure is logged and the
    answer still goes out: advice matters more than its bookkeeping."""

    def __init__(self, store: Store, hasher: IdHasher):
        self.store, self.hasher = store, hasher

    def __call__(
        self, service: ServiceDefinition, request: HookRequest, result: dict[str, Any]
    ) -> None:
        rows = card_rows(service, request, result.get("cards") or [], self.hasher)
        if not rows:
            return
        try:
            self.store.record_cards(rows)
        except sa.exc.SQLAlchemyError as exc:
            log.error(
                "issued cards not recorded",
                extra={"error": type(exc).__name__, "cards": len(rows)},
            )


def parse_timestamp(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{where} '{text[:40]}' is not a valid RFC 3339 date-time.") from None
    if moment.tzinfo is None:
        raise ApiError(400, f"{where} '{text[:40]}' needs a time zone (e.g. Z).")
    return as_naive_utc(moment)


def item_hash(service_id: str, item: dict[str, Any]) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{service_id}\x00{canonical}".encode()).hexdigest()


def feedback_row(service_id: str, item: dict[str, Any], index: int) -> dict[str, Any]:
    """One validated feedback item as a row; what the schema cannot say is checked here.
    Parts the spec calls meaningless for the outcome (a reason on an accepted card) are
    kept rather than refused: a 400 would lose the whole call's feedback."""
    where = f"feedback[{index}]"
    outcome = item["outcome"]
    reason = (item.get("overrideReason") or {}).get("reason") or {}
    comment = (item.get("overrideReason") or {}).get("userComment")
    return {
        "item_hash": item_hash(service_id, item),
        "card_uuid": item["card"],
        "outcome": outcome,
        "accepted_suggestions": [s["id"] for s in item.get("acceptedSuggestions") or []],
        "override_code": (reason.get("code") or None) and reason["code"][:256],
        "override_system": (reason.get("system") or None) and reason["system"][:512],
        "override_display": (reason.get("display") or None) and reason["display"][:512],
        "user_comment": comment or None,
        "outcome_at": parse_timestamp(item["outcomeTimestamp"], f"{where}.outcomeTimestamp"),
        "client_iss": (g.get("cds_client_iss") or None) and str(g.cds_client_iss)[:512],
    }


class FeedbackHandler:
    """``cds.feedback_handler``: the body already passed the JSON Schema in api.py."""

    def __init__(self, store: Store):
        self.store = store

    def __call__(self, service: ServiceDefinition, body: dict[str, Any]) -> dict[str, Any]:
        rows = [feedback_row(service.id, item, i) for i, item in enumerate(body["feedback"])]
        try:
            outcome = self.store.save_feedback(service.id, rows)
        except sa.exc.SQLAlchemyError as exc:
            log.error("feedback not stored", extra={"error": type(exc).__name__})
            raise ApiError(
                503,
                "Feedback could not be stored (database unavailable); nothing was saved, "
                "please retry.",
            ) from None
        metrics = current_app.extensions.get("cds.metrics")
        if metrics is not None:
            for row in outcome.new_items:
                metrics.feedback(
                    service.id, row["topic_code"], row["outcome"], row["override_code"]
                )
        if outcome.unknown_cards:
            log.info("feedback for unknown cards", extra={"unknown_cards": outcome.unknown_cards})
        return {
            "stored": outcome.stored,
            "duplicates": outcome.duplicates,
            "unknown_cards": outcome.unknown_cards,
        }


class RepeatSuppressor:
    """``cds.card_filters``: at order-sign, drop a card whose topic this user overrode at
    order-select for the same draft order (and patient) within the window. A database
    failure shows the card: suppression is a courtesy, never a reason to hide advice."""

    def __init__(self, store: Store, hasher: IdHasher, window_s: int):
        self.store, self.hasher, self.window = store, hasher, timedelta(seconds=window_s)

    def __call__(
        self, service: ServiceDefinition, request: HookRequest, cards: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if service.hook != "order-sign" or not cards:
            return cards
        keyed = [(audit_of(card).get("order_id"), topic_code(card), card) for card in cards]
        order_ids = [o for o, t, _ in keyed if isinstance(o, str) and t]
        if not order_ids:
            return cards
        try:
            overridden = self.store.overridden_topics(
                service_id=ORDER_SELECT_SERVICE,
                order_ids=order_ids,
                user_hash=self.hasher.user(request.user_id),
                patient_hash=self.hasher.patient(request.patient_id),
                since=datetime.now(UTC) - self.window,
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("repeat suppression skipped", extra={"error": type(exc).__name__})
            return cards
        kept = [card for order, topic, card in keyed if (order, topic) not in overridden]
        if len(kept) != len(cards):
            g.cds_suppressed = len(cards) - len(kept)
            log.info("cards suppressed as repeats", extra={"suppressed": len(cards) - len(kept)})
        return kept


def register_feedback(app: Flask, settings: Settings) -> None:
    store: Store = app.extensions["cds.store"]
    hasher = id_hasher(settings, store)
    app.extensions.setdefault("cds.after_hook", []).append(CardRecorder(store, hasher))
    app.extensions["cds.feedback_handler"] = FeedbackHandler(store)
    if settings.suppress_repeats:
        app.extensions.setdefault("cds.card_filters", []).append(
            RepeatSuppressor(store, hasher, settings.suppress_window_s)
        )
