"""The patient as the rules see it (``PatientRecord``), built from prefetched FHIR JSON.

Only dictionary look-ups on raw JSON: medications are classified by RxNorm code (names as a
fallback), conditions by SNOMED code or ICD-10-CM prefix, kidney function by LOINC. Whatever
could not be obtained is named in ``unknown`` so cards can say what was not known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from cds_service.clinical import dosing
from cds_service.clinical.models import DiazepamOrder, LabValue, MedicationUse, PatientRecord
from cds_service.clinical.orders import LazyReferenceIndex, OrderReader
from cds_service.clinical.policy import Policy
from cds_service.clinical.valuesets import LOINC, ValueSets
from cds_service.fhir.prefetch import PatientData
from cds_service.hook_request import ORDER_TYPES

_ACTIVE_MED = {"active", "on-hold", "draft", None}
_STOPPED_MED = {"stopped", "completed", "cancelled"}
_INACTIVE_CONDITION = {"inactive", "resolved", "remission"}
_REFUTED = {"refuted", "entered-in-error"}


def _status_code(concept: Any) -> str | None:
    """A status that may be a code string (DSTU2/MedicationRequest) or a CodeableConcept."""
    if isinstance(concept, str):
        return concept
    if isinstance(concept, Mapping):
        for coding in concept.get("coding") or []:
            if isinstance(coding, Mapping) and coding.get("code"):
                return str(coding["code"])
    return None


def _period(resource: Mapping[str, Any]) -> tuple[date | None, date | None]:
    """(start, end) of a medication order or statement. The start is the EARLIEST of every date
    that says when it began (F.1 chronic_benzo: "the earliest of several"): ``authoredOn`` /
    ``dateWritten``, ``dispenseRequest.validityPeriod.start``, each dosage's
    ``timing.repeat.boundsPeriod.start`` and, for a MedicationStatement, ``effectiveDateTime`` /
    ``effectivePeriod.start``. The end is the first stated one (validity, bounds, effective)."""
    starts = [
        dosing.parse_date(resource.get("authoredOn") or resource.get("dateWritten")),
        dosing.parse_date(resource.get("effectiveDateTime")),
    ]
    ends: list[date | None] = []
    dispense = resource.get("dispenseRequest")
    periods = [
        dispense.get("validityPeriod") if isinstance(dispense, Mapping) else None,
        resource.get("effectivePeriod"),
    ]
    for dosage in resource.get("dosageInstruction") or resource.get("dosage") or []:
        timing = dosage.get("timing") if isinstance(dosage, Mapping) else None
        repeat = timing.get("repeat") if isinstance(timing, Mapping) else None
        periods.append(repeat.get("boundsPeriod") if isinstance(repeat, Mapping) else None)
    for period in periods:
        if isinstance(period, Mapping):
            starts.append(dosing.parse_date(period.get("start")))
            ends.append(dosing.parse_date(period.get("end")))
    known = [d for d in starts if d is not None]
    return (min(known) if known else None), next((d for d in ends if d is not None), None)


def medication_use(
    resource: Mapping[str, Any], vs: ValueSets, refs: Mapping[str, Mapping[str, Any]]
) -> MedicationUse | None:
    concepts: list[Mapping[str, Any]] = []
    for key in ("medicationCodeableConcept",):
        if isinstance(resource.get(key), Mapping):
            concepts.append(resource[key])
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, Mapping) else None
    if isinstance(target, str):
        med = None
        if target.startswith("#"):
            med = next(
                (
                    c
                    for c in resource.get("contained") or []
                    if isinstance(c, Mapping) and c.get("id") == target[1:]
                ),
                None,
            )
        else:
            med = refs.get("/".join(target.split("/")[-2:]))
        if isinstance(med, Mapping) and isinstance(med.get("code"), Mapping):
            concepts.append(med["code"])
        if isinstance(ref, Mapping) and ref.get("display"):
            concepts.append({"text": ref["display"]})
    codings = [
        c for concept in concepts for c in concept.get("coding") or [] if isinstance(c, Mapping)
    ]
    text = " ".join(str(c.get("text") or "") for c in concepts)
    ingredients = vs.ingredients_of(codings, text)
    if not ingredients:
        return None
    start, end = _period(resource)
    display = next((str(c.get("display")) for c in codings if c.get("display")), None)
    return MedicationUse(
        ref=f"{resource.get('resourceType')}/{resource.get('id')}",
        ingredients=ingredients,
        classes=vs.classes_of(ingredients),
        status=_status_code(resource.get("status")),
        start=start,
        end=end,
        display=display or (text or None),
    )


def _with_dose(
    use: MedicationUse,
    resource: Mapping[str, Any],
    reader: OrderReader,
    refs: Mapping[str, Mapping[str, Any]],
) -> MedicationUse:
    """A diazepam prescription with its oral dose, read as a pended order is read: a
    long-term user's taper is measured from what they take (review round 6 M-3). A
    MedicationStatement, a non-oral product or an unreadable dose leaves it unknown."""
    order = reader.read(resource, refs)
    if order is None:
        return use
    use = replace(use, route=order.route)
    if order.route not in ("oral", "unknown") or not order.mg_per_day:
        return use
    if order.prn:  # an as-needed supply says how much may be taken, not how much is
        return replace(use, as_needed=True)
    return replace(use, mg_per_dose=order.mg_per_dose, doses_per_day=order.doses_per_day)


def _lab(resource: Mapping[str, Any], vs: ValueSets) -> LabValue | None:
    code = None
    for coding in (resource.get("code") or {}).get("coding") or []:
        known = isinstance(coding, Mapping) and coding.get("system") in (LOINC, None)
        if known and str(coding.get("code")) in vs.kidney:
            code = str(coding["code"])
            break
    if code is None or resource.get("status") in ("entered-in-error", "cancelled"):
        return None
    quantity = resource.get("valueQuantity")
    value = dosing.num(quantity.get("value")) if isinstance(quantity, Mapping) else None
    if value is None:
        return None
    when = (
        dosing.parse_date(resource.get("effectiveDateTime"))
        or dosing.parse_date((resource.get("effectivePeriod") or {}).get("start"))
        or dosing.parse_date(resource.get("issued"))
    )
    unit = quantity.get("code") or quantity.get("unit")
    return LabValue(vs.kidney[code]["kind"], value, str(unit) if unit else None, when, code)


def _latest(labs: Sequence[tuple[LabValue, int]]) -> LabValue | None:
    """``labs`` pairs each result with its code's rank (lower is preferred)."""
    if not labs:
        return None
    # newest first; same day → the preferred (non-race-adjusted) code, knowledge D.4
    return max(labs, key=lambda item: (item[0].when or date.min, -item[1]))[0]


