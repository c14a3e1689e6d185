"""What every answer must look like, checked against ``openapi.yaml`` itself (not a copy).

Shared by the hostile-input runner, the card property tests and the load tests, so "a valid
card" means the same thing everywhere: the spec's Card schema, plus CDS Hooks' rule that a
field with no value is omitted (no null, "", [] or {}), plus the texts a clinician reads never
showing arithmetic accidents (nan, inf, None).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cds_service.compare import card_problems as spec_card_problems

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"

# openapi.yaml is OpenAPI 3.1; schemathesis 3.x reads it only with this switch on. It lives here,
# in the module every schemathesis-using test imports, so no test depends on which other test
# files the same process happened to load.
schemathesis.experimental.OPEN_API_3_1.enable()
_ACCIDENTS = re.compile(r"\b(NaN|nan|inf|Infinity|None|null|undefined)\b|\{\w+\}")
_TEXT_FIELDS = ("summary", "detail", "label", "description", "display")

# The schemathesis checks every contract test applies: no 5xx, only declared statuses, declared
# content types, headers and body schemas, and invalid input refused.
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
)


@cache
def _components() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]


@cache
def schema_validator(component: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<component>`` resolving the spec's own $refs."""
    root = {"components": _components(), "$ref": f"#/components/schemas/{component}"}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(component: str, value: Any) -> list[str]:
    errors = schema_validator(component).iter_errors(value)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]


def _texts(value: Any, where: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _TEXT_FIELDS and isinstance(item, str):
                out.append((f"{where}/{key}", item))
            elif key != "resource":  # FHIR resources in actions are data, not prose
                out.extend(_texts(item, f"{where}/{key}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_texts(item, f"{where}/{i}"))
    return out


def card_problems(card: dict[str, Any]) -> list[str]:
    """Everything wrong with one card as a client would receive it; empty when it is fine:
    the product's CDS Hooks card rules (the ones replay applies), the OpenAPI Card schema, and
    the robustness extras (accidental text, impossible numbers in suggested orders)."""
    problems = spec_card_problems(card) + schema_errors("Card", card)
    for path, text in _texts(card):
        if not text.strip():
            problems.append(f"blank text at {path}")
        match = _ACCIDENTS.search(text)
        if match:
            problems.append(f"{path} shows {match.group(0)!r}: {text[:120]!r}")
    for suggestion in card.get("suggestions") or []:
        for action in suggestion.get("actions") or []:
            problems += [f"action resource: {p}" for p in _number_problems(action.get("resource"))]
    return problems


def _number_problems(value: Any, where: str = "") -> list[str]:
    """A suggested order must not carry a negative, zero-by-accident or non-finite quantity."""
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}/{key}"
            if key == "value" and isinstance(item, int | float):
                if item != item or item in (float("inf"), float("-inf")) or item < 0:
                    out.append(f"{path} = {item}")
            else:
                out.extend(_number_problems(item, path))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_number_problems(item, f"{where}/{i}"))
    return out


def answer_problems(status: int, content_type: str, body: bytes) -> list[str]:
    """Problems with a whole hook/feedback answer: JSON always; OperationOutcome on errors,
    cards that pass ``card_problems`` on 200."""
    if not content_type.startswith("application/json"):
        return [f"content type {content_type!r}"]
    try:
        data = json.loads(body)
    except ValueError:
        return ["body is not JSON"]
    if status >= 400:
        return [f"error body: {p}" for p in schema_errors("OperationOutcome", data)]
    if isinstance(data, dict) and "cards" in data:
        problems = [] if isinstance(data["cards"], list) else ["cards is not a list"]
        for i, card in enumerate(data["cards"] if not problems else []):
            problems += [f"card {i}: {p}" for p in card_problems(card)]
        uuids = [c.get("uuid") for c in data["cards"] if isinstance(c, dict)]
        if len(uuids) != len(set(uuids)):
            problems.append("duplicate card uuids")
        return problems
    return []
