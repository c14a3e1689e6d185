"""Which ``fhirServer`` URLs the service may call with a bearer token.

``fhirServer`` arrives in the request body, so without a guard any caller could make the
service send an EHR access token, or just a request, wherever it likes (including the metadata
service on 169.254.169.254 or an admin port on localhost). Rules, in order:

* only ``http``/``https`` URLs with a host, no user-info, query or fragment;
* a host matching a ``!pattern`` in ``CDS_FHIR_ALLOWLIST`` is refused whatever the scheme;
* plain ``http`` only for hosts matching a pattern of the allowlist (fnmatch, case-insensitive,
  matched against ``host`` and ``host:port``); ``https`` for any other host;
* an authenticated client's ``fhirServer`` must match one of its issuer's ``fhir_servers``
  patterns (trusted-issuers file); an issuer without the list may not have its token sent
  anywhere. Listed servers may be on private networks; the pattern ``https://*`` (any host,
  what the development profile gives the sandbox) reaches public addresses only;
* the host is resolved and every address checked: link-local, multicast, unspecified and
  reserved addresses are always refused, loopback only with ``CDS_FHIR_ALLOW_LOOPBACK``, so a
  name pointing at 127.0.0.1 is caught as well as the literal.

The checked addresses travel with the target: the client connects to one of them, keeping
the host name for the Host header, TLS SNI and certificate check, so a name that answers a
public address to the guard and 127.0.0.1 to the connection (DNS rebinding) cannot move the
token. A refusal means "no fetch": the data counts as unobtainable and the reason (never the
token) is logged, not told to the caller. Resolutions are cached briefly per host so the hot
path does not pay DNS each call.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import g, has_app_context

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
    # the addresses the guard checked, IPv4 first: the only ones the client connects to
    addresses: tuple[str, ...] = ()

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


ANY_PUBLIC_HOST = "*"


@dataclass(frozen=True)
class ServerPattern:
    """One ``fhir_servers`` entry: ``scheme://host[:port][/path]``. The host is exact, or
    ``*.example.org`` (one DNS label), or ``*`` alone (any host with public addresses only);
    a ``fhirServer`` matches when scheme, host and port agree and its path is the pattern's
    path or below it."""

    text: str
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, text: str) -> ServerPattern:
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise ValueError(f"fhir_servers entry {text!r} is not a URL") from None
        scheme = parts.scheme.lower()
        netloc_host = (parts.hostname or "").lower()
        if scheme not in ("http", "https") or not netloc_host:
            raise ValueError(f"fhir_servers entry {text!r} must be http(s)://host[:port][/path]")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError(f"fhir_servers entry {text!r}: no user, query or fragment")
        labels = netloc_host.split(".")
        if netloc_host != ANY_PUBLIC_HOST:
            first_ok = labels[0] == "*" or "*" not in labels[0]
            rest_ok = all(label and "*" not in label for label in labels[1:])
            if not (labels[0] and first_ok and rest_ok) or (labels[0] == "*" and len(labels) < 3):
                raise ValueError(
                    f"fhir_servers entry {text!r}: '*' stands for one whole leftmost label "
                    "of a name with at least two more (*.hospital.example), or any public host"
                )
        if scheme == "http" and "*" in netloc_host:
            raise ValueError(f"fhir_servers entry {text!r}: plain http only for a named host")
        return cls(
            text=text,
            scheme=scheme,
            host=netloc_host,
            port=port or (443 if scheme == "https" else 80),
            path=parts.path.rstrip("/"),
        )

    @property
    def public_only(self) -> bool:
        return self.host == ANY_PUBLIC_HOST

    def matches(self, scheme: str, host: str, port: int, path: str) -> bool:
        if scheme != self.scheme or port != self.port:
            return False
        if self.host.startswith("*."):
            head, _, rest = host.partition(".")
            if not head or rest != self.host[2:]:
                return False
        elif self.host != ANY_PUBLIC_HOST and host != self.host:
            return False
        path = path.rstrip("/")
        return path == self.path or path.startswith(self.path + "/")


CLIENT_SERVERS_KEY = "cds_client_fhir_servers"


def client_servers() -> tuple[ServerPattern, ...] | None:
    """The calling client's allowed FHIR servers (set by the security layer per request);
    None when no client was authenticated (``CDS_AUTH=disabled``): only the global rules."""
    if not has_app_context():
        return None
    servers: tuple[ServerPattern, ...] | None = g.get(CLIENT_SERVERS_KEY)
    return servers


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


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo client, NAT64):
    checked as well, so ``2002:a9fe:a9fe::`` is seen as 169.254.169.254."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _check_address(text: str, allow_loopback: bool, public_only: bool = False) -> None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise FhirServerRefused(f"fhirServer resolved to an unusable address {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            _check_address(str(embedded), allow_loopback, public_only)
            if address.ipv4_mapped is not None:
                return
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
    if public_only and not address.is_global:
        raise FhirServerRefused(
            "fhirServer points at a private address; only servers listed by name in the "
            "issuer's fhir_servers may be private"
        )


def check_fhir_server(
    url: str | None,
    *,
    allowlist: Iterable[str] = (),
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
    servers: Sequence[ServerPattern] | None = None,
) -> FhirTarget:
    """Return the checked target or raise ``FhirServerRefused`` saying why. ``servers``:
    the client's allowed base URL patterns (None: no client restriction, auth disabled)."""
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
    public_only = False
    if servers is not None:
        matched = [p for p in servers if p.matches(scheme, host, port, parts.path)]
        if not matched:
            raise FhirServerRefused(
                f"fhirServer {scheme}://{host}:{port} is not in this client's fhir_servers"
            )
        # a server listed by name may be private; "any host" reaches public addresses only
        public_only = all(p.public_only for p in matched)
        # an explicit http:// pattern is the operator's deliberate choice for that server
    elif scheme == "http" and not _matches(host, port, allowed):
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
        _check_address(address, allow_loopback, public_only)
    base = f"{scheme}://{parts.netloc.split('@')[-1]}{parts.path}".rstrip("/")
    ordered = sorted(addresses, key=lambda a: (":" in a, a))  # IPv4 first, as most stacks
    return FhirTarget(base_url=base, scheme=scheme, host=host, port=port, addresses=tuple(ordered))
