"""Copying and pruning parsed JSON: the two tree walks every answer makes.

Both run several times per card on whole FHIR resources (a rewritten order, a suggested
alternative), so they are written for parsed JSON only (dict, list, str, number, bool, None)
rather than for arbitrary objects: ``copy.deepcopy`` keeps a memo and dispatches on type for
every node, which the profile showed at several times the cost of this plain walk.
"""

from __future__ import annotations

from typing import Any


def copy_json(value: Any) -> Any:
    """A deep copy of parsed JSON (containers copied, scalars shared: they are immutable)."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, dict | list) else v for v in value]
    return value


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and objects, at any depth (CDS Hooks: never send
    empties). A container that only held empties is dropped from its parent too."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = prune(item)
                if not item:
                    continue
            elif item is None or item == "":
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        kept: list[Any] = []
        for item in value:
            if isinstance(item, dict | list):
                item = prune(item)
                if not item:
                    continue
            elif item is None or item == "":
                continue
            kept.append(item)
        return kept
    return value
