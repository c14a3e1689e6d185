"""The ``Store``: every database read and write the service makes, behind plain methods.

Workers are stateless; whatever must be shared between requests, workers and hosts (used JWT
ids, issued cards, feedback) lives here, and every guarantee (a jti is used once, a feedback
item is stored once) is enforced by a primary or unique key, never by a read-then-write.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from cds_service.store import migrate
from cds_service.store.checkpoint import WalCheckpointer
from cds_service.store.engine import (
    Durability,
    _sqlite_write_lock,
    create_store_engine,
    redacted,
    sqlite_file,
    write_transaction,
)
from cds_service.store.tables import (
    CARD_COUNT_KEYS,
    accepted_suggestions,
    as_naive_utc,
    card_counts,
    feedback,
    hook_call_counts,
    issued_cards,
    issued_suggestions,
    jwt_replay,
    service_state,
    suppressed_cards,
    utcnow,
    withheld_cards,
)

log = logging.getLogger("cds_service.store")

PURGE_INTERVAL_S = 60.0
# Rows outlive their token a little, so a token still accepted within the JWT clock leeway
# can never find its jti purged.
REPLAY_GRACE = timedelta(minutes=10)


def new_secret() -> str:
    return secrets.token_hex(32)


@functools.cache
def _insert_ignoring_duplicates(dialect: str, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING <primary key> in the given dialect (both
    databases speak it): a duplicate key is a no-op inside the transaction instead of
    aborting it, and a returned row says the insert happened (``rowcount`` is not reliable
    for this across drivers).

    Built once per dialect and table: SQLAlchemy caches compiled SQL by statement, and a
    statement with the values baked in (``.values(**row)``) cost a fresh cache key per call
    (most of a jti claim's time in the profile). Rows go in as execute() parameters."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


# Likewise built once; parameters are passed to execute().
_JTI_INSERT = jwt_replay.insert()


def _sqlite_jti_insert(engine: sa.Engine) -> tuple[str, Any, Any]:
    """The jti INSERT compiled for SQLite (qmark parameters in the table's column order) and
    the bind processors that store its two DateTime values exactly as SQLAlchemy does (the
    purge compares them as SQLAlchemy writes them)."""
    compiled = _JTI_INSERT.compile(dialect=engine.dialect)
    order = list(compiled.positiontup or [])
    if order != ["key", "issuer", "expires_at", "claimed_at"]:
        raise RuntimeError(f"unexpected jwt_replay insert parameters: {order}")
    identity = lambda value: value  # noqa: E731 - a processor-less type stores as is
    expires = jwt_replay.c.expires_at.type.bind_processor(engine.dialect) or identity
    claimed = jwt_replay.c.claimed_at.type.bind_processor(engine.dialect) or identity
    return str(compiled), expires, claimed


# Repeat suppression's query, built once with bound parameters (one per order-sign call);
# served by ix_issued_cards_lookup (migration 0002).
# Both the card and the feedback must belong to the calling client (issuer and tenant; NULL
# matches NULL, for CDS_AUTH=disabled): another EHR's overrides never silence this one's cards.
_OVERRIDDEN = (
    sa.select(
        issued_cards.c.order_id,
        issued_cards.c.topic_code,
        feedback.c.override_code,
        feedback.c.override_system,
        feedback.c.received_at,
    )
    .join(feedback, feedback.c.card_uuid == issued_cards.c.card_uuid)
    .where(
        issued_cards.c.service_id == sa.bindparam("service_id"),
        issued_cards.c.order_id.in_(sa.bindparam("order_ids", expanding=True)),
        issued_cards.c.user_hash == sa.bindparam("user_hash"),
        issued_cards.c.patient_hash == sa.bindparam("patient_hash"),
        issued_cards.c.client_iss.is_not_distinct_from(sa.bindparam("client_iss")),
        issued_cards.c.client_tenant.is_not_distinct_from(sa.bindparam("client_tenant")),
        issued_cards.c.topic_code.is_not(None),
        feedback.c.card_known.is_(True),
        feedback.c.client_iss.is_not_distinct_from(sa.bindparam("client_iss")),
        feedback.c.client_tenant.is_not_distinct_from(sa.bindparam("client_tenant")),
        feedback.c.outcome == "overridden",
        feedback.c.received_at >= sa.bindparam("since"),
    )
    .distinct()
)


# Feedback stored as "unknown card" while its card was still in another worker's card queue
# (store/card_queue.py) is linked when the card's row lands: same uuid, service and client.
_ic = issued_cards.alias("ic")
_SAME_CARD = sa.and_(
    _ic.c.card_uuid == feedback.c.card_uuid,
    _ic.c.service_id == feedback.c.service_id,
    _ic.c.client_iss.is_not_distinct_from(feedback.c.client_iss),
    _ic.c.client_tenant.is_not_distinct_from(feedback.c.client_tenant),
)
_RELINK = (
    feedback.update()
    .where(
        feedback.c.card_known.is_(False),
        feedback.c.card_uuid.in_(sa.bindparam("uuids", expanding=True)),
        sa.exists().where(_SAME_CARD),
    )
    .values(
        card_known=True,
        topic_code=sa.select(_ic.c.topic_code).where(_SAME_CARD).scalar_subquery(),
    )
)


# Fire once (F.2a): what the latest order-select call for these drafts showed this client, user
# and patient within the window; served by ix_issued_cards_lookup like _OVERRIDDEN.
_SHOWN_COLUMNS = (
    issued_cards.c.order_id,
    issued_cards.c.issued_at,
    issued_cards.c.hook_instance,
    issued_cards.c.card_uuid,
    issued_cards.c.content_hash,
    issued_cards.c.order_fingerprint,
)


def _shown_at_select(order_ids: Any) -> sa.Select[Any]:
    """The fire-once read, ``order_id IN`` the given bind parameter(s)."""
    return sa.select(*_SHOWN_COLUMNS).where(
        issued_cards.c.service_id == sa.bindparam("service_id"),
        issued_cards.c.order_id.in_(order_ids),
        issued_cards.c.patient_hash == sa.bindparam("patient_hash"),
        issued_cards.c.user_hash == sa.bindparam("user_hash"),
        issued_cards.c.client_iss.is_not_distinct_from(sa.bindparam("client_iss")),
        issued_cards.c.client_tenant.is_not_distinct_from(sa.bindparam("client_tenant")),
        issued_cards.c.issued_at >= sa.bindparam("since"),
    )


_SHOWN_AT_SELECT = _shown_at_select(sa.bindparam("order_ids", expanding=True))


@functools.cache
def _sqlite_shown_at_select(dialect: sa.Dialect, count: int) -> tuple[str, list[str], Any, Any]:
    """The fire-once read compiled for SQLite with ``count`` order ids (``order_0`` ...), once
    per count: its qmark SQL, the parameter names in order, and the ``issued_at`` bind and
    result processors (times compared and returned exactly as SQLAlchemy stores them)."""
    statement = _shown_at_select([sa.bindparam(f"order_{i}") for i in range(count)])
    compiled = statement.compile(dialect=dialect)
    identity = lambda value: value  # noqa: E731 - a processor-less type stores as is
    column_type = issued_cards.c.issued_at.type
    bind = column_type.bind_processor(dialect) or identity
    result = column_type.result_processor(dialect, None) or identity
    return str(compiled), list(compiled.positiontup or []), bind, result


@dataclass(frozen=True)
class ShownCard:
    """A card the latest order-select call for a draft showed (``cards_shown_at_order_select``):
    its keyed hashes of content and order, and its uuid (what a withheld repeat points to)."""

    order_id: str
    card_uuid: str
    content_hash: str | None
    order_fingerprint: str | None


@dataclass(frozen=True)
class FeedbackOutcome:
    """What one feedback call did; ``new_items`` are the rows stored by this call."""

    stored: int
    duplicates: int
    unknown_cards: int
    new_items: list[dict[str, Any]]
    # card uuid -> what the store knows of each linked card: ``order_id`` (hash), ``profile``
    # and ``suggestion_roles`` (the Epic switch check)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)


_COUNTS = ("issued", "accepted", "overridden", "answered")


def count_key(card: Any) -> dict[str, Any]:
    """A card's row key in ``card_counts``: its UTC day of issue and dimensions ('' for none)."""
    return {
        "day": card["issued_at"].date(),
        **{name: card.get(name) or "" for name in CARD_COUNT_KEYS},
    }


@functools.cache
def _add_to_counters(dialect: str, table: sa.Table, counted: tuple[str, ...]) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE SET n = n + excluded.n for each counted
    column, in the given dialect (both databases speak it; atomic whichever worker or host
    writes). Built once per dialect and table, rows passed as execute() parameters (one or an
    executemany): building the statement per row, with its ``excluded`` alias and a fresh
    cache key, cost the card writer about 0.4 ms of CPU per hook call (issue 15)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns],
        set_={name: table.c[name] + statement.excluded[name] for name in counted},
    )


