"""Card templates (top-level ``cards/``) and rendering a Finding into a CDS Hooks card.

Templates are validated at start-up against ``data/schemas/card-template.schema.json``; a bad
template, a missing topic, an unknown link key or a placeholder the rules never fill stops
start-up with a message naming the file. Rendering is string formatting and dict building.
"""

from __future__ import annotations

import json
import re
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from cds_service.clinical.models import DRAFT_KINDS, SUMMARY_MAX, DiazepamOrder, Finding
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import supplied
from cds_service.clinical.suggestions import (
    dose_words,
    product_words,
    shape_suggestions,
    typed_orders,
)
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


class TemplateError(ConfigError):
    """A card template cannot be used; start-up stops with this message."""


@dataclass(frozen=True)
class Template:
    topic: str
    data: dict[str, Any]
    links: tuple[dict[str, str], ...]
    variant_links: dict[str, tuple[dict[str, str], ...]] = field(default_factory=dict)
    # link URL -> the condition under which it is cited ("age65", "opioid", "pregnancy"):
    # a card cites the source that supports its own claim (F.0-7), so the CDC opioid
    # guideline only beside an opioid, AGS Beers only for a patient who may be 65 or older
    link_conditions: dict[str, str] = field(default_factory=dict)

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

    def cited_links(self, name: str, holds: frozenset[str], text: str = "") -> list[dict[str, str]]:
        """The variant's links whose condition (``links_only_if``) holds for this card;
        ``named``: a drug's label only where the card names the drug (``text``: its
        summary, detail and suggestion labels)."""
        said = text.lower()
        return [
            dict(link)
            for link in self.links_for(name)
            if self.link_conditions.get(link["url"]) in (None, *holds)
            or (
                self.link_conditions.get(link["url"]) == "named"
                and link["label"].split()[0].lower() in said
            )
        ]


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
        conditional = data.get("links_only_if", {})
        strays = [key for key in conditional if key not in keys]
        if strays:
            raise TemplateError(f"card template {path.name}: links_only_if names {strays}")
        for name, variant in data["variants"].items():
            try:
                for text in ("summary", "detail", "detail_edited", "line"):
                    placeholders(variant.get(text, ""))
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
            link_conditions={links[key]["url"]: when for key, when in conditional.items()},
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


# "(cirrhosis or chronic liver disease (hepatic impairment))": a condition's own title in
# parentheses inside the card's (review round 5, Low); said "(..., hepatic impairment)"
_NESTED = re.compile(r"\(([^()]*?)\s*\(([^()]*)\)\)")


def _flat(text: str) -> str:
    """One level of parentheses: an inner one closing with the outer becomes a comma."""
    return _NESTED.sub(r"(\1, \2)", text)


