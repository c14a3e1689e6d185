"""Migration 0005 (issue 16) carries existing cards and feedback into what the dashboard
reads, on SQLite and PostgreSQL: outcome flags and the latest override reason on each card,
day counts in ``card_counts``, accepted suggestions (kind unknown: never recorded)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa

from cds_service.store import migrate
from cds_service.store.engine import create_store_engine

WHEN = datetime(2026, 3, 2, 9, 0)
CARDS = sa.table(
    "issued_cards",
    *(
        sa.column(n)
        for n in (
            "card_uuid",
            "service_id",
            "hook_instance",
            "topic_code",
            "indicator",
            "order_id",
            "patient_hash",
            "user_hash",
            "client_iss",
            "client_tenant",
        )
    ),
    sa.column("suggestion_uuids", sa.JSON),
    sa.column("audit", sa.JSON),
    sa.column("issued_at", sa.DateTime),
)
FEEDBACK = sa.table(
    "feedback",
    *(
        sa.column(n)
        for n in (
            "item_hash",
            "service_id",
            "card_uuid",
            "card_known",
            "topic_code",
            "outcome",
            "override_code",
            "client_iss",
            "client_tenant",
        )
    ),
    sa.column("accepted_suggestions", sa.JSON),
    sa.column("outcome_at", sa.DateTime),
    sa.column("received_at", sa.DateTime),
)


def _card(uuid: str, topic: str, when: datetime) -> dict:
    return {
        "card_uuid": uuid,
        "service_id": "diazepam-order-sign",
        "hook_instance": "h",
        "topic_code": topic,
        "indicator": "warning",
        "order_id": None,
        "patient_hash": "p",
        "user_hash": "u",
        "client_iss": "https://ehr.example.org",
        "client_tenant": None,
        "suggestion_uuids": ["s1"],
        "audit": {},
        "issued_at": when,
    }


def _item(n: int, card: str, outcome: str, code: str | None, when: datetime) -> dict:
    return {
        "item_hash": f"h{n}",
        "service_id": "diazepam-order-sign",
        "card_uuid": card,
        "card_known": True,
        "topic_code": "t",
        "outcome": outcome,
        "override_code": code,
        "client_iss": "https://ehr.example.org",
        "client_tenant": None,
        "accepted_suggestions": ["s1"] if outcome == "accepted" else [],
        "outcome_at": when,
        "received_at": when,
    }


def test_0005_carries_cards_and_feedback_over(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        migrate.upgrade(engine, "0003")
        with engine.begin() as c:
            c.execute(
                CARDS.insert(),
                [
                    _card("a", "beers", WHEN),
                    _card("b", "beers", WHEN),
                    _card("c", "duration", WHEN + timedelta(days=1)),
                ],
            )
            c.execute(
                FEEDBACK.insert(),
                [
                    _item(1, "a", "accepted", None, WHEN),
                    _item(2, "b", "overridden", "first-reason", WHEN),
                    _item(3, "b", "overridden", "latest-reason", WHEN + timedelta(minutes=1)),
                ],
            )
        migrate.upgrade(engine)
        with engine.connect() as c:
            flags = {
                r[0]: r[1:]
                for r in c.execute(
                    sa.text(
                        "SELECT card_uuid, accepted, overridden, override_code FROM issued_cards"
                    )
                )
            }
            counts = sorted(
                tuple(r)
                for r in c.execute(
                    sa.text(
                        "SELECT day, topic_code, profile, issued, accepted, overridden, answered "
                        "FROM card_counts"
                    )
                )
            )
            taken = c.execute(
                sa.text(
                    "SELECT card_uuid, suggestion_uuid, topic_code, kind FROM accepted_suggestions"
                )
            ).all()
        assert {k: (bool(a), bool(o), code) for k, (a, o, code) in flags.items()} == {
            "a": (True, False, None),
            "b": (False, True, "latest-reason"),
            "c": (False, False, None),
        }
        day = lambda d: d if isinstance(d, date) else date.fromisoformat(str(d))  # noqa: E731
        assert [(day(r[0]), *r[1:]) for r in counts] == [
            (date(2026, 3, 2), "beers", "", 2, 1, 1, 2),
            (date(2026, 3, 3), "duration", "", 1, 0, 0, 0),
        ]
        assert [tuple(r) for r in taken] == [("a", "s1", "beers", None)]
        migrate.downgrade(engine, "0003")  # and back: the 0003 schema again
        with engine.connect() as c:
            assert "card_counts" not in sa.inspect(c).get_table_names()
    finally:
        engine.dispose()
