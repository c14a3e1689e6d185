"""What the committee dashboard (issue 16) reads, and an index so it reads it fast.

* ``issued_cards.profile``: the EHR profile (standard / epic) a card was shaped for, a
  breakdown the committee asks for. Cards issued before this revision have none.
* ``ix_issued_cards_dashboard``: issued time first, then every column the dashboard groups
  by, so a window of cards is counted from the index alone (the benchmark: one million cards
  in well under the 2 s budget on SQLite).
* ``issued_suggestions`` and ``accepted_suggestions``: which suggestion (kind of change and
  drug) each suggestion uuid offered, and the accepted uuids of each feedback item as rows,
  so "which suggestion was taken" is a join on both databases. Existing feedback's accepted
  uuids are copied over; suggestions of cards issued before this revision are not known.
* ``suppressed_cards``: cards repeat suppression kept back, with the override that did it.
* ``hook_call_counts``: hook calls per day, service, client and profile (the alert burden's
  denominators); counters, since order-sign fires for every order a hospital signs.

Numbered 0005 and revising 0003: another branch adds a 0004; whoever merges both re-points
this revision's ``down_revision`` at it, so the chain stays a line.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.add_column(sa.Column("profile", sa.String(16), nullable=True))
    op.create_index(
        "ix_issued_cards_dashboard",
        "issued_cards",
        ["issued_at", "topic_code", "service_id", "indicator", "profile", "client_iss"],
    )
    op.create_table(
        "issued_suggestions",
        sa.Column("suggestion_uuid", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("drug", sa.String(64), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("suggestion_uuid", name="pk_issued_suggestions"),
    )
    op.create_index(
        "ix_issued_suggestions_card_uuid", "issued_suggestions", ["card_uuid"]
    )
    op.create_table(
        "accepted_suggestions",
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("suggestion_uuid", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(
            ["feedback_id"],
            ["feedback.id"],
            name="fk_accepted_suggestions_feedback_id_feedback",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("feedback_id", "suggestion_uuid", name="pk_accepted_suggestions"),
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
    op.create_index(
        "ix_suppressed_cards_suppressed_at", "suppressed_cards", ["suppressed_at"]
    )
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
            "day", "service_id", "profile", "client_iss", "client_tenant",
            name="pk_hook_call_counts",
        ),
    )
    _copy_accepted_suggestions()


def _copy_accepted_suggestions() -> None:
    connection = op.get_bind()
    feedback = sa.table(
        "feedback", sa.column("id", sa.Integer), sa.column("accepted_suggestions", sa.JSON)
    )
    accepted = sa.table(
        "accepted_suggestions",
        sa.column("feedback_id", sa.Integer),
        sa.column("suggestion_uuid", sa.String),
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(feedback.c.id, feedback.c.accepted_suggestions)
            .where(feedback.c.id > last)
            .order_by(feedback.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        out = []
        for feedback_id, uuids in rows:
            if isinstance(uuids, str):  # a driver that hands JSON back as text
                uuids = json.loads(uuids)
            for value in dict.fromkeys(u for u in uuids or [] if isinstance(u, str) and u):
                out.append({"feedback_id": feedback_id, "suggestion_uuid": value[:128]})
        if out:
            connection.execute(accepted.insert(), out)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_table("hook_call_counts")
    op.drop_index("ix_suppressed_cards_suppressed_at", table_name="suppressed_cards")
    op.drop_table("suppressed_cards")
    op.drop_table("accepted_suggestions")
    op.drop_index("ix_issued_suggestions_card_uuid", table_name="issued_suggestions")
    op.drop_table("issued_suggestions")
    op.drop_index("ix_issued_cards_dashboard", table_name="issued_cards")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("profile")
