"""Which ``fhirServer`` URLs the service may call with a bearer token.

``fhirServer`` arrives in the request body, so without a guard any caller could make the
service send an EHR access token, or just a request, wherever it likes (including the metadata
service on 169.254.169.254 or an admin port on localhost). Rules, in order:

* only ``http``/``https`` URLs with a host, no user-info, query or fragment;
* a host matching a ``!pattern`` in ``CDS_FHIR_ALLOWLIST`` is refused whatever the scheme;
* plain ``http`` only for hosts matching a pattern of the allowlist (fnmatch, case-insensitive,
  matched against ``host`` and ``host:port``); ``https`` for any other host;
* the host is resolved and every address checked: link-local, multicast, unspecified and
  reserved addresses are always refused, loopback only with ``CDS_FHIR_ALLOW_LOOPBACK``, so a
  name pointing at 127.0.0.1 is caught as well as the literal.

A refusal means "no fetch": the data counts as unobtainable and the reason (never the token)
is logged. Resolutions are cached briefly per host so the hot path does not pay DNS each call.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_CACHE_TTL_S = 60.0
_CACHE_MAX = 256

Resolver = Callable[[str, int], list[str]]


class FhirServerRefused(Exception):
    """The URL may not be called; the message is safe to log and to show a client."""


@dataclass(frozen=True)
class FhirTarget:
    """A checked FHIR base URL (no trailing slash) and its origin for same-server checks."""

    base_url: str
    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return (scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80))


def same_origin(url: str, target: FhirTarget) -> bool:
    """Bundle ``next`` links are followed only to the server the request named."""
    return origin_of(url) == target.origin


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class _ResolutionCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def get(self, host: str, port: int, resolver: Resolver) -> list[str]:
        key = (host, port)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit and hit[0] > now:
                return hit[1]
        addresses = resolver(host, port)
        with self._lock:
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
            self._entries[key] = (now + _CACHE_TTL_S, addresses)
        return addresses


_CACHE = _ResolutionCache()


def _matches(host: str, port: int, patterns: Iterable[str]) -> bool:
    names = (host, f"{host}:{port}")
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns for name in names)


def _check_address(text: str, allow_loopback: bool) -> None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise FhirServerRefused(f"fhirServer resolved to an unusable address {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        if not allow_loopback:
            raise FhirServerRefused(
                "fhirServer points at a loopback address; set CDS_FHIR_ALLOW_LOOPBACK=true "
                "only for local testing"
            )
        return
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise FhirServerRefused(
            "fhirServer points at a link-local, multicast or unspecified address"
        )
    if address.is_reserved:
        raise FhirServerRefused("fhirServer points at a reserved address")


def check_fhir_server(
    url: str | None,
    *,
    allowlist: Iterable[str] = (),
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
) -> FhirTarget:
    """Return the checked target or raise ``FhirServerRefused`` saying why."""
    if not url:
        raise FhirServerRefused("the request has no fhirServer")
    if len(url) > MAX_URL_LENGTH:
        raise FhirServerRefused("fhirServer URL is too long")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise FhirServerRefused("fhirServer is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FhirServerRefused("fhirServer must be an http(s) URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise FhirServerRefused("fhirServer has no host")
    if parts.username is not None or parts.password is not None:
        raise FhirServerRefused("fhirServer must not carry credentials in the URL")
    if parts.query or parts.fragment:
        raise FhirServerRefused("fhirServer must be a base URL without query or fragment")
    port = port or (443 if scheme == "https" else 80)
    patterns = [p.strip().lower() for p in allowlist if p.strip()]
    allowed = [p for p in patterns if not p.startswith("!")]
    denied = [p[1:] for p in patterns if p.startswith("!")]
    if _matches(host, port, denied):
        raise FhirServerRefused(f"fhirServer host {host} is excluded by CDS_FHIR_ALLOWLIST")
    if scheme == "http" and not _matches(host, port, allowed):
        raise FhirServerRefused(
            f"fhirServer must use https (plain http only for hosts in CDS_FHIR_ALLOWLIST; "
            f"{host} is not listed)"
        )
    try:
        addresses = resolver(host, port) if resolver else _CACHE.get(host, port, _system_resolver)
    except (OSError, UnicodeError):
        raise FhirServerRefused(f"fhirServer host {host} does not resolve") from None
    if not addresses:
        raise FhirServerRefused(f"fhirServer host {host} does not resolve")
    for address in addresses:
        _check_address(address, allow_loopback)
    base = f"{scheme}://{parts.netloc.split('@')[-1]}{parts.path}".rstrip("/")
    return FhirTarget(base_url=base, scheme=scheme, host=host, port=port)
