"""Fire once (knowledge base F.2a): order-sign does not repeat what order-select just showed.

"At order-sign, do not repeat a non-critical card already shown at order-select for the same
draft, user and content in the suppression window, unless the order changed. Critical cards
may repeat." Each part is a key the store compares, all within the calling client (JWT issuer
and tenant: one EHR never silences another's cards, issue 17) and the same patient:

* **same draft**: the keyed hash of the card's draft order id (``_audit.order_id``, the
  ``Type/id`` its actions address). A card whose draft cannot be named (an id-less draft, two
  drafts sharing an id, no draft at all) is never withheld: "the same draft" cannot be shown.
* **same user**: the keyed hash of ``context.userId``; another user on the same draft sees
  every card.
* **same content**: a keyed hash (``content_hash``) of the card as the clinician reads it,
  everything but the uuids (which are new on every call): topic, indicator, summary, detail,
  source, links, override reasons, selection behaviour, and each suggestion's label,
  ``isRecommended`` and actions with their resources. Wider than topic + summary on purpose:
  a card whose detail gained a line ("Not known when this advice was made", a caution) or
  whose suggestions changed says something new, and a card shown once too often costs a
  click while a changed card withheld hides advice.
* **order unchanged**: a keyed hash (``order_fingerprint``) of the clinically relevant content
  of the pended order(s) the card is about: resource type, drug (``medication[x]``), dosage
  instructions (dose, route, timing, as-needed, maximum), dispense request (quantity, supply
  duration, refills) and the reason (``reasonCode``/``reasonReference``: a new indication
  re-routes the rules, F.1). Status, ids, dates and the EHR's bookkeeping are left out. The
  fingerprint is compared with the one the latest order-select for that draft saw.
* **window**: ``CDS_SUPPRESS_WINDOW_S`` (default 3600 s), the repeat-suppression window.
* **critical**: a critical card at order-sign is always shown.

Only order-sign withholds; a second order-select for the same draft shows everything again
(and becomes the call order-sign compares with). The decision card with the one-click actions
is withheld like any other non-critical card: it was shown once, its actions were offered
once, and F.2a wants it shown once; but when another card about the same order is shown again
(a critical one, or one whose content changed), the decision card comes back with it, so that
the repeated card never points to choices that are not there. When the order changed (a
suggestion accepted at order-select rewrote it, or the clinician edited it), every card is
shown again.

What it relies on: the order-select call's cards are recorded in ``issued_cards`` (with these
hashes) and committed before the order-sign call reads them (``Store.record_cards`` writes
them, ``Store.cards_shown_at_order_select`` reads them). If the record is missing (not yet
written, database down) the card is shown: fire once is a courtesy, never a reason to hide
advice. An order-select answer produced after ``CDS_DEADLINE_MS`` is recorded without hashes,
since the EHR may have given up on it and the clinician may never have seen it. Only
order-select cards are recorded with hashes: no other service's cards are ever compared.

What it costs an order-sign call (issue 15): nothing when no card could be withheld (fire once
off, no cards, every card critical or naming no draft: no read, no hash); otherwise one indexed
read (one statement on SQLite, ``ix_issued_cards_lookup``), and the cards' content hashes only
when that read found an order-select record with hashes for one of the drafts.

Every key is an HMAC with the service's patient-hash key: the store holds no card text, order
content, patient, user or order id.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from flask import g

from cds_service.discovery import ServiceDefinition
from cds_service.hook_request import HookRequest
from cds_service.store import Store
from cds_service.store.hashing import IdHasher
from cds_service.store.store import ShownCard

log = logging.getLogger("cds_service.fire_once")

REASON = "fire-once"
ORDER_SELECT_SERVICE = "diazepam-order-select"
# what of a pended order counts as "the order" (F.2a: drug, dose, route, timing, supply,
# quantity, refills; and the reason, which decides which rules apply)
_ORDER_KEYS = (
    "medicationCodeableConcept",
    "medicationReference",
    "medication",  # R5 CodeableReference
    "dosageInstruction",
    "reasonCode",
    "reasonReference",
    "reason",  # R5
)
_DISPENSE_KEYS = ("quantity", "expectedSupplyDuration", "numberOfRepeatsAllowed")


def _canonical(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits copied from a draft
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode(
            "utf-8", "surrogatepass"
        )


def card_content(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card as the clinician reads it: the public card without its uuids."""
    out = {k: v for k, v in card.items() if not k.startswith("_") and k != "uuid"}
    suggestions = out.get("suggestions")
    if isinstance(suggestions, list):
        out["suggestions"] = [
            {k: v for k, v in s.items() if k != "uuid"} if isinstance(s, Mapping) else s
            for s in suggestions
        ]
    return out


