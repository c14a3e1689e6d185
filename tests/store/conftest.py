"""Store fixtures: every store test runs on embedded SQLite and on the real PostgreSQL.

PostgreSQL comes from ``CDS_TEST_POSTGRES_URL`` (default: the server on our development and
CI machines). Each test gets its own schema (``search_path``), dropped afterwards, so
pytest-xdist workers never see each other's rows. Unreachable PostgreSQL skips with the
reason on a user's machine; in CI (``CI`` = 1/true/yes) it fails instead, so CI can never go
green by silently not testing PostgreSQL (``tests/support/gate.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from cds_service.store import Store
from tests.support.gate import require

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("CDS_TEST_POSTGRES_URL") or DEFAULT_PG_URL


@lru_cache(maxsize=1)
def _postgres_problem() -> str | None:
    try:
        engine = sa.create_engine(postgres_base_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def require_postgres() -> str:
    problem = _postgres_problem()
    if problem:  # skips, or fails in CI (tests/support/gate.py)
        require(f"PostgreSQL at {sa.make_url(postgres_base_url())!r} unreachable ({problem})")
    return postgres_base_url()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh, private schema."""
    base = require_postgres()
    schema = f"cds_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'cds.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def second_store(store: Store) -> Iterator[Store]:
    """Another Store (own engine, own connections) on the same database: another host."""
    other = Store(store.url)
    yield other
    other.dispose()
