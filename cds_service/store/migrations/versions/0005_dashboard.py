"""What the committee dashboard (issue 16) reads, laid out so it reads it fast.

* ``issued_cards.accepted``, ``overridden``, ``override_code``: what the card's client's
  feedback did with it, kept on the card (set in the feedback's own transaction).
* ``card_counts``: cards per UTC day of issue, topic, service, indicator, profile and client,
  with how many were accepted, overridden and answered, kept up to date in the transactions
  that store cards and feedback. The dashboard reads these rows instead of scanning every card
  ever issued (a million cards on SQLite: the whole page took 30 s grouping the cards
  themselves, 1.4 s with this table; bench/dashboard.py). Existing cards and feedback are
  carried over.
* ``ix_issued_cards_overrides``: override reasons per topic over overridden cards only.
* ``issued_suggestions`` (what each suggestion uuid offered: kind of change, drug) and
  ``accepted_suggestions`` (per card, the suggestions accepted, with what they offered and the
  card's topic and issue time): "which suggestion was taken" is one GROUP BY. Feedback stored
  before this revision is carried over with the kind unknown.
* ``suppressed_cards``: cards repeat suppression kept back, with the override that did it.
* ``hook_call_counts``: hook calls per day, service, client and profile (the alert burden's
  denominators); counters, since order-sign fires for every order a hospital signs.

Follows 0004 (fire once), which added ``issued_cards.profile``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.add_column(
            sa.Column("accepted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("overridden", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("override_code", sa.String(256), nullable=True))
    op.create_table(
        "issued_suggestions",
        sa.Column("suggestion_uuid", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("drug", sa.String(64), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("suggestion_uuid", name="pk_issued_suggestions"),
    )
    op.create_index("ix_issued_suggestions_card_uuid", "issued_suggestions", ["card_uuid"])
    op.create_table(
        "accepted_suggestions",
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("suggestion_uuid", sa.String(128), nullable=False),
        sa.Column("topic_code", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("drug", sa.String(64), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", "suggestion_uuid", name="pk_accepted_suggestions"),
    )
    op.create_index(
        "ix_accepted_suggestions_taken",
        "accepted_suggestions",
        ["topic_code", "kind", "drug", "code", "issued_at"],
    )
    op.create_table(
        "suppressed_cards",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suppressed_at", sa.DateTime(), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("topic_code", sa.String(128), nullable=True),
        sa.Column("indicator", sa.String(16), nullable=True),
        sa.Column("profile", sa.String(16), nullable=True),
        sa.Column("override_code", sa.String(256), nullable=True),
        sa.Column("override_system", sa.String(512), nullable=True),
        sa.Column("client_iss", sa.String(512), nullable=True),
        sa.Column("client_tenant", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_suppressed_cards"),
    )
    op.create_index("ix_suppressed_cards_suppressed_at", "suppressed_cards", ["suppressed_at"])
    op.create_table(
        "hook_call_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(16), nullable=False),
        sa.Column("client_iss", sa.String(512), nullable=False),
        sa.Column("client_tenant", sa.String(256), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("calls_with_orders", sa.Integer(), nullable=False),
        sa.Column("diazepam_orders", sa.Integer(), nullable=False),
        sa.Column("cards", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "service_id",
            "profile",
            "client_iss",
            "client_tenant",
            name="pk_hook_call_counts",
        ),
    )
    op.create_table(
        "card_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("topic_code", sa.String(128), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("profile", sa.String(16), nullable=False),
        sa.Column("client_iss", sa.String(512), nullable=False),
        sa.Column("issued", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("overridden", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "topic_code",
            "service_id",
            "indicator",
            "profile",
            "client_iss",
            name="pk_card_counts",
        ),
    )
    _carry_over()
    op.create_index(
        "ix_issued_cards_overrides",
        "issued_cards",
        ["overridden", "topic_code", "override_code", "issued_at"],
    )


def _carry_over() -> None:
    """Weeks and outcomes of the cards already stored, and their accepted suggestions."""
    connection = op.get_bind()
    cards = sa.table(
        "issued_cards",
        sa.column("card_uuid", sa.String),
        sa.column("topic_code", sa.String),
        sa.column("issued_at", sa.DateTime),
        sa.column("accepted", sa.Boolean),
        sa.column("overridden", sa.Boolean),
        sa.column("override_code", sa.String),
    )
    feedback = sa.table(
        "feedback",
        sa.column("id", sa.Integer),
        sa.column("card_uuid", sa.String),
        sa.column("card_known", sa.Boolean),
        sa.column("outcome", sa.String),
        sa.column("override_code", sa.String),
        sa.column("received_at", sa.DateTime),
        sa.column("accepted_suggestions", sa.JSON),
    )
    accepted = sa.table(
        "accepted_suggestions",
        sa.column("card_uuid", sa.String),
        sa.column("suggestion_uuid", sa.String),
        sa.column("topic_code", sa.String),
        sa.column("issued_at", sa.DateTime),
    )
    for outcome, column in (("accepted", cards.c.accepted), ("overridden", cards.c.overridden)):
        answered = sa.select(feedback.c.card_uuid).where(
            feedback.c.card_known.is_(True), feedback.c.outcome == outcome
        )
        connection.execute(
            cards.update().where(cards.c.card_uuid.in_(answered)).values({column.name: True})
        )
    latest = (
        sa.select(feedback.c.override_code)
        .where(
            feedback.c.card_uuid == cards.c.card_uuid,
            feedback.c.card_known.is_(True),
            feedback.c.outcome == "overridden",
        )
        .order_by(feedback.c.received_at.desc(), feedback.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    connection.execute(
        cards.update().where(cards.c.overridden.is_(True)).values(override_code=latest)
    )
    _count_cards(connection)
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(
                feedback.c.id,
                feedback.c.card_uuid,
                feedback.c.accepted_suggestions,
                cards.c.topic_code,
                cards.c.issued_at,
            )
            .join(cards, cards.c.card_uuid == feedback.c.card_uuid)
            .where(
                feedback.c.id > last_id,
                feedback.c.card_known.is_(True),
                feedback.c.outcome == "accepted",
            )
            .order_by(feedback.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        seen: set[tuple[str, str]] = set()
        out = []
        for _, card_uuid, uuids, topic, issued_at in rows:
            if isinstance(uuids, str):  # a driver that hands JSON back as text
                uuids = json.loads(uuids)
            for value in uuids or []:
                key = (card_uuid, str(value)[:128])
                if isinstance(value, str) and value and key not in seen:
                    seen.add(key)
                    out.append(
                        {
                            "card_uuid": key[0],
                            "suggestion_uuid": key[1],
                            "topic_code": topic,
                            "issued_at": issued_at,
                        }
                    )
        existing = set()
        if out:
            existing = {
                tuple(r)
                for r in connection.execute(
                    sa.select(accepted.c.card_uuid, accepted.c.suggestion_uuid).where(
                        accepted.c.card_uuid.in_({o["card_uuid"] for o in out})
                    )
                ).all()
            }
        fresh = [o for o in out if (o["card_uuid"], o["suggestion_uuid"]) not in existing]
        if fresh:
            connection.execute(accepted.insert(), fresh)
        last_id = rows[-1][0]


def _count_cards(connection: sa.Connection) -> None:
    """``card_counts`` for the cards already stored, from their flags (set just before)."""
    cards = sa.table(
        "issued_cards",
        *(
            sa.column(n)
            for n in (
                "card_uuid",
                "topic_code",
                "service_id",
                "indicator",
                "profile",
                "client_iss",
                "accepted",
                "overridden",
            )
        ),
        sa.column("issued_at", sa.DateTime),
    )
    counts: dict[tuple[Any, ...], list[int]] = {}
    last = ""
    while True:
        rows = connection.execute(
            sa.select(cards)
            .where(cards.c.card_uuid > last)
            .order_by(cards.c.card_uuid)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            issued_at = row.issued_at
            if not isinstance(issued_at, datetime):
                issued_at = datetime.fromisoformat(str(issued_at))
            key = (
                issued_at.date(),
                row.topic_code or "",
                row.service_id or "",
                row.indicator or "",
                row.profile or "",
                row.client_iss or "",
            )
            total = counts.setdefault(key, [0, 0, 0, 0])
            total[0] += 1
            total[1] += bool(row.accepted)
            total[2] += bool(row.overridden)
            total[3] += bool(row.accepted or row.overridden)
        last = rows[-1].card_uuid
    names = ("day", "topic_code", "service_id", "indicator", "profile", "client_iss")
    out = [
        {
            **dict(zip(names, key, strict=True)),
            "issued": t[0],
            "accepted": t[1],
            "overridden": t[2],
            "answered": t[3],
        }
        for key, t in counts.items()
    ]
    table = sa.table(
        "card_counts",
        *(sa.column(n) for n in (*names, "issued", "accepted", "overridden", "answered")),
    )
    for start in range(0, len(out), _BATCH):
        connection.execute(table.insert(), out[start : start + _BATCH])


def downgrade() -> None:
    op.drop_table("card_counts")
    op.drop_table("hook_call_counts")
    op.drop_index("ix_suppressed_cards_suppressed_at", table_name="suppressed_cards")
    op.drop_table("suppressed_cards")
    op.drop_index("ix_accepted_suggestions_taken", table_name="accepted_suggestions")
    op.drop_table("accepted_suggestions")
    op.drop_index("ix_issued_suggestions_card_uuid", table_name="issued_suggestions")
    op.drop_table("issued_suggestions")
    op.drop_index("ix_issued_cards_overrides", table_name="issued_cards")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("override_code")
        batch.drop_column("overridden")
        batch.drop_column("accepted")
