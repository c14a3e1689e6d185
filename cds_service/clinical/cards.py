"""Card templates (top-level ``cards/``) and rendering a Finding into a CDS Hooks card.

Templates are validated at start-up against ``data/schemas/card-template.schema.json``; a bad
template, a missing topic, an unknown link key or a placeholder the rules never fill stops
start-up with a message naming the file. Rendering is string formatting and dict building.
"""

from __future__ import annotations

import json
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from cds_service.clinical.models import DiazepamOrder, Finding
from cds_service.clinical.policy import Policy
from cds_service.clinical.suggestions import edits_in_text, shape_suggestions, typed_orders
from cds_service.clinical.valuesets import SCHEMA_DIR
from cds_service.config import ConfigError

TOPICS = (
    "diazepam-contraindication",
    "opioid-benzodiazepine",
    "beers-benzodiazepine",
    "beers-cns-active",
    "duration-limit",
    "dose-limit",
    "muscle-relaxant-alternative",
    "no-suitable-alternative",
    "taper-required",
    "pregnancy-lactation",
    "indication-missing",
    "substance-use-risk",
    "cns-depressant-combination",
    "diazepam-interaction",
)
SUMMARY_MAX = 139


class TemplateError(ConfigError):
    """A card template cannot be used; start-up stops with this message."""


@dataclass(frozen=True)
class Template:
    topic: str
    data: dict[str, Any]
    links: tuple[dict[str, str], ...]
    variant_links: dict[str, tuple[dict[str, str], ...]] = field(default_factory=dict)

    def variant(self, name: str) -> dict[str, Any]:
        variants = self.data["variants"]
        return variants.get(name) or variants.get("default") or next(iter(variants.values()))

    def links_for(self, name: str) -> tuple[dict[str, str], ...]:
        """The variant's own links when it names them (its claims rest on other sources,
        F.0-7), else the template's."""
        variants = self.data["variants"]
        chosen = name if name in variants else ("default" if "default" in variants else None)
        if chosen is None:
            chosen = next(iter(variants))
        return self.variant_links.get(chosen, self.links)


class _Blank(dict):  # type: ignore[type-arg]
    """Missing placeholders render as '?' rather than raising on a clinician's click."""

    def __missing__(self, key: str) -> str:
        return "?"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _first_error(validator: Draft202012Validator, data: Any) -> str | None:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
    return f"{where}: {errors[0].message}"


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def load_templates(cards_dir: str | Path) -> dict[str, Template]:
    base = Path(cards_dir)
    if not base.is_dir():
        raise TemplateError(f"cards directory {base} does not exist (CDS_CARDS_DIR)")
    links_file = base / "links.json"
    try:
        links = json.loads(links_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"card links file {links_file} unreadable: {exc}") from exc
    problem = _first_error(_validator("card-links.schema.json"), links)
    if problem:
        raise TemplateError(f"card links file {links_file}: {problem}")
    validator = _validator("card-template.schema.json")
    templates: dict[str, Template] = {}
    for path in sorted(base.glob("*.json")):
        if path.name == "links.json":
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TemplateError(f"card template {path} unreadable: {exc}") from exc
        problem = _first_error(validator, data)
        if problem:
            raise TemplateError(f"card template {path.name} invalid at {problem}")
        topic = data["topic"]["code"]
        if path.stem != topic:
            raise TemplateError(f"card template {path.name} declares topic {topic!r}")
        keys = [*data["links"], *(k for v in data["variants"].values() for k in v.get("links", []))]
        unknown = [key for key in keys if key not in links]
        if unknown:
            raise TemplateError(f"card template {path.name}: unknown link keys {unknown}")
        for name, variant in data["variants"].items():
            try:
                placeholders(variant["summary"])
                placeholders(variant["detail"])
            except ValueError as exc:
                raise TemplateError(f"card template {path.name} variant {name}: {exc}") from exc
        for entry in data.get("catalogue", {}).get("indicators", []):
            strays = [v for v in entry.get("variants", []) if v not in data["variants"]]
            if strays:
                raise TemplateError(
                    f"card template {path.name}: catalogue indicator names unknown variants "
                    f"{strays}"
                )
        templates[topic] = Template(
            topic=topic,
            data=data,
            links=tuple({**links[key], "type": "absolute"} for key in data["links"]),
            variant_links={
                name: tuple({**links[key], "type": "absolute"} for key in variant["links"])
                for name, variant in data["variants"].items()
                if variant.get("links")
            },
        )
    missing = [t for t in TOPICS if t not in templates]
    if missing:
        raise TemplateError(f"cards directory {base} lacks templates for topics {missing}")
    override_reason_concepts(templates)  # one display per code, or start-up stops
    return templates


