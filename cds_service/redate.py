"""Move a recorded request in time, so that it means today what it meant when it was written.

The service counts ages, look-back windows and "days since" to one reference date per call:
the time of the call (a draft's ``authoredOn`` may be years old in test data). A scenario
fixture written with literal dates (order on 2026-03-02, eGFR on 2026-02-10, born 1947-06-15)
is therefore replayed with every date shifted by the same number of days, so the order is
dated today and the patient's age and the lab's age relative to the order are what the
fixture says. Used by ``diazepam-cds replay`` and the scenario tests; never by the service.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

# FHIR date/dateTime/instant elements that place the record in time (Period start/end too)
DATE_KEYS = frozenset(
    {
        "authoredOn",
        "dateWritten",
        "birthDate",
        "deceasedDateTime",
        "effectiveDateTime",
        "effectiveInstant",
        "issued",
        "onsetDateTime",
        "abatementDateTime",
        "recordedDate",
        "assertedDate",
        "dateAsserted",
        "lastOccurrence",
        "start",
        "end",
        "whenHandedOver",
        "whenPrepared",
    }
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def order_date(request: dict[str, Any]) -> date | None:
    """The first draft's ``authoredOn`` (or DSTU2 ``dateWritten``): the fixture's "today"."""
    context = request.get("context") if isinstance(request, dict) else None
    bundle = context.get("draftOrders") if isinstance(context, dict) else None
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        for key in ("authoredOn", "dateWritten"):
            parsed = _parse(resource.get(key))
            if parsed is not None:
                return parsed
    return None


def _parse(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    match = _DATE.match(value)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def redate(request: dict[str, Any], today: date | None = None) -> dict[str, Any]:
    """A copy of ``request`` with every date moved so that its order is dated ``today``
    (default: today in UTC). A request without a dated draft is returned as a copy."""
    today = today or datetime.now(UTC).date()
    anchor = order_date(request)
    out = copy.deepcopy(request)
    if anchor is None or anchor == today:
        return out
    _shift(out, today - anchor)
    return out


def _shift(node: Any, delta: timedelta) -> None:
    if isinstance(node, list):
        for item in node:
            _shift(item, delta)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in DATE_KEYS and isinstance(value, str):
            parsed = _parse(value)
            if parsed is not None:
                node[key] = (parsed + delta).isoformat() + value[10:]
                continue
        _shift(value, delta)
