"""What the service said and what clinicians did: issued cards, feedback, repeat suppression.

* ``record_issued_cards`` (an ``after_hook``) stores every card sent: uuid, service, hook
  instance, topic, indicator, suggestion uuids, the rule inputs from ``_audit`` (codes and
  numbers), keyed hashes of the patient, user and draft order ids (never the ids
  themselves) and the verified client (JWT ``iss`` and ``tenant``) it was issued to.
* ``FeedbackHandler`` stores a feedback call in one transaction before the 200 goes out, so
  an acknowledged item is never lost; a repeated identical item is a no-op and an unknown
  card uuid is stored and flagged rather than refused (the card may predate the database).
  A card counts as known only to the client it was issued to: another issuer's or tenant's
  card uuid is an unknown card, never linked. Free-text comments are kept only with
  ``CDS_STORE_COMMENTS=true``.
* ``RepeatSuppressor`` (a card filter, off by default as PDDI-CDS recommends): a topic the
  same user overrode at order-select for the same draft order is not raised again at
  order-sign within the window; alert fatigue teaches clinicians to click through. Only the
  calling client's own cards and feedback count.
* ``FireOnce`` (``cds_service.fire_once``, on by default through the policy): a non-critical
  card order-select showed is not repeated at order-sign (F.2a). Cards either filter withholds
  are stored in ``withheld_cards`` with the reason, never in ``issued_cards``.
* The Epic switch check (F.2a): an accepted "Add X" (role ``add-alternative``: diazepam stays)
  whose feedback call carries no accepted removal of the same pended order is logged and
  counted; ``diazepam-cds report`` gives the full count, removals in later calls included.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g

from cds_service.clinical.suggestions import ROLE_ADD, ROLE_REMOVE
from cds_service.config import Settings
from cds_service.discovery import ServiceDefinition
from cds_service.errors import ApiError
from cds_service.fire_once import FireOnce, fire_once_enabled, fire_once_keys, withhold
from cds_service.hook_request import HookRequest
from cds_service.store import Store
from cds_service.store.card_queue import CardQueue
from cds_service.store.hashing import IdHasher, id_hasher
from cds_service.store.store import CallRecord
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


def clean_text(value: Any, limit: int) -> str | None:
    """A client string fit for the database: clipped, and lone UTF-16 surrogates (valid in
    JSON, not encodable as UTF-8, so every driver refuses them) replaced by U+FFFD."""
    if value is None or value == "":
        return None
    text = str(value)[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def client_of() -> tuple[str | None, str | None]:
    """The verified client of this request (issuer, tenant); (None, None) without auth."""
    iss = g.get("cds_client_iss") or None
    tenant = g.get("cds_client_tenant") or None
    return (
        str(iss)[:512] if iss is not None else None,
        str(tenant)[:256] if tenant is not None else None,
    )


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
        return clean_text(value, _MAX_AUDIT_STRING) or ""
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


def hashed_orders(audit: dict[str, Any], hasher: IdHasher) -> dict[str, Any]:
    """The audit with its draft order ids replaced by their keyed hashes."""
    out = dict(audit)
    if isinstance(out.get("order_id"), str):
        out["order_id"] = hasher.order(out["order_id"])
    if isinstance(out.get("order_ids"), list):
        out["order_ids"] = [hasher.order(v) if isinstance(v, str) else v for v in out["order_ids"]]
    return out


def suggestion_roles(card: dict[str, Any]) -> dict[str, str] | None:
    """Suggestion uuid -> role, for the suggestions the card still carries."""
    roles = card.get("_suggestion_roles")
    if not isinstance(roles, dict):
        return None
    sent = {s.get("uuid") for s in card.get("suggestions") or [] if isinstance(s, dict)}
    kept = {str(k)[:128]: str(v)[:32] for k, v in roles.items() if k in sent}
    return kept or None


def card_rows(
    service: ServiceDefinition,
    request: HookRequest,
    cards: list[dict[str, Any]],
    hasher: IdHasher,
    now: datetime | None = None,
    *,
    shown_in_time: bool = True,
) -> list[dict[str, Any]]:
    """``now``: the store's clock (``Store.clock``). ``shown_in_time``: the answer went out
    within the deadline; a later one may never have been shown (the EHR gives up), so its
    cards get no fire-once hashes and never silence a repeat.

    Only order-select cards get the fire-once hashes: they are the only issued cards fire
    once ever compares with (``Store.cards_shown_at_order_select``). Other services' rows keep
    NULL ("never matched"), which saves hashing every card of every order-sign call."""
    now = now or utcnow()
    patient_hash, user_hash = hasher.patient(request.patient_id), hasher.user(request.user_id)
    client_iss, client_tenant = client_of()
    profile = str(g.get("cds_profile") or "")[:16] or None
    keyed = shown_in_time and service.id == ORDER_SELECT_SERVICE
    rows = []
    for card in cards:
        uuid = card.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            continue  # no uuid, no feedback can ever name it
        raw_order = (card.get("_audit") or {}).get("order_id")
        audit = hashed_orders(audit_of(card), hasher)
        content = fingerprint = None
        if keyed:
            content, fingerprint = fire_once_keys(card, request, hasher)
        rows.append(
            {
                "card_uuid": uuid[:128],
                "service_id": service.id,
                "hook_instance": clean_text(request.hook_instance, 128) or "",
                "topic_code": topic_code(card),
                "indicator": str(card.get("indicator") or "")[:16] or None,
                "suggestion_uuids": [
                    s["uuid"]
                    for s in card.get("suggestions") or []
                    if isinstance(s, dict) and isinstance(s.get("uuid"), str)
                ],
                "audit": audit,
                "order_id": hasher.order(raw_order) if isinstance(raw_order, str) else None,
                "patient_hash": patient_hash,
                "user_hash": user_hash,
                "issued_at": now,
                "client_iss": client_iss,
                "client_tenant": client_tenant,
                "content_hash": content,
                "order_fingerprint": fingerprint,
                "profile": profile,
                "suggestion_roles": suggestion_roles(card),
            }
        )
    return rows


def withheld_rows(
    service: ServiceDefinition,
    request: HookRequest,
    withheld: list[tuple[dict[str, Any], str, str | None]],
    hasher: IdHasher,
) -> list[dict[str, Any]]:
    """Rows of ``withheld_cards`` for the cards a filter kept back in this call."""
    now = utcnow()
    patient_hash, user_hash = hasher.patient(request.patient_id), hasher.user(request.user_id)
    client_iss, client_tenant = client_of()
    profile = str(g.get("cds_profile") or "")[:16] or None
    rows = []
    for card, reason, repeat_of in withheld:
        uuid = card.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            continue
        raw_order = (card.get("_audit") or {}).get("order_id")
        content, _ = fire_once_keys(card, request, hasher)
        rows.append(
            {
                "card_uuid": uuid[:128],
                "service_id": service.id,
                "hook_instance": clean_text(request.hook_instance, 128) or "",
                "reason": reason[:16],
                "repeat_of": repeat_of[:128] if repeat_of else None,
                "topic_code": topic_code(card),
                "indicator": str(card.get("indicator") or "")[:16] or None,
                "content_hash": content,
                "order_id": hasher.order(raw_order) if isinstance(raw_order, str) else None,
                "patient_hash": patient_hash,
                "user_hash": user_hash,
                "profile": profile,
                "withheld_at": now,
                "client_iss": client_iss,
                "client_tenant": client_tenant,
            }
        )
    return rows


def profile_of() -> str | None:
    """The EHR profile this request's cards were shaped for (set by api.py)."""
    profile = g.get("cds_profile")
    return str(profile)[:16] if profile else None