@dataclass(frozen=True)
class RecordBase:
    """What every diazepam order of one request shares: the patient's resources classified once.

    Classifying is the costly part (code look-ups per medication); a request may carry hundreds
    of drafts, so doing it per order made one request cost O(orders x drafts). The per-order
    view (``record_for``) only filters these lists by the order's date and its own id.
    """

    birth: date | None
    missing: frozenset[str]
    medications: tuple[MedicationUse, ...]
    drafts: tuple[MedicationUse, ...]
    conditions: Mapping[str, date | None]
    condition_codes: Mapping[str, tuple[str, ...]]
    condition_refs: Mapping[str, frozenset[str]]
    labs: tuple[tuple[LabValue, int], ...]  # dated kidney results with their code's rank
    allergies: frozenset[str]


def prepare_record(
    data: PatientData,
    vs: ValueSets,
    policy: Policy,
    drafts: Iterable[Mapping[str, Any]] = (),
) -> RecordBase:
    """Classify the patient's data and the request's draft orders once per request."""
    drafts = list(drafts)
    patient = data.patient
    birth = dosing.parse_date(patient.get("birthDate")) if isinstance(patient, Mapping) else None
    all_resources = [r for key in data.resources for r in data.of(key)]
    refs = LazyReferenceIndex(lambda: [*all_resources, *drafts])

    medications = []
    reader: OrderReader | None = None
    for res in data.of("medications"):
        if res.get("resourceType") not in ORDER_TYPES + ("MedicationStatement",):
            continue
        use = medication_use(res, vs, refs)
        if use is not None and "diazepam" in use.ingredients:
            reader = reader or OrderReader(vs, validate=False)
            use = _with_dose(use, res, reader, refs)
        if use is not None:
            medications.append(use)
    # The request's other draft orders are always classified, like active medications: every
    # drug-based input (F.1 "interacting drugs") reads them. Policy flags only decide which
    # rules count them (Beers CNS count, opioid co-use), not whether they are seen.
    draft_uses = []
    for res in drafts:
        if not isinstance(res, Mapping) or res.get("resourceType") not in ORDER_TYPES:
            continue
        use = medication_use(res, vs, refs)
        if use is not None and "diazepam" in use.ingredients:
            # another pended diazepam order is said with its dose (a duplicate, round 7 F3)
            reader = reader or OrderReader(vs, validate=False)
            use = _with_dose(use, res, reader, refs)
        if use is not None:
            draft_uses.append(use)

    conditions, condition_codes, condition_refs = _conditions(data, vs, policy)
    labs = []
    for res in data.of("observations"):
        if res.get("resourceType") != "Observation":
            continue
        lab = _lab(res, vs)
        # an undated result cannot be placed in the look-back window
        if lab is not None and lab.when is not None:
            labs.append((lab, int(vs.kidney[lab.code]["rank"])))
    return RecordBase(
        birth=birth,
        missing=frozenset(data.missing),
        medications=tuple(medications),
        drafts=tuple(draft_uses),
        conditions=conditions,
        condition_codes={k: tuple(v) for k, v in condition_codes.items()},
        condition_refs=condition_refs,
        labs=tuple(labs),
        allergies=_allergies(data, vs),
    )


