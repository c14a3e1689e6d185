"""``diazepam-cds db upgrade``: bring the database schema to the latest revision.

The service also upgrades at start-up; the command is for deployments that migrate as a
separate step (before rolling out new workers) and to check a database URL works.
"""

from __future__ import annotations

import argparse
from typing import Any

from cds_service.cli import _EXTRA_PARSERS, command
from cds_service.config import load_settings


def _add_db(sub: Any) -> None:
    p = sub.add_parser("db", help="database schema management")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="create or upgrade the schema to the latest revision")
    db_sub.add_parser("current", help="print the schema revision of the database")


_EXTRA_PARSERS.append(_add_db)


@command("db")
def db(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from cds_service.store import database_error, migrate, migration_options, open_store
    from cds_service.store.engine import redacted

    settings = load_settings()
    store = open_store(settings, upgrade=False)
    try:
        if args.db_command == "upgrade":
            before, after = store.upgrade(migration_options(settings))
            state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
            print(f"{redacted(store.url)}: {state} revision {after}")
        else:
            with store.engine.connect() as connection:
                current = migrate.current_revision(connection)
            print(
                f"{redacted(store.url)}: revision {current or 'none'} "
                f"(latest {migrate.head_revision()})"
            )
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(store.url, exc) from exc
    finally:
        store.dispose()
    return 0
