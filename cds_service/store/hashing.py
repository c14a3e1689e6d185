"""Keyed hashes of patient, user and order ids: the store links records without the ids.

HMAC-SHA256 with a secret key (``CDS_PATIENT_HASH_KEY``): without the key, a hash cannot be
reversed by hashing every plausible MRN. When no key is configured one is generated once and
kept in the database, so every worker and every host sharing the database hashes alike; a
warning says so, because whoever can read that table can then recompute hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from cds_service.config import Settings
from cds_service.store.store import Store, new_secret

log = logging.getLogger("cds_service.store")

_STATE_NAME = "patient_hash_key"


class IdHasher:
    def __init__(self, key: bytes):
        self._key = key

    def __call__(self, kind: str, value: str) -> str:
        # the kind keeps a user and a patient with the same id from sharing a hash;
        # surrogatepass: a lone surrogate (valid JSON, not UTF-8) still hashes, never raises
        message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def patient(self, patient_id: str) -> str:
        return self("patient", patient_id)

    def user(self, user_id: str) -> str:
        return self("user", user_id)

    def order(self, order_id: str) -> str:
        """The EHR's draft order ids (``MedicationRequest/123``) can be MRN-like: the store
        keeps this hash instead (same key; see migration 0003)."""
        return self("order", order_id)


def id_hasher(settings: Settings, store: Store) -> IdHasher:
    if settings.patient_hash_key:
        return IdHasher(settings.patient_hash_key.encode())
    key, created = store.state_value(_STATE_NAME, new_secret)
    log.warning(
        "CDS_PATIENT_HASH_KEY is not set: using a %s key stored in the database; set "
        "CDS_PATIENT_HASH_KEY to a secret kept outside the database",
        "newly generated" if created else "previously generated",
    )
    return IdHasher(key.encode())