def record_for(base: RecordBase, order: DiazepamOrder, policy: Policy) -> PatientRecord:
    """The PatientRecord at the order's date, leaving the order itself out of its own record."""
    record = PatientRecord()
    unknown = set(base.missing)
    on = order.order_date
    if base.birth is not None and base.birth <= on:
        record.age_years, record.age_months = dosing.age_on(base.birth, on)
    else:
        unknown.add("age")
    maoi_since = on - timedelta(days=int(policy["windows"]["maoi_days"]))
    for use in base.medications:
        if use.ref == order.ref:
            continue
        if use.status in _ACTIVE_MED:
            record.medications.append(use)
        elif use.status in _STOPPED_MED and use.end is not None and use.end >= maoi_since:
            record.recently_stopped.append(use)
    record.draft_medications = [use for use in base.drafts if use.ref != order.ref]
    record.conditions = dict(base.conditions)
    record.condition_codes = {k: list(v) for k, v in base.condition_codes.items()}
    record.condition_refs = dict(base.condition_refs)
    lookback = on - timedelta(days=int(policy["renal"]["lookback_days"]))
    in_window = [item for item in base.labs if lookback <= item[0].when <= on]  # type: ignore[operator]
    record.egfr = _latest([item for item in in_window if item[0].kind == "egfr"])
    record.crcl = _latest([item for item in in_window if item[0].kind == "crcl"])
    record.allergies = base.allergies
    record.unknown = frozenset(unknown)
    return record


def build_record(
    data: PatientData,
    vs: ValueSets,
    policy: Policy,
    order: DiazepamOrder,
    drafts: Iterable[Mapping[str, Any]] = (),
) -> PatientRecord:
    """PatientRecord at the order's date; ``drafts`` are the request's other draft orders.

    For one order; a request with several orders prepares once and calls ``record_for``."""
    return record_for(prepare_record(data, vs, policy, drafts), order, policy)


def _conditions(
    data: PatientData, vs: ValueSets, policy: Policy
) -> tuple[dict[str, date | None], dict[str, list[str]], dict[str, frozenset[str]]]:
    conditions: dict[str, date | None] = {}
    condition_codes: dict[str, list[str]] = {}
    condition_refs: dict[str, frozenset[str]] = {}
    history = set(policy["history_groups"])
    for res in data.of("conditions"):
        if res.get("resourceType") != "Condition":
            continue
        if _status_code(res.get("verificationStatus")) in _REFUTED:
            continue
        groups = vs.groups_of_concept(res.get("code"))
        if not groups:
            continue
        inactive = _status_code(res.get("clinicalStatus")) in _INACTIVE_CONDITION
        when = dosing.parse_date(res.get("onsetDateTime")) or dosing.parse_date(
            res.get("recordedDate")
        )
        condition_refs[f"Condition/{res.get('id')}"] = groups
        for group in groups:
            if inactive and group not in history:
                continue
            previous = conditions.get(group)
            if group not in conditions or (when and (previous is None or when > previous)):
                conditions[group] = when
            codes = [
                str(c.get("code"))
                for c in (res.get("code") or {}).get("coding") or []
                if isinstance(c, Mapping) and c.get("code")
            ]
            condition_codes.setdefault(group, []).extend(codes[:1])
    return conditions, condition_codes, condition_refs


def _allergies(data: PatientData, vs: ValueSets) -> frozenset[str]:
    allergies: set[str] = set()
    for res in data.of("allergies"):
        if res.get("resourceType") != "AllergyIntolerance":
            continue
        if _status_code(res.get("verificationStatus")) in _REFUTED:
            continue
        if _status_code(res.get("clinicalStatus")) in ("inactive", "resolved"):
            continue
        concept = res.get("code") or res.get("substance")
        if not isinstance(concept, Mapping):
            continue
        codings = [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]
        text = " ".join(
            [str(concept.get("text") or "")] + [str(c.get("display") or "") for c in codings]
        )
        allergies |= vs.ingredients_of(codings, str(concept.get("text") or ""))
        if "benzodiazepine" in text.lower():
            allergies.add("benzodiazepine")
    return frozenset(allergies)