def suggestion_rows(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each suggestion of each card offered (kind of change, drug), from the audit the
    card renderer wrote: codes only."""
    rows = []
    for card in cards:
        uuid = card.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            continue
        for item in (card.get("_audit") or {}).get("suggestions") or []:
            if not isinstance(item, dict) or not isinstance(item.get("uuid"), str):
                continue
            rows.append(
                {
                    "suggestion_uuid": item["uuid"][:128],
                    "card_uuid": uuid[:128],
                    "kind": clean_text(item.get("kind"), 16) or "other",
                    "drug": clean_text(item.get("drug"), 64),
                    "code": clean_text(item.get("code"), 64),
                }
            )
    return rows


# Hooks whose cards a later call may read at once, from any worker or host (at order-sign,
# fire once and repeat suppression read order-select's cards, possibly milliseconds later):
# written before the answer goes out, never queued.
WRITE_THROUGH_HOOKS = frozenset({"order-select"})


class CardRecorder:
    """``after_hook``: persist what a hook call did — the day's call counters, the cards
    sent, what their suggestions offer, the cards the filters withheld (fire once, repeat
    suppression) and, for the dashboard, which override a suppressed card followed — in one
    transaction. A database failure is logged and the answer still goes out: advice matters
    more than its bookkeeping.

    With a ``queue`` (``CDS_CARD_QUEUE`` > 0, the default) the records of other hooks go to
    the worker's card queue and are written in batches off the request path
    (``store/card_queue.py``: bounded, flushed on graceful shutdown, crash-loss window
    documented there); a full queue means the call records itself. order-select cards are
    never queued (fire once and repeat suppression read them at order-sign), but their
    call's counters are: the dashboard's hook-call counters of every call are summed per
    batch and written with it, one row per day, service, profile and client, never one write
    per call (issue 15)."""

    def __init__(
        self,
        store: Store,
        hasher: IdHasher,
        deadline_ms: int = 0,
        queue: CardQueue | None = None,
    ):
        self.store, self.hasher, self.deadline_ms = store, hasher, deadline_ms
        self.queue = queue

    def __call__(
        self, service: ServiceDefinition, request: HookRequest, result: dict[str, Any]
    ) -> None:
        now = self.store.clock()
        started = g.get("cds_started")
        in_time = (
            not self.deadline_ms
            or started is None
            or (time.perf_counter() - started) * 1000 <= self.deadline_ms
        )
        cards = result.get("cards") or []
        rows = card_rows(service, request, cards, self.hasher, now, shown_in_time=in_time)
        withheld = withheld_rows(service, request, g.get("cds_withheld") or [], self.hasher)
        suppressed = g.get("cds_suppressed_cards") or []
        client_iss, client_tenant = client_of()
        orders = int(result.get("_orders") or 0)
        counts = {
            "day": now.date(),
            "service_id": service.id,
            "profile": profile_of() or "",
            "client_iss": client_iss or "",
            "client_tenant": client_tenant or "",
            "calls": 1,
            "calls_with_orders": 1 if orders else 0,
            "diazepam_orders": orders,
            "cards": len(rows),
            "suppressed": len(suppressed),
        }
        record = CallRecord(
            counts=counts,
            cards=rows,
            suggestions=suggestion_rows(cards),
            suppressed=[{**row, "suppressed_at": now} for row in suppressed],
            withheld=withheld,
        )
        if self.queue is not None:
            if service.hook not in WRITE_THROUGH_HOOKS:
                if self.queue.submit([record], weight=max(1, len(rows) + len(withheld))):
                    return
            elif self.queue.submit([CallRecord(counts, [], [], [])], weight=1):
                # the cards now, the call's counters with the worker's next batch
                record = CallRecord(None, record.cards, record.suggestions, record.suppressed,
                                    record.withheld)
        try:
            self.store.record_call(record)
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


def item_hash(
    service_id: str,
    item: dict[str, Any],
    client: tuple[str | None, str | None] = (None, None),
) -> str:
    """Identity of a feedback item for de-duplication, within one client: the same item from
    another issuer or tenant is its own item, never a "duplicate" of this one's."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    scope = service_id if client == (None, None) else f"{service_id}\x00{client[0]}\x00{client[1]}"
    return hashlib.sha256(f"{scope}\x00{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


def feedback_row(
    service_id: str, item: dict[str, Any], index: int, *, store_comments: bool = False
) -> dict[str, Any]:
    """One validated feedback item as a row; what the schema cannot say is checked here.
    Parts the spec calls meaningless for the outcome (a reason on an accepted card) are
    kept rather than refused: a 400 would lose the whole call's feedback. The free-text
    comment is kept only when ``store_comments`` (``CDS_STORE_COMMENTS``): it can name the
    patient."""
    where = f"feedback[{index}]"
    outcome = item["outcome"]
    reason = (item.get("overrideReason") or {}).get("reason") or {}
    comment = (item.get("overrideReason") or {}).get("userComment")
    client = client_of()
    return {
        "item_hash": item_hash(service_id, item, client),
        "card_uuid": clean_text(item["card"], 128) or "",
        "outcome": outcome,
        "accepted_suggestions": [
            clean_text(s["id"], 128) for s in item.get("acceptedSuggestions") or []
        ],
        "override_code": clean_text(reason.get("code"), 256),
        "override_system": clean_text(reason.get("system"), 512),
        "override_display": clean_text(reason.get("display"), 512),
        "user_comment": clean_text(comment, 4000) if store_comments else None,
        "outcome_at": parse_timestamp(item["outcomeTimestamp"], f"{where}.outcomeTimestamp"),
    }


class FeedbackHandler:
    """``cds.feedback_handler``: the body already passed the JSON Schema in api.py."""

    def __init__(
        self, store: Store, *, store_comments: bool = False, queue: CardQueue | None = None
    ):
        self.store = store
        self.store_comments = store_comments
        self.queue = queue

    def _await_cards(self, service: ServiceDefinition, body: dict[str, Any]) -> None:
        """Feedback naming a card this worker does not know may have beaten the card's row
        from another worker's card queue (written within ``CDS_CARD_FLUSH_MS``): when some
        card is unknown, wait once for that window, so the answer and the row link it. A card
        still unknown after the wait is stored and flagged as before."""
        assert self.queue is not None
        uuids = [
            str(item.get("card"))[:128]
            for item in body.get("feedback") or []
            if isinstance(item, dict) and item.get("card")
        ]
        client_iss, client_tenant = client_of()
        try:
            known = self.store.known_cards(
                service.id, uuids, client_iss=client_iss, client_tenant=client_tenant
            )
        except sa.exc.SQLAlchemyError:
            return  # save_feedback meets the same database and answers for it
        if set(uuids) - known:
            time.sleep(2 * self.queue.flush_interval_s + 0.05)

    def __call__(self, service: ServiceDefinition, body: dict[str, Any]) -> dict[str, Any]:
        if self.queue is not None:
            # this worker's queued cards first, so its own feedback always finds them
            self.queue.flush()
            self._await_cards(service, body)
        rows = [
            feedback_row(service.id, item, i, store_comments=self.store_comments)
            for i, item in enumerate(body["feedback"])
        ]
        client_iss, client_tenant = client_of()
        try:
            outcome = self.store.save_feedback(
                service.id, rows, client_iss=client_iss, client_tenant=client_tenant
            )
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
                    service.id,
                    row["topic_code"],
                    row["outcome"],
                    row["override_code"],
                    row["override_system"],
                )
        flagged = additions_without_removal(rows, outcome.new_items, outcome.cards)
        if flagged:
            log.warning(
                "alternative accepted without removing the pended diazepam order: possible "
                "duplicate therapy (diazepam and a muscle relaxant)",
                extra={
                    "cards": [row["card_uuid"] for row in flagged][:20],
                    "profiles": sorted(
                        {str(outcome.cards[r["card_uuid"]]["profile"]) for r in flagged}
                    ),
                },
            )
            if metrics is not None:
                for row in flagged:
                    metrics.addition_without_removal(
                        service.id, outcome.cards[row["card_uuid"]]["profile"]
                    )
        if outcome.unknown_cards:
            log.info("feedback for unknown cards", extra={"unknown_cards": outcome.unknown_cards})
        return {
            "stored": outcome.stored,
            "duplicates": outcome.duplicates,
            "unknown_cards": outcome.unknown_cards,
        }


def accepted_roles(row: dict[str, Any], card: dict[str, Any] | None) -> set[str]:
    """The roles of the suggestions an accepted feedback item names (empty otherwise)."""
    if card is None or row.get("outcome") != "accepted":
        return set()
    roles = card.get("suggestion_roles") or {}
    return {roles[s] for s in row.get("accepted_suggestions") or [] if s in roles}


def additions_without_removal(
    rows: list[dict[str, Any]],
    new_items: list[dict[str, Any]],
    cards: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """F.2a Epic switch check within one feedback call: the newly stored items that accept an
    "Add X" (role ``add-alternative``) while no item of the call accepts the removal of the
    same pended order (same order id hash; the same card when the order has none). A removal
    reported in a later call is not seen here; ``diazepam-cds report`` looks across calls."""

    def order_key(row: dict[str, Any]) -> str:
        card = cards.get(row["card_uuid"]) or {}
        return str(card.get("order_id") or f"card:{row['card_uuid']}")

    removed = {
        order_key(row)
        for row in rows
        if ROLE_REMOVE in accepted_roles(row, cards.get(row["card_uuid"]))
    }
    return [
        row
        for row in new_items
        if ROLE_ADD in accepted_roles(row, cards.get(row["card_uuid"]))
        and order_key(row) not in removed
    ]


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
        keyed = []
        for card in cards:
            order = (card.get("_audit") or {}).get("order_id")
            order_hash = self.hasher.order(order) if isinstance(order, str) else None
            keyed.append((order_hash, topic_code(card), card))
        order_ids = [o for o, t, _ in keyed if o is not None and t]
        if not order_ids:
            return cards
        client_iss, client_tenant = client_of()
        try:
            overridden = self.store.overrides(
                service_id=ORDER_SELECT_SERVICE,
                order_ids=order_ids,
                user_hash=self.hasher.user(request.user_id),
                patient_hash=self.hasher.patient(request.patient_id),
                since=self.store.clock() - self.window,
                client_iss=client_iss,
                client_tenant=client_tenant,
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("repeat suppression skipped", extra={"error": type(exc).__name__})
            return cards
        kept = []
        for order, topic, card in keyed:
            if (order, topic) in overridden:
                withhold(card, "overridden")
            else:
                kept.append(card)
        # what was kept back and after which override: codes only, for the dashboard
        g.cds_suppressed_cards = [
            {
                "service_id": service.id,
                "topic_code": topic,
                "indicator": str(card.get("indicator") or "")[:16] or None,
                "profile": profile_of(),
                "override_code": overridden[(order, topic)][0],
                "override_system": overridden[(order, topic)][1],
                "client_iss": client_iss,
                "client_tenant": client_tenant,
            }
            for order, topic, card in keyed
            if (order, topic) in overridden
        ]
        if len(kept) != len(cards):
            log.info("cards suppressed as repeats", extra={"suppressed": len(cards) - len(kept)})
        return kept


def register_feedback(app: Flask, settings: Settings) -> None:
    store: Store = app.extensions["cds.store"]
    hasher = id_hasher(settings, store)
    queue = None
    if settings.card_queue > 0:
        queue = CardQueue(
            store.record_calls,
            max_rows=settings.card_queue,
            flush_interval_s=settings.card_flush_ms / 1000,
        )
        app.extensions["cds.card_queue"] = queue
    app.extensions.setdefault("cds.after_hook", []).append(
        CardRecorder(store, hasher, settings.deadline_ms, queue)
    )
    app.extensions["cds.feedback_handler"] = FeedbackHandler(
        store, store_comments=settings.store_comments, queue=queue
    )
    filters = app.extensions.setdefault("cds.card_filters", [])
    if settings.suppress_repeats:
        filters.append(RepeatSuppressor(store, hasher, settings.suppress_window_s))
    policy = getattr(app.extensions.get("cds.advisor"), "policy", None)
    if fire_once_enabled(policy):
        filters.append(FireOnce(store, hasher, settings.suppress_window_s))
    else:
        log.info("fire once is off (policy fire_once.enabled)")
