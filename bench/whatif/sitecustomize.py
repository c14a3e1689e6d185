"""EXPERIMENT, not the service's behaviour: what the store recommendations of the benchmark
report would buy, measured on the real ``diazepam-cds serve``.

Loaded only by ``python -m bench.run --whatif-store`` (which puts this folder on the service's
PYTHONPATH, so Python imports it at start-up). It monkeypatches ``Store`` in three ways:

1. ``PRAGMA synchronous = NORMAL`` (WAL): a commit is durable against a crash of the process
   (SIGKILL), not against a power loss; no fsync per commit.
2. One process-wide lock around write transactions: the threads of a worker queue on a Python
   lock (woken at once) instead of SQLite's busy handler, which sleeps 1..100 ms between tries.
3. Issued cards in one ``executemany`` (insertmanyvalues) instead of one statement per card.

If the store changes shape and a patch no longer applies, it says so on stderr and the service
runs unpatched (the results then show no change).
"""

from __future__ import annotations

import sys
import threading


def _patch() -> None:
    import sqlalchemy as sa
    from sqlalchemy import event

    from cds_service.store import store as store_module

    original_create = store_module.create_store_engine
    write_lock = threading.Lock()

    def create_store_engine(url: str) -> sa.Engine:
        engine = original_create(url)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _normal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.close()

        return engine

    store_module.create_store_engine = create_store_engine
    Store = store_module.Store
    original_claim = Store.claim_jti

    def claim_jti(self, issuer, jti, expires_at):  # type: ignore[no-untyped-def]
        with write_lock:
            return original_claim(self, issuer, jti, expires_at)

    def record_cards(self, rows):  # type: ignore[no-untyped-def]
        if not rows:
            return 0
        with write_lock, self.write() as connection, connection.begin():
            statement = store_module._insert_ignoring_duplicates(
                connection, store_module.issued_cards
            )
            return len(connection.execute(statement, rows).all())

    Store.claim_jti = claim_jti
    Store.record_cards = record_cards


try:
    _patch()
    print(
        "bench whatif: store patched (synchronous=NORMAL, write lock, executemany)", file=sys.stderr
    )
except Exception as exc:  # an experiment must never stop the service from starting
    print(f"bench whatif: store NOT patched: {type(exc).__name__}: {exc}", file=sys.stderr)
