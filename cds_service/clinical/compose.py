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

from cds_service.clinical.models import Finding
from cds_service.clinical.policy import Policy


def _updates(finding: Finding) -> list[Any]:
    return [o for o in finding.options if o.kind == "update"]


def compose_order(findings: list[Finding], policy: Policy) -> list[Finding]:
    """Gather every update of one order's draft onto one card (at most one is accepted)."""
    rule = policy["compose"]
    with_updates = [f for f in findings if _updates(f)]
    if len(with_updates) < 2:
        return findings
    rank = {topic: i for i, topic in enumerate(rule["update_owner"])}
    owner = min(with_updates, key=lambda f: rank.get(f.topic, len(rank)))
    owner_title = rule["titles"].get(owner.topic, owner.topic)
    for finding in with_updates:
        if finding is owner:
            continue
        moved = [o for o in _updates(finding) if finding.topic in rule["merge_topics"]]
        for option in moved:
            owner.options.append(option)
            if option.recommended and rule["merged_is_recommended"]:
                for other in owner.options:
                    other.recommended = other is option
        finding.options = [o for o in finding.options if o.kind != "update"]
        if moved:
            finding.notes.append(rule["moved_note"].format(card=owner_title))
        else:
            finding.notes.append(rule["dropped_note"].format(card=owner_title))
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
