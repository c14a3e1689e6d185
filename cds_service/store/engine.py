"""Engine creation: one code path for embedded SQLite and PostgreSQL.

SQLite is made fit for several gunicorn workers (and the CLI) writing at once: WAL so readers
never block the writer, a busy timeout so a writer waits for the lock instead of failing, and
``synchronous=FULL`` so a transaction that returned is on disk even if the host loses power
(feedback that got a 200 must never be lost). pysqlite's own transaction handling is switched
off so that SQLAlchemy's BEGIN is real: write transactions start with ``BEGIN IMMEDIATE``
(the write lock is taken up front, so a read-then-write transaction can never hit the
un-retryable SQLITE_BUSY_SNAPSHOT) and DDL is transactional (migrations are all-or-nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE = {"cds_write": True}  # execution option: this transaction will write


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("cds_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def redacted(url: str) -> str:
    """The URL without its password, safe for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)
