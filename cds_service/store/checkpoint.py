"""WAL checkpoints for the embedded SQLite store, off the request path.

In WAL mode SQLite copies the log back into the database ("checkpoint") from whichever commit
pushes the log past ``wal_autocheckpoint`` pages, and that commit then waits for the copy and
its fsync. The benchmark saw it as the store's p99: about one hook call in 70 paid 5-6 ms for
everybody's writes. So each worker process runs one daemon thread that checkpoints every
``interval_s`` on a connection of its own (PASSIVE: it never waits for, or blocks, readers and
writers, and sqlite3 releases the GIL while it copies), and request connections keep a much
higher ``wal_autocheckpoint`` only as a backstop, should the thread ever fall behind.

PostgreSQL, and SQLite in memory, have nothing to do here.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger("cds_service.store")

CHECKPOINT_INTERVAL_S = 0.5
# Request connections checkpoint themselves only past this many pages (16 MiB at 4 KiB pages;
# SQLite's default is 1000): with the thread running the log never gets there.
BACKSTOP_AUTOCHECKPOINT_PAGES = 4000


class WalCheckpointer:
    """One checkpoint thread per process for one database file; fork-aware."""

    def __init__(self, database_path: str, interval_s: float = CHECKPOINT_INTERVAL_S):
        self.database_path = database_path
        self.interval_s = interval_s
        self.checkpoints = 0  # completed checkpoint calls, for tests and debugging
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        """Start the thread in this process if it is not running here (threads do not survive
        gunicorn's fork, so a worker starts its own on its first write)."""
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="sqlite-checkpoint", daemon=True
            )
            self._pid = os.getpid()
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> None:
        with self._lock:
            thread, self._thread, self._pid = self._thread, None, None
            self._stop.set()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self, stop: threading.Event) -> None:
        try:
            connection = sqlite3.connect(
                self.database_path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            log.warning("wal checkpoint thread not started", extra={"error": type(exc).__name__})
            return
        try:
            while not stop.wait(self.interval_s):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy, or the file went away: try again later
                    log.debug("wal checkpoint skipped", extra={"error": type(exc).__name__})
        finally:
            connection.close()
