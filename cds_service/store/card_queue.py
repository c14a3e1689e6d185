"""Issued cards recorded off the request path: a bounded in-process queue, written in batches
by one writer thread per worker.

Recording a hook call's cards synchronously cost a write transaction per call (the write lock,
``BEGIN IMMEDIATE``, an executemany, a commit: about a sixth of a call's CPU in the benchmark
profile). A request thread now hands its call's record (counters, cards, suggestions, withheld
and suppressed cards: ``CallRecord``) to ``CardQueue.submit`` and answers; the writer wakes
when records arrive, lets ``flush_interval_s`` of traffic gather, and writes everything
pending in one transaction (``Store.record_calls``). The bound counts cards: a record weighs
the cards it carries.

Guarantees, and the crash-loss window (README "Feedback, the store and reports"):

* **Bounded.** At most ``max_rows`` rows wait. When the queue is full (the database is slow or
  gone), ``submit`` refuses and the caller records its rows itself, synchronously, as before:
  the queue never drops a card to make room and never grows without bound.
* **Graceful shutdown loses nothing.** ``close()`` (registered with ``atexit``: gunicorn's
  SIGTERM / SIGQUIT / max-requests exits run it, as does any normal interpreter exit) stops
  the writer after it has written everything queued.
* **A crash loses at most the rows not yet written**: those submitted within the last
  ``flush_interval_s`` plus the duration of one batch write, and never more than ``max_rows``.
  A SIGKILL or power cut inside that window turns later feedback about those cards into
  "unknown card", exactly what a failed synchronous write did (advice matters more than its
  bookkeeping), and loses the dashboard's hook-call counters of those calls: every call's
  counters travel here (an order-select call's as a record of its own, weighing one card,
  while its cards are written before its answer), and ``Store.record_calls`` sums them per
  counter row, one write per batch and key. ``tests/store/test_card_queue_crash.py`` kills
  a real worker with SIGKILL and checks both bounds, and stops one gracefully to check the
  counters count exactly the calls answered.
* **Readers in this process see everything**: ``flush()`` returns once every row submitted
  before the call is in the database; the feedback handler calls it before linking items to
  cards, and waits once for the window when an item names a card it cannot find (the card
  may be queued in another worker). Readers in another worker or host may miss rows still
  queued here for up to the window; a feedback item stored meanwhile as "unknown card" is
  linked when the card's row lands (``record_calls`` re-links it in the same transaction).
  Cards of hooks whose cards a later call reads at once (order-select: fire once and repeat
  suppression at order-sign, possibly milliseconds later on another worker) are not queued
  at all: ``CardRecorder`` writes them synchronously.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cds_service.store.card_queue")

DEFAULT_MAX_ROWS = 1000
DEFAULT_FLUSH_INTERVAL_S = 0.05
IDLE_EXIT_S = 2.0  # a writer with nothing to do for this long ends (no thread per idle app)


class CardQueue:
    """One per worker process (created lazily in the worker: the thread must not cross a
    fork). ``write`` receives a non-empty list of rows and raises on a database failure,
    which is logged, counted and not retried (the rows are reported lost in the log)."""

    def __init__(
        self,
        write: Callable[[list[Any]], Any],
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self._write = write
        self.max_rows = max_rows
        self.flush_interval_s = max(0.0, flush_interval_s)
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[Any] = []
        self._weight = 0  # summed weight of what is pending, bounded by max_rows
        self._submitted = 0  # rows accepted so far (a sequence number)
        self._done = 0  # rows whose write finished (written, or failed and logged)
        self._urgent = False  # a flush() is waiting: skip the gathering pause
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.lost = 0  # rows a failed write could not record
        self.refused = 0  # submissions refused because the queue was full
        # graceful exit writes what is queued; a weak reference, so an app that is dropped
        # (tests build hundreds) is not kept alive by the registration
        atexit.register(_close_ref, weakref.ref(self))

    # -- request threads --------------------------------------------------------------
    def submit(self, rows: list[Any], weight: int | None = None) -> bool:
        """Queue ``rows`` (items the writer receives as they are: card rows, or one hook
        call's record standing for ``weight`` cards); False when the queue is full or closed
        (record them yourself). ``max_rows`` bounds the summed weight."""
        if not rows:
            return True
        weight = len(rows) if weight is None else max(1, weight)
        with self._cond:
            if self._closed or self._weight + weight > self.max_rows:
                self.refused += 1
                return False
            self._ensure_thread()
            was_idle = not self._pending
            self._pending.extend(rows)
            self._weight += weight
            self._submitted += len(rows)
            if self._weight * 2 >= self.max_rows:
                self._urgent = True  # write now rather than let calls find the queue full
                self._cond.notify_all()
            elif was_idle:
                self._cond.notify_all()  # wake the writer: a batch starts gathering
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every row submitted before this call has been written (or its write
        failed and was logged). True when done within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            if self._done >= target:
                return True
            self._urgent = True
            self._cond.notify_all()
            while self._done < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        with self._cond:
            return self._submitted - self._done

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the writer; later submissions are refused."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._urgent = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        # no writer (never started, or started in the parent of this fork): write here
        self._drain_inline()

    # -- writer thread ----------------------------------------------------------------
    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._pid == pid:
            return
        if self._pid is not None and self._pid != pid:
            # forked with rows from the parent: they are the parent's to write
            self._pending.clear()
            self._weight = 0
            self._done = self._submitted
        self._pid = pid
        self._thread = threading.Thread(target=self._run, name="card-writer", daemon=True)
        self._thread.start()

    def _take(self) -> list[dict[str, Any]] | None:
        """Block until there is something to write. None: closed and drained, or idle for
        ``IDLE_EXIT_S`` (the thread ends; the next ``submit`` starts another)."""
        with self._cond:
            idle_until = time.monotonic() + IDLE_EXIT_S
            while not self._pending and not self._closed:
                remaining = idle_until - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._pending:
                self._thread = None  # under the lock: submit() sees it and starts a new one
                return None
            # let a batch gather: one transaction for every call of the interval (submits
            # notify, so wait out the deadline; a flush, close or half-full queue ends it)
            deadline = time.monotonic() + self.flush_interval_s
            while not self._urgent and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, self._pending = self._pending, []
            self._weight = 0
            self._urgent = False
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._write_batch(batch)

    def _write_batch(self, batch: list[Any]) -> None:
        try:
            self._write(batch)
        except Exception as exc:  # the database failing: log, never kill the writer
            self.lost += len(batch)
            log.error(
                "issued cards not recorded",
                extra={"error": type(exc).__name__, "cards": len(batch)},
            )
        finally:
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _drain_inline(self) -> None:
        with self._cond:
            batch, self._pending = self._pending, []
            self._weight = 0
        if batch:
            self._write_batch(batch)


def _close_ref(ref: weakref.ref[CardQueue]) -> None:
    queue = ref()
    if queue is not None:
        queue.close()
