"""Make the findings of one request compose: what a clinician may accept together must not
undo itself, and one patient-level problem is one card however many diazepam drafts there are.

A CDS Hooks ``update`` action carries the whole resource, so when two cards each offer an
update of the same draft, accepting both keeps only the last one: a dose rewrite followed by
a duration rewrite silently restores the dose, and adding a reason silently restores the
30-day supply. So every rewrite of one draft is offered on one card (the first in
``policy["compose"]["update_owner"]`` that has one) as alternatives, and the other cards say
where the change is. Pure functions of findings and policy, like the rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cds_service.clinical.models import (
    DRAFT_KINDS,
    KEEP_ALL,
    SUMMARY_MAX,
    Finding,
    Option,
    PatientRecord,
)
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    ABOVE_START_LABEL,
    chronic_diazepam,
    effective_route,
    emergency_order,
    fmt,
    in_sentence,
    running_dose,
    supplied,
    times_a_day,
)
from cds_service.clinical.rules.taper import extended_step
from cds_service.clinical.suggestions import (
    LABEL_MAX,
    dose_words,
    fitted,
    product_words,
    rewrite_order,
)


def _updates(finding: Finding) -> list[Any]:
    return [o for o in finding.options if o.kind == "update"]


def compose_order(findings: list[Finding], policy: Policy) -> list[Finding]:
    """Gather every update of one order's draft onto one card (at most one is accepted).

    When a card offers to cancel the order (an absolute contraindication), no other card may
    offer to keep it: their rewrites are withdrawn and they point to that card (F.2a: one
    decision per order; a recommended "keep" beside a critical "cancel" misleads)."""
    rule = policy["compose"]
    # an absolute contraindication withdraws every "keep"; a critical opioid card's cancel is
    # the recommended choice beside them (review round 1 M1), not the only one
    cancel = next(
        (
            f
            for f in findings
            if f.topic == "diazepam-contraindication" and any(o.kind == "delete" for o in f.options)
        ),
        None,
    )
    if cancel is not None:
        for finding in findings:
            if finding is cancel or not _updates(finding):
                continue
            finding.options = [o for o in finding.options if o.kind != "update"]
            finding.notes.append(rule["cancel_note"])
    with_updates = [f for f in findings if _updates(f)]
    if len(with_updates) < 2:
        return one_decision(findings, policy)
    rank = {topic: i for i, topic in enumerate(rule["update_owner"])}
    owner = min(with_updates, key=lambda f: rank.get(f.topic, len(rank)))
    owner_title = rule["titles"].get(owner.topic, owner.topic)
    for finding in with_updates:
        if finding is owner:
            continue
        moved = [o for o in _updates(finding) if finding.topic in rule["merge_topics"]]
        if moved and finding.variant == "geriatric":
            # the dose card fires: a "keep" keeps a dose above the older-adult start and
            # says so; the dose change comes first (review round 1 M5)
            for other in _updates(owner):
                if other.label_above_start:
                    other.label = other.label_above_start
        first_update = next(
            (i for i, o in enumerate(owner.options) if o.kind == "update"), len(owner.options)
        )
        for option in reversed(moved):
            owner.options.insert(first_update, option)
        for option in moved:
            if option.recommended and rule["merged_is_recommended"]:
                for other in owner.options:
                    other.recommended = other is option
        finding.options = [o for o in finding.options if o.kind != "update"]
        finding.audit["choices_moved"] = True
        if moved:
            finding.notes.append(rule["moved_note"].format(card=owner_title))
        else:
            finding.notes.append(rule["dropped_note"].format(card=owner_title))
    return one_decision(findings, policy)


def one_decision(findings: list[Finding], policy: Policy) -> list[Finding]:
    """F.2a: every action on the pended diazepam order sits on ONE card, as choices that
    exclude each other (replace with X | keep, shorter | lower dose | cancel), so two accepted
    suggestions can never conflict. The other cards explain and say where the choice is;
    actions that do not touch the order (a naloxone order) stay where they are. At most one
    choice is recommended: the first recommended in that order."""
    rule = policy["compose"]
    holders = [f for f in findings if any(o.kind in DRAFT_KINDS for o in f.options)]
    if not holders:
        return findings
    rank = {topic: i for i, topic in enumerate(rule["decision_owner"])}
    severity = {name: i for i, name in enumerate(policy["indicator_order"])}
    # the most urgent card that acts on the order hosts the choice (a warning-level switch
    # must not hide on an info card); among equals, the policy's order. A card that also
    # offers an order beside diazepam (naloxone) hosts the choice only when no other card
    # can: under at-most-one, taking the decision there would forbid the naloxone
    host = min(
        holders,
        key=lambda f: (
            any(o.kind not in DRAFT_KINDS for o in f.options),
            severity.get(f.indicator, 99),
            rank.get(f.topic, len(rank)),
        ),
    )
    title = rule["titles"].get(host.topic, host.topic)
    for finding in holders:
        if finding is host:
            continue
        moved = [o for o in finding.options if o.kind in DRAFT_KINDS]
        finding.options = [o for o in finding.options if o.kind not in DRAFT_KINDS]
        host.options.extend(moved)
        carried = [n for o in moved for n in o.notes]
        for note in carried:
            if note not in host.notes:  # a caution goes where its option goes (F.2a)
                host.notes.append(note)
        # ... and only there: the card it left names no choice to be careful about
        finding.notes = [n for n in finding.notes if n not in carried]
        finding.notes.append(rule["decision_note"].format(card=title))
        finding.audit["choices_moved"] = True
        # named by its summary once rendered (name_decision_cards): the prescriber sees
        # summaries, not this service's topic titles (review round 2, third reviewer)
        finding.audit["decision_on"] = host.topic
        host.audit.setdefault("decision_from", []).append(finding.topic)
    host.notes = _one_off_label_note(host.notes, policy)
    _one_cancel(host)
    # a critical card that also offers naloxone keeps its recommended cancel (review round 1
    # M1): the two do not conflict, so suggestions.shape_suggestions lets both be accepted
    others = [o for o in host.options if o.kind not in DRAFT_KINDS]
    # a cancel recommended by a critical card (absolute contraindication, opioid with a
    # high-risk patient) is the decision: listed first, the only recommended choice, no
    # muscle relaxant pre-selected beside it (review round 1 M1, M2)
    cancel_first = any(o.kind == "delete" and o.recommended for o in host.options)
    order = (
        {"delete": 0, "replace": 1, "update": 2}
        if cancel_first
        else {"replace": 0, "update": 1, "delete": 2}
    )
    draft = sorted((o for o in host.options if o.kind in DRAFT_KINDS), key=lambda o: order[o.kind])
    host.options = draft + others
    if cancel_first and host.topic == "muscle-relaxant-alternative" and host.facts.get("top"):
        # the card's own summary ("X suggested instead of diazepam") would contradict the
        # recommended cancel (review round 1 M1, L3)
        host.summary_override = rule["cancel_summary"].format_map(host.facts)
    seen = False
    for option in draft:
        option.recommended = option.recommended and not seen
        seen = seen or option.recommended
    top = next((o for o in draft if o.recommended), None)
    if (
        top is not None
        and top.kind == "replace"
        and host.topic == "duration-limit"
        and host.summary_override is None
        and top.drug
    ):
        # the duration card hosts the decision but a replacement is recommended: its
        # summary must not say only "limit to 7 days" (review round 1 L3)
        host.summary_override = rule["replace_summary"].format_map({**host.facts, "drug": top.drug})
    if (
        top is not None
        and top.kind == "delete"
        and host.topic == "duration-limit"
        and host.summary_override is None
    ):
        # the duration card hosts the decision and the drug-free cancel is recommended (N3):
        # its summary must not say only "limit to 7 days"
        host.summary_override = rule["cancel_duration_summary"].format_map(host.facts)
    if top is not None and top.kind == "delete":
        for finding in findings:
            if (
                finding.topic == "muscle-relaxant-alternative"
                and finding.facts.get("top")
                and finding.summary_override is None
            ):
                # the alternatives card, host or not, must not read "X suggested instead"
                # when cancelling is the recommended choice (N3; review round 1 M1)
                finding.summary_override = rule["cancel_summary"].format_map(finding.facts)
    return findings


def _off_label_pattern(policy: Policy) -> re.Pattern[str]:
    """The policy's off-label note with its drug as a group."""
    head, _, tail = policy["alternatives"]["off_label_note"].partition("{drug}")
    return re.compile(re.escape(head) + r"(.+?)" + re.escape(tail) + "$")


