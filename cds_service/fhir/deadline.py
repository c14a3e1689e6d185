"""A per-request time budget that every outbound FHIR call takes its timeout from.

A clinician is waiting on the order form: the hook must answer within ``CDS_DEADLINE_MS`` of the
request arriving whatever the EHR's FHIR server does. The budget is anchored at the request's
arrival (not at the start of fetching) and keeps a reserve for the rules and card rendering that
run after the data is in, so "fetch until the deadline" still leaves time to answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Time kept back for rules + rendering + serialisation after fetching stops (ms), never more
# than a quarter of the whole budget so small deadlines still leave room to fetch.
RENDER_RESERVE_MS = 60.0


@dataclass(frozen=True)
class Deadline:
    """Monotonic-clock deadline; ``remaining()`` is what a call may still spend, in seconds."""

    ends_at: float

    @classmethod
    def starting(cls, budget_ms: float, started_at: float | None = None) -> Deadline:
        start = time.monotonic() if started_at is None else started_at
        reserve = min(RENDER_RESERVE_MS, budget_ms / 4)
        return cls(start + (budget_ms - reserve) / 1000.0)

    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def allows(self, seconds: float) -> bool:
        """Whether ``seconds`` more work still fits (used before retries and next pages)."""
        return self.remaining() > seconds


def request_started_at() -> float | None:
    """When the current HTTP request arrived on the monotonic clock, if known.

    ``app.py`` stamps ``g.cds_started`` with ``time.perf_counter()``; on Linux and macOS
    ``perf_counter`` and ``monotonic`` differ, so the stamp is converted by its age rather than
    compared directly. Outside a request (tests, CLI) the deadline starts now.
    """
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - flask is a hard dependency of the service
        return None
    if not has_request_context():
        return None
    stamp = g.get("cds_started")
    if not isinstance(stamp, float):
        return None
    age = max(0.0, time.perf_counter() - stamp)
    return time.monotonic() - age
