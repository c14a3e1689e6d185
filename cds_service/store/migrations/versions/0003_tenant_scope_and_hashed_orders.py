"""Tenant scope and no raw order ids or comments by default.

* ``issued_cards.client_iss`` / ``client_tenant`` and ``feedback.client_tenant``: every issued
  card and feedback item records the verified JWT issuer and tenant, so feedback, repeat
  suppression and reports stay within the client that saw the card. Cards issued before this
  revision have no issuer: feedback from an authenticated client cannot link to them.
* ``issued_cards.order_id`` and the ``order_id``/``order_ids`` of the audit JSON held the
  EHR's raw draft order ids; they become keyed hashes (HMAC-SHA256, the patient-hash key, kind
  ``order``), computed here with the key the service uses: ``CDS_PATIENT_HASH_KEY`` handed in
  by the caller, else the generated key kept in ``service_state``. With no key at all (nothing
  could ever have been hashed with it) the raw ids are removed instead.
* ``feedback.user_comment`` (free text, can contain PHI) is cleared unless the caller says
  ``CDS_STORE_COMMENTS=true``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BATCH = 1000


def _hash_key(connection: sa.Connection) -> bytes | None:
    key = context.config.attributes.get("patient_hash_key")
    if key:
        return str(key).encode()
    row = connection.execute(
        sa.text("SELECT value FROM service_state WHERE name = 'patient_hash_key'")
    ).first()
    return str(row[0]).encode() if row else None


def _order_hash(key: bytes, order_id: str) -> str:
    message = f"order\x00{order_id}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _rekey_audit(audit: Any, key: bytes | None) -> Any:
    if not isinstance(audit, dict):
        return audit
    out = dict(audit)
    if isinstance(out.get("order_id"), str):
        if key is None:
            out.pop("order_id")
        else:
            out["order_id"] = _order_hash(key, out["order_id"])
    if isinstance(out.get("order_ids"), list):
        if key is None:
            out.pop("order_ids")
        else:
            out["order_ids"] = [
                _order_hash(key, v) if isinstance(v, str) else v for v in out["order_ids"]
            ]
    return out


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.add_column(sa.Column("client_iss", sa.String(512), nullable=True))
        batch.add_column(sa.Column("client_tenant", sa.String(256), nullable=True))
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("client_tenant", sa.String(256), nullable=True))

    connection = op.get_bind()
    key = _hash_key(connection)
    cards = sa.table(
        "issued_cards",
        sa.column("card_uuid", sa.String),
        sa.column("order_id", sa.String),
        sa.column("audit", sa.JSON),
    )
    last = ""
    while True:
        rows = connection.execute(
            sa.select(cards.c.card_uuid, cards.c.order_id, cards.c.audit)
            .where(cards.c.card_uuid > last)
            .order_by(cards.c.card_uuid)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for card_uuid, order_id, audit in rows:
            if isinstance(audit, str):  # a driver that hands JSON back as text
                audit = json.loads(audit)
            new_order = None if order_id is None or key is None else _order_hash(key, order_id)
            connection.execute(
                cards.update()
                .where(cards.c.card_uuid == card_uuid)
                .values(order_id=new_order, audit=_rekey_audit(audit, key))
            )
        last = rows[-1][0]

    if not context.config.attributes.get("store_comments"):
        connection.execute(sa.text("UPDATE feedback SET user_comment = NULL"))


def downgrade() -> None:
    # Hashes cannot be turned back into order ids; the columns go, the hashes stay.
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("client_tenant")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("client_tenant")
        batch.drop_column("client_iss")