def _one_off_label_note(notes: list[str], policy: Policy) -> list[str]:
    """One off-label sentence naming every drug, not one paragraph per drug."""
    pattern = _off_label_pattern(policy)
    drugs = [m.group(1) for m in map(pattern.match, notes) if m]
    if len(drugs) < 2:
        return notes
    merged = policy["alternatives"]["off_label_note"].format(drug=" and ".join(drugs))
    first = next(i for i, n in enumerate(notes) if pattern.match(n))
    kept = [n for n in notes if not pattern.match(n)]
    kept.insert(first, merged)
    return kept


def _one_cancel(host: Finding) -> None:
    """One cancel per decision card: a contraindication, a high-risk opioid card and the
    alternatives each offer one (N2). The one kept says what the patient gets instead,
    when one does, and is recommended when any was (an absolute contraindication, N3)."""
    cancels = [o for o in host.options if o.kind == "delete" and o.removes is None]
    if len(cancels) < 2:
        return
    kept = next((o for o in cancels if o.instead), cancels[0])
    kept.recommended = any(o.recommended for o in cancels)
    host.options = [o for o in host.options if o.kind != "delete" or o is kept or o.removes]


def _typed_keep(option: Option, text: str | None = None) -> str:
    """A keep's label (or ``text``) as typed in full: its quantity and 'no refills'
    restored."""
    text = option.label if text is None else text
    dispense = (option.resource or {}).get("dispenseRequest") or {}
    as_needed = any(
        d.get("asNeededBoolean") for d in (option.resource or {}).get("dosageInstruction") or []
    )
    count = supplied(dispense.get("quantity"), as_needed)
    if count and count not in text:
        text += f" ({count})"
    if "refill" not in text:
        text += ", no refills" if not dispense.get("numberOfRepeatsAllowed") else ""
    return text


_KEEP_COURSE = re.compile(r"^(Keep only .+?), (\d+(?:\.\d+)? days\b.*)$")


def _keep_line(typed: str, removed: list[tuple[str, str]]) -> str:
    """'Keep only diazepam 5 mg twice a day, 7 days (14 tablets), no refills' as Epic types
    it: what to edit and what to remove (review round 7 F8: the line said neither, so the
    14-day order could be signed beside the other one): 'Keep only diazepam 5 mg twice a
    day: edit it to 7 days (14 tablets), no refills; remove diazepam 5 mg 3 times a day.'"""
    found = _KEEP_COURSE.match(typed.rstrip(". "))
    text = f"{found.group(1)}: edit it to {found.group(2)}" if found else typed.rstrip(". ")
    others = removed[0][1] if len(removed) == 1 else f"the other {_count_word(len(removed))}"
    return f"{text}; remove {others}."


def summary_start(summary: str, limit: int = 70) -> str:
    """The opening of a card's summary, as a pointer quotes it: up to its first ';', else
    whole words up to ``limit`` characters and an ellipsis."""
    head = summary.split(";")[0].strip()
    if len(head) <= limit:
        return head
    cut = head[:limit].rsplit(" ", 1)[0].rstrip(",:")
    return cut + "…"


def name_decision_cards(cards: list[dict[str, Any]], policy: Policy) -> None:
    """A card whose choices moved to the order's decision card points to that card by the
    words its summary starts with, as the prescriber sees it ('the card "Age 77, eGFR 70:
    cancel the diazepam order"'), not by this service's name for its topic (review round 2:
    "the alternatives card" pointed to a card whose summary starts otherwise)."""
    rule = policy["compose"]
    for card in cards:
        audit = card.get("_audit") or {}
        topic = audit.get("decision_on")
        if not topic:
            continue
        host = next(
            (
                c
                for c in cards
                if _topic(c) == topic and _order_of(c) == audit.get("order_id") and c is not card
            ),
            None,
        )
        if host is None:
            continue
        old = rule["decision_note"].format(card=rule["titles"].get(topic, topic))
        new = rule["decision_note_named"].format(summary=summary_start(host["summary"]))
        card["detail"] = card["detail"].replace(old, new)


