"""The verifier alone (no Flask), with an in-memory replay store: the finer rules."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwt.utils import der_to_raw_signature

from cds_service.security.issuers import load_issuers_file
from cds_service.security.verify import AuthError, Verifier, audience_matches, bearer_token
from tests.security.helpers import ISS, SELECT_URL, KeyPair, MemoryReplayStore, b64, write_key


def verifier_for(write_issuers: Callable[..., Path], *entries: dict[str, Any]) -> Verifier:
    return Verifier(load_issuers_file(write_issuers(*entries), cache_s=300), leeway_s=60)


def reason(verifier: Verifier, token: str, replay: MemoryReplayStore, aud: str = SELECT_URL) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(f"Bearer {token}", aud, replay)
    return caught.value.reason


@pytest.mark.parametrize(
    ("claim", "expected", "ok"),
    [
        (SELECT_URL, SELECT_URL, True),
        (SELECT_URL + "/", SELECT_URL, True),
        (SELECT_URL, SELECT_URL + "/", True),
        ("HTTP://LocalHost/cds-services/diazepam-order-select", SELECT_URL, True),
        ("https://cds.example.org:443/cds-services", "https://cds.example.org/cds-services", True),
        (
            "https://cds.example.org:8443/cds-services",
            "https://cds.example.org/cds-services",
            False,
        ),
        ("http://localhost/CDS-services/diazepam-order-select", SELECT_URL, False),  # path exact
        ("https://localhost/cds-services/diazepam-order-select", SELECT_URL, False),  # scheme
        (SELECT_URL + "/feedback", SELECT_URL, False),
        (SELECT_URL + "?x=1", SELECT_URL, False),
        (["https://a.example.org", SELECT_URL], SELECT_URL, True),
        ([], SELECT_URL, False),
        ([SELECT_URL, 5], SELECT_URL, False),
        ("http://localhost:notaport/x", SELECT_URL, False),
        (None, SELECT_URL, False),
    ],
)
def test_audience_matching(claim: Any, expected: str, ok: bool) -> None:
    assert audience_matches(claim, expected) is ok


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "Bearer a.b", "Bearer " + "a." * 9000],
)
def test_bearer_header_shapes_are_rejected(header: str | None) -> None:
    with pytest.raises(AuthError):
        bearer_token(header)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer a.b.c") == "a.b.c"


def test_success_claims_jti_until_expiry_plus_leeway(
    write_issuers: Callable[..., Path], key: KeyPair, replay: MemoryReplayStore
) -> None:
    verifier = verifier_for(write_issuers, {"iss": ISS, "keys": [key], "profile": "epic"})
    exp = int(time.time()) + 300
    caller = verifier.verify(
        f"Bearer {key.token(extra_claims={'exp': exp, 'jti': 'j-1', 'tenant': 't'})}",
        SELECT_URL,
        replay,
    )
    assert (caller.iss, caller.profile, caller.tenant, caller.jti, caller.kid) == (
        ISS,
        "epic",
        "t",
        "j-1",
        key.kid,
    )
    [(iss, jti, expires_at)] = replay.calls
    assert (iss, jti, expires_at.timestamp()) == (ISS, "j-1", exp + 60)


def test_rejected_token_does_not_burn_its_jti(
    write_issuers: Callable[..., Path], key: KeyPair, replay: MemoryReplayStore
) -> None:
    verifier = verifier_for(write_issuers, {"iss": ISS, "keys": [key]})
    assert "aud" in reason(verifier, key.token(aud="https://x.example.org/cds-services"), replay)
    assert replay.calls == []


def test_algorithm_must_be_on_the_issuers_list(
    write_issuers: Callable[..., Path], ec_key: KeyPair, rsa_key: KeyPair, replay: MemoryReplayStore
) -> None:
    verifier = verifier_for(
        write_issuers, {"iss": ISS, "keys": [ec_key, rsa_key], "algorithms": ["ES384"]}
    )
    assert "not allowed" in reason(verifier, rsa_key.token(), replay)
    # RS256 is not in the default list (ES384, RS384) either.
    default = verifier_for(write_issuers, {"iss": ISS, "keys": [rsa_key]})
    rsa_jwk_without_alg = default.issuers[ISS].key_sources[0].keys[rsa_key.kid]
    rsa_jwk_without_alg.pop("alg")
    assert "not allowed" in reason(default, rsa_key.token(alg="RS256"), replay)
    assert default.verify(f"Bearer {rsa_key.token()}", SELECT_URL, replay).iss == ISS


def test_a_key_that_names_its_algorithm_is_used_with_that_one_only(
    write_issuers: Callable[..., Path], rsa_key: KeyPair, replay: MemoryReplayStore
) -> None:
    verifier = verifier_for(
        write_issuers, {"iss": ISS, "keys": [rsa_key], "algorithms": ["RS384", "PS384"]}
    )
    assert "key is for RS384" in reason(verifier, rsa_key.token(alg="PS384"), replay)


def test_weak_keys_and_wrong_curves_are_refused(
    tmp_path: Path, write_issuers: Callable[..., Path], replay: MemoryReplayStore
) -> None:
    small = write_key(tmp_path, "rsa1024", rsa.generate_private_key(65537, 1024))
    p256 = write_key(tmp_path, "p256", ec.generate_private_key(ec.SECP256R1()))
    verifier = verifier_for(write_issuers, {"iss": ISS, "keys": [small], "algorithms": ["RS384"]})
    assert "invalid token" in reason(verifier, small.token(), replay)
    # A P-256 key published without alg cannot be made to verify ES384 signatures.
    jwks_p256 = {"iss": ISS, "keys": [p256], "algorithms": ["ES384", "ES256"]}
    verifier = verifier_for(write_issuers, jwks_p256)
    verifier.issuers[ISS].key_sources[0].keys[p256.kid].pop("alg")
    assert verifier.verify(f"Bearer {p256.token()}", SELECT_URL, replay).kid == p256.kid
    # ...but a token claiming ES384 (SHA-384 over a P-256 key) is refused.
    assert "curve" in reason(verifier, _mint(p256, {}, alg="ES384"), replay)


DROP = object()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"jti": DROP}, "missing claim jti"),
        ({"iat": DROP}, "missing claim iat"),
        ({"exp": DROP}, "missing claim exp"),
        ({"aud": DROP}, "missing claim aud"),
        ({"jti": ""}, "jti"),
        ({"jti": 42}, "jti"),
        ({"jti": "x" * 300}, "jti"),
        ({"iat": "yesterday"}, "iat"),
        ({"iat": 1}, "lifetime"),
        ({"iss": 7}, "untrusted issuer"),
        ({"iss": [ISS]}, "untrusted issuer"),
    ],
)
def test_claim_rules(
    write_issuers: Callable[..., Path],
    ec_key: KeyPair,
    replay: MemoryReplayStore,
    changes: dict[str, Any],
    expected: str,
) -> None:
    verifier = verifier_for(write_issuers, {"iss": ISS, "keys": [ec_key]})
    assert expected.lower() in reason(verifier, _mint(ec_key, changes), replay).lower()
    assert replay.calls == []


def _mint(key: KeyPair, changes: dict[str, Any], alg: str | None = None) -> str:
    """Sign claims that mint_token would refuse or complete (no iss, a numeric iss...)."""
    now = int(time.time())
    claims = {"iss": ISS, "aud": SELECT_URL, "exp": now + 300, "iat": now, "jti": "j"}
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not DROP}
    payload = b64(json.dumps(claims).encode())
    header = b64({"alg": alg or key.alg, "typ": "JWT", "kid": key.kid})
    private = serialization.load_pem_private_key(key.path.read_bytes(), password=None)
    signing_input = f"{header}.{payload}".encode()
    if isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA384())
    else:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        der = private.sign(signing_input, ec.ECDSA(hashes.SHA384()))
        signature = der_to_raw_signature(der, private.curve)
    return f"{header}.{payload}.{b64(signature)}"


@pytest.mark.parametrize(
    ("typ", "ok"), [(None, True), ("JWT", True), ("jwt", True), ("at+jwt", False)]
)
def test_typ_header(
    write_issuers: Callable[..., Path],
    ec_key: KeyPair,
    replay: MemoryReplayStore,
    typ: str | None,
    ok: bool,
) -> None:
    verifier = verifier_for(write_issuers, {"iss": ISS, "keys": [ec_key]})
    token = ec_key.token(headers={"typ": typ})
    if ok:
        assert verifier.verify(f"Bearer {token}", SELECT_URL, replay).iss == ISS
    else:
        assert "typ" in reason(verifier, token, replay)
