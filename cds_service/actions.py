"""Every action the service sends addresses exactly one draft, or it is not sent.

A ``delete`` names its target by ``resourceId`` (``MedicationRequest/abc``) and an ``update``
by the ``id`` inside its resource. A draft without an ``id`` (real EHRs and test tools send
them) cannot be named: ``resourceId "MedicationRequest"`` or an update with no id is something
no EHR can apply, and with two such drafts it would be ambiguous. Two drafts sharing an id are
just as ambiguous. For such drafts this output stage keeps only what can be applied:

* a ``delete`` of an unaddressable draft is dropped;
* an ``update`` of it becomes a ``create`` of the rewritten order (no id, status ``draft``);
* a suggestion left with nothing to apply is dropped, and the card says in its text that the
  original draft must be removed or changed by hand (suggestion labels say it too).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

HAND_NOTE = (
    "**The EHR sent this diazepam order without an identifier** (or with one shared by "
    "another draft), so the service cannot change or remove it for you: after choosing a "
    "suggestion, remove or edit the original diazepam draft yourself."
)
LABEL_NOTE = " (then remove the original diazepam draft)"


def draft_refs(drafts: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """How many drafts each ``Type/id`` names (an id-less draft names none)."""
    refs: Counter[str] = Counter()
    for draft in drafts:
        if not isinstance(draft, Mapping):
            continue
        rid, rtype = draft.get("id"), draft.get("resourceType")
        if isinstance(rid, str) and rid and isinstance(rtype, str):
            refs[f"{rtype}/{rid}"] += 1
    return refs


def _addressable(ref: Any, refs: Counter[str]) -> bool:
    return isinstance(ref, str) and refs.get(ref, 0) == 1


def _target_of_update(resource: Any) -> str | None:
    if not isinstance(resource, Mapping):
        return None
    rid, rtype = resource.get("id"), resource.get("resourceType")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid and isinstance(rtype, str) else None


def address_actions(
    cards: list[dict[str, Any]], drafts: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Cards whose actions each address exactly one draft (see the module docstring)."""
    refs = draft_refs(drafts)
    for card in cards:
        suggestions = card.get("suggestions")
        if not isinstance(suggestions, list):
            continue
        kept: list[dict[str, Any]] = []
        changed = False
        for suggestion in suggestions:
            actions, lost = _fix_actions(suggestion.get("actions") or [], refs)
            if lost:
                changed = True
                if not actions:
                    continue
                suggestion["actions"] = actions
                label = str(suggestion.get("label") or "")
                suggestion["label"] = (label[: 200 - len(LABEL_NOTE)] + LABEL_NOTE).strip()
            kept.append(suggestion)
        if not changed:
            continue
        if kept:
            card["suggestions"] = kept
        else:
            card.pop("suggestions", None)
            card.pop("selectionBehavior", None)
        card["detail"] = (str(card.get("detail") or "") + "\n\n" + HAND_NOTE).strip()
        audit = card.get("_audit")
        if isinstance(audit, dict):
            audit["unaddressable_draft"] = True
    return cards


def _fix_actions(
    actions: list[dict[str, Any]], refs: Counter[str]
) -> tuple[list[dict[str, Any]], bool]:
    out: list[dict[str, Any]] = []
    lost = False
    for action in actions:
        kind = action.get("type")
        if kind == "delete":
            if _addressable(action.get("resourceId"), refs):
                out.append(action)
            else:
                lost = True
        elif kind == "update":
            if _addressable(_target_of_update(action.get("resource")), refs):
                out.append(action)
                continue
            lost = True
            resource = copy.deepcopy(action.get("resource"))
            if isinstance(resource, dict):
                resource.pop("id", None)
                resource["status"] = "draft"
                out.append(
                    {
                        "type": "create",
                        "description": str(action.get("description") or "Order as rewritten"),
                        "resource": resource,
                    }
                )
        else:
            out.append(action)
    return out, lost
