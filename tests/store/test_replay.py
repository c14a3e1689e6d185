"""JWT replay protection: a jti is accepted once across every store sharing the database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cds_service.store import Store
from cds_service.store.tables import jwt_replay

SOON = datetime.now(UTC) + timedelta(minutes=5)


def test_first_claim_wins_later_claims_refused(store: Store) -> None:
    assert store.claim_jti("https://ehr.example/iss", "jti-1", SOON) is True
    assert store.claim_jti("https://ehr.example/iss", "jti-1", SOON) is False
    # the same jti from another issuer is another token
    assert store.claim_jti("https://other.example/iss", "jti-1", SOON) is True


def test_claim_is_refused_by_another_instance(store: Store, second_store: Store) -> None:
    assert store.claim_jti("iss", "shared", SOON) is True
    assert second_store.claim_jti("iss", "shared", SOON) is False


def test_concurrent_claims_exactly_one_winner(store: Store, second_store: Store) -> None:
    stores = [store, second_store] * 8
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda s: s.claim_jti("iss", "race", SOON), stores))
    assert results.count(True) == 1
    assert results.count(False) == 15


def test_long_issuer_and_jti_are_accepted(store: Store) -> None:
    issuer, jti = "https://x.example/" + "i" * 2000, "j" * 5000
    assert store.claim_jti(issuer, jti, SOON) is True
    assert store.claim_jti(issuer, jti, SOON) is False


def _rows(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(jwt_replay)).scalar())


def test_purge_removes_only_expired_rows(store: Store) -> None:
    store._next_purge = float("inf")  # no opportunistic purge: test the explicit one
    store.claim_jti("iss", "old", datetime.now(UTC) - timedelta(hours=2))
    store.claim_jti("iss", "fresh", SOON)
    assert _rows(store) == 2
    assert store.purge_expired_jti() == 1
    assert _rows(store) == 1
    assert store.claim_jti("iss", "fresh", SOON) is False


def test_claims_purge_expired_rows_opportunistically(store: Store) -> None:
    store._next_purge = float("inf")
    for n in range(5):
        store.claim_jti("iss", f"old-{n}", datetime.now(UTC) - timedelta(hours=2))
    assert _rows(store) == 5
    store._next_purge = 0.0  # the purge interval has elapsed
    store.claim_jti("iss", "new", SOON)
    assert _rows(store) == 1


def test_row_outlives_token_by_grace_period(store: Store) -> None:
    # a token that just expired may still be accepted within the JWT leeway: its jti stays
    just_expired = datetime.now(UTC) - timedelta(seconds=30)
    store.claim_jti("iss", "leeway", just_expired)
    assert store.purge_expired_jti() == 0
    assert store.claim_jti("iss", "leeway", just_expired) is False


def test_naive_datetimes_are_taken_as_utc(store: Store) -> None:
    store._next_purge = float("inf")
    naive_past = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    store.claim_jti("iss", "naive", naive_past)
    assert store.purge_expired_jti() == 1
