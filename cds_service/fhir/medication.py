"""Which drug a draft orders when it names it by reference (``medicationReference``).

Epic and other EHRs send ``medicationReference: {"reference": "Medication/<id>"}`` with the
Medication nowhere in the request. Without it the order cannot be recognised, so before the
orders are read, each referenced Medication is looked for, in order:

1. the draft's ``contained`` resources (``#id``),
2. the ``draftOrders`` Bundle,
3. any prefetch value holding it (asked-for keys or not),
4. a read of ``Medication/<id>`` from ``fhirServer`` within the request deadline, under the same
   rules as every other fetch (the request's token, the ``fhirServer`` guard, timeouts).

What is still unknown falls back to ``medicationReference.display`` (read by the order reader).
A draft whose drug can be identified in none of these ways is never skipped silently: it is
logged (its ``Type/id`` only) and counted in ``/metrics``.

No discovery prefetch template can ask for draft medications: CDS Hooks 2.0 prefetch tokens
are top-level primitive context fields only (``draftOrders`` is not a token), so the read in
step 4 is the only way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any

from cds_service.config import Settings
from cds_service.fhir.client import FhirClient, pool
from cds_service.fhir.deadline import Deadline, request_started_at
from cds_service.fhir.guard import FhirServerRefused
from cds_service.fhir.prefetch import prefetch_resources
from cds_service.fhir.queries import valid_fhir_id
from cds_service.fhir.resolve import _checked_target
from cds_service.hook_request import HookRequest, drafts_in_scope

log = logging.getLogger("cds_service.fhir")

MAX_READS = 10  # distinct Medication reads per call; more drafts than that is not a real order


@dataclass(frozen=True)
class Unidentified:
    """A draft in scope whose drug could not be identified (no PHI: its own Type/id)."""

    ref: str
    reason: str  # no-medication | reference-unresolved | subject-other-patient


def medication_reference(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``medicationReference`` (DSTU2–R4) or R5 ``medication.reference``."""
    ref = resource.get("medicationReference")
    if isinstance(ref, Mapping):
        return ref
    medication = resource.get("medication")
    if isinstance(medication, Mapping) and isinstance(medication.get("reference"), Mapping):
        return medication["reference"]  # type: ignore[no-any-return]
    return None


def _medication_key(target: Any) -> str | None:
    """'Medication/<id>' for a relative or absolute reference, None for anything else."""
    if not isinstance(target, str) or not target or target.startswith("#"):
        return None
    parts = target.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":  # Medication/1/_history/2
        parts = parts[:-2]
    if len(parts) < 2 or parts[-2] != "Medication" or not valid_fhir_id(parts[-1]):
        return None
    return f"Medication/{parts[-1]}"


def _known(resources: Iterable[Any]) -> set[str]:
    return {
        f"Medication/{r.get('id')}"
        for r in resources
        if isinstance(r, Mapping) and r.get("resourceType") == "Medication" and r.get("id")
    }


def request_resources(request: HookRequest) -> list[Mapping[str, Any]]:
    """Every resource the request carries: drafts and all prefetch values (Bundles opened)."""
    return [*request.draft_resources, *prefetch_resources(request.prefetch)]


def missing_medications(request: HookRequest) -> list[str]:
    """'Medication/<id>' of drafts in scope that neither the draft nor the request holds."""
    known: set[str] | None = None
    wanted: list[str] = []
    base = (request.fhir_server or "").rstrip("/") + "/"
    for draft in drafts_in_scope(request):
        ref = medication_reference(draft)
        target = ref.get("reference") if ref is not None else None
        key = _medication_key(target)
        if key is None:
            continue
        if "://" in str(target) and not str(target).startswith(base):
            continue  # a Medication on another server: never read from this one by id
        if known is None:
            known = _known(request_resources(request))
        if key not in known and key not in wanted:
            wanted.append(key)
    return wanted


def fetch_medications(
    request: HookRequest, settings: Settings, timings: dict[str, float]
) -> tuple[dict[str, Any], ...]:
    """Read the Medications the drafts in scope reference and the request lacks."""
    wanted = missing_medications(request)[:MAX_READS]
    if not wanted:
        return ()
    started = time.perf_counter()
    problem = None
    found: list[dict[str, Any]] = []
    if not request.fhir_server:
        problem = "no-fhir-server"
    else:
        deadline = Deadline.starting(settings.deadline_ms, request_started_at())
        try:
            target = _checked_target(request.fhir_server, settings, deadline)
        except FhirServerRefused as refused:
            problem = "fhir-server-refused"
            log.warning("medication not fetched", extra={"fhir_detail": str(refused)})
        else:
            client = FhirClient(target, request.access_token, deadline)
            tasks = {key: pool().submit(client.read, key, key, "Medication") for key in wanted}
            wait(tasks.values(), timeout=deadline.remaining() + 0.01)
            problems = {}
            for key, future in tasks.items():
                if not future.done():
                    future.cancel()
                    problems[key] = "timeout"
                    continue
                try:
                    fetched = future.result(timeout=0)
                except Exception as exc:  # a bug in a fetch must degrade, not 500
                    problems[key] = f"client-error:{type(exc).__name__}"
                    continue
                if fetched.complete and fetched.resources:
                    found.append(fetched.resources[0])
                else:
                    problems[key] = fetched.problem or "failed"
            if problems:
                problem = ",".join(sorted(set(problems.values())))
    timings["medication_ms"] = (time.perf_counter() - started) * 1000
    log.log(
        logging.WARNING if problem else logging.DEBUG,
        "draft medications fetched" if not problem else "draft medications not all fetched",
        extra={"medications_wanted": len(wanted), "medications_found": len(found),
               "fhir_problem": problem},
    )  # fmt: skip
    return tuple(found)


def unidentified_drafts(
    request: HookRequest, identified: Iterable[str], extra: Iterable[Mapping[str, Any]] = ()
) -> list[Unidentified]:
    """Drafts in scope that were not recognised as diazepam and whose drug is unknown: no
    code, no text, and a reference that resolved nowhere and has no display."""
    identified = set(identified)
    known: set[str] | None = None
    out = []
    for draft in drafts_in_scope(request):
        ref_text = (
            f"{draft.get('resourceType')}/{draft.get('id')}"
            if draft.get("id")
            else str(draft.get("resourceType"))
        )
        if ref_text in identified or _has_concept(draft):
            continue
        reference = medication_reference(draft)
        if reference is None:
            out.append(Unidentified(ref_text, "no-medication"))
            continue
        if _text(reference.get("display")):
            continue
        target = reference.get("reference")
        if isinstance(target, str) and target.startswith("#"):
            contained = [c for c in draft.get("contained") or [] if isinstance(c, Mapping)]
            if any(c.get("id") == target[1:] for c in contained):
                continue
        else:
            key = _medication_key(target)
            if key is not None:
                if known is None:
                    known = _known([*request_resources(request), *extra])
                if key in known:
                    continue
        out.append(Unidentified(ref_text, "reference-unresolved"))
    return out


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _has_concept(draft: Mapping[str, Any]) -> bool:
    concept = draft.get("medicationCodeableConcept")
    medication = draft.get("medication")
    if isinstance(medication, Mapping) and isinstance(medication.get("concept"), Mapping):
        concept = medication["concept"]
    if not isinstance(concept, Mapping):
        return False
    codings = [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    return _text(concept.get("text")) or any(_text(c.get("code")) for c in codings)