def _summary(text: str) -> str:
    text = _flat(" ".join(text.split()))
    text = text[:1].upper() + text[1:]  # a drug named first ("fluvoxamine …"), review round 8
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
    split = not policy["profiles"].get(profile, policy["profiles"]["standard"])["updates"]
    said_facts = {**finding.facts, **(finding.typed_facts if split else {})}
    facts = _Blank({k: v for k, v in said_facts.items() if v is not None})
    summary = _summary(finding.summary_override or variant["summary"].format_map(facts))
    several = (
        len({ref for o in finding.options for ref, _ in o.removes or []}) > 1
        or len(finding.audit.get("duplicate_orders") or []) > 1
    )
    replaces = any(o.kind == "replace" for o in finding.options)
    rule = policy["compose"]
    head: list[str] = []  # the profile's action lines (Epic): what to select, what to edit
    if replaces and split:
        head.append(
            "**To switch: select Remove for each diazepam order and one alternative.**"
            if several
            else "**To switch: select both Remove diazepam and one alternative.**"
        )
    edits = _edits(finding.options, order, policy, several) if split else []
    heads = rule["edit_heads"]
    if split and several:
        # several pended orders (review round 1 H1): Epic applies any number of the
        # suggestions, so the card says how to keep one
        # an order kept as it is (a Remove of each other order) is a line too; a long-term
        # user keeps one order (review round 6 H-1), said in the statement below
        keeps_first = finding.options and finding.options[0].kind == "delete"
        if finding.audit.get("keep_one") and keeps_first:
            # the keeps first (a stated long-term use or hospice: the dose taken, round 7 F11)
            lines = _keep_one_lines(finding.options, heads, first=True)
            lines += _edit_lines(edits, heads, rule["duplicate_note_epic"], leading=not lines)
        else:
            lines = _edit_lines(edits, heads, rule["duplicate_note_epic"])
            lines += _keep_one_lines(finding.options, heads, first=not lines)
        head += lines  # none: no order may be kept (an absolute contraindication)
    elif edits:
        lines = _edit_lines(edits, heads, heads["or"] if head else heads["first"])
        if finding.audit.get("other_diazepam_pended") and any(
            "the pended one" in line for line in lines
        ):
            # another diazepam order (a rescue product) is pended too: say which one goes
            # (review round 9 #2: the rescue could be removed, F.0-3)
            mine = product_words(order, policy) or "diazepam"
            lines.append(rule["pended_one_note"].format(order=mine))
        head += lines
    said = " ".join(head).replace("**", "").lower()
    # Epic does not apply a created order's details: each "Add X" is typed out in full (N4)
    typed = typed_orders(finding.options, profile, policy)
    notes = [n for n in dict.fromkeys([*finding.notes, *typed]) if not _said(n, said)]
    unknowns = list(dict.fromkeys([*finding.unknowns, *general_unknowns]))
    tail = ["**Not known:** " + "; ".join(unknowns) + "."] if unknowns else []
    own_edit = edits and any(o.kind == "update" for o in finding.options)
    body = (
        (variant.get("detail_several") if finding.audit.get("keep_one") else None)
        or (variant.get("detail_edited") if own_edit else None)
        or variant["detail"]
    )
    body = body.format_map(facts)
    lead = finding.lead_notes
    if split and several:
        # the "keep one" line above says what the statement's opening says
        keep = rule["duplicate_note"].partition("{against}")[0] + ": "
        lead = [n[len(keep) :].capitalize() if n.startswith(keep) else n for n in lead]
    detail = _flat("\n\n".join([*head, *lead, body, *notes, *tail]))
    suggestions, behaviour = shape_suggestions(
        finding.options, order, profile, policy, keeper=finding.audit.get("keeper")
    )
    roles = {s["uuid"]: s.pop("_role") for s in suggestions if "_role" in s}
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
    }
    named = " ".join([summary, detail, *(s["label"] for s in suggestions)])
    card["links"] = template.cited_links(finding.variant, _conditions(finding, policy), named)
    if finding.indicator != "info":
        # F.2a: an info card asks for no reason to dismiss it (CDS Hooks: overrideReasons is
        # optional; feedback may report an override without one). A reason that names a
        # choice the card does not hold is left off (second review N10)
        holds = {"always", "replaces"} if replaces else {"always"}
        fitting = [r for r in template.data["override_reasons"] if r.get("when", "always") in holds]
        chosen = [r for r in fitting if r["code"] not in finding.unfit_reasons] or fitting
        card["overrideReasons"] = [
            {"system": policy.override_system, "code": r["code"], "display": r["display"]}
            for r in chosen
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
    if any(o.kind in DRAFT_KINDS for o in finding.options):
        # this card holds the decision on its pended order (F.2a), as suggestions or, in a
        # profile without updates, as edits in its text: folded lines go here
        audit["decides"] = True
    card["_audit"] = {k: v for k, v in audit.items() if v not in (None, [], {}, "")}
    if roles:
        card["_suggestion_roles"] = roles  # for the store (feedback report), never sent
    # the sentence this card becomes if it is folded into its order's decision card
    # (compose.fold_actionless pops it: never sent, never stored)
    card["_line"] = " ".join((variant.get("line") or summary).format_map(facts).split())
    return card


def _conditions(finding: Finding, policy: Policy) -> frozenset[str]:
    """Which ``links_only_if`` conditions hold for this card's patient: ``age65`` unless the
    patient is known to be younger than the AGS Beers age; ``opioid`` and ``pregnancy`` as
    compose.note_context recorded them."""
    age = finding.audit.get("age")
    holds = {key for key in ("opioid", "pregnancy") if finding.audit.get(key)}
    if age is None or age >= policy["age"]["beers_min_age"]:
        holds.add("age65")
    return frozenset(holds)


def _said(note: str, said: str) -> bool:
    """A note whose first sentence an action line already says (Epic: the taper step written
    out as an edit is not written out again below it)."""
    first = note.replace("**", "").split(". ")[0].strip().rstrip(".").lower()
    return bool(said) and len(first) > 20 and first in said


def _edits(
    options: list[Any], order: DiazepamOrder, policy: Policy, several: bool = False
) -> list[tuple[str, bool]]:
    """In a profile without updates (Epic), the rewrites of the pended order as edit
    instructions, each with its dose and amount (review round 1 M4). Rewrites that differ
    only in the dose are one edit, the course and 'no refills' said once (F.2a: 'Edit the
    order: 7 days, 21 tablets, no refills'): 'to 7 days, no refills: 2 mg twice a day (14
    tablets), or the dose as written (21 tablets).' Any other rewrite is an edit of its own
    (one choice a line); an option that spells its own edit (the taper step) keeps it.

    A rewrite to another product (review round 3: the 2 mg tablet for a 5 mg tablet order)
    is a line of its own that names the new product first, 'diazepam 2 mg tablets: 2 mg
    twice a day for 7 days (14 tablets), no refills.', flagged as a new order (each edit is
    (text, new order?)). With several pended orders (``several``), a rewrite of this card's
    order says which order to keep: 'keep diazepam 5 mg 3 times a day, change it to
    diazepam 2 mg tablets: ...'."""
    rewrites = [o for o in options if o.kind == "update"]
    if not rewrites:
        return []
    rule = policy["compose"]
    written = "" if several else dose_words(order).strip()
    spelled = [None if o.edit_text else _edit_words(o.resource, written) for o in rewrites]
    parts = [s for s in spelled if s is not None]
    if len(parts) == len(rewrites) and not several and not any(o.product for o in rewrites):
        courses = {course for _, course, _, _ in parts}
        if len(courses) == 1 and all(none for _, _, _, none in parts):
            (course,) = courses
            lead = f"to {course}, no refills: " if course else "no refills: "
            edit = lead + ", or ".join(f"{dose}{qty}" for dose, _, qty, _ in parts) + "."
            return [(edit, False)]
    texts: list[tuple[str, bool]] = []
    for option, words in zip(rewrites, spelled, strict=True):
        new_order = bool(option.product)
        if words is None:
            texts.append(((option.edit_text or option.label).rstrip(". ") + ".", new_order))
            continue
        dose, course, qty, none = words
        text = (
            dose
            + (f" for {course}" if course else "")
            + qty
            + (", no refills" if none else "")
            + "."
        )
        if several and option.product:
            # review round 6 M-2: another product is a new order, not an edit of the one kept
            text = f"{option.product}: {text}"
        elif several:
            change = rule["keep_edit"]
            text = (
                str(rule["keep_which"]).format(order=f"diazepam{dose_words(order)}")
                + str(change).format(product=option.product)
                + text
            )
        elif option.product:
            text = f"{option.product}: {text}"
        texts.append((text, new_order))
    return texts


_NAMED_EDIT = re.compile(r"^([A-Z][a-z]+(?: [a-z]+)* step): (.+)$", re.S)
_KEEP_ONLY = "Keep only "


def _edit_lines(
    edits: list[tuple[str, bool]], heads: dict[str, str], first: str, leading: bool = True
) -> list[str]:
    """Each edit a paragraph of its own, one choice a line (F.2a, pharmacist review: "one
    line per drug"), under a bold head: the first under ``first`` ("Edit the order:", "Or
    edit the order:" below the switch line, "To keep one instead, ...:"); a named step
    ("First taper step: ...") says its name in the head ("Edit the order to the first taper
    step:", "Or the tablet step:"); a further order kept says "Or keep only:". An edit to
    another product is a new order, not an edit (review round 5 M-1: Epic cannot edit a
    tablet order into the solution; the pended order goes once the new one is entered):
    "New order, first taper step, then remove the pended one:". ``leading``: False when
    lines stand above these (a long-term user's keeps), so the first says "Or"."""
    lines = []
    single = first in (heads["first"], heads["or"])
    for i, (edit, new_order) in enumerate(edits):
        named = _NAMED_EDIT.match(edit) if single else None
        text = named.group(2) if named else edit
        opening = i == 0 and first == heads["first"]
        if new_order and not single:  # several pended orders: each one goes (M-2)
            named = _NAMED_EDIT.match(edit)
            text = named.group(2) if named else edit
            key = ("new_all" if i == 0 and leading else "new_all_or") + ("_named" if named else "")
            head = heads[key].format(name=named.group(1).lower() if named else "")
        elif new_order:
            lead = "new_" if opening else "new_or_"
            head = (
                heads[lead + "named"].format(name=named.group(1).lower())
                if named
                else heads[lead + "plain"]
            )
        elif named:
            key = "named_first" if opening else "named_or"
            head = heads[key].format(name=named.group(1).lower())
        elif i == 0 and not single and edit.startswith(_KEEP_ONLY):
            head, text = heads["keep_one"], edit[len(_KEEP_ONLY) :]
        elif i == 0:
            head = first
        elif edit.startswith(_KEEP_ONLY):
            head, text = heads["keep_or"], edit[len(_KEEP_ONLY) :]
        else:
            head = heads["or"]
        lines.append(f"**{head}** {text}")
    return lines


def _keep_one_lines(options: list[Any], heads: dict[str, str], first: bool) -> list[str]:
    """A long-term user's "keep only one" choices as Epic types them (review round 6 H-1):
    Epic shows one Remove per order, so each line says which order stays and which to
    remove: 'Keep only: diazepam 4.5 mg twice a day (taper step, 10 % lower): remove
    diazepam 5 mg twice a day.' (``first``: the opening choice; else each is an 'Or')."""
    keeps = [o for o in options if o.kind == "delete" and o.removes and o.edit_text]
    return [
        f"**{heads['keep_one'] if i == 0 and first else heads['keep_or']}** {o.edit_text}"
        for i, o in enumerate(keeps)
    ]


def _edit_words(resource: dict[str, Any] | None, written: str) -> tuple[str, str, str, bool] | None:
    """('2 mg twice a day', '7 days', ' (14 tablets)', no refills?) from a rewritten order's
    own dosage text and quantity ('the dose as written' when it keeps the order's dose);
    None when it has not exactly one dosage text."""
    dosages = (resource or {}).get("dosageInstruction") or []
    if len(dosages) != 1 or not isinstance(dosages[0], dict) or not dosages[0].get("text"):
        return None
    dispense = (resource or {}).get("dispenseRequest") or {}
    qty = dispense.get("quantity") or {}
    dose, _, course = str(dosages[0]["text"]).partition(" for ")
    dose = dose.rstrip(", ")
    if written and dose == written:
        dose = "the dose as written"
    # an as-needed course says the most it allows, "up to 21 tablets", as its label does
    # (review round 2 N13; the keep lines say it so too)
    count = supplied(qty, any(d.get("asNeededBoolean") for d in dosages))
    amount_text = f" ({count})" if count else ""
    return dose, course, amount_text, dispense.get("numberOfRepeatsAllowed") == 0
