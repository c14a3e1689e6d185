"""Durability per write, read from the database itself inside each transaction: token claims
and issued cards commit without waiting for the disk (SQLite ``synchronous=NORMAL``,
PostgreSQL ``synchronous_commit=off``), feedback waits (``FULL`` / ``on``), and a connection
goes back to the pool at the fast default after a feedback write. Then the SQLite write lock:
threads of one process writing at once all succeed, and a lock that stays busy ends in a
database error (the callers' 503), not a hang."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from cds_service.store import Store
from cds_service.store import engine as store_engine
from tests.store.test_records import card_row, fb_row

# PRAGMA synchronous answers a number: 1 = NORMAL, 2 = FULL
FAST = {"sqlite": 1, "postgresql": "off"}
DURABLE = {"sqlite": 2, "postgresql": "on"}


def _live_setting(dbapi_connection: Any, dialect: str) -> Any:
    query = "PRAGMA synchronous" if dialect == "sqlite" else "SHOW synchronous_commit"
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(query)
        return cursor.fetchone()[0]
    finally:
        cursor.close()


@pytest.fixture
def seen(store: Store) -> Iterator[dict[str, list[Any]]]:
    """table name -> the durability setting in force when each INSERT into it ran."""
    found: dict[str, list[Any]] = {}

    def before(conn, _cursor, statement, _params, _context, _many):  # type: ignore[no-untyped-def]
        words = statement.split()
        if words[:2] == ["INSERT", "INTO"]:
            table = words[2].strip('"')
            found.setdefault(table, []).append(
                _live_setting(conn.connection.driver_connection, store.dialect)
            )

    event.listen(store.engine, "before_cursor_execute", before)
    # SQLite claims a jti with one INSERT on a raw pooled connection in autocommit mode
    # (Store._claim_jti_sqlite), past SQLAlchemy's events: read the setting it runs under
    # from the connection as it is handed out
    raw_connection = store.engine.raw_connection

    def traced_raw_connection():  # type: ignore[no-untyped-def]
        connection = raw_connection()
        if sys._getframe(1).f_code.co_name == "_claim_jti_sqlite":  # not engine.connect()
            found.setdefault("jwt_replay", []).append(
                _live_setting(connection.driver_connection, store.dialect)
            )
        return connection

    if store.dialect == "sqlite":
        store.engine.raw_connection = traced_raw_connection  # type: ignore[method-assign]
    yield found
    event.remove(store.engine, "before_cursor_execute", before)
    if store.dialect == "sqlite":
        del store.engine.raw_connection


def test_claims_and_cards_are_fast_feedback_is_durable(
    store: Store, seen: dict[str, list[Any]]
) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.claim_jti("iss", "jti-1", expires) is True
    assert store.claim_jti("iss", "jti-1", expires) is False  # replay still refused
    assert store.record_cards([card_row("c-1"), card_row("c-2"), card_row("c-3")]) == 3
    assert store.save_feedback("diazepam-order-select", [fb_row("c-1")]).stored == 1
    assert store.claim_jti("iss", "jti-2", expires) is True  # after feedback: fast again

    dialect = store.dialect
    assert seen["jwt_replay"] == [FAST[dialect]] * 3
    assert seen["issued_cards"] == [FAST[dialect]]  # one executemany for the three cards
    assert seen["feedback"] == [DURABLE[dialect]]
    with store.engine.connect() as connection:  # what the pool hands out now
        # SQLite: back to NORMAL; PostgreSQL: SET LOCAL ended with its transaction
        idle = {"sqlite": 1, "postgresql": "on"}
        assert _live_setting(connection.connection.driver_connection, dialect) == idle[dialect]


def test_connection_default_is_normal_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'cds.sqlite3'}")
    try:
        store.upgrade()
        with store.engine.connect() as connection:
            assert _live_setting(connection.connection.driver_connection, "sqlite") == 1
            journal = connection.connection.driver_connection.execute("PRAGMA journal_mode")
            assert journal.fetchone()[0] == "wal"
    finally:
        store.dispose()


def test_feedback_failure_restores_normal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A feedback transaction that fails (bad row) must not leave its connection in FULL."""
    store = Store(f"sqlite:///{tmp_path / 'cds.sqlite3'}")
    try:
        store.upgrade()
        with pytest.raises(sa.exc.IntegrityError):
            store.save_feedback("svc", [fb_row("c-1", outcome=None)])  # NOT NULL violated
        with store.engine.connect() as connection:
            assert _live_setting(connection.connection.driver_connection, "sqlite") == 1
    finally:
        store.dispose()


def test_threads_of_one_process_all_write(store: Store) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    jtis = [f"jti-{n}" for n in range(40)] * 2  # every jti claimed twice, concurrently

    def claim(jti: str) -> bool:
        return store.claim_jti("iss", jti, expires)

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(claim, jtis))
    assert sum(won) == 40  # each jti exactly once, no errors
    assert {j for j, w in zip(jtis, won, strict=True) if w} == set(jtis)


def test_busy_process_lock_is_a_database_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    store = Store(f"sqlite:///{tmp_path / 'cds.sqlite3'}")
    store.upgrade()
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.write("fast"):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(sa.exc.OperationalError):
            store.record_cards([card_row("c-1")])
    finally:
        release.set()
        holder.join(5)
    assert store.record_cards([card_row("c-1")]) == 1  # free again once released
    store.dispose()
