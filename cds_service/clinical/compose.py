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

from collections.abc import Sequence
from typing import Any

from cds_service.clinical.models import Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import fmt, times_a_day


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
        if moved:
            finding.notes.append(rule["moved_note"].format(card=owner_title))
        else:
            finding.notes.append(rule["dropped_note"].format(card=owner_title))
    return one_decision(findings, policy)


_DRAFT_KINDS = ("replace", "update", "delete")  # actions on the pended diazepam order


def one_decision(findings: list[Finding], policy: Policy) -> list[Finding]:
    """F.2a: every action on the pended diazepam order sits on ONE card, as choices that
    exclude each other (replace with X | keep, shorter | lower dose | cancel), so two accepted
    suggestions can never conflict. The other cards explain and say where the choice is;
    actions that do not touch the order (a naloxone order) stay where they are. At most one
    choice is recommended: the first recommended in that order."""
    rule = policy["compose"]
    holders = [f for f in findings if any(o.kind in _DRAFT_KINDS for o in f.options)]
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
            any(o.kind not in _DRAFT_KINDS for o in f.options),
            severity.get(f.indicator, 99),
            rank.get(f.topic, len(rank)),
        ),
    )
    title = rule["titles"].get(host.topic, host.topic)
    for finding in holders:
        if finding is host:
            continue
        moved = [o for o in finding.options if o.kind in _DRAFT_KINDS]
        finding.options = [o for o in finding.options if o.kind not in _DRAFT_KINDS]
        host.options.extend(moved)
        for note in (n for o in moved for n in o.notes):
            if note not in host.notes:  # a caution goes where its option goes (F.2a)
                host.notes.append(note)
        finding.notes.append(rule["decision_note"].format(card=title))
        host.audit.setdefault("decision_from", []).append(finding.topic)
    others = [o for o in host.options if o.kind not in _DRAFT_KINDS]
    if others:
        # the naloxone card is the only one acting on the order: its cancel would exclude the
        # naloxone order under at-most-one, so the cancel stays in the card's words
        host.options = [o for o in host.options if o.kind != "delete"]
    # a cancel recommended by a critical card (absolute contraindication, opioid with a
    # high-risk patient) is the decision: listed first, the only recommended choice, no
    # muscle relaxant pre-selected beside it (review round 1 M1, M2)
    cancel_first = any(o.kind == "delete" and o.recommended for o in host.options)
    order = (
        {"delete": 0, "replace": 1, "update": 2}
        if cancel_first
        else {"replace": 0, "update": 1, "delete": 2}
    )
    draft = sorted((o for o in host.options if o.kind in _DRAFT_KINDS), key=lambda o: order[o.kind])
    host.options = draft + others
    if cancel_first and host.topic == "muscle-relaxant-alternative" and host.facts.get("top"):
        # the card's own summary ("X suggested instead of diazepam") would contradict the
        # recommended cancel (review round 1 M1, L3)
        host.summary_override = rule["cancel_summary"].format_map(host.facts)
    seen = False
    for option in draft:
        option.recommended = option.recommended and not seen
        seen = seen or option.recommended
    return findings


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
    names = " and ".join(policy.group_titles.get(g, g) for g in groups)
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


def fold_actionless(cards: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """F.2a "no actionless noise": an info card of a foldable topic with nothing to do (its
    rewrite moved to another card) becomes a line of the card that carries the action for
    the same order. Without such a card it stays."""
    foldable = set(policy["compose"]["fold_topics"])
    out: list[dict[str, Any]] = []
    folded: list[dict[str, Any]] = []
    for card in cards:
        if card["indicator"] == "info" and _topic(card) in foldable and not card.get("suggestions"):
            folded.append(card)
        else:
            out.append(card)
    owners = list(policy["compose"]["update_owner"])
    for card in folded:
        mates = [c for c in out if c.get("suggestions") and _order_of(c) == _order_of(card)]
        # the card its rewrite moved to (the update owner) first, else any card with an action
        mates.sort(key=lambda c: owners.index(_topic(c)) if _topic(c) in owners else len(owners))
        host = mates[0] if mates else None
        if host is None:
            out.append(card)
            continue
        host["detail"] += f"\n\n**Also:** {card['summary']}."
        _dose_in_summary(host, card)
        host.setdefault("_audit", {}).setdefault("folded", []).append(_topic(card))
    return out


def _dose_in_summary(host: dict[str, Any], card: dict[str, Any]) -> None:
    """A folded older-adult dose finding is said in the decision card's summary too
    (review round 1 M5: a last "Also" line hid that the dose kept is above the start)."""
    audit = card.get("_audit") or {}
    if _topic(card) != "dose-limit" or audit.get("variant") != "geriatric":
        return
    mg, times = audit.get("mg_per_dose"), audit.get("doses_per_day")
    marker = "instead of diazepam"
    if mg is None or not times or marker not in host["summary"]:
        return
    head = host["summary"].split(marker)[0]
    summary = f"{head}{marker} {fmt(mg)} mg {times_a_day(times)} (above older-adult start)"
    if len(summary) <= 139:
        host["summary"] = summary


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
