"""Fixtures for the security tests. Keys are generated fresh per test session (per xdist
worker): nothing here trusts a key committed to the repository, except the tests that check
the pinned sandbox key set itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.security.helpers import KeyPair, MemoryReplayStore, jwks_of, write_key


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def ec_key(key_dir: Path) -> KeyPair:
    return write_key(key_dir, "ec384", ec.generate_private_key(ec.SECP384R1()))


@pytest.fixture(scope="session")
def rsa_key(key_dir: Path) -> KeyPair:
    return write_key(key_dir, "rsa", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="session")
def ec_key_2(key_dir: Path) -> KeyPair:
    return write_key(key_dir, "ec384-2", ec.generate_private_key(ec.SECP384R1()))


@pytest.fixture(scope="session")
def rsa_key_2(key_dir: Path) -> KeyPair:
    return write_key(key_dir, "rsa-2", rsa.generate_private_key(65537, 2048))


@pytest.fixture(params=["ec", "rsa"])
def key(request: pytest.FixtureRequest, ec_key: KeyPair, rsa_key: KeyPair) -> KeyPair:
    """Tests using ``key`` run once with EC P-384 (ES384) and once with RSA (RS384)."""
    return ec_key if request.param == "ec" else rsa_key


@pytest.fixture
def other_key(key: KeyPair, ec_key_2: KeyPair, rsa_key_2: KeyPair) -> KeyPair:
    """A second key of the same type as ``key``, not trusted anywhere."""
    return ec_key_2 if key.name.startswith("ec") else rsa_key_2


@pytest.fixture
def write_issuers(tmp_path: Path) -> Callable[..., Path]:
    """Write a trusted-issuers file; an entry's ``keys=[KeyPair, ...]`` becomes a jwks_file
    beside it (relative path, as operators would write it)."""
    counter = iter(range(1000))

    def _write(*entries: dict[str, Any]) -> Path:
        n = next(counter)
        issuers = []
        for i, entry in enumerate(entries):
            entry = dict(entry)
            keys = entry.pop("keys", None)
            if keys is not None:
                jwks_path = tmp_path / f"jwks-{n}-{i}.json"
                jwks_path.write_text(json.dumps(jwks_of(*keys)), encoding="utf-8")
                entry["jwks_file"] = jwks_path.name
            issuers.append(entry)
        path = tmp_path / f"issuers-{n}.json"
        path.write_text(json.dumps({"issuers": issuers}), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def replay() -> MemoryReplayStore:
    return MemoryReplayStore()
