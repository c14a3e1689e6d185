"""Signing keys for tests and the benchmark: a private key written as unencrypted PKCS#8 PEM,
the format ``diazepam-cds token --key`` and ``mint_token`` read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def write_private_key(path: Path, private: Any | None = None) -> Path:
    """Write ``private`` (default: a fresh EC P-384 key, i.e. ES384) to ``path``; owner-only."""
    private = private or ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
