"""Engine creation and write transactions: one code path for embedded SQLite and PostgreSQL.

SQLite is made fit for several gunicorn workers (and the CLI) writing at once: WAL so readers
never block the writer, a busy timeout so a writer waits for the lock instead of failing.
pysqlite's own transaction handling is switched off so that SQLAlchemy's BEGIN is real: write
transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken up front, so a
read-then-write transaction can never hit the un-retryable SQLITE_BUSY_SNAPSHOT) and DDL is
transactional (migrations are all-or-nothing).

Durability is chosen per transaction (the benchmark measured a ``synchronous=FULL`` fsync at
0.3 ms on a quiet disk and 5-6 ms on a busy one, twice per hook call):

- ``"full"``: feedback and service state. A transaction that returned is on disk even if the
  host loses power: feedback that got a 200 must never be lost. SQLite ``synchronous=FULL``
  for that transaction only; PostgreSQL's default (``synchronous_commit = on``).
- ``"fast"``: token claims and issued cards. SQLite ``synchronous=NORMAL`` (the connection
  default; in WAL a commit survives a crash of the process, only a power loss can undo the
  last ones) and PostgreSQL ``SET LOCAL synchronous_commit = off`` (same guarantee; the
  uniqueness of a jti is still decided atomically by the primary key, only the fsync waits).
  Losing a power-cut's last claims reopens replay for tokens that expire within minutes;
  losing issued cards only turns later feedback about them into "unknown card".
- ``"normal"``: housekeeping (jti purge): SQLite NORMAL, PostgreSQL's default.

SQLite writes of one process are serialised by a Python lock (``SQLITE_WRITE_LOCK``): the
threads of a gthread worker otherwise all wait in SQLite's busy handler, which sleeps up to
100 ms between tries (the benchmark's p99 above one second at concurrency 8); a Python lock
wakes the next writer at once. Other processes are still handled by ``BEGIN IMMEDIATE`` and the
busy timeout. PostgreSQL has row locks and needs no such lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from cds_service.store.checkpoint import BACKSTOP_AUTOCHECKPOINT_PAGES

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE = {"cds_write": True}  # execution option: this transaction will write
SQLITE_WRITE_LOCK = threading.Lock()  # one per process: see module doc

Durability = Literal["full", "normal", "fast"]


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        create_private_file(Path(database).expanduser().resolve())
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
            cursor.execute("PRAGMA synchronous = NORMAL")
            # checkpoints are the background thread's job (store.checkpoint); this is a backstop
            cursor.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("cds_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_private_file(path: Path) -> None:
    """Create the database file readable by the service's user only (0600; SQLite gives its
    -wal and -shm files the same mode), in a directory made 0700 if it has to be made. An
    existing file keeps the mode its operator gave it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@contextmanager
def _sqlite_write_lock() -> Iterator[None]:
    # Waits as long as SQLite's own busy timeout would (read at call time: tests shorten it);
    # a timeout is a database error like SQLITE_BUSY, so callers' 503 handling applies.
    if not SQLITE_WRITE_LOCK.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise sa.exc.OperationalError(
            "BEGIN IMMEDIATE", None, TimeoutError("SQLite write lock of this process is busy")
        )
    try:
        yield
    finally:
        SQLITE_WRITE_LOCK.release()


def _set_synchronous(connection: sa.Connection, level: str) -> None:
    # Straight on the DBAPI connection: outside any transaction (SQLAlchemy would autobegin).
    connection.connection.driver_connection.execute(f"PRAGMA synchronous = {level}")


@contextmanager
def write_transaction(engine: Engine, durability: Durability) -> Iterator[sa.Connection]:
    """A committed-on-exit write transaction with the durability asked for (module doc)."""
    sqlite = engine.dialect.name == "sqlite"
    full_sqlite = sqlite and durability == "full"
    with (
        _sqlite_write_lock() if sqlite else nullcontext(),
        engine.connect().execution_options(**WRITE) as connection,
    ):
        if full_sqlite:
            _set_synchronous(connection, "FULL")
        try:
            with connection.begin():
                if not sqlite and durability == "fast":
                    connection.execute(sa.text("SET LOCAL synchronous_commit = off"))
                yield connection
        finally:
            if full_sqlite:
                _restore_normal(connection)


def _restore_normal(connection: sa.Connection) -> None:
    try:
        _set_synchronous(connection, "NORMAL")
    except Exception:
        # a connection that cannot be reset must not go back to the pool in FULL (slow) or
        # in an unknown state
        connection.invalidate()


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine; None for other databases and in-memory ones."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(Path(database).expanduser().resolve())


def redacted(url: str) -> str:
    """The URL without its password, safe for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)
