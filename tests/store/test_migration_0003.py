"""Issue 17 items 1 and 9: migration 0003 upgrades existing data on SQLite and PostgreSQL:
client columns added, raw draft order ids re-keyed as keyed hashes (or removed when no key
exists), stored comments cleared unless the operator keeps them."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from cds_service.store import migrate
from cds_service.store.engine import create_store_engine
from cds_service.store.tables import feedback, issued_cards

RAW = "MedicationRequest/raw-77"
COMMENT = "Mrs Zelda Quux asked for it"
WHEN = datetime(2026, 1, 1)


def _old_rows(engine: sa.Engine, *, stored_key: str | None = None) -> None:
    """Rows as revision 0002 wrote them: a raw order id (column and audit), a comment."""
    with engine.begin() as connection:
        connection.execute(
            issued_cards.insert().values(
                card_uuid="c1",
                service_id="diazepam-order-select",
                hook_instance="h",
                topic_code="beers-age",
                indicator="info",
                suggestion_uuids=[],
                audit={"order_id": RAW, "order_ids": [RAW], "age": 80},
                order_id=RAW,
                patient_hash="p",
                user_hash="u",
                issued_at=WHEN,
            )
        )
        connection.execute(
            feedback.insert().values(
                item_hash="x",
                service_id="diazepam-order-select",
                card_uuid="c1",
                card_known=True,
                topic_code="beers-age",
                outcome="overridden",
                accepted_suggestions=[],
                user_comment=COMMENT,
                outcome_at=WHEN,
                received_at=WHEN,
            )
        )
        if stored_key:
            connection.execute(
                sa.text(
                    "INSERT INTO service_state (name, value, created_at) "
                    "VALUES ('patient_hash_key', :k, :t)"
                ),
                {"k": stored_key, "t": WHEN},
            )


def _digest(key: str) -> str:
    return hmac.new(key.encode(), f"order\x00{RAW}".encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("configured", "stored", "store_comments", "key_used"),
    [
        ("configured-key", None, False, "configured-key"),
        ("configured-key", "generated-key", False, "configured-key"),
        ("", "generated-key", True, "generated-key"),
        ("", None, False, None),
    ],
    ids=["configured", "configured-wins", "generated-keep-comments", "no-key"],
)
def test_0003_rekeys_order_ids_and_clears_comments(
    db_url: str, configured: str, stored: str | None, store_comments: bool, key_used: str | None
) -> None:
    engine = create_store_engine(db_url)
    try:
        migrate.upgrade(engine, "0002")
        _old_rows(engine, stored_key=stored)
        options = {"patient_hash_key": configured, "store_comments": store_comments}
        assert migrate.upgrade(engine, options=options) == ("0002", migrate.head_revision())
        with engine.connect() as connection:
            card = connection.execute(sa.select(issued_cards)).one()._mapping
            comment = connection.execute(sa.select(feedback.c.user_comment)).scalar_one()
            tenant = connection.execute(sa.select(feedback.c.client_tenant)).scalar_one()
        audit = card["audit"] if isinstance(card["audit"], dict) else json.loads(card["audit"])
        if key_used:
            digest = _digest(key_used)
            assert card["order_id"] == digest
            assert audit == {"order_id": digest, "order_ids": [digest], "age": 80}
        else:  # no key anywhere: nothing to hash with, so the raw ids are dropped
            assert card["order_id"] is None and audit == {"age": 80}
        assert card["client_iss"] is None and card["client_tenant"] is None and tenant is None
        assert comment == (COMMENT if store_comments else None)
        # and back down: the columns go (hashes cannot become ids again)
        migrate.downgrade(engine, "0002")
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("issued_cards")}
        assert "client_iss" not in columns and "order_id" in columns
    finally:
        engine.dispose()
