"""Issue 17 items 3 and 4: the EHR's token goes only to a FHIR server its issuer lists, and
only to the address the guard checked (a stub resolver plays DNS rebinding)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from pytest_httpserver import HTTPServer

from cds_service.errors import ApiError
from cds_service.fhir.guard import FhirServerRefused, ServerPattern, check_fhir_server
from cds_service.fhir.resolve import resolve_patient_data
from cds_service.security.issuers import sandbox_issuer
from tests.fhir.records import fhir_settings, hook_body, hook_request
from tests.security.helpers import ISS, OTHER_ISS, KeyPair

TOKEN = "ehr-access-token-must-stay-put"
PUBLIC = "93.184.215.14"


class StubResolver:
    """``socket.getaddrinfo`` for one made-up name: answers from ``answers`` in turn (the
    last one repeats); every other name goes to the real resolver."""

    def __init__(self, name: str, answers: list[str]):
        self.name, self.answers, self.calls = name, answers, 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        address = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]


def patient_server(httpserver: HTTPServer, patient_id: str) -> None:
    patient = {"resourceType": "Patient", "id": patient_id, "birthDate": "1950-01-01"}
    httpserver.expect_request(f"/fhir/Patient/{patient_id}").respond_with_json(patient)
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    for path in ("MedicationRequest", "Condition", "Observation", "AllergyIntolerance"):
        httpserver.expect_request(f"/fhir/{path}").respond_with_json(bundle)


# -- item 3: DNS rebinding --------------------------------------------------------------------
def test_dns_rebinding_cannot_send_the_token_to_loopback(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard's look-up answers a public address, any later one 127.0.0.1 (where a
    server waits for the token). The fetch must go to the checked public address (which
    does not answer here), never to loopback."""
    name = f"rebind-{uuid.uuid4().hex[:8]}.example"
    stub = StubResolver(name, [PUBLIC, "127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    patient_server(httpserver, "p1")
    body = hook_body("p1", fhir_server=f"http://{name}:{httpserver.port}/fhir", token=TOKEN)
    body["prefetch"] = {}
    settings = fhir_settings(fhir_allowlist=(name,), fhir_allow_loopback=False, deadline_ms=700)
    with pytest.raises(ApiError) as caught:
        resolve_patient_data(hook_request(body), settings, {})
    assert caught.value.status == 412
    assert httpserver.log == []  # nothing, and no token, reached the loopback server
    assert stub.calls == 1  # the name was resolved once, by the guard


# -- pinning keeps the name for the Host header, TLS SNI and the certificate check -------------
def _certificates(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(leaf.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_fhir_server(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, dict[str, list]]]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(name: str) -> tuple[int, dict[str, list]]:
        ca, cert, key = _certificates(tmp_path, name)
        seen: dict[str, list] = {"sni": [], "host": [], "auth": [], "ca": [str(ca)]}
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, server_name, ctx: seen["sni"].append(server_name)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                seen["host"].append(self.headers.get("Host"))
                seen["auth"].append(self.headers.get("Authorization"))
                path = self.path.split("?")[0]
                if path.startswith("/fhir/Patient/"):
                    body: dict[str, Any] = {
                        "resourceType": "Patient",
                        "id": path.rsplit("/", 1)[1],
                        "birthDate": "1950-01-01",
                    }
                else:
                    body = {"resourceType": "Bundle", "type": "searchset", "entry": []}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1], seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_pinned_https_fetch_keeps_host_sni_and_certificate_name(
    tls_fhir_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"fhir-{uuid.uuid4().hex[:8]}.hospital.example"
    port, seen = tls_fhir_server(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", seen["ca"][0])
    stub = StubResolver(name, ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    body = hook_body("p2", fhir_server=f"https://{name}:{port}/fhir", token=TOKEN)
    body["prefetch"] = {}
    settings = fhir_settings(fhir_allow_loopback=True, deadline_ms=5000)
    data = resolve_patient_data(hook_request(body), settings, {})
    assert data.patient is not None and data.patient["id"] == "p2"
    assert set(seen["sni"]) == {name}  # SNI is the name, not the pinned IP
    assert set(seen["host"]) == {f"{name}:{port}"}
    assert set(seen["auth"]) == {f"Bearer {TOKEN}"}
    assert stub.calls == 1  # connections used the guard's answer


# -- item 4: per-issuer fhir_servers --------------------------------------------------------
def resolver_to(*addresses: str) -> Callable[[str, int], list[str]]:
    return lambda host, port: list(addresses)


def patterns(*texts: str) -> tuple[ServerPattern, ...]:
    return tuple(ServerPattern.parse(t) for t in texts)


@pytest.mark.parametrize(
    ("url", "servers", "addresses", "allowed"),
    [
        # a hospital's private FHIR server, listed by name: allowed
        ("https://fhir.hospital.internal/r4", ("https://fhir.hospital.internal/r4",),
         ("10.1.2.3",), True),
        ("https://fhir.hospital.internal/r4/", ("https://fhir.hospital.internal/r4",),
         ("10.1.2.3",), True),
        ("https://a.hospital.internal/r4", ("https://*.hospital.internal",), ("10.9.9.9",), True),
        ("http://fhir.hospital.internal:8080/fhir", ("http://fhir.hospital.internal:8080",),
         ("192.168.1.5",), True),
        # not listed: never contacted, whatever it resolves to
        ("https://fhir.elsewhere.example/r4", ("https://fhir.hospital.internal/r4",),
         (PUBLIC,), False),
        ("https://fhir.hospital.internal/other", ("https://fhir.hospital.internal/r4",),
         ("10.1.2.3",), False),
        ("https://fhir.hospital.internal/r44", ("https://fhir.hospital.internal/r4",),
         ("10.1.2.3",), False),
        ("http://fhir.hospital.internal/r4", ("https://fhir.hospital.internal/r4",),
         ("10.1.2.3",), False),
        ("https://a.b.hospital.internal/r4", ("https://*.hospital.internal",), ("10.9.9.9",),
         False),
        # an issuer without the list: nothing
        ("https://fhir.hospital.internal/r4", (), ("10.1.2.3",), False),
        # "any public https host" reaches public addresses only
        ("https://launch.smarthealthit.org/v/r4/fhir", ("https://*",), (PUBLIC,), True),
        ("https://intranet.example/fhir", ("https://*",), ("10.0.0.1",), False),
        ("https://intranet.example/fhir", ("https://*",), ("fd00::1",), False),
        ("https://cgnat.example/fhir", ("https://*",), ("100.64.0.1",), False),
        # 6to4 and NAT64 spellings of link-local/metadata addresses: refused even when listed
        ("https://fhir.hospital.internal/r4", ("https://fhir.hospital.internal/r4",),
         ("2002:a9fe:a9fe::1",), False),
        ("https://fhir.hospital.internal/r4", ("https://fhir.hospital.internal/r4",),
         ("64:ff9b::a9fe:a9fe",), False),
    ],
)  # fmt: skip
def test_fhir_servers_decide_where_a_token_may_go(
    url: str, servers: tuple[str, ...], addresses: tuple[str, ...], allowed: bool
) -> None:
    check = lambda: check_fhir_server(  # noqa: E731
        url, servers=patterns(*servers), resolver=resolver_to(*addresses)
    )
    if allowed:
        assert check().addresses == addresses
    else:
        with pytest.raises(FhirServerRefused):
            check()


def test_the_development_sandbox_issuer_reaches_public_https_servers() -> None:
    sandbox = sandbox_issuer(300)
    target = check_fhir_server(
        "https://launch.smarthealthit.org/v/r4/fhir",
        servers=sandbox.fhir_servers,
        resolver=resolver_to(PUBLIC),
    )
    assert target.host == "launch.smarthealthit.org"
    with pytest.raises(FhirServerRefused):
        check_fhir_server(
            "https://10.0.0.8/fhir", servers=sandbox.fhir_servers, resolver=resolver_to("10.0.0.8")
        )


def test_unlisted_fhir_server_is_never_contacted_and_the_412_says_nothing_of_it(
    httpserver: HTTPServer,
    make_app: Callable[..., Flask],
    write_issuers: Callable[..., Path],
    ec_key: KeyPair,
    rsa_key: KeyPair,
) -> None:
    """Through the app: issuer A lists the server, issuer B lists none. B's token-bearing
    request is refused without a connection and its 412 names no host or cause."""
    patient_server(httpserver, "p3")
    base = f"http://127.0.0.1:{httpserver.port}/fhir"
    issuers = write_issuers(
        {"iss": ISS, "keys": [ec_key], "fhir_servers": [base]},
        {"iss": OTHER_ISS, "keys": [rsa_key]},
    )
    app = make_app(
        auth="required",
        trusted_issuers=str(issuers),
        dev_trust_sandbox=False,
        public_base_url="http://localhost",
        fhir_allow_loopback=True,
        fhir_allowlist=("127.0.0.1",),
        deadline_ms=3000,
    )
    client = app.test_client()
    path = "/cds-services/diazepam-order-sign"
    body = hook_body("p3", fhir_server=base, token=TOKEN)
    body["prefetch"] = {}

    def call(key: KeyPair, iss: str) -> Any:
        token = key.token(aud="http://localhost" + path, iss=iss)
        return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

    refused = call(rsa_key, OTHER_ISS)
    assert refused.status_code == 412
    text = refused.get_json()["issue"][0]["diagnostics"]
    assert "127.0.0.1" not in text and "fhir_servers" not in text and "loopback" not in text
    assert httpserver.log == []
    listed = call(ec_key, ISS)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert httpserver.log  # the listed server was used, with the token
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r, _ in httpserver.log)
