"""Fire once (F.2a) and the Epic switch check: what order-select showed, and what was withheld.

* ``issued_cards.content_hash``: keyed hash (HMAC, the patient-hash key, kind ``card``) of the
  card as the clinician read it, uuids left out. Order-sign withholds a non-critical card whose
  hash matches a card shown at order-select for the same draft, user, patient and client.
* ``issued_cards.order_fingerprint``: keyed hash of the pended diazepam order's clinically
  relevant content (drug, dose, route, timing, supply, quantity, refills, reason) when the card
  was issued; a different fingerprint at order-sign means the order changed, and every card is
  shown again. NULL when the card names no single addressable draft: such a card always repeats.
* ``issued_cards.profile``: the EHR profile (``standard``, ``epic``) the card was shaped for.
* ``issued_cards.suggestion_roles``: suggestion uuid -> role (``remove``, ``add-alternative``,
  ``replace``, ``update``, ``create``), so the report can find an Epic alternative accepted
  without the removal of the pended diazepam order.
* ``withheld_cards``: cards the service computed at order-sign but did not send (fire once, or
  repeat suppression after an override), with the reason and the order-select card they
  repeat, so ``diazepam-cds report`` can count them and an audit can show the clinician saw the
  advice. Kept apart from ``issued_cards``, which stays "cards the EHR received".

Rows issued before this revision have no hashes: nothing issued before it is ever withheld.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("order_fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("profile", sa.String(16), nullable=True))
        batch.add_column(sa.Column("suggestion_roles", sa.JSON(), nullable=True))
    op.create_table(
        "withheld_cards",
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("repeat_of", sa.String(128), nullable=True),
        sa.Column("topic_code", sa.String(128), nullable=True),
        sa.Column("indicator", sa.String(16), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(256), nullable=True),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("user_hash", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(16), nullable=True),
        sa.Column("withheld_at", sa.DateTime(), nullable=False),
        sa.Column("client_iss", sa.String(512), nullable=True),
        sa.Column("client_tenant", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("card_uuid", name="pk_withheld_cards"),
    )
    op.create_index(
        "ix_withheld_cards_withheld_at", "withheld_cards", ["withheld_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_withheld_cards_withheld_at", table_name="withheld_cards")
    op.drop_table("withheld_cards")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("suggestion_roles")
        batch.drop_column("profile")
        batch.drop_column("order_fingerprint")
        batch.drop_column("content_hash")
