"""Schema upgrades with Alembic, run at start-up and by ``diazepam-cds db upgrade``.

Every worker of every host calls ``upgrade`` when it starts; the first one to take the lock
migrates, the others then find the schema at head and do nothing. The lock is the write
transaction itself on SQLite (``BEGIN IMMEDIATE``) and a transaction-scoped advisory lock
on PostgreSQL; both databases have transactional DDL, so a failed upgrade leaves nothing
half-done.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cds_service.store.engine import WRITE

# Alembic narrates every start-up at INFO ("Context impl SQLiteImpl."); the store logs the
# one line that matters (an actual upgrade) itself.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x0D1A_2E9A  # arbitrary constant: "diazepam-cds schema migration"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(
    engine: sa.Engine, revision: str = "head", options: dict[str, Any] | None = None
) -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; returns (revision before, revision after). ``options`` are
    settings a data migration needs (``patient_hash_key``, ``store_comments``)."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        before = current_revision(connection)
        if revision == "head" and before == head_revision():
            return before, before
        config = alembic_config()
        config.attributes.update(options or {})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        return before, current_revision(connection)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Only for tests and manual recovery: the service never downgrades by itself."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
