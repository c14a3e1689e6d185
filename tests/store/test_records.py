"""Issued cards, feedback rows and suppression queries, on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cds_service.store import Store
from cds_service.store.tables import feedback, issued_cards, utcnow


def card_row(uuid: str, topic: str = "beers-age", **overrides: Any) -> dict[str, Any]:
    row = {
        "card_uuid": uuid,
        "service_id": "diazepam-order-select",
        "hook_instance": "hi-1",
        "topic_code": topic,
        "indicator": "warning",
        "suggestion_uuids": ["s-1"],
        "audit": {"order_id": "MedicationRequest/rx-1", "age": 78},
        "order_id": "MedicationRequest/rx-1",
        "patient_hash": "p" * 64,
        "user_hash": "u" * 64,
        "issued_at": utcnow(),
    }
    return {**row, **overrides}


def fb_row(card: str, outcome: str = "overridden", n: int = 0, **overrides: Any) -> dict[str, Any]:
    row = {
        "item_hash": f"{card}-{outcome}-{n}".ljust(64, "0")[:64],
        "card_uuid": card,
        "outcome": outcome,
        "accepted_suggestions": [],
        "override_code": "patient-preference" if outcome == "overridden" else None,
        "override_system": None,
        "override_display": None,
        "user_comment": None,
        "outcome_at": utcnow(),
        "client_iss": None,
    }
    return {**row, **overrides}


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def test_cards_recorded_once_per_uuid(store: Store) -> None:
    assert store.record_cards([card_row("c-1"), card_row("c-2")]) == 2
    assert store.record_cards([card_row("c-1", topic="other")]) == 0
    with store.engine.connect() as connection:
        topic = connection.execute(
            sa.select(issued_cards.c.topic_code).where(issued_cards.c.card_uuid == "c-1")
        ).scalar()
        audit = connection.execute(
            sa.select(issued_cards.c.audit).where(issued_cards.c.card_uuid == "c-1")
        ).scalar()
    assert topic == "beers-age"  # first record kept
    assert audit == {"order_id": "MedicationRequest/rx-1", "age": 78}


def test_feedback_counts_duplicates_and_unknown_cards(store: Store) -> None:
    store.record_cards([card_row("c-1")])
    first = store.save_feedback("diazepam-order-select", [fb_row("c-1"), fb_row("ghost")])
    assert (first.stored, first.duplicates, first.unknown_cards) == (2, 0, 1)
    again = store.save_feedback("diazepam-order-select", [fb_row("c-1"), fb_row("ghost")])
    assert (again.stored, again.duplicates, again.unknown_cards) == (0, 2, 0)
    with store.engine.connect() as connection:
        stored = dict(
            connection.execute(sa.select(feedback.c.card_uuid, feedback.c.card_known)).all()
        )
    assert stored == {"c-1": True, "ghost": False}


def test_a_failing_item_stores_nothing_of_its_call(store: Store) -> None:
    good, bad = fb_row("c-1"), fb_row("c-2", outcome_at=None)  # NOT NULL violation
    with pytest.raises(IntegrityError):
        store.save_feedback("diazepam-order-select", [good, bad])
    assert count(store, feedback) == 0
    assert store.save_feedback("diazepam-order-select", [good]).stored == 1


def test_concurrent_identical_feedback_stored_exactly_once(
    store: Store, second_store: Store
) -> None:
    items = [fb_row("c-race", n=i) for i in range(5)]
    stores = [store, second_store] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda s: s.save_feedback("svc", items), stores))
    assert sum(o.stored for o in outcomes) == 5
    assert sum(o.duplicates for o in outcomes) == 5 * 7
    assert count(store, feedback) == 5


def test_overridden_topics_respects_filters_and_window(store: Store) -> None:
    store.record_cards(
        [
            card_row("c-1", "beers-age"),
            card_row("c-2", "duration-limit"),
            card_row("c-3", "fall-risk", user_hash="x" * 64),
        ]
    )
    store.save_feedback(
        "diazepam-order-select",
        [fb_row("c-1"), fb_row("c-2", "accepted"), fb_row("c-3")],
    )
    query = {
        "service_id": "diazepam-order-select",
        "order_ids": ["MedicationRequest/rx-1"],
        "user_hash": "u" * 64,
        "patient_hash": "p" * 64,
    }
    recent = datetime.now(UTC) - timedelta(minutes=5)
    assert store.overridden_topics(**query, since=recent) == {
        ("MedicationRequest/rx-1", "beers-age")
    }
    assert store.overridden_topics(**query, since=datetime.now(UTC) + timedelta(seconds=5)) == set()
    assert (
        store.overridden_topics(**{**query, "order_ids": ["MedicationRequest/rx-9"]}, since=recent)
        == set()
    )
    assert store.overridden_topics(**{**query, "patient_hash": "q" * 64}, since=recent) == set()
    assert store.overridden_topics(**{**query, "order_ids": []}, since=recent) == set()


def test_state_value_agrees_under_a_race(store: Store, second_store: Store) -> None:
    made = iter(range(1000))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda s: s.state_value("k", lambda: f"value-{next(made)}"),
                [store, second_store] * 4,
            )
        )
    assert len({value for value, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_repeat_suppression_lookup_stays_an_index_search_on_sqlite(tmp_path) -> None:
    """Draft order ids repeat (the sandbox's ``MedicationRequest/1``), so the look-up must not
    be served by the order_id index alone: that scanned every card ever issued for the id."""
    sqlite_store = Store(f"sqlite:///{tmp_path / 'plan.db'}")
    sqlite_store.upgrade()
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM issued_cards JOIN feedback" in statement:
            seen.append((statement, parameters))

    sa.event.listen(sqlite_store.engine, "before_cursor_execute", capture)
    try:
        found = sqlite_store.overridden_topics(
            service_id="diazepam-order-select",
            order_ids=["MedicationRequest/1", "MedicationRequest/2"],
            user_hash="u" * 64,
            patient_hash="p" * 64,
            since=datetime.now(UTC) - timedelta(hours=1),
        )
        assert found == set() and len(seen) == 1
        statement, parameters = seen[0]
        with sqlite_store.engine.connect() as connection:
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", parameters
            ).fetchall()
        details = " | ".join(str(row[-1]) for row in plan)
        assert "issued_cards USING INDEX ix_issued_cards_lookup" in details, details
    finally:
        sqlite_store.dispose()
