"""Index for repeat suppression: issued cards by (service, order, patient, user).

The look-up used the single-column ``order_id`` index, and draft order ids repeat (EHRs and
the sandbox reuse ids like ``MedicationRequest/1``; the benchmark signs one order over and
over), so every order-sign scanned all cards ever issued for that id: 11 ms at 50 000 rows
and growing. The composite index answers in a few index steps whatever the table holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_issued_cards_lookup",
        "issued_cards",
        ["service_id", "order_id", "patient_hash", "user_hash"],
    )


def downgrade() -> None:
    op.drop_index("ix_issued_cards_lookup", table_name="issued_cards")
