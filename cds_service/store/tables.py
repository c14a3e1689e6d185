"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` create these;
``metadata`` is their target, so ``alembic check`` can tell when the two drift apart.

Times are naive UTC everywhere (``utcnow()``), which both SQLite and PostgreSQL store and
compare the same way. No column holds raw patient data: patients, users and the EHR's draft
order ids appear only as keyed hashes (HMAC-SHA256), card audit data is codes and numbers,
and clinicians' free-text override comments are kept only with ``CDS_STORE_COMMENTS=true``.
Every issued card and feedback item carries the verified client (JWT ``iss`` and ``tenant``):
feedback, repeat suppression and reports never cross from one client to another.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def as_naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


# JWT ids already used, per issuer (CDS Hooks §7: a jti must not be replayed). The key is a
# SHA-256 of issuer and jti, so arbitrary-length client strings never reach an index.
jwt_replay = sa.Table(
    "jwt_replay",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("issuer", sa.String(512), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("claimed_at", sa.DateTime(), nullable=False),
)

# Service-wide values that must agree across workers and hosts (e.g. a generated hash key).
service_state = sa.Table(
    "service_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

issued_cards = sa.Table(
    "issued_cards",
    metadata,
    sa.Column("card_uuid", sa.String(128), primary_key=True),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("hook_instance", sa.String(128), nullable=False),
    sa.Column("topic_code", sa.String(128), nullable=True, index=True),
    sa.Column("indicator", sa.String(16), nullable=True),
    sa.Column("suggestion_uuids", sa.JSON(), nullable=False),
    sa.Column("audit", sa.JSON(), nullable=False),
    # keyed hash of the draft order id (migration 0003; raw ids before it)
    sa.Column("order_id", sa.String(256), nullable=True, index=True),
    sa.Column("patient_hash", sa.String(64), nullable=False),
    sa.Column("user_hash", sa.String(64), nullable=False),
    sa.Column("issued_at", sa.DateTime(), nullable=False, index=True),
    # the verified client the card was issued to (migration 0003); NULL with CDS_AUTH=disabled
    sa.Column("client_iss", sa.String(512), nullable=True),
    sa.Column("client_tenant", sa.String(256), nullable=True),
    # fire once (migration 0004): keyed hashes of the card as read (uuids left out) and of the
    # pended order's clinical content when the card was issued; NULL: never matched (every
    # card but order-select's in time: fire once compares only with those)
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("order_fingerprint", sa.String(64), nullable=True),
    # the EHR profile the card was shaped for, and suggestion uuid -> role (remove,
    # add-alternative, replace, update, create) for the Epic switch check of the report
    sa.Column("profile", sa.String(16), nullable=True),
    sa.Column("suggestion_roles", sa.JSON(), nullable=True),
    # what its client's feedback did with the card (migration 0005; set by the feedback
    # store): accepted, overridden, and the reason code of the latest override
    sa.Column("accepted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("overridden", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("override_code", sa.String(256), nullable=True),
    # repeat suppression's look-up (migration 0002): order ids alone repeat across patients
    sa.Index("ix_issued_cards_lookup", "service_id", "order_id", "patient_hash", "user_hash"),
    # override reasons per topic, over overridden cards only (migration 0005)
    sa.Index("ix_issued_cards_overrides", "overridden", "topic_code", "override_code", "issued_at"),
)


feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    # SHA-256 of the service id and the canonical JSON of the item: a repeated identical
    # item (client retry) is a no-op, enforced by the database, not by a prior read.
    sa.Column("item_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("card_uuid", sa.String(128), nullable=False, index=True),
    sa.Column("card_known", sa.Boolean(), nullable=False),
    sa.Column("topic_code", sa.String(128), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
    sa.Column("override_code", sa.String(256), nullable=True),
    sa.Column("override_system", sa.String(512), nullable=True),
    sa.Column("override_display", sa.String(512), nullable=True),
    sa.Column("user_comment", sa.Text(), nullable=True),
    sa.Column("outcome_at", sa.DateTime(), nullable=False),
    sa.Column("received_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("client_iss", sa.String(512), nullable=True),
    sa.Column("client_tenant", sa.String(256), nullable=True),
)

# Cards computed at order-sign but not sent (migration 0004): ``reason`` ``fire-once`` (shown
# at order-select, same draft, user, content and order; F.2a) or ``overridden`` (repeat
# suppression after an override, CDS_SUPPRESS_REPEATS); ``repeat_of`` is the order-select card
# the clinician saw. Apart from ``issued_cards``, which holds only cards the EHR received.
withheld_cards = sa.Table(
    "withheld_cards",
    metadata,
    sa.Column("card_uuid", sa.String(128), primary_key=True),
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
    sa.Column("withheld_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("client_iss", sa.String(512), nullable=True),
    sa.Column("client_tenant", sa.String(256), nullable=True),
)


# What each suggestion of an issued card offered (migration 0005): the kind of change
# (replace, update, delete, create, remove) and the drug it orders, as the engine named it
# (RxNorm ingredient name and product code). Codes only: what the dashboard's "which
# suggestion was taken" needs to name an accepted suggestion uuid.
issued_suggestions = sa.Table(
    "issued_suggestions",
    metadata,
    sa.Column("suggestion_uuid", sa.String(128), primary_key=True),
    sa.Column("card_uuid", sa.String(128), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("drug", sa.String(64), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
)

# Suggestions clinicians accepted, one row per card and suggestion (migration 0005), with what
# the suggestion offered and the card's topic and issue time copied in when the feedback is
# stored: "which suggestion was taken" is one GROUP BY over this table. Kind, drug and code
# are NULL for a suggestion the store has no record of (cards issued before 0005).
accepted_suggestions = sa.Table(
    "accepted_suggestions",
    metadata,
    sa.Column("card_uuid", sa.String(128), primary_key=True),
    sa.Column("suggestion_uuid", sa.String(128), primary_key=True),
    sa.Column("topic_code", sa.String(128), nullable=True),
    sa.Column("kind", sa.String(16), nullable=True),
    sa.Column("drug", sa.String(64), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("issued_at", sa.DateTime(), nullable=False),
    sa.Index("ix_accepted_suggestions_taken", "topic_code", "kind", "drug", "code", "issued_at"),
)

# Cards repeat suppression kept from an order-sign answer (migration 0005), with the override
# that silenced them: the dashboard shows suppression at work. Codes only, no hashes: nothing
# here ever needs to be matched against a patient, user or order.
suppressed_cards = sa.Table(
    "suppressed_cards",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("suppressed_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("topic_code", sa.String(128), nullable=True),
    sa.Column("indicator", sa.String(16), nullable=True),
    sa.Column("profile", sa.String(16), nullable=True),
    sa.Column("override_code", sa.String(256), nullable=True),
    sa.Column("override_system", sa.String(512), nullable=True),
    sa.Column("client_iss", sa.String(512), nullable=True),
    sa.Column("client_tenant", sa.String(256), nullable=True),
)

# Hook calls counted per UTC day, service, client and profile (migration 0005): the alert
# burden's denominators (cards per diazepam order, per 100 order-sign calls). Counters, not a
# row per call: order-sign fires for every order a hospital signs, diazepam or not. Empty
# strings stand for "none" (CDS_AUTH=disabled) because primary key columns cannot be NULL.
hook_call_counts = sa.Table(
    "hook_call_counts",
    metadata,
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("service_id", sa.String(64), primary_key=True),
    sa.Column("profile", sa.String(16), primary_key=True),
    sa.Column("client_iss", sa.String(512), primary_key=True),
    sa.Column("client_tenant", sa.String(256), primary_key=True),
    sa.Column("calls", sa.Integer(), nullable=False),
    sa.Column("calls_with_orders", sa.Integer(), nullable=False),
    sa.Column("diazepam_orders", sa.Integer(), nullable=False),
    sa.Column("cards", sa.Integer(), nullable=False),
    sa.Column("suppressed", sa.Integer(), nullable=False),
)

# Cards per UTC day of issue, topic, service, indicator, profile and client (migration 0005):
# the dashboard's counts, kept up to date in the transactions that store the cards and the
# feedback (a card counts as accepted / overridden / answered once, when its flag on
# issued_cards first turns true). The dashboard reads these few rows instead of scanning every
# card ever issued: a million cards are a few thousand rows here. Empty strings stand for
# "none" because primary key columns cannot be NULL.
card_counts = sa.Table(
    "card_counts",
    metadata,
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("topic_code", sa.String(128), primary_key=True),
    sa.Column("service_id", sa.String(64), primary_key=True),
    sa.Column("indicator", sa.String(16), primary_key=True),
    sa.Column("profile", sa.String(16), primary_key=True),
    sa.Column("client_iss", sa.String(512), primary_key=True),
    sa.Column("issued", sa.Integer(), nullable=False),
    sa.Column("accepted", sa.Integer(), nullable=False),
    sa.Column("overridden", sa.Integer(), nullable=False),
    sa.Column("answered", sa.Integer(), nullable=False),
)

CARD_COUNT_KEYS = ("topic_code", "service_id", "indicator", "profile", "client_iss")
