"""Answer in the client's FHIR version: detect it from the drafts, convert suggested orders.

CDS Hooks is FHIR-version agnostic: a client sends drafts in its own version and can apply
only resources of that version. The clinical engine writes every new order as an R4
``MedicationRequest`` (and an ``update`` as the client's own draft with R4-shaped changes), so
at the output stage each action resource is rewritten for the version the drafts are in:

* DSTU2: ``MedicationOrder`` with ``patient``, ``dateWritten``, ``prescriber``,
  ``reasonCodeableConcept``, ``dosageInstruction[].doseQuantity``, ``timing.repeat.periodUnits``
  and ``boundsQuantity``;
* STU3: ``MedicationRequest`` with ``Dosage.doseQuantity`` (no ``doseAndRate``), ``context``
  for the encounter, ``requester.agent``;
* R4: ``doseAndRate`` (what the engine writes);
* R5: ``medication`` as a CodeableReference (``medication.concept`` / ``.reference``),
  ``reason[]``, ``Dosage.asNeeded`` and a list ``maxDosePerPeriod``.

Elements a version does not have are left out (a client would reject the whole resource),
never invented. The tests validate every converted resource with the matching
``fhir.resources`` package (``tests/fhir/test_versions.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

VERSIONS = ("DSTU2", "STU3", "R4", "R5")
DEFAULT_VERSION = "R4"

# -- detection --------------------------------------------------------------------------------

_R4_ONLY_TYPES = {"ServiceRequest"}
_STU3_ONLY_TYPES = {"ReferralRequest"}
_DSTU2_ONLY_TYPES = {"MedicationOrder", "DiagnosticOrder", "DeviceUseRequest"}
_URL_HINTS = (
    ("dstu2", "DSTU2"),
    ("/r2/", "DSTU2"),
    ("stu3", "STU3"),
    ("dstu3", "STU3"),
    ("/r3/", "STU3"),
    ("/r4/", "R4"),
    ("r4b", "R4"),
    ("/r5/", "R5"),
)


def _dosages(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    value = resource.get("dosageInstruction")
    return [d for d in value if isinstance(d, Mapping)] if isinstance(value, list) else []


def version_of_resource(resource: Mapping[str, Any]) -> str | None:
    """The FHIR version a single draft is written in, when its shape says so."""
    rtype = resource.get("resourceType")
    if rtype in _DSTU2_ONLY_TYPES:
        return "DSTU2"
    if rtype in _STU3_ONLY_TYPES:
        return "STU3"
    if rtype in _R4_ONLY_TYPES and not isinstance(resource.get("reason"), list):
        return "R4"
    if rtype != "MedicationRequest":
        return None
    medication = resource.get("medication")
    if isinstance(medication, Mapping) and ("concept" in medication or "reference" in medication):
        return "R5"
    reasons = resource.get("reason")
    if isinstance(reasons, list) and any(
        isinstance(r, Mapping) and ("concept" in r or "reference" in r) for r in reasons
    ):
        return "R5"
    dosages = _dosages(resource)
    if any("asNeeded" in d or "asNeededFor" in d for d in dosages):
        return "R5"
    if any("doseAndRate" in d for d in dosages) or any(
        k in resource
        for k in ("encounter", "statusReason", "doNotPerform", "performerType", "reportedBoolean")
    ):
        return "R4"
    requester = resource.get("requester")
    if isinstance(requester, Mapping) and "agent" in requester:
        return "STU3"
    if any(k in d for d in dosages for k in ("doseQuantity", "doseRange", "rateQuantity")):
        return "STU3"
    if "context" in resource or "definition" in resource:
        return "STU3"
    return None


def _version_of_url(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        path = urlsplit(url).path.lower() + "/"
    except ValueError:
        return None
    for hint, version in _URL_HINTS:
        if hint in path:
            return version
    return None


def detect_version(drafts: Iterable[Mapping[str, Any]], fhir_server: str | None = None) -> str:
    """The client's FHIR version from its drafts (all resources in one context share one
    version); the fhirServer path (``/r2/``, ``/baseDstu3``) breaks a tie; R4 otherwise."""
    seen = {version_of_resource(r) for r in drafts if isinstance(r, Mapping)} - {None}
    for version in ("DSTU2", "R5", "R4", "STU3"):
        if version in seen:
            return version
    return _version_of_url(fhir_server) or DEFAULT_VERSION


# -- conversion -------------------------------------------------------------------------------

_STU3_KEYS = {
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "identifier", "definition", "basedOn", "groupIdentifier", "status",
    "intent", "category", "priority", "medicationCodeableConcept", "medicationReference",
    "subject", "context", "supportingInformation", "authoredOn", "requester", "recorder",
    "reasonCode", "reasonReference", "note", "dosageInstruction", "dispenseRequest",
    "substitution", "priorPrescription", "detectedIssue", "eventHistory",
}  # fmt: skip
_STU3_DOSAGE_KEYS = {
    "id", "extension", "modifierExtension", "sequence", "text", "additionalInstruction",
    "patientInstruction", "timing", "asNeededBoolean", "asNeededCodeableConcept", "site",
    "route", "method", "doseRange", "doseQuantity", "maxDosePerPeriod",
    "maxDosePerAdministration", "maxDosePerLifetime", "rateRatio", "rateRange", "rateQuantity",
}  # fmt: skip
_STU3_DISPENSE_KEYS = {
    "id", "extension", "modifierExtension", "validityPeriod", "numberOfRepeatsAllowed",
    "quantity", "expectedSupplyDuration", "performer",
}  # fmt: skip
_DSTU2_KEYS = {
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "identifier", "dateWritten", "status", "dateEnded", "reasonEnded",
    "patient", "prescriber", "encounter", "reasonCodeableConcept", "reasonReference", "note",
    "medicationCodeableConcept", "medicationReference", "dosageInstruction", "dispenseRequest",
    "substitution", "priorPrescription",
}  # fmt: skip
_DSTU2_DOSAGE_KEYS = {
    "id", "extension", "modifierExtension", "text", "additionalInstructions", "timing",
    "asNeededBoolean", "asNeededCodeableConcept", "siteCodeableConcept", "siteReference",
    "route", "method", "doseRange", "doseQuantity", "rateRatio", "rateRange", "maxDosePerPeriod",
}  # fmt: skip
_DSTU2_REPEAT_KEYS = {
    "id", "extension", "boundsQuantity", "boundsRange", "boundsPeriod", "count", "duration",
    "durationMax", "durationUnits", "frequency", "frequencyMax", "period", "periodMax",
    "periodUnits", "when",
}  # fmt: skip
_DSTU2_DISPENSE_KEYS = {
    "id", "extension", "modifierExtension", "medicationCodeableConcept", "medicationReference",
    "validityPeriod", "numberOfRepeatsAllowed", "quantity", "expectedSupplyDuration",
}  # fmt: skip
_DSTU2_DSTU2_STATUS = {"active", "on-hold", "completed", "entered-in-error", "stopped", "draft"}


def _keep(mapping: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k in allowed}


def _flatten_dose(dosage: dict[str, Any]) -> dict[str, Any]:
    """R4 ``doseAndRate[0]`` back onto the Dosage (STU3 and DSTU2 keep dose and rate there)."""
    out = dict(dosage)
    items = out.pop("doseAndRate", None)
    if isinstance(items, Mapping):  # a single object where a list belongs (seen in test kits)
        items = [items]
    first = (
        next((i for i in items if isinstance(i, Mapping)), None)
        if isinstance(items, list)
        else None
    )
    if first is not None:
        for key in ("doseQuantity", "doseRange", "rateQuantity", "rateRatio", "rateRange"):
            if key in first and key not in out:
                out[key] = first[key]
    return out


def _no_zero_repeats(dispense: dict[str, Any]) -> dict[str, Any]:
    """``numberOfRepeatsAllowed`` is a positiveInt before R4: "no refills" (0) cannot be
    written there, only left unsaid (the card text states the supply)."""
    repeats = dispense.get("numberOfRepeatsAllowed")
    if isinstance(repeats, int | float) and not isinstance(repeats, bool) and repeats <= 0:
        dispense.pop("numberOfRepeatsAllowed")
    return dispense


def _to_stu3(resource: dict[str, Any]) -> dict[str, Any]:
    res = dict(resource)
    res["resourceType"] = "MedicationRequest"
    if "encounter" in res and "context" not in res:
        res["context"] = res.pop("encounter")
    requester = res.get("requester")
    if isinstance(requester, Mapping) and "agent" not in requester:
        res["requester"] = {"agent": dict(requester)}
    category = res.get("category")
    if isinstance(category, list):
        if category:
            res["category"] = category[0]
        else:
            res.pop("category")
    return _finish(
        res,
        lambda d: _keep(_flatten_dose(d), _STU3_DOSAGE_KEYS),
        _STU3_DISPENSE_KEYS,
        _STU3_KEYS,
    )


def _finish(
    res: dict[str, Any],
    dosage: Callable[[dict[str, Any]], dict[str, Any]],
    dispense_keys: set[str],
    keys: set[str],
) -> dict[str, Any]:
    """The last steps of an older version's order: each dosage rewritten, the dispense
    request and the resource cut to the version's elements, a zero repeat count left unsaid."""
    res["dosageInstruction"] = [dosage(dict(d)) for d in _dosages(res)]
    if not res["dosageInstruction"]:
        res.pop("dosageInstruction")
    if isinstance(res.get("dispenseRequest"), Mapping):
        dispense = _keep(dict(res["dispenseRequest"]), dispense_keys)
        res["dispenseRequest"] = _no_zero_repeats(dispense)
    return _keep(res, keys)


