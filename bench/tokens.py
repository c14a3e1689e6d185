"""A benchmark EHR identity: an ES384 key pair, its trusted-issuers file, and token pools.

The service is measured with authentication on, as in production. Replay protection rejects a
second use of a ``jti``, so every request needs its own token: we mint a pool before each run
(one token per line) and the wrk script hands them out in turn. Minting uses one parsed key and
several processes, because a pool for ten seconds of traffic holds tens of thousands of tokens.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.support.keys import write_private_key

ISSUER = "https://bench.diazepam-cds.invalid"
KID = "bench-es384"
ALG = "ES384"
LIFETIME_S = 900


@dataclass(frozen=True)
class BenchIssuer:
    key_path: Path
    trusted_issuers_path: Path

    @property
    def jwks_path(self) -> Path:
        """The public JWK Set the trusted-issuers file names (the protocol floor reads it)."""
        return self.trusted_issuers_path.parent / "bench-jwks.json"


def create_issuer(directory: Path, fhir_servers: Sequence[str] = ()) -> BenchIssuer:
    """Write a fresh P-384 key, its JWK Set and a trusted-issuers file naming it.
    ``fhir_servers``: where the benchmark EHR's ``fhirServer`` may point (the cold path's
    FHIR server); without one the service fetches nothing for it and a call without prefetch
    is a 412, since per-issuer FHIR server pinning (issue 17)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    key_path = write_private_key(directory / "bench-es384.pem", key)
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, use="sig", alg=ALG)
    (directory / "bench-jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    issuers = {
        "issuers": [
            {
                "iss": ISSUER,
                "description": "benchmark load generator (bench/tokens.py)",
                "jwks_file": "bench-jwks.json",
                "algorithms": [ALG],
                **({"fhir_servers": list(fhir_servers)} if fhir_servers else {}),
            }
        ]
    }
    trusted = directory / "trusted-issuers.json"
    trusted.write_text(json.dumps(issuers, indent=2), encoding="utf-8")
    return BenchIssuer(key_path, trusted)


@cache
def _private_key(key_path: str) -> Any:
    return serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)


def claims(aud: str, now: int, jti: str) -> dict[str, Any]:
    """The claims CDS Hooks 2.0 requires of a client JWT."""
    return {
        "iss": ISSUER,
        "sub": "bench-client",
        "aud": aud,
        "iat": now,
        "exp": now + LIFETIME_S,
        "jti": jti,
    }


def mint(key_path: Path, aud: str, now: int | None = None) -> str:
    now = int(time.time()) if now is None else now
    return jwt.encode(
        claims(aud, now, uuid.uuid4().hex),
        _private_key(str(key_path)),
        algorithm=ALG,
        headers={"kid": KID, "typ": "JWT"},
    )


def _mint_batch(args: tuple[str, str, int, int]) -> list[str]:
    key_path, aud, count, now = args
    return [mint(Path(key_path), aud, now) for _ in range(count)]


def mint_pool(key_path: Path, aud: str, count: int, out: Path, processes: int = 0) -> Path:
    """``count`` tokens with distinct ``jti``, one per line, for the wrk script to rotate."""
    processes = processes or max(1, os.cpu_count() or 1)
    now = int(time.time())
    chunk = max(1, -(-count // processes))
    jobs = [(str(key_path), aud, min(chunk, count - i), now) for i in range(0, count, chunk)]
    if processes == 1 or len(jobs) == 1:
        batches = [_mint_batch(job) for job in jobs]
    else:
        with ProcessPoolExecutor(processes) as pool:
            batches = list(pool.map(_mint_batch, jobs))
    out.write_text("".join(t + "\n" for batch in batches for t in batch), encoding="ascii")
    return out
