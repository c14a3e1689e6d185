"""Persistence: SQLAlchemy Core store, Alembic migrations, embedded SQLite or PostgreSQL.

``register_store`` opens the database named by the settings (creating the SQLite file on
first start), brings the schema to head and publishes the ``Store`` at
``app.extensions["cds.store"]`` plus a ``database`` health check.
"""

from __future__ import annotations

import logging

from flask import Flask

from cds_service.config import ConfigError, Settings
from cds_service.store.engine import redacted
from cds_service.store.store import Store

log = logging.getLogger("cds_service.store")

__all__ = ["Store", "database_error", "migration_options", "open_store", "register_store"]


def migration_options(settings: Settings) -> dict[str, object]:
    """What data migrations need from the settings (0003 re-keys order ids with the hash key
    and keeps comments only when the operator keeps them)."""
    return {
        "patient_hash_key": settings.patient_hash_key,
        "store_comments": settings.store_comments,
    }


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    """A store for the configured database, its schema upgraded; a database that cannot be
    reached stops start-up with a message naming it (password hidden)."""
    url = settings.resolved_database_url()
    try:
        store = Store(url)
        if upgrade:
            before, after = store.upgrade(migration_options(settings))
            if before != after:
                log.info("database schema upgraded", extra={"from": before, "to": after})
    except Exception as exc:
        raise database_error(url, exc) from exc
    return store


def database_error(url: str, exc: Exception) -> ConfigError:
    """A start-up or CLI failure naming the database (password hidden) and the cause."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ConfigError(f"database {redacted(url)} unusable: {type(exc).__name__}: {first_line}")


def register_store(app: Flask, settings: Settings) -> None:
    store = open_store(settings)
    app.extensions["cds.store"] = store
    app.extensions.setdefault("cds.health_checks", {})["database"] = store.ping