def override_reason_concepts(templates: dict[str, Template]) -> dict[str, str]:
    """Every override reason code any card can carry, with its one display (the
    override-reason CodeSystem). A code shown with two displays would make one of them
    wrong in the published CodeSystem: that stops start-up, naming both templates."""
    concepts: dict[str, tuple[str, str]] = {}
    for topic in sorted(templates):
        for reason in templates[topic].data["override_reasons"]:
            code, display = reason["code"], reason["display"]
            first = concepts.setdefault(code, (display, topic))
            if first[0] != display:
                raise TemplateError(
                    f"override reason {code!r} has two displays: {first[0]!r} in "
                    f"{first[1]}.json and {display!r} in {topic}.json"
                )
    return {code: display for code, (display, _) in concepts.items()}


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def render(
    finding: Finding,
    template: Template,
    order: DiazepamOrder,
    policy: Policy,
    profile: str,
    general_unknowns: list[str],
    missing: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    variant = template.variant(finding.variant)
    facts = _Blank({k: v for k, v in finding.facts.items() if v is not None})
    summary = _summary(finding.summary_override or variant["summary"].format_map(facts))
    detail = variant["detail"].format_map(facts)
    if finding.lead_notes:
        detail = "\n\n".join([*finding.lead_notes, detail])
    for note in [*finding.notes, *typed_orders(finding.options, profile, policy)]:
        detail += "\n\n" + note
    unknowns = list(dict.fromkeys([*finding.unknowns, *general_unknowns]))
    if unknowns:
        detail += "\n\n**Not known when this advice was made:** " + "; ".join(unknowns) + "."
    suggestions, behaviour = shape_suggestions(finding.options, order, profile, policy)
    roles = {s["uuid"]: s.pop("_role") for s in suggestions if "_role" in s}
    edits = edits_in_text(finding.options, profile, policy)
    if edits:
        detail = (
            "**To change the pended order, edit it:** " + "; or ".join(edits) + ".\n\n" + detail
        )
    split = not policy["profiles"].get(profile, policy["profiles"]["standard"])["updates"]
    several = len({ref for o in finding.options for ref, _ in o.removes or []}) > 1
    replaces = any(o.kind == "replace" for o in finding.options)
    if split and several:
        # several pended orders (review round 1 H1): Epic applies any number of the
        # suggestions, so the card says how to keep one
        keep_one = policy["compose"]["duplicate_note_epic"]
        if replaces:
            detail = (
                "**To switch: select Remove for each diazepam order and one alternative. "
                f"{keep_one}**\n\n{detail}"
            )
        else:
            detail = f"{keep_one}\n\n{detail}"
    elif replaces and split:
        detail = "**To switch: select both Remove diazepam and one alternative.**\n\n" + detail
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": finding.indicator,
        "detail": detail,
        "source": {
            "label": (variant.get("source") or template.data["source"])["label"],
            "url": (variant.get("source") or template.data["source"])["url"],
            "topic": {
                "system": policy.topic_system,
                "code": template.topic,
                "display": template.data["topic"]["display"],
            },
        },
        "links": [dict(link) for link in template.links_for(finding.variant)],
    }
    if finding.indicator != "info":
        # F.2a: an info card asks for no reason to dismiss it (CDS Hooks: overrideReasons is
        # optional; feedback may report an override without one)
        card["overrideReasons"] = [
            {"system": policy.override_system, "code": r["code"], "display": r["display"]}
            for r in template.data["override_reasons"]
            if r["code"] not in finding.unfit_reasons
        ] or [
            {"system": policy.override_system, "code": r["code"], "display": r["display"]}
            for r in template.data["override_reasons"]
        ]
    taken = [{"uuid": s["uuid"], **s.pop("_taken", {})} for s in suggestions]
    if suggestions:
        card["selectionBehavior"] = behaviour
        card["suggestions"] = suggestions
    audit = dict(finding.audit)
    if taken:
        audit["suggestions"] = taken
    audit.setdefault("order_id", order.ref)
    audit.setdefault("rule", template.topic)
    audit.setdefault("variant", finding.variant)
    audit["indicator"] = finding.indicator
    audit["draft_valid_r4"] = order.fhir_valid
    audit["route_source"] = order.route_source
    if missing:
        audit["missing"] = sorted(missing)
    card["_audit"] = {k: v for k, v in audit.items() if v not in (None, [], {}, "")}
    if roles:
        card["_suggestion_roles"] = roles  # for the store (feedback report), never sent
    return card