def dedupe_patient_cards(cards: Sequence[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """One card per patient-level problem: the same topic, indicator and summary for several
    diazepam drafts is shown once, its audit naming every order it covers."""
    topics = set(policy["compose"]["patient_level_topics"])
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for card in cards:
        topic = card["source"]["topic"]["code"]
        if topic not in topics:
            out.append(card)
            continue
        key = (topic, card["indicator"], card["summary"])
        first = seen.get(key)
        audit = card.get("_audit") or {}
        if first is None:
            seen[key] = card
            if audit.get("order_id"):
                audit["order_ids"] = [audit["order_id"]]
            out.append(card)
            continue
        ids = first.get("_audit", {}).setdefault("order_ids", [])
        if audit.get("order_id") and audit["order_id"] not in ids:
            ids.append(audit["order_id"])
    return out


def copd_caution(findings: list[Finding], record: PatientRecord, policy: Policy) -> list[Finding]:
    """R21: COPD or other chronic lung disease is a caution line on the first dose, duration
    or taper card (no card of its own); with an opioid too, that card is at least a warning."""
    rule = policy["copd"]
    groups = [g for g in rule["groups"] if record.has(g)]
    if not groups:
        return findings
    host = next((f for f in findings if f.topic in rule["topics"]), None)
    if host is None:
        return findings
    names = " and ".join(in_sentence(policy.group_titles.get(g, g)) for g in groups)
    host.notes.append(rule["note"].format(names=names))
    host.audit["copd_caution"] = groups
    opioid = any("opioid" in m.classes for m in [*record.medications, *record.draft_medications])
    if opioid and host.indicator == "info":
        host.indicator = "warning"
    return findings


def _topic(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


def _order_of(card: dict[str, Any]) -> Any:
    return (card.get("_audit") or {}).get("order_id")


def note_context(findings: list[Finding], record: PatientRecord) -> list[Finding]:
    """What a card's links depend on beyond its own topic (F.0-7: a card cites the source
    that supports its claim): an opioid active or pended (the CDC opioid guideline on the
    taper card only then), a recorded pregnancy (the FDA 2020 NSAID warning only then)."""
    meds = [*record.medications, *record.draft_medications]
    opioid = any("opioid" in m.classes for m in meds)
    pregnant = record.has("pregnancy")
    # another diazepam order pended (a rescue product beside the tablets): an Epic line says
    # which pended order to remove (review round 9 #2)
    beside = any("diazepam" in m.ingredients for m in record.draft_medications)
    for finding in findings:
        if beside:
            finding.audit["other_diazepam_pended"] = True
        if opioid:
            finding.audit["opioid"] = True
        if pregnant:
            finding.audit["pregnancy"] = True
    return findings


def _foldable(card: dict[str, Any], policy: Policy) -> bool:
    """An info card with nothing to do: no suggestion, no edit of its order in its text."""
    rule = policy["compose"]
    audit = card.get("_audit") or {}
    fits = _topic(card) in rule["fold_topics"] or audit.get("variant") in rule.get(
        "fold_variants", {}
    ).get(_topic(card), [])
    return (
        fits
        and card["indicator"] == "info"
        and not card.get("suggestions")
        and not audit.get("decides")
    )


def _fold_host(
    card: dict[str, Any], others: list[dict[str, Any]], policy: Policy
) -> dict[str, Any] | None:
    """Where a folded card goes: the card that decides for the same order (its choices, or
    its edits in a profile without updates); else a card of that order with suggestions (the
    update owner first); else, for ``fold_to_any_card`` topics, the most urgent card of that
    order. None: it stays a card of its own."""
    rule = policy["compose"]
    mates = [c for c in others if _order_of(c) == _order_of(card)]
    deciding = [c for c in mates if (c.get("_audit") or {}).get("decides")]
    if deciding:
        return deciding[0]
    owners = list(rule["update_owner"])
    acting = sorted(
        (c for c in mates if c.get("suggestions")),
        key=lambda c: owners.index(_topic(c)) if _topic(c) in owners else len(owners),
    )
    if acting:
        return acting[0]
    anywhere = rule.get("fold_to_any_card", [])
    variant = (card.get("_audit") or {}).get("variant")
    if mates and (_topic(card) in anywhere or f"{_topic(card)}/{variant}" in anywhere):
        return mates[0]
    return None


def fold_actionless(cards: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """F.2a "no actionless noise": an info card of a foldable topic with nothing to do (its
    action moved to another card, or it only explains) becomes one sentence (its template's
    ``line``) of the card that decides for the same order, with its links; the sentences
    folded into one card are one "Also" paragraph. Without such a card it stays. Cards
    arrive most urgent first and keep that order; the private ``_line`` goes here."""
    rule = policy["compose"]
    fold = [_foldable(card, policy) for card in cards]
    others = [card for card, f in zip(cards, fold, strict=True) if not f]
    out: list[dict[str, Any]] = []
    folded: dict[int, list[dict[str, Any]]] = {}
    for card, f in zip(cards, fold, strict=True):
        host = _fold_host(card, others, policy) if f else None
        if host is None:
            out.append(card)
        else:
            folded.setdefault(id(host), []).append(card)
    for host in out:
        lines = []
        several = bool((host.get("_audit") or {}).get("duplicate_orders"))
        for card in folded.get(id(host), []):
            # second review N5/N8: a finding whose rewrite is a choice on this card adds no
            # sentence where the choices, the summary or the several-orders statement say it
            # (the days are in every choice; the older-adult dose in the summary, if it fits)
            said = _dose_in_summary(host, card) or (several and _topic(card) == "dose-limit")
            moved = (card.get("_audit") or {}).get("choices_moved")
            if not said and not (moved and _topic(card) in rule["fold_silent_topics"]):
                lines.append(card["_line"])
            urls = {link["url"] for link in host.get("links") or []}
            host["links"] = [*(host.get("links") or [])] + [
                link for link in card.get("links") or [] if link["url"] not in urls
            ]
            host.setdefault("_audit", {}).setdefault("folded", []).append(_topic(card))
        if lines:
            host["detail"] += "\n\n**Also:** " + " ".join(lines)
        if folded.get(id(host)):
            host["links"] = _named_links(host, policy)
    for card in out:
        card.pop("_line", None)
    return out


def _named_links(card: dict[str, Any], policy: Policy) -> list[dict[str, Any]]:
    """F.0-7: a muscle relaxant's label, brought in by a folded card, stays only where this
    card names the drug (in its summary, detail or choices)."""
    drugs = {d for ranked in policy["alternatives"]["ranking"].values() for d in ranked}
    said = " ".join(
        [card["summary"], card["detail"], *(s["label"] for s in card.get("suggestions") or [])]
    ).lower()
    return [
        link
        for link in card.get("links") or []
        if not (
            link["label"].split()[0].lower() in drugs
            and link["label"].split()[0].lower() not in said
        )
    ]


def _dose_in_summary(host: dict[str, Any], card: dict[str, Any]) -> bool:
    """A folded older-adult dose finding is said in the decision card's summary when it fits
    (review round 1 M5: a last "Also" line hid that the dose kept is above the start); then
    it is not said again below. False: the summary could not say it."""
    audit = card.get("_audit") or {}
    if _topic(card) != "dose-limit" or audit.get("variant") != "geriatric":
        return False
    mg, times = audit.get("mg_per_dose"), audit.get("doses_per_day")
    if mg is None or not times:
        return False
    dose = f"{fmt(mg)} mg {times_a_day(times)}, {ABOVE_START}"
    cancel = "cancel the diazepam order"
    if cancel in host["summary"]:
        # the recommended choice is to cancel (N3): the order it cancels says its dose
        summary = host["summary"].replace(cancel, f"cancel diazepam {dose}", 1)
        if len(summary) > SUMMARY_MAX:
            summary = summary.replace("; if a muscle relaxant is still needed, ", "; or ", 1)
    else:
        marker = "instead of diazepam"
        if marker not in host["summary"]:
            return False
        summary = f"{host['summary'].split(marker)[0]}{marker} {dose}"
    if len(summary) > SUMMARY_MAX:
        return False
    host["summary"] = summary
    return True


# N9 (second review): said in words a prescriber reads without a glossary
ABOVE_START = "above the usual start at 65 and older"


def fit_budget(cards: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """R22 / F.0-5: at most ``max_cards`` cards, but a safety topic is never dropped. Cards
    beyond the budget (most urgent first, so the least urgent go) are not lost either: their
    summaries become "Also noted" lines of the last card kept."""
    limit = int(policy["max_cards"])
    if len(cards) <= limit:
        return cards
    safety = set(policy["safety_topics"])
    keep_safety = sum(1 for c in cards if _topic(c) in safety)
    room = max(limit - keep_safety, 0)
    kept: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    for card in cards:
        if _topic(card) in safety:
            kept.append(card)
        elif room > 0:
            kept.append(card)
            room -= 1
        else:
            extra.append(card)
    if extra and kept:
        host = kept[-1]
        lines = "\n".join(f"- {c['summary']}" for c in extra)
        host["detail"] += f"\n\n**Also noted:**\n{lines}"
        host.setdefault("_audit", {}).setdefault("merged", []).extend(_topic(c) for c in extra)
    return kept


_DECISION_TOPICS = (
    "muscle-relaxant-alternative",
    "no-suitable-alternative",
    "duration-limit",
    "dose-limit",
    "indication-missing",
)


def _order_words(order: Any) -> str:
    """'diazepam 5 mg 3 times a day' (the order's own numbers), else its product."""
    words = dose_words(order)
    return f"diazepam{words}" if words else (order.display or "diazepam")


def _replace_both(label: str, count: int) -> str:
    """'Replace with baclofen …' -> 'Replace both with baclofen …', shortened to fit: the
    quantity goes first, "(off-label)" only if nothing else fits (review round 9: F.0-7
    says it beside the drug)."""
    verb = "Replace both with" if count == 2 else "Replace all with"
    out = label.replace("Replace with", verb, 1)
    for cut in (re.compile(r" \(\d+ [a-zA-Z]+\)$"), " (off-label)"):
        if len(out) <= LABEL_MAX:
            break
        out = cut.sub("", out) if isinstance(cut, re.Pattern) else out.replace(cut, "", 1)
    return out


def one_decision_for_orders(entries: list[tuple[Any, Any, list[Finding]]], policy: Policy) -> bool:
    """Several pended diazepam orders (review round 1 H1): ONE decision card for the set,
    whose every choice leaves at most one diazepam order (at-most-one: no answer keeps
    both, or creates two replacements). It states each order and the total daily dose
    against the label (40 mg a day; the older-adult start), offers to keep only one of
    them (capped, or at the older-adult start), to replace all with one alternative, or to
    cancel all; the other orders' alternatives, duration and dose cards go (their findings
    are in that statement), and 'diazepam with diazepam' is no CNS-combination card.

    A long-term user gets the taper form of it (``_one_taper_decision``: keep one, never
    none). Returns False (nothing changed) for seizure/emergency therapy (F.0-3: never
    removed)."""
    rule = policy["compose"]
    if len(entries) < 2:
        return False
    if any(chronic_diazepam(order, record, policy) for order, record, _ in entries):
        # a long-term user's daily orders are one keep-one decision on every pathway (review
        # round 7 F1: a stated seizure skipped it); a rescue or injection order stays apart
        oral = [e for e in entries if effective_route(e[0], policy) == "oral"]
        if len(oral) < 2:
            return False
        stated = any(emergency_order(order, record, policy) for order, record, _ in oral)
        return _one_taper_decision(oral, policy, text_only=stated)
    if any(emergency_order(order, record, policy) for order, record, _ in entries):
        return False
    holders = [
        (i, f)
        for i, (_, _, findings) in enumerate(entries)
        for f in findings
        if any(o.kind in DRAFT_KINDS for o in f.options)
    ]
    if not holders:
        return False
    first, host = holders[0]
    order_a, record_a, findings_a = entries[first]
    others = [e for i, e in enumerate(entries) if i != first]
    words = {e[0].ref: _order_words(e[0]) for e in entries}
    everyone = [(e[0].ref, words[e[0].ref]) for e in entries]
    not_a = [(o.ref, words[o.ref]) for o, _, _ in others]
    # what each other order offered: its capped rewrite, and whether its dose is above the
    # older-adult start (said in its "keep only" label)
    keep_others: list[Option] = []
    for order_b, _, findings_b in others:
        # its duration cap's rewrite (moved to its own decision card by now)
        capped = next(
            (
                o
                for f in findings_b
                for o in f.options
                if o.kind == "update" and o.label_above_start is not None
            ),
            None,
        )
        above = any(f.topic == "dose-limit" and f.variant == "geriatric" for f in findings_b)
        lead = f"Keep only {words[order_b.ref]}" + (f" ({ABOVE_START_LABEL})" if above else "")
        rest = [(r, w) for r, w in everyone if r != order_b.ref]
        if capped is not None and capped.resource is not None:
            qty = (capped.resource.get("dispenseRequest") or {}).get("quantity") or {}
            days = (capped.resource.get("dispenseRequest") or {}).get("expectedSupplyDuration")
            as_needed = any(
                d.get("asNeededBoolean") for d in capped.resource.get("dosageInstruction") or []
            )
            count = supplied(qty, as_needed)  # "up to 7 tablets" for an as-needed course
            tails = (
                f", {fmt(days['value'])} days" if days else "",
                f" ({count})" if count else "",
            )
            keep = Option(
                kind="update",
                label=fitted(lead, *tails),
                description=capped.description,
                resource=capped.resource,
                removes=rest,
                product=capped.product,
            )
            # typed by hand in Epic: the refills too, as the host's own keep says them
            keep.edit_text = _keep_line(_typed_keep(keep, lead + "".join(tails)), rest)
            keep_others.append(keep)
        else:
            keep_others.append(_keep_as_is(lead, words[order_b.ref], rest))
        # the other orders' own decisions are this card's now; their safety cards stay,
        # without actions on their order
        kept = []
        for finding in findings_b:
            if finding.topic in _DECISION_TOPICS:
                continue
            finding.options = [o for o in finding.options if o.kind not in DRAFT_KINDS]
            kept.append(finding)
        findings_b[:] = kept
    # the host's own choices, now for the whole set
    for option in host.options:
        if option.kind == "replace":
            option.removes = everyone
            option.label = _replace_both(option.label, len(entries))
        elif option.kind == "update":
            option.removes = not_a
            if option.label.startswith("Keep diazepam"):
                option.label = option.label.replace("Keep diazepam", "Keep only diazepam", 1)
                # typed by hand in Epic: all of it, the tablet count and refills included,
                # even when the label had to drop them to fit
                option.edit_text = option.edit_text or _keep_line(_typed_keep(option), not_a)
                # the quantity goes before the "above the usual start" phrase (review round
                # 1 M5: a keep says the dose it keeps is above the start); the card says the rest
                for cut in (re.compile(r" \(\d+ [a-zA-Z]+\)"), f" ({ABOVE_START_LABEL})"):
                    if len(option.label) <= LABEL_MAX:
                        break
                    option.label = (
                        cut.sub("", option.label, count=1)
                        if isinstance(cut, re.Pattern)
                        else option.label.replace(cut, "", 1)
                    )
            elif option.label.startswith("Change to diazepam"):
                option.label = option.label.replace(
                    "Change to diazepam", "Change to one order: diazepam", 1
                ).replace(", no refills", "")
        elif option.kind == "delete":
            option.removes = everyone
            option.label = rule["cancel_all_label"].format(n=_count_word(len(entries)))
            if option.instead:  # what the patient gets instead, when it fits (N2)
                which = "both" if len(entries) == 2 else f"all {_count_word(len(entries))}"
                said = rule["cancel_all_label_instead"].format(n=which, instead=option.instead)
                option.label = said if len(said) <= LABEL_MAX else option.label
    # review round 6 M-2: a change to the product another pended order already is (the
    # older-adult 2 mg start, pended beside the 5 mg order) keeps that order: the same dose
    # is keeping it as it is (the change goes; keeping it inherits its recommendation), another
    # dose is an edit of that order, which Epic can type, not a new order
    for option in [o for o in host.options if o.kind == "update" and o.code]:
        found = _sibling(option, [o for o, _, _ in others])
        if found is None:
            continue
        sibling, mg, times, within = found
        if within:
            host.options.remove(option)
            for keep in keep_others:
                if option.recommended and keep.removes and sibling.ref not in dict(keep.removes):
                    keep.recommended = True
            continue
        dispense = (option.resource or {}).get("dispenseRequest") or {}
        days = (dispense.get("expectedSupplyDuration") or {}).get("value")
        resource = rewrite_order(sibling, days=days, mg_per_dose=mg, doses_per_day=times)
        if resource is None:
            continue
        option.resource = resource
        option.product = None
        option.removes = [(r, w) for r, w in everyone if r != sibling.ref]
        qty = (resource.get("dispenseRequest") or {}).get("quantity") or {}
        option.edit_text = _typed_keep(
            option,
            rule["keep_which"].format(order=words[sibling.ref])
            + rule["keep_edit"]
            + f"{fmt(mg)} mg {times_a_day(times)}"
            + (f" for {fmt(days)} days" if days else ""),
        )
    contraindicated = host.topic == "diazepam-contraindication"
    if contraindicated:
        # an absolute contraindication: keeping any diazepam order is no choice (review
        # round 8 F5); the prescriber who must overrides the card with a reason
        keep_others = []
        host.options = [o for o in host.options if o.kind != "update"]
    elif not any(o.kind == "update" and o.label.startswith("Keep only") for o in host.options):
        # this order kept as it is (no capped rewrite: its course is short enough) is a
        # choice too (review round 8 F6: the 2 mg twice a day order at 84 had none)
        above = any(f.topic == "dose-limit" and f.variant == "geriatric" for f in findings_a)
        lead = f"Keep only {words[order_a.ref]}" + (f" ({ABOVE_START_LABEL})" if above else "")
        keep_others.insert(0, _keep_as_is(lead, words[order_a.ref], not_a))
    updates_end = max(
        (i + 1 for i, o in enumerate(host.options) if o.kind in ("replace", "update")), default=0
    )
    host.options[updates_end:updates_end] = keep_others
    _drop_same_drug(entries)
    # the statement: each order, the total a day, against the label
    dose = policy["dose"]
    per_day = [o.mg_per_day for o, _, _ in entries]
    total = sum(per_day) if all(v is not None for v in per_day) else None
    # N9 (second review): each order with its course, the total, and plain words
    parts = _courses(entries, words)
    against = ""
    if total is not None and total > dose["max_mg_per_day"]:
        against = (
            f": together {fmt(total)} mg a day, above the label's "
            f"{fmt(dose['max_mg_per_day'])} mg a day"
        )
    elif total is not None and policy.is_older(record_a.age_years):
        # the usual start itself is the "change to one order" choice beside it (words review,
        # round 4: the several-orders card passed 60 words saying it twice)
        against = f": together {fmt(total)} mg a day, {ABOVE_START}"
    total_text = f" ({fmt(total)} mg a day)" if total is not None else ""
    count = _count_word(len(entries)).capitalize()
    summary = f"{count} diazepam orders pended: {parts}{total_text}. Keep at most one."
    if len(summary) > SUMMARY_MAX:
        summary = f"{count} diazepam orders: {parts}{total_text}. Keep at most one."
    if len(summary) > SUMMARY_MAX:  # the courses are in the statement below
        summary = f"{count} diazepam orders pended{total_text}. Keep at most one."
    statement = rule["duplicate_note"].format(against=against)
    if parts not in summary:
        statement += f" Pended: {parts}."
    if host.topic in _DECISION_TOPICS:
        host.summary_override = summary
        host.lead_notes.insert(0, statement)
    elif contraindicated:  # its summary stays; each order is cancelled (round 8 F5)
        host.notes.insert(0, rule["contraindicated_orders_note"].format(n=count, total=total_text))
    else:  # a contraindication hosts the decision: its summary stays, the set is said after
        host.notes.insert(0, f"**{summary}** {statement}")
    if total is not None and total > dose["max_mg_per_day"] or host.indicator == "info":
        host.indicator = "warning" if host.indicator == "info" else host.indicator
    host.audit["duplicate_orders"] = [o.ref for o, _, _ in entries]
    host.audit["total_mg_per_day"] = total
    # the duration finding that stays names the order it is about
    for finding in findings_a:
        if finding.topic == "duration-limit":
            finding.facts["what"] = words[order_a.ref].capitalize()
    return True


def _drop_same_drug(
    entries: list[tuple[Any, Any, list[Finding]]], host: Finding | None = None
) -> None:
    """No "diazepam adds to the CNS depression of diazepam": duplicate therapy is said on the
    decision card (``host``, which stays); a combination card naming other drugs stays,
    without diazepam."""
    for _, _, findings in entries:
        for finding in list(findings):
            if finding.topic != "cns-depressant-combination" or finding is host:
                continue
            drugs = [d for d in finding.audit.get("cns_depressants", []) if "another" not in d]
            if not drugs:
                findings.remove(finding)
            else:
                finding.facts["drugs"] = ", ".join(drugs)
                finding.audit["cns_depressants"] = drugs


def _courses(entries: list[tuple[Any, Any, list[Finding]]], words: dict[str, str]) -> str:
    """'5 mg twice a day for 30 days and 4.5 mg twice a day for 14 days' (N9: each order
    with its course, in plain words)."""
    return " and ".join(
        (
            dose_words(o).strip()  # an as-needed order says so (review round 11, Low)
            if o.mg_per_dose is not None and o.doses_per_day
            else words[o.ref].removeprefix("diazepam ")
        )
        + (f" for {fmt(o.days_supply)} days" if o.days_supply else "")
        for o, _, _ in entries
    )


def _one_taper_decision(
    entries: list[tuple[Any, Any, list[Finding]]], policy: Policy, text_only: bool = False
) -> bool:
    """Several pended diazepam orders for a long-term user (review round 6 H-1: a taper-step
    order entered before the running dose's renewal was removed gave 19 mg a day against a
    9 mg step, two taper cards and a "diazepam with diazepam" warning). ONE card whose every
    choice keeps exactly one order (F.0-1: never none, never a replacement): "keep only X;
    remove the other". The order that is a taper step of the running dose (at most
    ``taper.max_step_pct`` % below it) is recommended, the closest to ``taper.step_pct``,
    unless the use is a stated long-term one or hospice (R13 scope: nothing recommended,
    the dose taken listed first; round 7 F4); with no step pended, the first taper step of
    one order is offered beside the keeps (it removes the others). An order more than 25 %
    below the dose taken is no keep choice. The other orders' taper cards and the same-drug
    combination card go.

    The order kept when every Remove is ticked (Epic: one action per suggestion and any
    number of them, round 7 F2) is the ``keeper``: the step, else the dose taken, else the
    first order; it never gets a Remove of its own. ``text_only``: an order states a
    seizure or withdrawal reason (F.0-3: no delete suggestion), so the choices are lines."""
    rule, taper = policy["compose"], policy["taper"]
    tapers = [(i, f) for i, e in enumerate(entries) for f in e[2] if f.topic == "taper-required"]
    if not tapers:
        # a stated withdrawal or tetanus course has no taper card (R9, R10): the duplicate
        # card of the first order decides, as lines (review round 8 F4: one card, not two)
        tapers = [
            (i, f)
            for i, e in enumerate(entries)
            for f in e[2]
            if f.topic == "cns-depressant-combination" and f.audit.get("duplicate_order")
        ][:1]
        if not tapers:
            return False
        text_only = True
    words = _distinct_words([e[0] for e in entries], policy)
    now = running_dose(entries[0][1])
    taken = (now.mg_per_dose or 0) * (now.doses_per_day or 0) if now else None
    # a stated long-term use or hospice (R13 scope), or a withdrawal or tetanus course: no
    # order is pushed
    legit = any(f.audit.get("legit") or f.topic != "taper-required" for _, f in tapers)
    roles: dict[str, str] = {}
    lowers: dict[str, float] = {}
    for order, _, _ in entries:
        if not taken or not order.mg_per_day:
            continue
        lower = round(100 * (1 - order.mg_per_day / taken), 1)
        lowers[order.ref] = lower
        role = (
            "too_big"
            if lower > taper["max_step_pct"] + 1e-9
            else "step_big"  # above ASAM's usual start: said (review round 12)
            if lower > taper["default_max_step_pct"] + 1e-9
            else "step"
            if lower > 1e-9
            else "above"
            if lower < -1e-9
            else "same"
        )
        roles[order.ref] = rule["taper_roles"][role].format(lower=fmt(abs(lower)))
    steps = [r for r, v in lowers.items() if 1e-9 < v <= taper["max_step_pct"] + 1e-9]
    # (a bigger step than ASAM's usual start is still a step, said so in its label)
    best = min(steps, key=lambda r: abs(lowers[r] - taper["step_pct"])) if steps else None
    same = next((r for r, v in lowers.items() if abs(v) <= 1e-9), None)
    # the first order's card, as for a new start (one_decision_for_orders): the patient-level
    # cards name that order too, so fire once repeats this card with a critical one
    host_i, host = tapers[0]
    host_ref = entries[host_i][0].ref
    keeper = (same or best or host_ref) if legit else (best or same or host_ref)
    # the order every Epic Remove leaves must not need a hand edit to last: one that runs out
    # in days is no keeper while another can be kept as it is (review rounds 9 #1, 10 #1)
    # each order's extension to taper.step_days, worked out once (None: it lasts)
    extensions = {e[0].ref: extended_step(e[0], policy) for e in entries}
    lasting = [
        r
        for r, extension in extensions.items()
        if extension is None and lowers.get(r, 0) <= taper["max_step_pct"] + 1e-9
    ]
    if keeper not in lasting and lasting:
        keeper = same if same in lasting else lasting[0]
    elif not lasting:
        # every order runs out in days: no one-click Remove at all in Epic, where a tick
        # without the typed extension would leave days of supply (review round 11)
        keeper = KEEP_ALL
    if legit and keeper != same:
        # hospice or a stated long-term use: the one tick may only leave the dose taken; a
        # step is typed by hand, never one click (R13 scope, R20; review round 12)
        keeper = KEEP_ALL
    carried = []
    if best is not None:  # a step is pended: this order's own step and its lines go
        lines = {n for o in _updates(host) for n in o.notes}
        host.notes = [n for n in host.notes if n not in lines]
    elif not text_only:  # no step pended: the first step of this order, the others removed
        # (its same-dose extension is no step: the keeps below extend what they keep)
        for option in [o for o in _updates(host) if not o.extends]:
            option.removes = [(r, w) for r, w in words.items() if r != host_ref]
            option.label = fitted(option.label, rule["taper_keep_tail"])  # round 7 F10
            carried.append(option)
    keeps: list[Option] = []
    too_big = []
    for order, _, _ in entries:
        rest = [(r, w) for r, w in words.items() if r != order.ref]
        role = f" ({roles[order.ref]})" if order.ref in roles else ""
        if lowers.get(order.ref, 0) > taper["max_step_pct"] + 1e-9:
            # F.0-1: keeping it is a cut of more than 25 % in one step; not a choice
            too_big.append((words[order.ref], lowers[order.ref]))
            continue
        tail = rule["taper_keep_tail"] + ("s" if len(rest) > 1 else "")
        # one other order is named; two or more are "the other N" (Epic lists each Remove)
        removed = rest[0][1] if len(rest) == 1 else f"the other {_count_word(len(rest))}"
        # an order shorter than taper.step_days is kept extended (review round 8 F2; round
        # 10: with no dose recorded, any order kept of the set, not only a known step)
        extend = extensions[order.ref]
        if extend is not None:
            days = fmt(policy["taper"]["step_days"])
            dispense = (extend.resource or {}).get("dispenseRequest") or {}
            longer = f"{days} days ({supplied(dispense.get('quantity'), order.prn)}), no refills"
            keeps.append(
                Option(
                    kind="update",
                    label=fitted(
                        f"Keep only {words[order.ref]}", f", extended to {days} days", tail
                    ),
                    description=f"Keep {words[order.ref]} for {days} days; remove the other "
                    "pended diazepam orders",
                    resource=extend.resource,
                    removes=rest,
                    recommended=order.ref == best and not legit,
                    edit_text=f"Keep only {words[order.ref]}{role}: edit it to {longer}; "
                    f"remove {removed}.",
                )
            )
            continue
        keeps.append(
            Option(
                kind="delete",
                label=fitted(f"Keep only {words[order.ref]}", role, tail),
                description=f"Keep {words[order.ref]}; remove the other pended diazepam orders",
                removes=rest,
                recommended=order.ref == best and not legit,
                # typed in Epic, where each Remove is a suggestion of its own
                edit_text=f"{words[order.ref]}{role}: remove {removed}.",
            )
        )

    # the recommended keep first; for a stated long-term use or hospice the dose taken first
    # and the step offered after the keeps (round 7 F4, F11)
    def kept(option: Option) -> str:
        return next(r for r in words if r not in dict(option.removes or []))

    # the recommended keep first; for a stated long-term use or hospice, the dose taken
    # first (R13 scope, R20: no taper push; review round 12); then the order Epic keeps
    keeps.sort(
        key=lambda k: (
            not k.recommended,
            not (legit and kept(k) == same),
            bool(k.removes and keeper in dict(k.removes)),
        )
    )
    draft = (keeps + carried) if legit else (carried + keeps)
    if best is not None and not legit:
        draft = keeps + carried
    beside = [o for o in host.options if o.kind not in DRAFT_KINDS]  # e.g. a naloxone order
    host.options = ([] if text_only else draft) + beside
    said = {f.topic for f in entries[host_i][2]}
    for i, (_, _, findings) in enumerate(entries):
        for finding in list(findings):
            if finding is host:
                continue
            if finding.topic == host.topic:
                findings.remove(finding)  # one taper (or duplicate) card for the set
                continue
            finding.options = [o for o in finding.options if o.kind not in DRAFT_KINDS]
            # the same note about another order of the set is said once (round 7 F11)
            same = i != host_i and finding.topic in said and finding.indicator == "info"
            if same and not finding.options:
                findings.remove(finding)
    _drop_same_drug(entries, host)
    per_day = [o.mg_per_day for o, _, _ in entries]
    total = sum(per_day) if all(v is not None for v in per_day) else None  # type: ignore[misc]
    parts = _courses(entries, words)
    total_text = f" ({fmt(total)} mg a day)" if total is not None else ""
    count = _count_word(len(entries)).capitalize()
    keep = rule["taper_keep_summary"]
    summary = f"{count} diazepam orders pended: {parts}{total_text}. {keep}"
    if len(summary) > SUMMARY_MAX:
        summary = f"{count} diazepam orders: {parts}{total_text}. {keep}"
    if len(summary) > SUMMARY_MAX:
        summary = f"{count} diazepam orders pended{total_text}. {keep}"
    against = f" against {fmt(taken)} mg a day taken" if taken else ""
    statement = (
        rule["taper_duplicate_note"].format(total=fmt(total), against=against)
        if total is not None
        else rule["taper_duplicate_note_unknown"]
    )
    if best is not None and not legit:
        statement += " " + rule["taper_keep_step"].format(lower=fmt(lowers[best]))
    if not taken and any(
        "diazepam" in m.ingredients and m.status == "active" for m in entries[0][1].medications
    ):
        # no dose on the running prescription: which order is the step is not known (review
        # rounds 10 and 11, condition 7)
        statement += " " + rule["taper_dose_unknown_note"]
    for said, lower in too_big:
        statement += " " + rule["taper_too_big_note"].format(
            order=said[:1].upper() + said[1:], lower=fmt(lower)
        )
    # each order is named by its keep choice or its 'not offered' line: no "Pended:" list
    host.summary_override = summary
    host.lead_notes.insert(0, statement)
    if text_only:
        # F.0-3: no delete suggestion on a stated seizure or withdrawal order; the same
        # choices, as lines the prescriber acts on in the order list
        host.lead_notes[1:1] = [
            f"**{rule['edit_heads']['keep_one'] if i == 0 else rule['edit_heads']['keep_or']}**"
            f" {(k.edit_text or '').removeprefix('Keep only ')}"
            for i, k in enumerate(keeps)
        ]
    if host.indicator == "info":
        host.indicator = "warning"
    if legit and host.variant in ("default", "step", "too_big"):
        host.variant = "legit"  # the plan is reassessed, not pushed (R13 scope)
    host.audit["duplicate_orders"] = [o.ref for o, _, _ in entries]
    host.audit["total_mg_per_day"] = total
    host.audit["keep_one"] = True  # a long-term user: never remove every order (F.0-1)
    host.audit["keeper"] = keeper
    return True


def _distinct_words(orders: list[Any], policy: Policy) -> dict[str, str]:
    """Each order's words ('diazepam 5 mg twice a day'), told apart where two would read the
    same (review round 7 F9: a tablet and a solution order of 5 mg twice a day): the product,
    then the days, then 'first', 'second'."""
    words = {o.ref: _order_words(o) for o in orders}

    def clash() -> bool:
        return len(set(words.values())) < len(words)

    if clash():
        for o in orders:
            form = policy["compose"]["order_forms"].get(o.unit or "")
            form = form or (product_words(o, policy) or "").removeprefix("diazepam ")
            if form:
                words[o.ref] = f"{words[o.ref]}, {form}"
    if clash():
        for o in orders:
            if o.days_supply:
                words[o.ref] = f"{words[o.ref]}, {fmt(o.days_supply)} days"
    if clash():
        for i, o in enumerate(orders):
            words[o.ref] = f"{words[o.ref]}, order {i + 1}"
    return words


def _keep_as_is(lead: str, kept: str, removed: list[tuple[str, str]]) -> Option:
    """'Keep only diazepam 2 mg twice a day (remove the other)': the pended order kept as it
    is, each other one removed; its Epic line says which to remove (one Remove each)."""
    return Option(
        kind="delete",
        label=fitted(lead, " (remove the other)" if len(removed) == 1 else " (remove the others)"),
        description=f"Remove the other pended orders: keep {kept}",
        removes=removed,
        edit_text=f"{lead[len('Keep only ') :]}: remove "
        + (removed[0][1] if len(removed) == 1 else f"the other {_count_word(len(removed))}")
        + ".",
    )


def _sibling(option: Option, orders: list[Any]) -> tuple[Any, float, float, bool] | None:
    """The pended order of the product ``option`` changes this one to (not as needed), with
    the rewrite's dose and doses a day, and whether that order is already within them (the
    same dose or less, as often or less: keeping it as it is); else None."""
    resource = option.resource or {}
    try:
        dosage = resource["dosageInstruction"][0]
        mg = float(dosage["doseAndRate"][0]["doseQuantity"]["value"])
        repeat = dosage["timing"]["repeat"]
        per_day = float(repeat["frequency"]) / float(repeat.get("period") or 1)
        if repeat.get("periodUnit", "d") != "d":
            return None
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
        return None
    for order in orders:
        if order.code == option.code and not order.prn:
            within = (
                order.mg_per_dose is not None
                and order.doses_per_day is not None
                and order.mg_per_dose <= mg + 1e-9
                and order.doses_per_day <= per_day + 1e-9
            )
            return order, mg, per_day, within
    return None


def _count_word(n: int) -> str:
    return {2: "two", 3: "three", 4: "four"}.get(n, str(n))
