"""Plain FHIR REST reads and searches against the EHR's server, bounded by the request deadline.

Server-agnostic on purpose (Epic, Oracle Health, HAPI, ...): GET with ``Accept:
application/fhir+json`` and the request's bearer token, nothing vendor-specific. One
``requests.Session`` per worker process pools connections to the EHR; a small thread pool runs
the missing queries side by side. Every call takes its timeout from what is left of the
deadline, bodies are read incrementally so a trickling server cannot hold a thread past it,
redirects are not followed (a redirect could carry the token elsewhere) and cookies are never
kept (one worker serves many EHRs and users). Connections go to the addresses the guard
checked, never to a second DNS answer: the URL carries the pinned IP while the Host header,
TLS SNI and certificate check keep the server's name (``PinnedAdapter``). Failures are
returned as short reason codes, never raised, and never contain the token or resource
contents.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from cds_service.fhir.deadline import Deadline
from cds_service.fhir.guard import FhirTarget, same_origin
from cds_service.fhir.prefetch import bundle_resources, next_link

# gunicorn gthread workers run 4 request threads; 5 prefetch keys each → up to 20 queries.
POOL_THREADS = 20
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_PAGES = 20
# Below this much time left a call is not started: it could not finish anyway.
MIN_CALL_S = 0.02
CONNECT_TIMEOUT_S = 3.05
DEFAULT_RETRY_WAIT_S = 0.05
CHUNK = 64 * 1024

_state_lock = threading.Lock()
_state: dict[str, Any] = {}


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An explicit no-op auth stops requests from adding ~/.netrc credentials."""
    return request


