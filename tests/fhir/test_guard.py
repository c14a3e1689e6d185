"""The fhirServer guard: where the service may send requests (and tokens)."""

from __future__ import annotations

import pytest

from cds_service.fhir.guard import (
    FhirServerRefused,
    check_fhir_server,
    same_origin,
)


def resolver_to(*addresses: str):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


PUBLIC = resolver_to("93.184.216.34")


def test_https_public_host_is_allowed_and_normalised() -> None:
    target = check_fhir_server("https://EHR.example.org/fhir/r4/", resolver=PUBLIC)
    assert target.base_url == "https://EHR.example.org/fhir/r4"
    assert target.origin == ("https", "ehr.example.org", 443)


def test_plain_http_needs_the_allowlist() -> None:
    with pytest.raises(FhirServerRefused, match="https"):
        check_fhir_server("http://ehr.example.org/fhir", resolver=PUBLIC)
    target = check_fhir_server(
        "http://ehr.example.org:8080/fhir", allowlist=("*.example.org",), resolver=PUBLIC
    )
    assert target.port == 8080
    # a pattern with a port only matches that port
    with pytest.raises(FhirServerRefused):
        check_fhir_server(
            "http://ehr.example.org:9090/fhir",
            allowlist=("ehr.example.org:8080",),
            resolver=PUBLIC,
        )


def test_negated_pattern_excludes_even_https() -> None:
    with pytest.raises(FhirServerRefused, match="excluded"):
        check_fhir_server(
            "https://evil.example.net/fhir", allowlist=("!*.example.net",), resolver=PUBLIC
        )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://ehr.example.org/fhir",
        "https:///fhir",
        "https://user:pw@ehr.example.org/fhir",
        "https://ehr.example.org/fhir?x=1",
        "https://ehr.example.org/fhir#frag",
        "https://ehr.example.org:99999/fhir",
        "https://" + "a" * 3000 + ".org/",
        "",
        None,
    ],
)
def test_malformed_or_dangerous_urls_are_refused(url: str | None) -> None:
    with pytest.raises(FhirServerRefused):
        check_fhir_server(url, allowlist=("*",), resolver=PUBLIC)


def test_loopback_literal_refused_unless_configured() -> None:
    with pytest.raises(FhirServerRefused, match="loopback"):
        check_fhir_server("http://127.0.0.1:8090/fhir", allowlist=("127.0.0.1",))
    target = check_fhir_server(
        "http://127.0.0.1:8090/fhir", allowlist=("127.0.0.1",), allow_loopback=True
    )
    assert target.host == "127.0.0.1"


def test_loopback_reached_by_name_is_caught_by_resolution() -> None:
    # an https name that resolves to 127.0.0.1 (DNS rebinding style)
    with pytest.raises(FhirServerRefused, match="loopback"):
        check_fhir_server("https://innocent.example.com/fhir", resolver=resolver_to("127.0.0.1"))
    # the system resolver: "localhost" is loopback by name
    with pytest.raises(FhirServerRefused, match="loopback"):
        check_fhir_server("http://localhost:8090/fhir", allowlist=("localhost",))
    # ::ffff:127.0.0.1 is loopback too
    with pytest.raises(FhirServerRefused, match="loopback"):
        check_fhir_server("https://x.example.com/", resolver=resolver_to("::ffff:127.0.0.1"))


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1"])
def test_link_local_and_friends_are_refused_even_with_loopback_allowed(address: str) -> None:
    with pytest.raises(FhirServerRefused):
        check_fhir_server(
            "https://metadata.example.com/", allow_loopback=True, resolver=resolver_to(address)
        )


def test_any_bad_address_among_several_refuses() -> None:
    with pytest.raises(FhirServerRefused):
        check_fhir_server(
            "https://mixed.example.com/", resolver=resolver_to("93.184.216.34", "127.0.0.1")
        )


def test_unresolvable_host_is_refused() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(FhirServerRefused, match="does not resolve"):
        check_fhir_server("https://nowhere.invalid/fhir", resolver=fails)


def test_same_origin_compares_scheme_host_and_port() -> None:
    target = check_fhir_server("https://ehr.example.org/fhir", resolver=PUBLIC)
    assert same_origin("https://EHR.example.org:443/fhir/Condition?page=2", target)
    assert not same_origin("http://ehr.example.org/fhir/Condition?page=2", target)
    assert not same_origin("https://ehr.example.org:8443/fhir/Condition", target)
    assert not same_origin("https://attacker.example/fhir/Condition", target)
    assert not same_origin("Condition?page=2", target)
