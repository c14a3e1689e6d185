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
    as_naive_utc,
    feedback,
    issued_cards,
    jwt_replay,
    service_state,
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
    sa.select(issued_cards.c.order_id, issued_cards.c.topic_code)
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
_SHOWN_AT_SELECT = sa.select(
    issued_cards.c.order_id,
    issued_cards.c.issued_at,
    issued_cards.c.hook_instance,
    issued_cards.c.card_uuid,
    issued_cards.c.content_hash,
    issued_cards.c.order_fingerprint,
).where(
    issued_cards.c.service_id == sa.bindparam("service_id"),
    issued_cards.c.order_id.in_(sa.bindparam("order_ids", expanding=True)),
    issued_cards.c.patient_hash == sa.bindparam("patient_hash"),
    issued_cards.c.user_hash == sa.bindparam("user_hash"),
    issued_cards.c.client_iss.is_not_distinct_from(sa.bindparam("client_iss")),
    issued_cards.c.client_tenant.is_not_distinct_from(sa.bindparam("client_tenant")),
    issued_cards.c.issued_at >= sa.bindparam("since"),
)


@dataclass(frozen=True)
class ShownCard:
    """A card the latest order-select call for a draft showed (``cards_shown_at_order_select``):
    its keyed hashes of content and order, and its uuid (what a withheld repeat points to)."""

    order_id: str
    card_uuid: str
    content_hash: str | None
    order_fingerprint: str | None


def _inserted(connection: sa.Connection, statement: Any, row: dict[str, Any]) -> bool:
    return connection.execute(statement, row).first() is not None


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


class RecordsMixin:
    """Issued cards and feedback: the rows the reports and repeat suppression read."""

    engine: sa.Engine

    def write(self, durability: Durability) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # provided by Store

    def record_cards(
        self, rows: list[dict[str, Any]], withheld: list[dict[str, Any]] | None = None
    ) -> int:
        """Insert issued cards; a card uuid seen before (a retried hook call with
        deterministic uuids) is kept as first recorded. One executemany (SQLAlchemy's
        "insertmanyvalues": one multi-row INSERT ... RETURNING) instead of a statement per
        card; "fast" durability: bookkeeping, not a promise made to the caller. ``withheld``
        (cards computed but not sent: fire once, repeat suppression) go to ``withheld_cards``
        in the same transaction. Order-select rows written here are what
        ``cards_shown_at_order_select`` reads at order-sign: fire once relies on them being
        committed before the order-sign call for the same draft reads them (a row not there
        yet only means the card is shown again)."""
        if not rows and not withheld:
            return 0
        inserted = 0
        with self.write("fast") as connection:
            if rows:
                statement = _insert_ignoring_duplicates(connection.dialect.name, issued_cards)
                inserted = len(connection.execute(statement, rows).all())
            if withheld:
                statement = _insert_ignoring_duplicates(connection.dialect.name, withheld_cards)
                connection.execute(statement, withheld).all()
        return inserted

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
        with self.engine.connect() as connection:
            found = connection.execute(_SHOWN_AT_SELECT, params).all()
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

    def record_cards_batch(self, items: list[Any]) -> int:
        """``record_cards`` for the card queue's writer: the rows of many hook calls in one
        transaction (issued cards as dicts, withheld ones as ``("withheld", row)``), and
        feedback that arrived before its card (stored as "unknown card" by another worker)
        linked to it. Returns the cards inserted."""
        rows = [item for item in items if isinstance(item, dict)]
        withheld = [item[1] for item in items if isinstance(item, tuple)]
        if not rows and not withheld:
            return 0
        inserted = 0
        with self.write("fast") as connection:
            if rows:
                statement = _insert_ignoring_duplicates(connection.dialect.name, issued_cards)
                inserted = len(connection.execute(statement, rows).all())
                uuids = sorted({row["card_uuid"] for row in rows})
                connection.execute(_RELINK, {"uuids": uuids})
            if withheld:
                statement = _insert_ignoring_duplicates(connection.dialect.name, withheld_cards)
                connection.execute(statement, withheld).all()
        return inserted

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
        now = utcnow()
        uuids = sorted({item["card_uuid"] for item in items})
        new_items: list[dict[str, Any]] = []
        duplicates = unknown = 0
        # "full": a 200 promises the feedback is stored, so it must survive a power loss
        with self.write("full") as connection:
            linked = connection.execute(
                sa.select(
                    issued_cards.c.card_uuid,
                    issued_cards.c.topic_code,
                    issued_cards.c.order_id,
                    issued_cards.c.profile,
                    issued_cards.c.suggestion_roles,
                ).where(
                    issued_cards.c.card_uuid.in_(uuids),
                    issued_cards.c.service_id == service_id,
                    issued_cards.c.client_iss.is_not_distinct_from(client_iss),
                    issued_cards.c.client_tenant.is_not_distinct_from(client_tenant),
                )
            ).all()
            topics = {row.card_uuid: row.topic_code for row in linked}
            cards = {
                row.card_uuid: {
                    "order_id": row.order_id,
                    "profile": row.profile,
                    "suggestion_roles": row.suggestion_roles or {},
                }
                for row in linked
            }
            statement = _insert_ignoring_duplicates(connection.dialect.name, feedback)
            for item in items:
                known = item["card_uuid"] in topics
                row = {
                    **item,
                    "client_iss": client_iss,
                    "client_tenant": client_tenant,
                    "service_id": service_id,
                    "card_known": known,
                    "topic_code": topics.get(item["card_uuid"]),
                    "received_at": now,
                }
                if _inserted(connection, statement, row):
                    new_items.append(row)
                    unknown += 0 if known else 1
                else:
                    duplicates += 1
        return FeedbackOutcome(len(new_items), duplicates, unknown, new_items, cards)

    def overridden_topics(
        self,
        *,
        service_id: str,
        order_ids: list[str],
        user_hash: str,
        patient_hash: str,
        since: datetime,
        client_iss: str | None = None,
        client_tenant: str | None = None,
    ) -> set[tuple[str, str]]:
        """(order id hash, topic code) pairs whose card, issued by ``service_id`` to this
        client (issuer and tenant), user and patient, was overridden in that client's
        feedback received since ``since``."""
        if not order_ids:
            return set()
        params = {
            "service_id": service_id,
            "order_ids": sorted(set(order_ids)),
            "user_hash": user_hash,
            "patient_hash": patient_hash,
            "client_iss": client_iss,
            "client_tenant": client_tenant,
            "since": as_naive_utc(since),
        }
        with self.engine.connect() as connection:
            return {(row[0], row[1]) for row in connection.execute(_OVERRIDDEN, params)}


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
