"""Copying and pruning parsed JSON: the two tree walks every answer makes.

Both run several times per card on whole FHIR resources (a rewritten order, a suggested
alternative), so they are written for parsed JSON only (dict, list, str, number, bool, None)
rather than for arbitrary objects: ``copy.deepcopy`` keeps a memo and dispatches on type for
every node, which the profile showed at several times the cost of this plain walk.
"""

from __future__ import annotations

from typing import Any


def copy_json(value: Any) -> Any:
    """A deep copy of parsed JSON (containers copied, scalars shared: they are immutable).

    Recursive for speed; a body nested deeper than the interpreter's recursion limit (valid
    JSON the parser accepted: a 900-deep extension in a draft order) is copied by the
    iterative walk instead of failing the call with a RecursionError."""
    try:
        return _copy_recursive(value)
    except RecursionError:
        return _copy_iterative(value)


def _copy_recursive(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _copy_recursive(v) if isinstance(v, dict | list) else v for k, v in value.items()
        }
    if isinstance(value, list):
        return [_copy_recursive(v) if isinstance(v, dict | list) else v for v in value]
    return value


def _copy_iterative(value: Any) -> Any:
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, child))
                item = child
            if isinstance(target, dict):
                target[key] = item
            else:
                target.append(item)
    return root


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and objects, at any depth (CDS Hooks: never send
    empties). A container that only held empties is dropped from its parent too.
    Like ``copy_json``, a tree deeper than the recursion limit takes an iterative walk."""
    try:
        return _prune_recursive(value)
    except RecursionError:
        return _prune_iterative(value)


def _empty(item: Any) -> bool:
    if isinstance(item, dict | list):
        return not item
    return item is None or item == ""


def _prune_iterative(value: Any) -> Any:
    """Post-order walk with an explicit stack: children are pruned before their parent
    decides whether they are empty."""
    if not isinstance(value, dict | list):
        return value
    # each frame: (source container, its pruned copy, iterator over its items)
    def frame(source: Any) -> tuple[Any, Any, Any]:
        copy: Any = {} if isinstance(source, dict) else []
        return source, copy, iter(source.items() if isinstance(source, dict) else enumerate(source))

    stack = [frame(value)]
    pending_key: list[Any] = []
    result: Any = None
    while stack:
        source, copy, items = stack[-1]
        for key, item in items:
            if isinstance(item, dict | list):
                pending_key.append(key)
                stack.append(frame(item))
                break
            if not _empty(item):
                if isinstance(copy, dict):
                    copy[key] = item
                else:
                    copy.append(item)
        else:
            stack.pop()
            if not stack:
                result = copy
                break
            key = pending_key.pop()
            parent = stack[-1][1]
            if copy:
                if isinstance(parent, dict):
                    parent[key] = copy
                else:
                    parent.append(copy)
    return result


def _prune_recursive(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = _prune_recursive(item)
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
                item = _prune_recursive(item)
                if not item:
                    continue
            elif item is None or item == "":
                continue
            kept.append(item)
        return kept
    return value