def _dstu2_repeat(repeat: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(repeat)
    if "boundsDuration" in out and "boundsQuantity" not in out:
        out["boundsQuantity"] = out.pop("boundsDuration")
    for r4, dstu2 in (("periodUnit", "periodUnits"), ("durationUnit", "durationUnits")):
        if r4 in out and dstu2 not in out:
            out[dstu2] = out.pop(r4)
    when = out.get("when")
    if isinstance(when, list):
        if when:
            out["when"] = when[0]
        else:
            out.pop("when")
    return _keep(out, _DSTU2_REPEAT_KEYS)


def _dstu2_dosage(dosage: dict[str, Any]) -> dict[str, Any]:
    out = _flatten_dose(dosage)
    additional = out.pop("additionalInstruction", None)
    if isinstance(additional, list) and additional and "additionalInstructions" not in out:
        out["additionalInstructions"] = additional[0]
    if "site" in out and "siteCodeableConcept" not in out:
        out["siteCodeableConcept"] = out.pop("site")
    timing = out.get("timing")
    if isinstance(timing, Mapping) and isinstance(timing.get("repeat"), Mapping):
        out["timing"] = {**timing, "repeat": _dstu2_repeat(timing["repeat"])}
    return _keep(out, _DSTU2_DOSAGE_KEYS)


def _to_dstu2(resource: dict[str, Any]) -> dict[str, Any]:
    res = dict(resource)
    res["resourceType"] = "MedicationOrder"
    for r4, dstu2 in (
        ("subject", "patient"),
        ("authoredOn", "dateWritten"),
        ("requester", "prescriber"),
    ):
        if r4 in res and dstu2 not in res:
            res[dstu2] = res.pop(r4)
    prescriber = res.get("prescriber")
    if isinstance(prescriber, Mapping) and isinstance(prescriber.get("agent"), Mapping):
        res["prescriber"] = dict(prescriber["agent"])  # from an STU3 requester
    if "context" in res and "encounter" not in res:
        res["encounter"] = res.pop("context")
    for r4, dstu2 in (("reasonCode", "reasonCodeableConcept"), ("reasonReference", None)):
        value = res.get(r4)
        if isinstance(value, list):
            if value and isinstance(value[0], Mapping):
                res[dstu2 or r4] = value[0]
            if dstu2 or not value:
                res.pop(r4, None)
    note = res.get("note")
    if isinstance(note, list):
        texts = [str(n.get("text")) for n in note if isinstance(n, Mapping) and n.get("text")]
        if texts:
            res["note"] = "\n".join(texts)
        else:
            res.pop("note")
    if res.get("status") not in _DSTU2_DSTU2_STATUS:
        res["status"] = "draft"
    return _finish(res, _dstu2_dosage, _DSTU2_DISPENSE_KEYS, _DSTU2_KEYS)


def _dose_and_rate_list(dosage: dict[str, Any]) -> dict[str, Any]:
    if isinstance(dosage.get("doseAndRate"), Mapping):
        dosage["doseAndRate"] = [dosage["doseAndRate"]]
    return dosage


def _r5_dosage(dosage: dict[str, Any]) -> dict[str, Any]:
    out = _dose_and_rate_list(dict(dosage))
    if "asNeededBoolean" in out:
        out["asNeeded"] = out.pop("asNeededBoolean")
    if "asNeededCodeableConcept" in out:
        out["asNeededFor"] = [out.pop("asNeededCodeableConcept")]
    ratio = out.get("maxDosePerPeriod")
    if isinstance(ratio, Mapping):
        out["maxDosePerPeriod"] = [ratio]
    return out


def _to_r5(resource: dict[str, Any]) -> dict[str, Any]:
    res = dict(resource)
    res["resourceType"] = "MedicationRequest"
    _category_list(res)
    if isinstance(res.get("medicationCodeableConcept"), Mapping):
        res["medication"] = {"concept": res.pop("medicationCodeableConcept")}
        res.pop("medicationReference", None)
    elif isinstance(res.get("medicationReference"), Mapping):
        res["medication"] = {"reference": res.pop("medicationReference")}
    reasons = [r for r in res.get("reason") or [] if isinstance(r, Mapping)]
    for concept in res.pop("reasonCode", None) or []:
        if isinstance(concept, Mapping):
            reasons.append({"concept": concept})
    for ref in res.pop("reasonReference", None) or []:
        if isinstance(ref, Mapping):
            reasons.append({"reference": ref})
    if reasons:
        res["reason"] = reasons
    if "reportedBoolean" in res:
        res["reported"] = res.pop("reportedBoolean")
    performer = res.get("performer")
    if isinstance(performer, Mapping):
        res["performer"] = [performer]
    dispense = res.get("dispenseRequest")
    if isinstance(dispense, Mapping) and "performer" in dispense:
        dispense = dict(dispense)
        dispense["dispenser"] = dispense.pop("performer")
        res["dispenseRequest"] = dispense
    if _dosages(res):
        res["dosageInstruction"] = [_r5_dosage(dict(d)) for d in _dosages(res)]
    return res


def _category_list(res: dict[str, Any]) -> None:
    """R4 and R5 ``category`` is a list (the sandbox sends one object)."""
    if isinstance(res.get("category"), Mapping):
        res["category"] = [res["category"]]


def _to_r4(resource: dict[str, Any]) -> dict[str, Any]:
    res = dict(resource)
    res["resourceType"] = "MedicationRequest"
    _category_list(res)
    dosages = []
    for dosage in _dosages(res):
        dosage = _dose_and_rate_list(dict(dosage))
        moved = {
            k: dosage.pop(k)
            for k in ("doseQuantity", "doseRange", "rateQuantity", "rateRatio", "rateRange")
            if k in dosage
        }
        if moved and "doseAndRate" not in dosage:
            dosage["doseAndRate"] = [moved]
        dosages.append(dosage)
    if dosages:
        res["dosageInstruction"] = dosages
    return res


_CONVERTERS = {"DSTU2": _to_dstu2, "STU3": _to_stu3, "R4": _to_r4, "R5": _to_r5}
_ORDER_TYPES = ("MedicationRequest", "MedicationOrder")


def convert_resource(resource: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A medication order in ``version``; other resources are returned unchanged.

    No deep copy: every converter copies what it changes, level by level (``dict(...)`` of
    the resource, each dosage, repeat and dispense request), so the input is never modified,
    and the pipeline's ``prune`` builds the answer's own tree right after (the deep copy
    here was a second whole-tree walk per suggested order: 0.15 ms of a large call)."""
    res = dict(resource)
    if res.get("resourceType") not in _ORDER_TYPES:
        return res
    out = _CONVERTERS.get(version, _to_r4)(res)
    if out["resourceType"] == "MedicationRequest" and not isinstance(out.get("intent"), str):
        # required from STU3 on; drafts written without it (PDDI-CDS, the sandbox before a
        # drug is chosen) are orders being placed
        out["intent"] = "order"
    return out


def answer_in_version(cards: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """Every action resource of every card's suggestions, written in ``version`` (in place)."""
    for card in cards:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                if isinstance(action.get("resource"), Mapping):
                    action["resource"] = convert_resource(action["resource"], version)
    return cards


# -- checking (diazepam-cds replay --fhir-version) ----------------------------------------------

_MODEL_PACKAGES = {
    "STU3": "fhir.resources.STU3",
    "R4": "fhir.resources.R4B",
    "R5": "fhir.resources",
}
# DSTU2 models are not in fhir.resources 8: a DSTU2 answer is checked for its shape only.
_NOT_DSTU2 = ("intent", "subject", "authoredOn", "requester", "reasonCode", "category")


def resource_problems(resource: Mapping[str, Any], version: str) -> list[str]:
    """Why ``resource`` is not a valid medication order of ``version`` (empty when it is)."""
    rtype = resource.get("resourceType")
    expected = "MedicationOrder" if version == "DSTU2" else "MedicationRequest"
    if rtype not in _ORDER_TYPES:
        return []
    if rtype != expected:
        return [f"{rtype} is not a {version} medication order ({expected})"]
    if version == "DSTU2":
        found = [k for k in _NOT_DSTU2 if k in resource]
        found += [
            f"dosageInstruction/{i}/doseAndRate"
            for i, d in enumerate(_dosages(resource))
            if "doseAndRate" in d
        ]
        return [f"elements not in DSTU2: {', '.join(found)}"] if found else []
    module = importlib.import_module(f"{_MODEL_PACKAGES[version]}.medicationrequest")
    try:
        module.MedicationRequest.model_validate(dict(resource))
    except Exception as exc:  # pydantic's ValidationError: first lines say where
        return [" ".join(str(exc).split("\n")[1:3]).strip()[:300] or type(exc).__name__]
    return []


def answer_problems(cards: Iterable[Mapping[str, Any]], version: str) -> list[str]:
    """Every suggested resource of an answer checked against ``version``."""
    out = []
    for card in cards:
        topic = ((card.get("source") or {}).get("topic") or {}).get("code", "?")
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                resource = action.get("resource")
                if isinstance(resource, Mapping):
                    out += [f"{topic}: {p}" for p in resource_problems(resource, version)]
    return out
