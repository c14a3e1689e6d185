"""Fire once's store side (F.2a), on SQLite and on PostgreSQL: the order-select record it reads
(``cards_shown_at_order_select``) and the withheld cards it writes (``record_cards``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cds_service.store import Store
from cds_service.store.tables import issued_cards, utcnow, withheld_cards
from tests.store.test_records import card_row

SELECT = "diazepam-order-select"
WHO = {
    "user_hash": "u" * 64,
    "patient_hash": "p" * 64,
    "client_iss": "iss-a",
    "client_tenant": "t1",
}


def shown_row(uuid: str, *, age_s: float = 0, **overrides: Any) -> dict[str, Any]:
    row = card_row(
        uuid,
        order_id="o" * 64,
        issued_at=utcnow() - timedelta(seconds=age_s),
        content_hash=f"content-{uuid}",
        order_fingerprint="f" * 64,
        profile="epic",
        suggestion_roles={"s-1": "remove"},
        **WHO,
    )
    return {**row, **overrides}


def lookup(store: Store, **overrides: Any) -> set[tuple[str, str | None, str | None]]:
    params: dict[str, Any] = {
        "service_id": SELECT,
        "order_ids": ["o" * 64],
        "since": utcnow() - timedelta(seconds=3600),
        **WHO,
    }
    params.update(overrides)
    return {
        (c.card_uuid, c.content_hash, c.order_fingerprint)
        for c in store.cards_shown_at_order_select(**params)
    }


def test_the_latest_order_select_for_the_draft_is_returned(store: Store) -> None:
    store.record_cards(
        [
            shown_row("old-1", age_s=600),
            shown_row("new-1", age_s=60, hook_instance="hi-2"),
            shown_row("new-2", age_s=60, hook_instance="hi-2"),
        ]
    )
    rows = lookup(store)
    assert {uuid for uuid, _, _ in rows} == {"new-1", "new-2"}
    assert ("new-1", "content-new-1", "f" * 64) in rows


@pytest.mark.parametrize(
    "other",
    [
        {"user_hash": "x" * 64},  # another user
        {"patient_hash": "x" * 64},  # another patient
        {"client_iss": "iss-b"},  # another issuer (issue 17)
        {"client_tenant": "t2"},  # another tenant of the same issuer
        {"client_tenant": None},  # a tenant-less call is not tenant t1
        {"order_ids": ["x" * 64]},  # another draft
        {"service_id": "diazepam-order-sign"},  # only order-select records count
        {"since": "after the call"},  # outside the window
    ],
)
def test_nothing_shown_to_anyone_else(store: Store, other: dict[str, Any]) -> None:
    store.record_cards([shown_row("c-1", age_s=1)])
    if other.get("since"):
        other = {"since": utcnow() - timedelta(seconds=0.5)}
    assert lookup(store) != set()
    assert lookup(store, **other) == set()


def test_window_edge(store: Store) -> None:
    store.record_cards([shown_row("c-1", age_s=3590)])
    assert lookup(store) != set()
    assert lookup(store, since=utcnow() - timedelta(seconds=3580)) == set()


def test_rows_without_hashes_still_mark_the_latest_call(store: Store) -> None:
    """A late order-select answer is recorded without hashes: it is the latest call for the
    draft, so an earlier call's hashes no longer count."""
    store.record_cards(
        [
            shown_row("early", age_s=600),
            shown_row(
                "late", age_s=10, hook_instance="hi-2", content_hash=None, order_fingerprint=None
            ),
        ]
    )
    assert lookup(store) == {("late", None, None)}


def test_withheld_cards_written_with_the_issued_ones(store: Store) -> None:
    withheld = {
        "card_uuid": "w-1",
        "service_id": "diazepam-order-sign",
        "hook_instance": "hi-sign",
        "reason": "fire-once",
        "repeat_of": "c-1",
        "topic_code": "beers-age",
        "indicator": "warning",
        "content_hash": "content-c-1",
        "order_id": "o" * 64,
        "profile": "epic",
        "withheld_at": utcnow(),
        **WHO,
    }
    assert store.record_cards([shown_row("c-2")], [withheld]) == 1
    assert store.record_cards([], [withheld]) == 0  # a retry is a no-op
    with store.engine.connect() as connection:
        kept = connection.execute(sa.select(withheld_cards)).mappings().all()
        issued = connection.execute(sa.select(issued_cards.c.card_uuid)).scalars().all()
    assert [(r["card_uuid"], r["repeat_of"], r["reason"]) for r in kept] == [
        ("w-1", "c-1", "fire-once")
    ]
    assert issued == ["c-2"]  # a withheld card is never an issued one


def test_issued_card_keeps_profile_and_suggestion_roles(store: Store) -> None:
    store.record_cards([shown_row("c-1")])
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(issued_cards)).mappings().one()
    assert (row["profile"], row["suggestion_roles"]) == ("epic", {"s-1": "remove"})


def test_on_sqlite_the_read_is_one_statement_served_by_the_lookup_index(tmp_path) -> None:
    """Issue 15: the read every order-sign call with a non-critical card makes is a single
    statement (no BEGIN / ROLLBACK around it) that SQLite answers from ix_issued_cards_lookup,
    with several drafts as with one."""
    from cds_service.store.store import _sqlite_shown_at_select

    store = Store(f"sqlite:///{tmp_path / 'cds.sqlite3'}")
    store.upgrade()
    try:
        store.record_cards([shown_row("c-1", age_s=1), shown_row("c-2", order_id="x" * 64)])
        store.engine.dispose()  # new connections, traced from their first statement on
        statements: list[str] = []

        @sa.event.listens_for(store.engine, "connect")
        def _trace(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.set_trace_callback(statements.append)

        assert {u for u, _, _ in lookup(store)} == {"c-1"}
        assert {u for u, _, _ in lookup(store, order_ids=["o" * 64, "x" * 64])} == {"c-1", "c-2"}
        assert len(statements) == 2, statements
        assert all(s.lstrip().upper().startswith("SELECT") for s in statements)
        for count in (1, 2):
            sql, names, _, _ = _sqlite_shown_at_select(store.engine.dialect, count)
            with store.engine.connect() as connection:
                plan = connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + sql, tuple("x" for _ in names)
                ).all()
            detail = " ".join(str(row[-1]) for row in plan)
            assert "USING INDEX ix_issued_cards_lookup" in detail, detail
            assert "service_id=? AND order_id=? AND patient_hash=? AND user_hash=?" in detail
    finally:
        store.dispose()