def content_hash(card: Mapping[str, Any], hasher: IdHasher) -> str:
    return hasher("card", _canonical(card_content(card)).decode("utf-8", "surrogatepass"))


def order_content(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The clinically relevant content of a pended order (see the module docstring)."""
    out: dict[str, Any] = {"resourceType": resource.get("resourceType")}
    for key in _ORDER_KEYS:
        if key in resource:
            out[key] = resource[key]
    dispense = resource.get("dispenseRequest")
    if isinstance(dispense, Mapping):
        out["dispenseRequest"] = {k: dispense[k] for k in _DISPENSE_KEYS if k in dispense}
    return out


def card_orders(card: Mapping[str, Any]) -> list[str]:
    """The draft refs a card is about: its order, or every order a patient-level card covers."""
    audit = card.get("_audit") or {}
    refs = audit.get("order_ids") if isinstance(audit.get("order_ids"), list) else None
    refs = refs or ([audit["order_id"]] if isinstance(audit.get("order_id"), str) else [])
    return [r for r in refs if isinstance(r, str)]


def drafts_by_ref(drafts: Iterable[Any]) -> dict[str, Mapping[str, Any] | None]:
    """``Type/id`` -> the draft it names, or None when two drafts share it (ambiguous)."""
    out: dict[str, Mapping[str, Any] | None] = {}
    for draft in drafts:
        if not isinstance(draft, Mapping):
            continue
        rid, rtype = draft.get("id"), draft.get("resourceType")
        if isinstance(rid, str) and rid and isinstance(rtype, str):
            ref = f"{rtype}/{rid}"
            out[ref] = None if ref in out else draft
    return out


def order_fingerprint(
    card: Mapping[str, Any], drafts: Mapping[str, Mapping[str, Any] | None], hasher: IdHasher
) -> str | None:
    """Keyed hash of the content of every draft the card is about; None when one of them is
    not exactly one draft of the request (then "the same draft" cannot be established)."""
    refs = card_orders(card)
    if not refs:
        return None
    contents = []
    for ref in sorted(set(refs)):
        draft = drafts.get(ref)
        if draft is None:
            return None
        contents.append([ref, order_content(draft)])
    return hasher("order-content", _canonical(contents).decode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class SignCard:
    """What fire once compares of one order-sign card (hashes as the store keeps them)."""

    indicator: str | None
    order_id: str | None
    content_hash: str | None
    order_fingerprint: str | None
    # the card holds the one-click choices on the pended order (a delete or an update):
    # the decision card of F.2a
    decides: bool = False


def decide(cards: Sequence[SignCard], shown: Iterable[ShownCard]) -> list[str | None]:
    """For each order-sign card, the uuid of the order-select card it repeats (withhold it),
    or None (show it). Pure: ``shown`` is what the latest order-select for each draft showed
    this client, user and patient in the window."""
    seen: dict[tuple[str, str, str], str] = {}
    for card in shown:
        if card.content_hash and card.order_fingerprint:
            key = (card.order_id, card.content_hash, card.order_fingerprint)
            seen.setdefault(key, card.card_uuid)
    out: list[str | None] = []
    for card in cards:
        if (
            card.indicator == "critical"
            or not card.order_id
            or not card.content_hash
            or not card.order_fingerprint
        ):
            out.append(None)
            continue
        out.append(seen.get((card.order_id, card.content_hash, card.order_fingerprint)))
    # A card about an order that is shown again (a critical card, or one that changed) may
    # point to the choices on that order ("the choices are on the ... card", or a critical
    # card whose safest answer is the decision card's Cancel): the decision card comes back
    # with it, else the repeat would name a card that is not there and offer no way out but
    # its own actions (review round 2, N1: the opioid card at order-sign with naloxone only).
    repeated = {c.order_id for c, r in zip(cards, out, strict=True) if r is None and c.order_id}
    return [
        None if r is not None and c.decides and c.order_id in repeated else r
        for c, r in zip(cards, out, strict=True)
    ]


def decides(card: Mapping[str, Any]) -> bool:
    """Whether a card carries a one-click change to a pended order (delete or update)."""
    return any(
        isinstance(action, Mapping) and action.get("type") in ("delete", "update")
        for suggestion in card.get("suggestions") or ()
        if isinstance(suggestion, Mapping)
        for action in suggestion.get("actions") or ()
    )


def fire_once_keys(
    card: dict[str, Any], request: HookRequest, hasher: IdHasher
) -> tuple[str | None, str | None]:
    """(content_hash, order_fingerprint) of a card of this request, computed once per card
    and kept in its private ``_fire_once`` (the recorder stores what the filter compared)."""
    cached = card.get("_fire_once")
    if isinstance(cached, tuple):
        return cached
    drafts = drafts_by_ref(request.draft_resources)
    keys = (content_hash(card, hasher), order_fingerprint(card, drafts, hasher))
    card["_fire_once"] = keys
    return keys


def withhold(card: dict[str, Any], reason: str, repeat_of: str | None = None) -> None:
    """Note a card computed for this call but not sent; the recorder stores it in
    ``withheld_cards``, metrics count it, the request log line counts it per reason."""
    g.setdefault("cds_withheld", []).append((card, reason, repeat_of))
    by_reason = Counter(reason for _, reason, _ in g.cds_withheld)
    g.cds_suppressed = sum(by_reason.values())
    g.cds_suppressed_by = dict(by_reason)


class FireOnce:
    """``cds.card_filters``: at order-sign, withhold the non-critical cards that the latest
    order-select for the same draft showed this client, user and patient within the window,
    unless the order changed. A database failure shows every card."""

    def __init__(self, store: Store, hasher: IdHasher, window_s: int):
        self.store, self.hasher, self.window = store, hasher, timedelta(seconds=window_s)

    def __call__(
        self, service: ServiceDefinition, request: HookRequest, cards: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if service.hook != "order-sign" or not cards or not request.user_id:
            return cards
        from cds_service.feedback import client_of

        # Cheapest first: only a non-critical card naming its draft can be withheld; when
        # there is none (every card critical, no draft named), nothing is read or hashed.
        order_of: list[str | None] = []
        for card in cards:
            # "same draft": the card's own order id, as issued_cards.order_id keeps it
            order = (card.get("_audit") or {}).get("order_id")
            order_of.append(self.hasher.order(order) if isinstance(order, str) else None)
        orders = sorted(
            {
                order
                for order, card in zip(order_of, cards, strict=True)
                if order and card.get("indicator") != "critical"
            }
        )
        if not orders:
            return cards
        client_iss, client_tenant = client_of()
        try:
            shown = self.store.cards_shown_at_order_select(
                service_id=ORDER_SELECT_SERVICE,
                order_ids=orders,
                user_hash=self.hasher.user(request.user_id),
                patient_hash=self.hasher.patient(request.patient_id),
                since=datetime.now(UTC) - self.window,
                client_iss=client_iss,
                client_tenant=client_tenant,
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("fire once skipped", extra={"error": type(exc).__name__})
            return cards
        # Nothing order-select showed for these drafts can match (no record, or only records
        # without hashes): every card is shown, and no card's content is hashed.
        if not any(card.content_hash and card.order_fingerprint for card in shown):
            return cards
        keyed: list[SignCard] = []
        for card, order in zip(cards, order_of, strict=True):
            content, fingerprint = fire_once_keys(card, request, self.hasher)
            keyed.append(
                SignCard(
                    str(card.get("indicator") or "") or None,
                    order,
                    content,
                    fingerprint,
                    decides(card),
                )
            )
        kept = []
        for card, repeat_of in zip(cards, decide(keyed, shown), strict=True):
            if repeat_of is None:
                kept.append(card)
            else:
                withhold(card, REASON, repeat_of)
        if len(kept) != len(cards):
            log.info(
                "cards shown at order-select not repeated",
                extra={"not_repeated": len(cards) - len(kept)},
            )
        return kept


def fire_once_enabled(policy: Any) -> bool:
    """The site's switch (policy ``fire_once.enabled``, on in the shipped policy)."""
    try:
        return bool(policy["fire_once"]["enabled"])
    except (KeyError, TypeError):
        return False
