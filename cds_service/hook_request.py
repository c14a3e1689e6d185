"""Turn a request body into a validated, typed hook request (or a 400 that names the field).

Validators are compiled once per worker (at start-up, ``register_schemas``): a compiled
fastjsonschema check answers the common case, "valid", in a few microseconds; only a body it
refuses reaches jsonschema, whose errors name the field in the 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any, cast

import fastjsonschema
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from cds_service.compat import patient_id_of
from cds_service.errors import ApiError

SCHEMA_FILES = {
    "order-select": "order-select-request.json",
    "order-sign": "order-sign-request.json",
    "feedback": "feedback-request.json",
}


@cache
def _schema(name: str) -> dict[str, Any]:
    text = resources.files("cds_service.schemas").joinpath(SCHEMA_FILES[name]).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(_schema(name))


# Keywords whose meaning is the same in draft 7 (fastjsonschema's newest) and 2020-12, plus
# dependentRequired, which draft 7 spells ``dependencies``. A schema using anything else is
# only ever checked by jsonschema. ``format`` is compiled off, as jsonschema treats it here.
_DRAFT7_SAFE = frozenset(
    {
        "$schema", "$id", "title", "description", "type", "const", "enum", "required",
        "properties", "additionalProperties", "items", "minItems", "maxItems", "minLength",
        "maxLength", "pattern", "minimum", "maximum", "dependentRequired", "format",
        "anyOf", "allOf", "oneOf", "not", "if", "then", "else",
    }
)  # fmt: skip
_ONE_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "then", "else")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def _subschemas(schema: dict[str, Any]) -> list[Any]:
    found: list[Any] = []
    if isinstance(schema.get("properties"), dict):
        found += schema["properties"].values()
    found += [schema[k] for k in _ONE_SUBSCHEMA if k in schema]
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            found += schema[key]
    return found


def _keywords(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for sub in _subschemas(schema):
        found |= _keywords(sub)
    return found


def _as_draft7(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _as_draft7(v) for k, v in out["properties"].items()}
    for key in _ONE_SUBSCHEMA:
        if key in out:
            out[key] = _as_draft7(out[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_as_draft7(v) for v in out[key]]
    if "dependentRequired" in out:
        out["dependencies"] = out.pop("dependentRequired")
    if "$schema" in out:
        out["$schema"] = "http://json-schema.org/draft-07/schema#"
    return out


@cache
def fast_check(name: str) -> Callable[[Any], Any] | None:
    """A compiled yes/no check for the hot path (fastjsonschema generates plain Python: about
    a tenth of jsonschema's time per call). It only says "valid"; a body it refuses is
    checked again by jsonschema, which decides and words the 400. None when the schema uses
    a keyword outside ``_DRAFT7_SAFE``."""
    schema = _schema(name)
    if not _keywords(schema) <= _DRAFT7_SAFE:
        return None
    return cast(Callable[[Any], Any], fastjsonschema.compile(_as_draft7(schema), use_formats=False))


@dataclass(frozen=True)
class HookRequest:
    """The parts of a CDS Hooks call the pipeline uses. ``raw`` keeps the validated JSON."""

    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    draft_orders: dict[str, Any]
    selections: tuple[str, ...] | None
    encounter_id: str | None = None
    fhir_server: str | None = None
    access_token: str | None = field(default=None, repr=False)
    prefetch: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # the one reference time of this call: ages, look-backs and "days since" are counted to
    # it, never to each draft's own authoredOn (test drafts dated years apart gave two ages)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC), compare=False)
    # resources the request lacked but its drafts reference, read from fhirServer
    # (Medication/<id>, see cds_service.fhir.medication)
    extra_resources: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)

    @property
    def reference_date(self) -> date:
        return self.received_at.date()

    @property
    def draft_resources(self) -> list[dict[str, Any]]:
        entries = self.draft_orders.get("entry") or []
        return [e["resource"] for e in entries if isinstance(e, dict) and "resource" in e]


class _NotJson(ValueError):
    """A literal Python's json module accepts but JSON (RFC 8259) does not."""


def _reject_constant(name: str) -> Any:
    # NaN and Infinity would flow into dose arithmetic and be echoed back in suggestions as
    # literals no JavaScript client can parse.
    raise _NotJson(f"{name} is not a JSON number.")


class _OutOfRange:
    """Stands in for a number no float can hold (``1e999``, an integer of thousands of digits)
    while the document is parsed, so the 400 can name the field that held it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _finite_float(text: str) -> float | _OutOfRange:
    value = float(text)
    if math.isinf(value):
        return _OutOfRange(text)
    return value


def _bounded_int(text: str) -> int | _OutOfRange:
    try:
        return int(text)
    except ValueError:  # past sys.get_int_max_str_digits(): thousands of digits
        return _OutOfRange(text)


def _find_out_of_range(value: Any, path: list[str]) -> tuple[list[str], _OutOfRange] | None:
    stack: list[tuple[Any, list[str]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _OutOfRange):
            return where, item
        if isinstance(item, dict):
            stack.extend((v, [*where, str(k)]) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, [*where, str(i)]) for i, v in reversed(list(enumerate(item))))
    return None


def parse_json_body(data: bytes) -> Any:
    """Decode JSON with a message a client can act on.

    orjson first: it parses a large prefetch in half the time of the standard library and
    rejects NaN, Infinity and out-of-range numbers by itself. Whatever it refuses goes
    through the standard library too, which accepts what it always accepted and words the
    error (byte offset, line and column, which literal) the way clients already see it; a
    number beyond any float's range gets a 400 naming its field."""
    if not data:
        raise ApiError(400, "Request body is empty; expected a JSON object.")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    return _parse_json_slowly(data)


def _parse_json_slowly(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"Request body is not UTF-8 (byte {exc.start}).") from None
    try:
        body = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except _NotJson as exc:
        raise ApiError(400, f"Malformed JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"Malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except (RecursionError, MemoryError):
        raise ApiError(400, "Malformed JSON: nesting too deep.") from None
    try:
        found = _find_out_of_range(body, [])
    except RecursionError:  # pragma: no cover - the walk is iterative
        found = None
    if found is not None:
        where, number = found
        field_name = ".".join(where) or "(body)"
        shown = number.text if len(number.text) <= 20 else number.text[:20] + "…"
        raise ApiError(
            400,
            f"Invalid field '{field_name[:300]}': number {shown} is out of range "
            "(no JSON client can read it as a number).",
        )
    return body


def _describe(error: ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "(body)"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where = f"{path}.{missing}" if path != "(body)" else missing
        return f"Missing required field '{where}'."
    if error.validator == "dependentRequired":
        return "Field 'fhirServer' is required when 'fhirAuthorization' is present."
    if error.validator == "const" and path == "hook":
        return f"Field 'hook' must be {error.validator_value!r} for this service."
    message = error.message
    if len(message) > 200:
        message = message[:200] + "…"
    return f"Invalid field '{path}': {message}"


def validate(name: str, body: Any) -> None:
    """Raise a 400 ApiError naming the first (deterministically chosen) schema violation."""
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    check = fast_check(name)
    if check is not None:
        try:
            check(body)
            return
        except (fastjsonschema.JsonSchemaException, RecursionError):
            pass  # jsonschema decides, and says why
    try:
        errors = sorted(
            validator(name).iter_errors(body),
            key=lambda e: (len(list(e.absolute_path)), [str(p) for p in e.absolute_path]),
        )
    except RecursionError:
        raise ApiError(400, "Request body nests too deeply.") from None
    if errors:
        raise ApiError(400, _describe(errors[0]))


def build_hook_request(body: dict[str, Any]) -> HookRequest:
    """Typed view of a body that already passed ``validate``."""
    context = body["context"]
    auth = body.get("fhirAuthorization") or {}
    selections = context.get("selections")
    return HookRequest(
        hook=body["hook"],
        hook_instance=body["hookInstance"],
        patient_id=patient_id_of(context["patientId"]),
        user_id=context["userId"],
        encounter_id=context.get("encounterId"),
        draft_orders=context["draftOrders"],
        selections=tuple(selections) if body["hook"] == "order-select" else None,
        fhir_server=body.get("fhirServer"),
        access_token=auth.get("access_token"),
        prefetch=body.get("prefetch"),
        raw=body,
    )


# draft order resource types (MedicationOrder: DSTU2)
ORDER_TYPES = ("MedicationRequest", "MedicationOrder")


# a literal reference to a Patient, relative or absolute, optionally versioned
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")


def subject_patient_id(draft: Mapping[str, Any]) -> str | None:
    """The id of the Patient a draft names as its subject (``patient`` in DSTU2), or None when
    it names none we can compare: no subject, a contained, logical, ``urn:`` or Group
    reference. Those are read as the context's patient, as before."""
    subject = draft.get("subject", draft.get("patient"))
    reference = subject.get("reference") if isinstance(subject, Mapping) else None
    if not isinstance(reference, str):
        return None
    match = _PATIENT_REFERENCE.search(reference.strip())
    return match.group(1) if match else None


def _selected(request: HookRequest) -> list[Mapping[str, Any]]:
    drafts = [
        r
        for r in request.draft_resources
        if isinstance(r, Mapping) and r.get("resourceType") in ORDER_TYPES
    ]
    if request.hook == "order-select":
        chosen = set(request.selections or ())
        drafts = [r for r in drafts if f"{r.get('resourceType')}/{r.get('id')}" in chosen]
    return drafts


def _for_this_patient(draft: Mapping[str, Any], patient_id: str) -> bool:
    named = subject_patient_id(draft)
    return named is None or named == patient_id


def drafts_in_scope(request: HookRequest) -> list[Mapping[str, Any]]:
    """The draft medication orders the call advises on: every draft at order-sign, only the
    selected ones at order-select (CDS Hooks 2.0), and only those for the context's patient.
    A draft whose subject is another patient would otherwise get advice made from this
    patient's record (age, kidneys, other drugs): it gets none (``drafts_for_other_patients``
    names it for the log)."""
    return [d for d in _selected(request) if _for_this_patient(d, request.patient_id)]


def unselected_drafts(request: HookRequest) -> list[Mapping[str, Any]]:
    """At order-select, this patient's pended orders that were not selected (the rest of the
    order set); none at order-sign, where every draft is in scope."""
    if request.hook != "order-select":
        return []
    chosen = set(request.selections or ())
    return [
        r
        for r in request.draft_resources
        if isinstance(r, Mapping)
        and r.get("resourceType") in ORDER_TYPES
        and f"{r.get('resourceType')}/{r.get('id')}" not in chosen
        and _for_this_patient(r, request.patient_id)
    ]


def drafts_for_other_patients(request: HookRequest) -> list[str]:
    """Type/id of each draft in the selection whose subject is another patient."""
    return [
        f"{d.get('resourceType')}/{d.get('id')}" if d.get("id") else str(d.get("resourceType"))
        for d in _selected(request)
        if not _for_this_patient(d, request.patient_id)
    ]
