"""Schema management: migrations create exactly the tables the code declares, upgrades are
safe to run from many processes at once, and ``diazepam-cds db upgrade`` works on both
databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cds_service.cli import main
from cds_service.store import Store, migrate
from cds_service.store.tables import metadata


def test_migrations_match_the_table_definitions(store: Store) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_concurrent_upgrades_migrate_once(db_url: str) -> None:
    stores = [Store(db_url) for _ in range(6)]
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda s: s.upgrade(), stores))
        head = migrate.head_revision()
        assert all(after == head for _, after in results)
        assert sum(before is None for before, _ in results) == 1
        with stores[0].engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert versions == [(head,)]
    finally:
        for store in stores:
            store.dispose()


def test_downgrade_then_upgrade_round_trips(store: Store) -> None:
    migrate.downgrade(store.engine, "base")
    with store.engine.connect() as connection:
        assert "feedback" not in sa.inspect(connection).get_table_names()
    assert store.upgrade() == (None, migrate.head_revision())
    assert store.claim_jti("iss", "after-round-trip", datetime.now(UTC))


def test_cli_db_upgrade(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", db_url)
    assert main(["db", "current"]) == 0
    assert "revision none" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"upgraded from empty to revision {migrate.head_revision()}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "already at revision" in capsys.readouterr().out


def test_sqlite_file_and_directory_created_on_first_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'cds.sqlite3'}"
    store = Store(url)
    store.upgrade()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    store.dispose()
    assert (tmp_path / "deep" / "er" / "cds.sqlite3").is_file()


def test_unreachable_database_stops_start_up_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "CDS_DATABASE_URL", "postgresql+psycopg://cds:s3cret@127.0.0.1:1/nowhere?connect_timeout=2"
    )
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "database postgresql+psycopg://cds:***@127.0.0.1:1/nowhere" in err
    assert "s3cret" not in err