class PinnedAdapter(HTTPAdapter):
    """A request to an IP literal that carries a ``Host`` header naming the server (what
    ``FhirClient`` sends once it pinned the guard's address) uses that name for TLS SNI and
    as the name the certificate must match. urllib3 keys its pools by both, so one IP serving
    two names gets two pools."""

    def build_connection_pool_key_attributes(  # type: ignore[override]
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        name = _host_name(request.headers.get("Host"))
        if name and host_params.get("scheme") == "https" and _is_ip(host_params.get("host")):
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def _host_name(header: str | None) -> str | None:
    if not header:
        return None
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else None
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip(host: Any) -> bool:
    try:
        ipaddress.ip_address(str(host).strip("[]"))
    except ValueError:
        return False
    return True


def pinned_url(url: str, address: str) -> str:
    """``url`` with its host replaced by ``address`` (an IP the guard checked)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = PinnedAdapter(pool_connections=16, pool_maxsize=POOL_THREADS, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.auth = _no_netrc
    return session


def _worker_state() -> dict[str, Any]:
    """Session and pool for this process; rebuilt after a fork (gunicorn preloads the app)."""
    pid = os.getpid()
    with _state_lock:
        if _state.get("pid") != pid:
            _state.clear()
            _state.update(
                pid=pid,
                session=_new_session(),
                pool=ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="fhir"),
            )
        return _state


def session() -> requests.Session:
    return _worker_state()["session"]


def pool() -> ThreadPoolExecutor:
    return _worker_state()["pool"]


@dataclass
class Reply:
    """One GET: the JSON body when it worked, else a reason code for logs and 412 texts."""

    status: int | None = None
    body: dict[str, Any] | None = None
    problem: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.body is not None


@dataclass
class Fetched:
    """What one prefetch key's query (and its next pages) produced."""

    key: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    problem: str | None = None
    status: int | None = None
    pages: int = 0
    next_url: str | None = None


class FhirClient:
    """GETs against one checked FHIR base URL with one request's token and deadline."""

    def __init__(self, target: FhirTarget, token: str | None, deadline: Deadline) -> None:
        self.target = target
        self.deadline = deadline
        self._headers = {"Accept": "application/fhir+json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:  # never show the token
        return f"FhirClient({self.target.base_url!r})"

    def url(self, relative: str) -> str:
        return f"{self.target.base_url}/{relative.lstrip('/')}"

    def get(self, url: str) -> Reply:
        """GET with one retry on 429/503 when the deadline leaves room for it."""
        reply = self._get_once(url)
        if reply.status in (429, 503):
            wait = DEFAULT_RETRY_WAIT_S if reply.retry_after is None else reply.retry_after
            if self.deadline.allows(wait + 2 * MIN_CALL_S):
                time.sleep(wait)
                reply = self._get_once(url)
        return reply

    def _connect(self, url: str) -> requests.Response | Reply:
        """GET ``url`` at the addresses the guard checked (IPv4 first; the next one only if a
        connection could not be made), never at a fresh DNS answer. A target without
        addresses (built by hand in tests) is fetched by name."""
        addresses = self.target.addresses or (None,)
        headers = dict(self._headers)
        if self.target.addresses:
            default = 443 if self.target.scheme == "https" else 80
            name = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
            headers["Host"] = name if self.target.port == default else f"{name}:{self.target.port}"
        problem = "connection-failed"
        for address in addresses:
            left = self.deadline.remaining()
            if left < MIN_CALL_S:
                return Reply(problem="deadline")
            try:
                return session().get(
                    url if address is None else pinned_url(url, address),
                    headers=headers,
                    timeout=(min(CONNECT_TIMEOUT_S, left), left),
                    stream=True,
                    allow_redirects=False,
                )
            except requests.Timeout:
                return Reply(problem="timeout")
            except requests.ConnectionError:
                problem = "connection-failed"  # this address refused: try the next
            except requests.RequestException:
                return Reply(problem="request-failed")
        return Reply(problem=problem)

    def _get_once(self, url: str) -> Reply:
        if self.deadline.remaining() < MIN_CALL_S:
            return Reply(problem="deadline")
        if self.target.addresses and not same_origin(url, self.target):
            return Reply(problem="other-server")  # only the checked server, ever
        connected = self._connect(url)
        if isinstance(connected, Reply):
            return connected
        response = connected
        try:
            status = response.status_code
            if status in (429, 503):
                return Reply(status, problem=f"http-{status}", retry_after=_retry_after(response))
            if status != 200:
                return Reply(status, problem=f"http-{status}")
            raw, problem = self._read_body(response)
            if problem:
                return Reply(status, problem=problem)
        finally:
            response.close()
        try:
            body = _loads(raw)
        except (ValueError, RecursionError):
            return Reply(status, problem="invalid-json")
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            return Reply(status, problem="not-a-resource")
        return Reply(status, body)

    def _read_body(self, response: requests.Response) -> tuple[bytes, str | None]:
        """Read chunk by chunk, checking the deadline between socket reads.

        ``read1`` returns after one socket read, so a server that trickles bytes is cut off at
        the deadline instead of holding the thread until the whole body has crept in.
        """
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if self.deadline.expired():
                    return b"", "timeout"
                chunk = read(CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return b"", "too-large"
                chunks.append(chunk)
        except (requests.RequestException, OSError, ValueError) as exc:
            timed_out = "timed out" in str(exc).lower() or isinstance(exc, TimeoutError)
            return b"", "timeout" if timed_out else "connection-failed"
        except Exception:  # urllib3 protocol / decode errors: treat as a broken reply
            return b"", "connection-failed"
        return b"".join(chunks), None

    def read(self, key: str, relative: str, resource_type: str) -> Fetched:
        """Instance read (``Patient/{id}``): 404/410 is a definite "not there"."""
        reply = self.get(self.url(relative))
        if not reply.ok or reply.body is None:
            return Fetched(key, problem=reply.problem, status=reply.status)
        if reply.body.get("resourceType") != resource_type:
            return Fetched(key, problem="unexpected-resource", status=reply.status)
        return Fetched(key, [reply.body], complete=True, status=reply.status, pages=1)

    def search(
        self,
        key: str,
        url: str,
        resource_type: str | None,
        *,
        seen: list[dict[str, Any]] | None = None,
        into: Fetched | None = None,
    ) -> Fetched:
        """A search URL and its ``next`` pages, while the deadline and page cap allow.

        ``seen`` holds resources already known (from a prefetch page) so later pages can be
        de-duplicated against them. The result is complete only when no ``next`` link is left.
        Pages are added to ``into`` as they arrive, so a caller that stops waiting at the
        deadline still has the pages read so far.
        """
        result = into if into is not None else Fetched(key)
        known = {_identity(r) for r in seen or ()}
        current: str | None = url
        visited: set[str] = set()
        while current:
            if result.pages >= MAX_PAGES or current in visited:
                result.problem = "too-many-pages"
                result.next_url = current
                return result
            if not same_origin(current, self.target):
                result.problem = "next-link-other-server"
                result.next_url = current
                return result
            visited.add(current)
            reply = self.get(current)
            result.status = reply.status
            if not reply.ok or reply.body is None:
                result.problem = reply.problem
                result.next_url = current
                return result
            if reply.body.get("resourceType") != "Bundle":
                result.problem = "not-a-bundle"
                result.next_url = current
                return result
            found, failed = bundle_resources(reply.body)
            if failed:
                result.problem = "server-outcome-error"
                result.next_url = current
                return result
            page = []
            for resource in found:
                if resource_type and resource.get("resourceType") != resource_type:
                    continue
                identity = _identity(resource)
                if identity in known:
                    continue
                known.add(identity)
                page.append(resource)
            result.resources = [*result.resources, *page]  # one swap: readers see whole pages
            result.pages += 1
            current = next_link(reply.body)
        result.complete = True
        return result


def _loads(raw: bytes) -> Any:
    """orjson (twice as fast on a large Bundle), the standard library for what it refuses."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _identity(resource: dict[str, Any]) -> tuple[str, str] | int:
    rid = resource.get("id")
    if isinstance(rid, str):
        return (str(resource.get("resourceType")), rid)
    return id(resource)


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: the deadline is far shorter)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
