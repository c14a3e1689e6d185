"""The dashboard's counts on both databases (issue 16): cards and feedback written through the
store's own methods, then ``dashboard.query.collect`` — the week folding (a dialect-specific
SQL function), the per-day rollup kept on write, outcomes counted once per card, accepted
suggestions by what they offered, suppressions and hook-call counters."""

from __future__ import annotations

from datetime import date, datetime

from cds_service.dashboard.query import Window, collect
from cds_service.store import Store
from cds_service.store.store import CallRecord
from tests.store.helpers import call_counts
from tests.store.test_records import card_row, fb_row

SUNDAY = datetime(2026, 11, 8, 23, 0)  # week of Monday 2026-11-02
MONDAY = datetime(2026, 11, 9, 1, 0)  # week of Monday 2026-11-09
SERVICE = "diazepam-order-select"


def _call(store: Store, when: datetime, cards: list[dict], **counts: int) -> None:
    store.record_call(
        CallRecord(
            counts=call_counts(
                when.date(),
                len(cards),
                service_id=SERVICE,
                profile="standard",
                suppressed=counts.get("suppressed", 0),
            ),
            cards=[{**c, "issued_at": when, "profile": "standard"} for c in cards],
            suggestions=[
                {
                    "suggestion_uuid": f"{c['card_uuid']}-s",
                    "card_uuid": c["card_uuid"],
                    "kind": "replace",
                    "drug": "tizanidine",
                    "code": "313412",
                }
                for c in cards
            ],
            suppressed=[
                {
                    "suppressed_at": when,
                    "service_id": SERVICE,
                    "topic_code": "beers-age",
                    "indicator": "warning",
                    "profile": "standard",
                    "override_code": "patient-preference",
                    "override_system": None,
                    "client_iss": None,
                    "client_tenant": None,
                }
            ]
            * counts.get("suppressed", 0),
        )
    )


def test_collect_counts_what_the_store_wrote(store: Store) -> None:
    _call(store, SUNDAY, [card_row("a"), card_row("b", "duration-limit")])
    _call(store, MONDAY, [card_row("c"), card_row("d")], suppressed=1)
    _call(store, MONDAY, [card_row("c")])  # a retried call: the card counts once
    store.save_feedback(
        SERVICE,
        [
            fb_row("a", "accepted", accepted_suggestions=["a-s"]),
            fb_row("a", "overridden", n=1),  # the same card both ways: answered once
            fb_row("b", "overridden", override_code="chronic-indication"),
            fb_row("b", "overridden", n=2, override_code="patient-preference"),  # latest wins
            fb_row("zz", "overridden"),  # no such card
        ],
    )
    data = collect(store.engine)
    by = {(g.week, g.topic): (g.issued, g.accepted, g.overridden, g.answered) for g in data.groups}
    assert by == {
        ("2026-11-02", "beers-age"): (1, 1, 1, 1),
        ("2026-11-02", "duration-limit"): (1, 0, 1, 1),
        ("2026-11-09", "beers-age"): (2, 0, 0, 0),
    }
    assert {g.profile for g in data.groups} == {"standard"}
    assert sorted(data.reasons) == [
        ("beers-age", "patient-preference", 1),
        ("duration-limit", "patient-preference", 1),
    ]
    assert data.taken == [("beers-age", "replace", "tizanidine", "313412", 1)]
    assert data.suppressed == [("beers-age", "patient-preference", 1)]
    assert [c[:3] for c in data.calls] == [("2026-11-02", SERVICE, 1), ("2026-11-09", SERVICE, 2)]
    assert data.unknown_feedback == 1
    assert data.weeks() == ["2026-11-02", "2026-11-09"]
    later = collect(store.engine, Window(since=date(2026, 11, 9)))
    assert {g.week for g in later.groups} == {"2026-11-09"} and later.taken == []