def _add_counts(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Add to ``card_counts`` rows: each a key (``count_key``) with the four counts, zero for
    those not added. Keys must be distinct (one executemany; PostgreSQL refuses to update
    a row twice in one statement)."""
    if rows:
        statement = _add_to_counters(connection.dialect.name, card_counts, _COUNTS)
        connection.execute(statement, rows)


def count_row(key: dict[str, Any], **added: int) -> dict[str, Any]:
    """A ``card_counts`` key with what to add to it (the counts not named add zero)."""
    return {**key, **{name: added.get(name, 0) for name in _COUNTS}}


def _insert_records(
    connection: sa.Connection, rows: list[dict[str, Any]], withheld: list[dict[str, Any]]
) -> int:
    """One executemany (SQLAlchemy's "insertmanyvalues": one multi-row INSERT ... RETURNING)
    of issued cards, and the day's counts of those that were new, and the withheld cards;
    returns how many issued cards were new."""
    if withheld:
        statement = _insert_ignoring_duplicates(connection.dialect.name, withheld_cards)
        connection.execute(statement, withheld).all()
    if not rows:
        return 0
    statement = _insert_ignoring_duplicates(connection.dialect.name, issued_cards)
    inserted = {r[0] for r in connection.execute(statement, rows).all()}
    per_key: dict[tuple[Any, ...], int] = {}
    # a retried call's cards count once, also when the retry sits in the same queued batch
    # (the INSERT keeps one row per uuid; so does this loop)
    for card in {card["card_uuid"]: card for card in rows}.values():
        if card["card_uuid"] in inserted:
            key = tuple(count_key(card).items())
            per_key[key] = per_key.get(key, 0) + 1
    _add_counts(connection, [count_row(dict(key), issued=n) for key, n in per_key.items()])
    return len(inserted)


_CARD_STATE = (
    issued_cards.c.card_uuid,
    issued_cards.c.topic_code,
    issued_cards.c.issued_at,
    issued_cards.c.service_id,
    issued_cards.c.indicator,
    issued_cards.c.profile,
    issued_cards.c.client_iss,
    issued_cards.c.accepted,
    issued_cards.c.overridden,
    issued_cards.c.order_id,
    issued_cards.c.suggestion_roles,
)


def _mark_card(connection: sa.Connection, row: dict[str, Any], card: dict[str, Any]) -> None:
    """What a stored feedback item did to its card, kept on the card and in ``card_counts``
    (the dashboard counts cards, not feedback rows): accepted, or overridden with the latest
    reason, each counted the first time only; and each accepted suggestion with what it
    offered. ``card`` is the card's state, updated here for the next item of the call."""
    uuid = row["card_uuid"]
    outcome = row["outcome"]
    if outcome not in ("accepted", "overridden"):
        return
    values: dict[str, Any] = {outcome: True}
    if outcome == "overridden":
        values["override_code"] = row.get("override_code")
    connection.execute(
        issued_cards.update().where(issued_cards.c.card_uuid == uuid).values(**values)
    )
    if not card[outcome]:
        answered = 0 if (card["accepted"] or card["overridden"]) else 1
        _add_counts(connection, [count_row(count_key(card), **{outcome: 1, "answered": answered})])
        card[outcome] = True
    if outcome != "accepted":
        return
    topic, issued_at = card["topic_code"], card["issued_at"]
    taken = [s for s in dict.fromkeys(row.get("accepted_suggestions") or []) if s]
    if not taken:
        return
    offered = {
        r[0]: r[1:]
        for r in connection.execute(
            sa.select(
                issued_suggestions.c.suggestion_uuid,
                issued_suggestions.c.kind,
                issued_suggestions.c.drug,
                issued_suggestions.c.code,
            ).where(
                issued_suggestions.c.suggestion_uuid.in_(taken),
                issued_suggestions.c.card_uuid == uuid,
            )
        ).all()
    }
    statement = _insert_ignoring_duplicates(connection.dialect.name, accepted_suggestions)
    for suggestion in taken:
        kind, drug, code = offered.get(suggestion, (None, None, None))
        connection.execute(
            statement,
            {
                "card_uuid": uuid,
                "suggestion_uuid": suggestion,
                "topic_code": topic,
                "kind": kind,
                "drug": drug,
                "code": code,
                "issued_at": issued_at,
            },
        ).all()


_COUNTERS = ("calls", "calls_with_orders", "diazepam_orders", "cards", "suppressed")
_COUNTER_KEYS = tuple(c.name for c in hook_call_counts.primary_key.columns)


def summed_counters(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hook-call counter rows added up per day, service, profile and client: what a batch of
    calls adds to ``hook_call_counts``, one row per key however many calls it holds."""
    summed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in counts:
        key = tuple(row[name] for name in _COUNTER_KEYS)
        total = summed.get(key)
        if total is None:
            summed[key] = {name: row[name] for name in (*_COUNTER_KEYS, *_COUNTERS)}
        else:
            for name in _COUNTERS:
                total[name] += row[name]
    return list(summed.values())


def _count_calls(connection: sa.Connection, counts: list[dict[str, Any]]) -> None:
    """Add hook calls to their days' counters: one row per key (``summed_counters``), in one
    executemany of the statement built once."""
    rows = summed_counters(counts)
    if rows:
        statement = _add_to_counters(connection.dialect.name, hook_call_counts, _COUNTERS)
        connection.execute(statement, rows)


@dataclass(frozen=True)
class CallRecord:
    """One hook call as the store keeps it: its day's counters, the cards sent, what each
    suggestion offered and the cards repeat suppression kept back. ``counts`` None: the
    call's counters travel separately (an order-select call writes its cards before it
    answers and queues its counters with the batch)."""

    counts: dict[str, Any] | None
    cards: list[dict[str, Any]]
    suggestions: list[dict[str, Any]]
    suppressed: list[dict[str, Any]]
    withheld: list[dict[str, Any]] = field(default_factory=list)


class RecordsMixin:
    """Issued cards and feedback: the rows the reports and repeat suppression read."""

    engine: sa.Engine
    # Where every stored time comes from (naive UTC). A clock, not ``utcnow`` calls spread
    # over the code, so a test can date hook calls and feedback weeks apart through the real
    # API (the dashboard's trends) without touching the rows.
    clock: Callable[[], datetime] = staticmethod(utcnow)

    def record_call(self, record: CallRecord) -> int:
        """Everything one hook call leaves in the store, in one "fast" transaction (the same
        single write a call made before the counters existed): the day's counters, the cards
        (a card uuid seen before is kept as first recorded), their suggestions and the
        suppressed cards. Returns the number of new cards."""
        with self.write("fast") as connection:
            dialect = connection.dialect.name
            _count_calls(connection, [record.counts] if record.counts else [])
            new = 0
            if record.cards or record.withheld:
                new = _insert_records(connection, record.cards, record.withheld)
            if record.suggestions:
                statement = _insert_ignoring_duplicates(dialect, issued_suggestions)
                connection.execute(statement, record.suggestions).all()
            if record.suppressed:
                connection.execute(suppressed_cards.insert(), record.suppressed)
        return new

    def write(self, durability: Durability) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # provided by Store

    def record_cards(
        self, rows: list[dict[str, Any]], withheld: list[dict[str, Any]] | None = None
    ) -> int:
        """Insert issued cards (counted in ``card_counts``); a card uuid seen before (a
        retried hook call with deterministic uuids) is kept as first recorded and counted
        once. One executemany (SQLAlchemy's "insertmanyvalues": one multi-row INSERT ...
        RETURNING) instead of a statement per card; "fast" durability: bookkeeping, not a
        promise made to the caller. ``withheld`` (cards computed but not sent: fire once,
        repeat suppression) go to ``withheld_cards`` in the same transaction. Order-select
        rows written here are what ``cards_shown_at_order_select`` reads at order-sign: fire
        once relies on them being committed before the order-sign call for the same draft
        reads them (a row not there yet only means the card is shown again).
        ``record_call`` does this and more for a hook call."""
        if not rows and not withheld:
            return 0
        with self.write("fast") as connection:
            return _insert_records(connection, rows, withheld or [])

    def cards_shown_at_order_select(
        self,
        *,
        service_id: str,
        order_ids: list[str],
        user_hash: str,
        patient_hash: str,
        since: datetime,
        client_iss: str | None = None,
        client_tenant: str | None = None,
    ) -> list[ShownCard]:
        """Fire once's one read: for each draft (order id hash), the cards of the most recent
        ``service_id`` (order-select) call that showed it to this client (issuer and tenant),
        user and patient since ``since``. Only the latest call counts: the order-select that
        last saw the draft is what order-sign compares with. Rows recorded without hashes
        (before migration 0004, or an answer too late to have been shown) are returned too,
        with ``None`` hashes, so they still mark their call as the latest."""
        if not order_ids:
            return []
        params = {
            "service_id": service_id,
            "order_ids": sorted(set(order_ids)),
            "user_hash": user_hash,
            "patient_hash": patient_hash,
            "client_iss": client_iss,
            "client_tenant": client_tenant,
            "since": as_naive_utc(since),
        }
        if self.dialect == "sqlite":
            found = self._shown_at_select_sqlite(params)
        else:
            with self.engine.connect() as connection:
                found = [tuple(row) for row in connection.execute(_SHOWN_AT_SELECT, params)]
        # the latest call per draft: the hook instance of its most recent row (a call's rows
        # need not share one timestamp)
        latest: dict[str, tuple[datetime, str]] = {}
        for order_id, issued_at, hook_instance, *_ in found:
            if order_id not in latest or issued_at > latest[order_id][0]:
                latest[order_id] = (issued_at, hook_instance)
        return [
            ShownCard(order_id, card_uuid, content_hash, fingerprint)
            for order_id, _, hook_instance, card_uuid, content_hash, fingerprint in found
            if hook_instance == latest[order_id][1]
        ]

    def _shown_at_select_sqlite(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The read on SQLite as ONE statement on a pooled DBAPI connection in autocommit mode
        (SQLite reads it in its own snapshot), instead of SQLAlchemy's BEGIN / SELECT /
        ROLLBACK with its statement machinery around them: 0.19 -> 0.04 ms of CPU per
        order-sign call, measured in-process. A database error is an ``OperationalError``
        like SQLAlchemy's (fire once then shows every card)."""
        sql, names, bind, result = _sqlite_shown_at_select(
            self.engine.dialect, len(params["order_ids"])
        )
        values = {
            **params,
            **{f"order_{i}": order for i, order in enumerate(params["order_ids"])},
            "since": bind(params["since"]),
        }
        ordered = tuple(values[name] for name in names)
        raw = self.engine.raw_connection()
        try:
            rows = raw.driver_connection.execute(sql, ordered).fetchall()
        except sqlite3.Error as exc:
            raise sa.exc.OperationalError(sql, ordered, exc) from exc
        finally:
            raw.close()  # back to the pool
        return [(row[0], result(row[1]), *row[2:]) for row in rows]

    def record_calls(self, records: list[CallRecord]) -> int:
        """``record_call`` for the card queue's writer (store/card_queue.py): many hook calls
        in one "fast" transaction, their cards, withheld cards, suggestions and suppressed
        cards each in one executemany, and feedback that arrived before its card (stored as
        "unknown card" by another worker) linked to it. Returns the number of new cards."""
        if not records:
            return 0
        with self.write("fast") as connection:
            dialect = connection.dialect.name
            # the batch's calls summed per counter row: one write per day, service, profile
            # and client, not one per call
            _count_calls(connection, [record.counts for record in records if record.counts])
            cards = [row for record in records for row in record.cards]
            withheld = [row for record in records for row in record.withheld]
            suggestions = [row for record in records for row in record.suggestions]
            suppressed = [row for record in records for row in record.suppressed]
            new = _insert_records(connection, cards, withheld) if cards or withheld else 0
            if suggestions:
                statement = _insert_ignoring_duplicates(dialect, issued_suggestions)
                connection.execute(statement, suggestions).all()
            if suppressed:
                connection.execute(suppressed_cards.insert(), suppressed)
            if cards:
                uuids = sorted({row["card_uuid"] for row in cards})
                connection.execute(_RELINK, {"uuids": uuids})
        return new

    def known_cards(
        self,
        service_id: str,
        uuids: list[str],
        *,
        client_iss: str | None = None,
        client_tenant: str | None = None,
    ) -> set[str]:
        """The card uuids among ``uuids`` this service issued to this client (a read; the
        feedback handler's wait for cards still in another worker's card queue)."""
        if not uuids:
            return set()
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(issued_cards.c.card_uuid).where(
                    issued_cards.c.card_uuid.in_(sorted(set(uuids))),
                    issued_cards.c.service_id == service_id,
                    issued_cards.c.client_iss.is_not_distinct_from(client_iss),
                    issued_cards.c.client_tenant.is_not_distinct_from(client_tenant),
                )
            ).all()
        return {row[0] for row in found}

    def save_feedback(
        self,
        service_id: str,
        items: list[dict[str, Any]],
        *,
        client_iss: str | None = None,
        client_tenant: str | None = None,
    ) -> FeedbackOutcome:
        """Store every item in ONE transaction (all or nothing), linking each to the card it
        names. Items whose hash is already stored are duplicates (no-op); items naming a
        card this service never issued *to this client* (issuer and tenant) are stored with
        ``card_known = False`` and no topic: another client's card uuid links to nothing."""
        now = self.clock()
        uuids = sorted({item["card_uuid"] for item in items})
        new_items: list[dict[str, Any]] = []
        duplicates = unknown = 0
        # "full": a 200 promises the feedback is stored, so it must survive a power loss
        with self.write("full") as connection:
            cards = {
                row.card_uuid: dict(row._mapping)
                for row in connection.execute(
                    sa.select(*_CARD_STATE).where(
                        issued_cards.c.card_uuid.in_(uuids),
                        issued_cards.c.service_id == service_id,
                        issued_cards.c.client_iss.is_not_distinct_from(client_iss),
                        issued_cards.c.client_tenant.is_not_distinct_from(client_tenant),
                    )
                ).all()
            }
            statement = _insert_ignoring_duplicates(connection.dialect.name, feedback)
            for item in items:
                known = item["card_uuid"] in cards
                row = {
                    **item,
                    "client_iss": client_iss,
                    "client_tenant": client_tenant,
                    "service_id": service_id,
                    "card_known": known,
                    "topic_code": cards[item["card_uuid"]]["topic_code"] if known else None,
                    "received_at": now,
                }
                if connection.execute(statement, row).first() is None:
                    duplicates += 1
                    continue
                new_items.append(row)
                if known:
                    _mark_card(connection, row, cards[item["card_uuid"]])
                else:
                    unknown += 1
        linked = {
            uuid: {
                "order_id": card["order_id"],
                "profile": card["profile"],
                "suggestion_roles": card["suggestion_roles"] or {},
            }
            for uuid, card in cards.items()
        }
        return FeedbackOutcome(len(new_items), duplicates, unknown, new_items, linked)

    def overridden_topics(self, **query: Any) -> set[tuple[str, str]]:
        """(order id hash, topic code) pairs whose card, issued by ``service_id`` to this
        client (issuer and tenant), user and patient, was overridden in that client's
        feedback received since ``since`` (arguments as ``overrides``)."""
        return set(self.overrides(**query))

    def overrides(
        self,
        *,
        service_id: str,
        order_ids: list[str],
        user_hash: str,
        patient_hash: str,
        since: datetime,
        client_iss: str | None = None,
        client_tenant: str | None = None,
    ) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        """The pairs ``overridden_topics`` names, each with the (code, system) of the latest such
        override's reason (what the dashboard reports suppression after)."""
        if not order_ids:
            return {}
        params = {
            "service_id": service_id,
            "order_ids": sorted(set(order_ids)),
            "user_hash": user_hash,
            "patient_hash": patient_hash,
            "client_iss": client_iss,
            "client_tenant": client_tenant,
            "since": as_naive_utc(since),
        }
        found: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(_OVERRIDDEN, params).all()
        for order, topic, code, system, _ in sorted(rows, key=lambda r: r[4]):
            found[(order, topic)] = (code, system)
        return found


class Store(RecordsMixin):
    def __init__(self, url: str, *, engine: sa.Engine | None = None):
        self.url = url
        self.engine = engine or create_store_engine(url)
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()
        database_file = sqlite_file(self.engine)
        self._jti_sqlite = _sqlite_jti_insert(self.engine) if self.dialect == "sqlite" else None
        self._checkpointer = WalCheckpointer(database_file) if database_file else None
        if self._checkpointer is not None:  # a Store dropped without dispose() stops it too
            weakref.finalize(self, self._checkpointer.stop)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({redacted(self.url)!r})"

    # -- schema ---------------------------------------------------------------------------
    def upgrade(self, options: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
        return migrate.upgrade(self.engine, options=options)

    def ping(self) -> None:
        """Health check: raises when the database cannot answer a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1")).scalar_one()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()

    def write(self, durability: Durability) -> AbstractContextManager[sa.Connection]:
        """A write transaction (committed on exit) taking the write lock up front; see
        ``store.engine`` for what each durability means on each database."""
        if self._checkpointer is not None:
            self._checkpointer.ensure_running()
        return write_transaction(self.engine, durability)

    # -- JWT replay -----------------------------------------------------------------------
    def claim_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """True the first time (issuer, jti) is seen, False on every later call, across all
        processes and hosts sharing the database: the insert either creates the primary key
        or fails on it, atomically."""
        key = hashlib.sha256(f"{issuer}\x00{jti}".encode()).hexdigest()
        row = {
            "key": key,
            "issuer": issuer[:512],
            "expires_at": as_naive_utc(expires_at) + REPLAY_GRACE,
            "claimed_at": utcnow(),
        }
        if self._jti_sqlite is not None:
            claimed = self._claim_jti_sqlite(row)
        else:
            try:
                # "fast": the primary key still decides atomically; only the fsync waits
                with self.write("fast") as connection:
                    connection.execute(_JTI_INSERT, row)
                claimed = True
            except IntegrityError:
                claimed = False
        if claimed:
            self._maybe_purge()
        return claimed

    def _claim_jti_sqlite(self, row: dict[str, Any]) -> bool:
        """The claim on SQLite: one INSERT on a pooled DBAPI connection in autocommit mode,
        which SQLite runs as its own write transaction (the same atomic primary-key decision
        and ``synchronous=NORMAL`` durability as ``write("fast")``), without SQLAlchemy's
        statement machinery and its separate BEGIN IMMEDIATE and COMMIT round trips:
        0.23 -> 0.07 ms of CPU per claim, measured in-process. Same write lock, same pool,
        same errors for the caller (a database failure is a 503, fail closed)."""
        sql, expires, claimed = self._jti_sqlite
        if self._checkpointer is not None:
            self._checkpointer.ensure_running()
        params = (row["key"], row["issuer"], expires(row["expires_at"]), claimed(row["claimed_at"]))
        with _sqlite_write_lock():
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute(sql, params)
            except sqlite3.IntegrityError:
                return False
            except sqlite3.Error as exc:
                raise sa.exc.OperationalError(sql, params, exc) from exc
            finally:
                raw.close()  # back to the pool
        return True

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._next_purge = now + PURGE_INTERVAL_S
            self.purge_expired_jti()
        except sa.exc.SQLAlchemyError as exc:  # housekeeping must never fail a request
            log.warning("jti purge failed", extra={"error": type(exc).__name__})
        finally:
            self._purge_lock.release()

    def purge_expired_jti(self, now: datetime | None = None) -> int:
        moment = as_naive_utc(now) if now else utcnow()
        with self.write("normal") as connection:
            result = connection.execute(jwt_replay.delete().where(jwt_replay.c.expires_at < moment))
        return int(result.rowcount or 0)

    # -- service state --------------------------------------------------------------------
    def state_value(self, name: str, make: Callable[[], str]) -> tuple[str, bool]:
        """The stored value of ``name``, creating it with ``make()`` if absent. When several
        workers race, exactly one insert wins and everyone returns the winner's value.
        Returns (value, created_by_this_call)."""
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(service_state.c.value).where(service_state.c.name == name)
            ).scalar_one_or_none()
        if found is not None:
            return found, False
        created = True
        try:
            with self.write("full") as connection:
                connection.execute(
                    service_state.insert().values(name=name, value=make(), created_at=utcnow())
                )
        except IntegrityError:
            created = False
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(service_state.c.value).where(service_state.c.name == name)
            ).scalar_one()
        return value, created
