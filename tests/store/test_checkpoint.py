"""The background WAL checkpoint (store.checkpoint): writes reach the database file without a
request paying for the copy, the thread is per process, and it stops with the store."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from cds_service.store import Store
from cds_service.store.checkpoint import BACKSTOP_AUTOCHECKPOINT_PAGES, WalCheckpointer
from tests.store.test_records import card_row


def _wait(predicate, timeout_s: float = 30.0) -> bool:  # a bound for waiting, not a speed test
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _rows_in_main_file(db: Path, tmp_path: Path) -> int:
    """Rows readable from the database file alone, without its -wal: what was checkpointed."""
    copy = tmp_path / "main-only.db"
    shutil.copyfile(db, copy)
    connection = sqlite3.connect(copy)
    try:
        return connection.execute("SELECT count(*) FROM issued_cards").fetchone()[0]
    except sqlite3.OperationalError:  # not even the schema has been checkpointed yet
        return -1
    finally:
        connection.close()


def test_written_rows_reach_the_database_file_in_the_background(tmp_path):
    db = tmp_path / "cds.db"
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    store._checkpointer.interval_s = 0.05
    try:
        assert _rows_in_main_file(db, tmp_path) == -1  # all still in the -wal
        assert store.record_cards([card_row(f"c-{i}") for i in range(3)]) == 3
        assert store._checkpointer.running
        # the requests' own connections would only checkpoint past the backstop
        with store.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == BACKSTOP_AUTOCHECKPOINT_PAGES
        assert _wait(lambda: _rows_in_main_file(db, tmp_path) == 3)
        # counted after the checkpoint returns, so the rows can be seen a moment before
        assert _wait(lambda: store._checkpointer.checkpoints >= 1)
    finally:
        store.dispose()
    assert not store._checkpointer.running


def test_no_thread_before_the_first_write_nor_for_postgres_or_memory(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'idle.db'}")
    store.upgrade()
    assert not store._checkpointer.running  # reads and migrations start nothing
    store.dispose()
    assert Store("sqlite://")._checkpointer is None
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert (
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none", engine=engine)._checkpointer is None
    )


def test_thread_is_restarted_in_a_new_process(tmp_path, monkeypatch):
    checkpointer = WalCheckpointer(str(tmp_path / "x.db"), interval_s=10)
    checkpointer.ensure_running()
    first, first_stop = checkpointer._thread, checkpointer._stop
    checkpointer.ensure_running()
    assert checkpointer._thread is first  # same process: one thread
    monkeypatch.setattr("os.getpid", lambda: -1)  # as seen from a forked worker
    checkpointer.ensure_running()
    second = checkpointer._thread
    assert second is not first and second.is_alive()
    checkpointer.stop()
    assert not second.is_alive()
    first_stop.set()  # in a real fork the parent's thread does not exist in the child
    first.join(2)
