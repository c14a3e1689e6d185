"""Gather the patient data a hook call needs: prefetch first, then the EHR's FHIR server.

Order of business (CDS Hooks 2.0 §3, digest §3.3):

1. read the prefetch (``prefetch.py``): resources and Bundles are used, ``null`` means "none"
   and is never fetched, absent keys and OperationOutcomes count as not obtained;
2. whatever is not obtained, plus ``next`` pages of prefetched Bundles, is fetched from
   ``fhirServer`` in parallel, only if the guard allows the URL, each call bounded by what is
   left of the request deadline;
3. optional data that still is not there stays in ``PatientData.missing`` (the rules degrade
   and the cards say what was not known); only a missing Patient (age is needed for every
   rule) ends the call with 412 and an OperationOutcome saying why.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from cds_service.config import Settings
from cds_service.errors import ApiError
from cds_service.fhir.client import Fetched, FhirClient, pool
from cds_service.fhir.deadline import Deadline, request_started_at
from cds_service.fhir.guard import (
    FhirServerRefused,
    FhirTarget,
    check_fhir_server,
    client_servers,
)
from cds_service.fhir.prefetch import PatientData, read_prefetch
from cds_service.fhir.queries import build_query, valid_fhir_id
from cds_service.hook_request import HookRequest

log = logging.getLogger("cds_service.fhir")

# Small grace past the fetch deadline for finished calls to hand their results back.
_COLLECT_GRACE_S = 0.01


def resolve_patient_data(
    request: HookRequest, settings: Settings, timings: dict[str, float]
) -> PatientData:
    started = time.perf_counter()
    data = read_prefetch(request.prefetch)
    _drop_other_patient(data, request.patient_id)
    timings["prefetch_ms"] = (time.perf_counter() - started) * 1000
    outcome = _ServerOutcome()
    if data.missing or data.next_pages:
        fetch_started = time.perf_counter()
        deadline = Deadline.starting(settings.deadline_ms, request_started_at())
        outcome = _complete_from_server(data, request, settings, deadline)
        timings["fetch_ms"] = (time.perf_counter() - fetch_started) * 1000
    _log_outcome(data, outcome)
    if data.patient is None:
        raise ApiError(412, _patient_unavailable(data, request, settings, outcome))
    return data


@dataclass(frozen=True)
class _ServerOutcome:
    """Why nothing could be fetched at all (code + loggable detail), and from which host."""

    problem: str | None = None
    detail: str | None = None
    host: str | None = None


def _drop_other_patient(data: PatientData, patient_id: str) -> None:
    """A prefetched Patient for someone else must never drive the advice."""
    patient = data.patient
    if patient is not None and patient.get("id") not in (None, patient_id):
        data.patient = None
        data.resources["patient"] = []
        data.mark_missing("patient", "prefetch-other-patient")


def _complete_from_server(
    data: PatientData, request: HookRequest, settings: Settings, deadline: Deadline
) -> _ServerOutcome:
    """Fetch what prefetch did not give, merging results into ``data``."""
    if not request.fhir_server:
        return _ServerOutcome(_give_up(data, "no-fhir-server"))
    if not valid_fhir_id(request.patient_id):
        return _ServerOutcome(_give_up(data, "invalid-patient-id"))
    try:
        target = _checked_target(request.fhir_server, settings, deadline)
    except FhirServerRefused as refused:
        return _ServerOutcome(_give_up(data, "fhir-server-refused"), str(refused))
    client = FhirClient(target, request.access_token, deadline)
    tasks: dict[str, Future[Fetched]] = {}
    progress: dict[str, Fetched] = {}
    for key in sorted(data.missing):
        query = build_query(key, request.patient_id)
        if query.is_read:
            tasks[key] = pool().submit(client.read, key, query.relative_url, query.resource_type)
        else:
            progress[key] = Fetched(key)
            tasks[key] = pool().submit(
                client.search,
                key,
                client.url(query.relative_url),
                query.resource_type,
                into=progress[key],
            )
    for key, url in sorted(data.next_pages.items()):
        if key not in tasks:
            progress[key] = Fetched(key)
            tasks[key] = pool().submit(
                client.search, key, url, None, seen=data.of(key), into=progress[key]
            )
    wait(tasks.values(), timeout=deadline.remaining() + _COLLECT_GRACE_S)
    for key, future in tasks.items():
        if not future.done():
            future.cancel()  # still queued: never starts; running ones stop at the deadline
            _merge_partial(data, progress.get(key), key)
            continue
        try:
            fetched = future.result(timeout=0)
        except Exception as exc:  # a bug in a fetch must degrade, not 500
            log.error("fhir fetch failed", extra={"key": key, "error": type(exc).__name__})
            _merge_failure(data, key, "client-error")
            continue
        _merge(data, fetched)
    data.patient = next((r for r in data.of("patient") if r.get("resourceType") == "Patient"), None)
    _drop_other_patient(data, request.patient_id)
    return _ServerOutcome(host=target.host)


def _checked_target(url: str, settings: Settings, deadline: Deadline) -> FhirTarget:
    """Run the guard (it may resolve DNS) without letting a slow resolver pass the deadline."""
    future = pool().submit(
        check_fhir_server,
        url,
        allowlist=settings.fhir_allowlist,
        allow_loopback=settings.fhir_allow_loopback,
        servers=client_servers(),  # read here: the pool thread has no request context
    )
    try:
        return future.result(timeout=deadline.remaining())
    except FutureTimeout:
        raise FhirServerRefused("fhirServer host did not resolve before the deadline") from None


def _give_up(data: PatientData, problem: str) -> str:
    for key in list(data.missing):
        data.mark_missing(key, problem)
    for key in data.next_pages:
        data.mark_missing(key, f"incomplete-{problem}")
    return problem


def _merge_partial(data: PatientData, progress: Fetched | None, key: str) -> None:
    """The deadline passed mid-search: keep the whole pages that did arrive."""
    pages = list(progress.resources) if progress is not None else []
    if not pages:
        _merge_failure(data, key, "timeout")
        return
    _merge(data, Fetched(key, pages, complete=False, problem="timeout", pages=1))


def _merge_failure(data: PatientData, key: str, problem: str) -> None:
    if key in data.missing:
        data.mark_missing(key, problem)
    else:  # a prefetched first page whose next pages could not be had
        data.mark_missing(key, f"incomplete-{problem}")


def _merge(data: PatientData, fetched: Fetched) -> None:
    key = fetched.key
    refetch = key in data.missing
    if refetch:
        if fetched.complete:
            data.resources[key] = fetched.resources
            data.next_pages.pop(key, None)
            data.mark_obtained(key)
            data.fetched.add(key)
            return
        if fetched.resources and not data.of(key):
            data.resources[key] = fetched.resources
        problem = fetched.problem or "failed"
        if key == "patient" and fetched.status in (404, 410):
            problem = "not-found"
        data.mark_missing(key, problem if not fetched.pages else f"incomplete-{problem}")
        return
    # following the next pages of a prefetched Bundle
    data.resources[key] = [*data.of(key), *fetched.resources]
    if fetched.complete:
        data.next_pages.pop(key, None)
        data.fetched.add(key)
    else:
        if fetched.next_url:
            data.next_pages[key] = fetched.next_url
        data.mark_missing(key, f"incomplete-{fetched.problem or 'failed'}")


def _log_outcome(data: PatientData, outcome: _ServerOutcome) -> None:
    """Codes only: which keys came from where, why others did not. No ids, no contents."""
    keys: dict[str, str] = {}
    for key in sorted({*data.resources, *data.missing}):
        if key in data.missing:
            keys[key] = data.problems.get(key, "missing")
        elif key in data.empty:
            keys[key] = "null"
        elif key in data.fetched:
            keys[key] = "fetched"
        else:
            keys[key] = "prefetch"
    fields: dict[str, Any] = {"data_keys": keys}
    if outcome.host:
        fields["fhir_host"] = outcome.host
    if outcome.problem:
        fields["fhir_problem"] = outcome.problem
    if outcome.detail:
        fields["fhir_detail"] = outcome.detail
    level = logging.WARNING if data.missing else logging.DEBUG
    log.log(level, "patient data incomplete" if data.missing else "patient data", extra=fields)


_REASONS = {
    "no-fhir-server": "the request has no fhirServer to fetch it from",
    "invalid-patient-id": "context.patientId is not a valid FHIR id, so it was not fetched",
    "http-401": "the FHIR server refused the access token (HTTP 401)",
    "http-403": "the FHIR server denied access (HTTP 403)",
    "not-found": "the FHIR server has no such Patient (HTTP 404)",
    "timeout": "the FHIR server did not answer within the deadline",
    "deadline": "the FHIR server did not answer within the deadline",
    "connection-failed": "the FHIR server could not be reached",
    "invalid-json": "the FHIR server answered with invalid JSON",
    "not-a-resource": "the FHIR server answered with something that is not a FHIR resource",
    "unexpected-resource": "the FHIR server answered with a resource that is not a Patient",
    "http-429": "the FHIR server is throttling requests (HTTP 429)",
    "http-503": "the FHIR server is unavailable (HTTP 503)",
    "prefetch-other-patient": "the Patient obtained is not the patient in context",
}

# Problems with the caller's own request, safe to name; any other is said generically.
_CALLER_REASONS = frozenset({"no-fhir-server", "invalid-patient-id", "prefetch-other-patient"})

_PREFETCH = {
    "prefetch-absent": "prefetch 'patient' was not sent",
    "prefetch-outcome": "the EHR reported an error for prefetch 'patient'",
    "prefetch-invalid": "prefetch 'patient' held no Patient resource",
    "prefetch-other-patient": "prefetch 'patient' was for another patient",
}


def _patient_unavailable(
    data: PatientData, request: HookRequest, settings: Settings, outcome: _ServerOutcome
) -> str:
    """A 412 text an integrator can act on (no token, no patient data)."""
    need = "The Patient resource (age) is required to advise on diazepam"
    if "patient" in data.empty:
        return f"{need}: the EHR sent prefetch 'patient' as null (no such patient)."
    problem = data.problems.get("patient", "missing")
    prefetch_part = _PREFETCH.get(_prefetch_reason(request), "prefetch 'patient' was not usable")
    if problem not in _CALLER_REASONS and settings.auth != "disabled":
        # Whether fhirServer was refused, resolved, redirected, timed out or refused the
        # token is for the log (fhir_problem, fhir_detail): told to the caller, it would map
        # the service's network for whoever can send a request. (With CDS_AUTH=disabled,
        # local experiments on loopback only, the detail below helps more than it leaks.)
        return (
            f"{need}: {prefetch_part}, and it could not be fetched from fhirServer "
            "(the service's log says why)."
        )
    if problem == "fhir-server-refused":
        detail = outcome.detail or "fhirServer is not allowed"
        return f"{need}: {prefetch_part}, and it was not fetched: {detail}."
    if problem.startswith("http-") and problem not in _REASONS:
        reason = f"the FHIR server answered HTTP {problem.removeprefix('http-')}"
    else:
        reason = _REASONS.get(problem, f"fetching it failed ({problem})")
    if problem in ("timeout", "deadline"):
        reason += f" ({settings.deadline_ms} ms)"
    return f"{need}: {prefetch_part}, and {reason}."


def _prefetch_reason(request: HookRequest) -> str:
    prefetch = request.prefetch if isinstance(request.prefetch, dict) else {}
    if "patient" not in prefetch:
        return "prefetch-absent"
    value = prefetch["patient"]
    if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
        return "prefetch-outcome"
    if isinstance(value, dict) and value.get("resourceType") == "Patient":
        return "prefetch-other-patient"
    return "prefetch-invalid"
