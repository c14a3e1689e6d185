"""The ``Store``: every database read and write the service makes, behind plain methods.

Workers are stateless; whatever must be shared between requests, workers and hosts (used JWT
ids, issued cards, feedback) lives here, and every guarantee (a jti is used once, a feedback
item is stored once) is enforced by a primary or unique key, never by a read-then-write.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cds_service.store import migrate
from cds_service.store.engine import WRITE, create_store_engine, redacted
from cds_service.store.tables import as_naive_utc, jwt_replay, service_state, utcnow

log = logging.getLogger("cds_service.store")

PURGE_INTERVAL_S = 60.0
# Rows outlive their token a little, so a token still accepted within the JWT clock leeway
# can never find its jti purged.
REPLAY_GRACE = timedelta(minutes=10)


class Store:
    def __init__(self, url: str, *, engine: sa.Engine | None = None):
        self.url = url
        self.engine = engine or create_store_engine(url)
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({redacted(self.url)!r})"

    # -- schema ---------------------------------------------------------------------------
    def upgrade(self) -> tuple[str | None, str | None]:
        return migrate.upgrade(self.engine)

    def ping(self) -> None:
        """Health check: raises when the database cannot answer a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1")).scalar_one()

    def dispose(self) -> None:
        self.engine.dispose()

    def write(self) -> sa.Connection:
        """A connection whose transaction takes the write lock up front (SQLite)."""
        return self.engine.connect().execution_options(**WRITE)

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
        try:
            with self.write() as connection, connection.begin():
                connection.execute(jwt_replay.insert().values(**row))
        except IntegrityError:
            return False
        self._maybe_purge()
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
        with self.write() as connection, connection.begin():
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
            with self.write() as connection, connection.begin():
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


def new_secret() -> str:
    return secrets.token_hex(32)
