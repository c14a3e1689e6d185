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

A last safety net: an order to create or update that would still carry a dose, rate, timing or
supply number that is not a positive finite number (a draft's ``-1e308`` mg copied into a
rewrite) is never offered for one-click signing; the action is dropped and logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.clinical.suggestions import impossible_numbers
from cds_service.jsondata import copy_json

log = logging.getLogger("cds_service.actions")

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
        unsafe = False
        for suggestion in suggestions:
            before = suggestion.get("actions") or []
            actions, lost, dropped = _fix_actions(before, refs)
            unsafe |= dropped > 0
            changed |= lost
            if not actions:
                continue  # nothing left that the EHR could apply
            if actions != before:
                suggestion["actions"] = actions
            if lost:
                label = str(suggestion.get("label") or "")
                suggestion["label"] = (label[: 200 - len(LABEL_NOTE)] + LABEL_NOTE).strip()
            kept.append(suggestion)
        if not changed and not unsafe:
            continue
        if kept:
            card["suggestions"] = kept
        else:
            card.pop("suggestions", None)
            card.pop("selectionBehavior", None)
        if not changed:
            continue
        card["detail"] = (str(card.get("detail") or "") + "\n\n" + HAND_NOTE).strip()
        audit = card.get("_audit")
        if isinstance(audit, dict):
            audit["unaddressable_draft"] = True
    return cards


def _fix_actions(
    actions: list[dict[str, Any]], refs: Counter[str]
) -> tuple[list[dict[str, Any]], bool, int]:
    """The actions that can be applied, whether a draft could not be addressed, and how many
    orders were dropped for impossible numbers."""
    out: list[dict[str, Any]] = []
    lost = False
    dropped = 0
    for action in actions:
        kind = action.get("type")
        resource = action.get("resource")
        if kind in ("create", "update") and isinstance(resource, Mapping):
            bad = impossible_numbers(resource)
            if bad:
                log.warning("suggested order dropped: impossible numbers", extra={"at": bad[:5]})
                dropped += 1
                continue
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
            resource = copy_json(action.get("resource"))
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
    return out, lost, dropped
